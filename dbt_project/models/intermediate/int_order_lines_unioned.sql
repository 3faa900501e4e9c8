{#- Web order lines and store sale lines in one shape, one row per order line. -#}
with

orders as (
    select order_id, channel, source_order_id, customer_id, store_id, ordered_at, updated_at
    from {{ ref('int_orders_unioned') }}
),

web_lines as (
    select * from {{ ref('stg_shop__order_lines') }}
),

store_lines as (
    select * from {{ ref('stg_pos__order_lines') }}
),

product_keys as (
    select * from {{ ref('int_product_keys') }}
),

web as (
    select
        {{ dbt.concat(["'web:'", "cast(web_lines.order_line_id as " ~ dbt.type_string() ~ ")"]) }} as order_line_id,
        {{ dbt.concat(["'web:'", "cast(web_lines.shop_order_id as " ~ dbt.type_string() ~ ")"]) }} as order_id,
        web_lines.product_id,
        web_lines.sku,
        web_lines.quantity,
        web_lines.unit_price
    from web_lines
),

store as (
    select
        {{ dbt.concat(["'store:'", "store_lines.pos_order_id", "':'", "store_lines.order_line_id"]) }} as order_line_id,
        {{ dbt.concat(["'store:'", "store_lines.pos_order_id"]) }} as order_id,
        product_keys.product_id,
        product_keys.sku,
        store_lines.quantity,
        store_lines.unit_price
    from store_lines
    left join product_keys
        on store_lines.catalog_object_id = product_keys.catalog_object_id
),

lines as (
    select * from web
    union all
    select * from store
),

final as (
    select
        lines.order_line_id,
        lines.order_id,
        orders.channel,
        orders.customer_id,
        orders.store_id,
        lines.product_id,
        lines.sku,
        lines.quantity,
        lines.unit_price,
        lines.quantity * lines.unit_price as line_amount,
        orders.ordered_at,
        orders.updated_at
    from lines
    inner join orders
        on lines.order_id = orders.order_id
)

select * from final
