with

source as (
    {{ raw_source('shop', 'marketplace_listings', [
        'id', 'marketplace', 'sku', 'price', 'updated_at',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as listing_id,
        {{ to_text('marketplace') }} as marketplace,
        {{ to_text('sku') }} as sku,
        {{ to_money('price') }} as price,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'listing_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        listing_id,
        marketplace,
        sku,
        price,
        updated_at,
        loaded_at
    from latest
)

select * from final
