{#- Web orders and store sales in one shape, one row per order, with the unified customer. -#}
with

web_orders as (
    select * from {{ ref('stg_shop__orders') }}
),

web_fulfillments as (
    select
        shop_order_id,
        max(shipment_status) as shipment_status,
        max(delivered_at) as delivered_at,
        max(pickup_location_id) as pickup_location_id
    from {{ ref('stg_shop__order_fulfillments') }}
    group by shop_order_id
),

web_lines as (
    select shop_order_id, sum(quantity) as item_quantity
    from {{ ref('stg_shop__order_lines') }}
    group by shop_order_id
),

web_refunds as (
    select shop_order_id, sum(refunded_amount) as refunded_amount
    from {{ ref('stg_shop__refund_lines') }}
    group by shop_order_id
),

store_orders as (
    select * from {{ ref('stg_pos__orders') }}
),

store_lines as (
    select
        pos_order_id,
        sum(quantity) as item_quantity,
        sum(quantity * unit_price) as subtotal_amount
    from {{ ref('stg_pos__order_lines') }}
    group by pos_order_id
),

store_returns as (
    select pos_order_id, sum(quantity * unit_price) as refunded_amount
    from {{ ref('stg_pos__returns') }}
    group by pos_order_id
),

stores as (
    select location_id, store_number from {{ ref('int_store_keys') }}
),

identities as (
    select record_key, customer_id from {{ ref('int_customers_unified') }}
),

web as (
    select
        {{ dbt.concat(["'web:'", "cast(web_orders.shop_order_id as " ~ dbt.type_string() ~ ")"]) }} as order_id,
        'web' as channel,
        cast(web_orders.shop_order_id as {{ dbt.type_string() }}) as source_order_id,
        identities.customer_id,
        web_orders.shop_customer_id,
        cast(null as {{ dbt.type_string() }}) as pos_customer_id,
        stores.location_id as store_id,
        web_orders.checkout_id,
        case when web_fulfillments.pickup_location_id is not null
            then 'store_pickup' else 'shipping' end as fulfillment_type,
        web_orders.financial_status,
        web_fulfillments.shipment_status,
        web_fulfillments.delivered_at,
        coalesce(web_lines.item_quantity, 0) as item_quantity,
        web_orders.subtotal_amount,
        coalesce(web_orders.shipping_amount, 0) as shipping_amount,
        web_orders.total_amount,
        coalesce(web_refunds.refunded_amount, 0) as refunded_amount,
        web_orders.created_at as ordered_at,
        web_orders.updated_at,
        web_orders.loaded_at
    from web_orders
    left join web_fulfillments
        on web_orders.shop_order_id = web_fulfillments.shop_order_id
    left join web_lines
        on web_orders.shop_order_id = web_lines.shop_order_id
    left join web_refunds
        on web_orders.shop_order_id = web_refunds.shop_order_id
    left join stores
        on web_fulfillments.pickup_location_id = stores.store_number
    left join identities
        on identities.record_key = {{ dbt.concat(["'shop:'", "cast(web_orders.shop_customer_id as " ~ dbt.type_string() ~ ")"]) }}
),

store as (
    select
        {{ dbt.concat(["'store:'", "store_orders.pos_order_id"]) }} as order_id,
        'store' as channel,
        store_orders.pos_order_id as source_order_id,
        identities.customer_id,
        cast(null as {{ dbt.type_bigint() }}) as shop_customer_id,
        store_orders.pos_customer_id,
        store_orders.location_id as store_id,
        cast(null as {{ dbt.type_bigint() }}) as checkout_id,
        'in_store' as fulfillment_type,
        case
            when coalesce(store_returns.refunded_amount, 0) = 0 then 'paid'
            when store_returns.refunded_amount >= store_orders.total_amount then 'refunded'
            else 'partially_refunded'
        end as financial_status,
        cast(null as {{ dbt.type_string() }}) as shipment_status,
        store_orders.created_at as delivered_at,
        coalesce(store_lines.item_quantity, 0) as item_quantity,
        coalesce(store_lines.subtotal_amount, store_orders.total_amount) as subtotal_amount,
        cast(0 as decimal(18, 2)) as shipping_amount,
        store_orders.total_amount,
        coalesce(store_returns.refunded_amount, 0) as refunded_amount,
        store_orders.created_at as ordered_at,
        store_orders.updated_at,
        store_orders.loaded_at
    from store_orders
    left join store_lines
        on store_orders.pos_order_id = store_lines.pos_order_id
    left join store_returns
        on store_orders.pos_order_id = store_returns.pos_order_id
    left join identities
        on identities.record_key = {{ dbt.concat(["'pos:'", "store_orders.pos_customer_id"]) }}
),

final as (
    select * from web
    union all
    select * from store
)

select * from final
