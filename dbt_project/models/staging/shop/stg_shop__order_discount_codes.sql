{#- Discount codes entered on the latest version of each web order (Shopify `discount_codes`):
    one row per order and code, with the money it took off and the code's type
    (`percentage`, `shipping`, `fixed_amount`). An offer code honoured online. -#}
with

source as (
    {{ raw_source('shop', 'orders__discount_codes', ['code', 'amount', 'type'], is_child=true) }}
),

orders as (
    select shop_order_id, shop_customer_id, email, created_at, raw_row_id
    from {{ ref('stg_shop__orders') }}
),

final as (
    select
        orders.shop_order_id,
        {{ to_text('source.code') }} as discount_code,
        {{ to_text('source.type') }} as discount_type,
        {{ to_money('source.amount') }} as amount_eur,
        orders.shop_customer_id,
        orders.email,
        orders.created_at as ordered_at
    from source
    inner join orders
        on source._dlt_parent_id = orders.raw_row_id
)

select * from final
