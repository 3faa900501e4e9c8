with

source as (
    {{ raw_source('pos', 'catalog_objects', [
        'id', 'type', 'updated_at', 'item_variation_data__sku', 'item_variation_data__name',
        'item_variation_data__price_money__amount', 'item_variation_data__price_money__currency',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as catalog_object_id,
        {{ to_text('type') }} as catalog_object_type,
        {{ to_text('item_variation_data__sku') }} as sku,
        {{ to_text('item_variation_data__name') }} as item_name,
        {{ cents_to_money('item_variation_data__price_money__amount') }} as store_price,
        {{ to_text('item_variation_data__price_money__currency') }} as currency,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'catalog_object_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        catalog_object_id,
        catalog_object_type,
        sku,
        item_name,
        store_price,
        currency,
        updated_at,
        loaded_at
    from latest
)

select * from final
