with

source as (
    {{ raw_source('shop', 'products', [
        'id', 'title', 'product_type', 'created_at', 'updated_at',
    ]) }}
),

renamed as (
    select
        {{ to_integer('id') }} as product_id,
        {{ to_text('title') }} as title,
        {{ to_text('product_type') }} as category,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'product_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        product_id,
        title,
        category,
        created_at,
        updated_at,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
