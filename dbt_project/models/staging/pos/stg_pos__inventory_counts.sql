with

source as (
    {{ raw_source('pos', 'inventory_counts', [
        'catalog_object_id', 'catalog_object_type', 'state', 'location_id', 'quantity',
        'calculated_at',
    ]) }}
),

renamed as (
    select
        {{ to_text('location_id') }} as location_id,
        {{ to_text('catalog_object_id') }} as catalog_object_id,
        {{ to_text('state') }} as inventory_state,
        {{ to_integer('quantity') }} as quantity,
        {{ to_utc_timestamp('calculated_at') }} as calculated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where location_id is not null and catalog_object_id is not null
),

-- One current count per store and catalog object: the latest calculation wins.
latest as (
    {{ latest_version(
        'renamed', 'location_id, catalog_object_id',
        'calculated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        {{ dbt.concat(["location_id", "'-'", "catalog_object_id"]) }} as inventory_count_id,
        location_id,
        catalog_object_id,
        inventory_state,
        quantity,
        calculated_at,
        loaded_at
    from latest
)

select * from final
