{#- Line items of the latest version of each store sale. -#}
with

source as (
    {{ raw_source('pos', 'orders__line_items', [
        'uid', 'catalog_object_id', 'name', 'quantity', 'base_price_money__amount',
    ], is_child=true) }}
),

orders as (
    select pos_order_id, raw_row_id from {{ ref('stg_pos__orders') }}
),

final as (
    select
        {{ to_text('source.uid') }} as order_line_id,
        orders.pos_order_id,
        {{ to_text('source.catalog_object_id') }} as catalog_object_id,
        {{ to_text('source.name') }} as item_name,
        {{ to_integer('source.quantity') }} as quantity,
        {{ cents_to_money('source.base_price_money__amount') }} as unit_price
    from source
    inner join orders
        on source._dlt_parent_id = orders.raw_row_id
)

select * from final
