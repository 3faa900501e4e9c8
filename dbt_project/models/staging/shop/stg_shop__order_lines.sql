{#- Line items of the latest version of each web order. -#}
with

source as (
    {{ raw_source('shop', 'orders__line_items', [
        'id', 'product_id', 'sku', 'title', 'quantity', 'price',
    ], is_child=true) }}
),

orders as (
    select shop_order_id, raw_row_id from {{ ref('stg_shop__orders') }}
),

final as (
    select
        {{ to_integer('source.id') }} as order_line_id,
        orders.shop_order_id,
        {{ to_integer('source.product_id') }} as product_id,
        {{ to_text('source.sku') }} as sku,
        {{ to_text('source.title') }} as title,
        {{ to_integer('source.quantity') }} as quantity,
        {{ to_money('source.price') }} as unit_price
    from source
    inner join orders
        on source._dlt_parent_id = orders.raw_row_id
)

select * from final
