{#-
    Every interaction a customer had with the brand, on every channel, one row per
    interaction: web orders, checkouts (carts that reached checkout), store sales, returns (web
    refunds and store returns), social comments, mentions and messages.
-#}
with

orders as (
    select * from {{ ref('int_orders_unioned') }}
),

checkouts as (
    select * from {{ ref('stg_shop__checkouts') }}
),

web_refunds as (
    select
        shop_order_id,
        refund_id,
        min(refunded_at) as refunded_at,
        sum(refunded_amount) as refunded_amount
    from {{ ref('stg_shop__refund_lines') }}
    group by shop_order_id, refund_id
),

store_returns as (
    select
        pos_order_id,
        return_id,
        min(returned_at) as returned_at,
        sum(quantity * unit_price) as refunded_amount
    from {{ ref('stg_pos__returns') }}
    group by pos_order_id, return_id
),

activities as (
    select * from {{ ref('stg_social__activities') }}
),

identities as (
    select record_key, customer_id from {{ ref('int_customers_unified') }}
),

order_interactions as (
    select
        {{ dbt.concat(["'order:'", "order_id"]) }} as interaction_id,
        customer_id,
        channel,
        case when channel = 'web' then 'web_order' else 'store_sale' end as interaction_type,
        order_id,
        store_id,
        total_amount as amount,
        -- Where the request stands, readable from any channel (seed 002).
        case
            when financial_status in ('refunded', 'partially_refunded') then financial_status
            when channel = 'store' then 'completed'
            else coalesce(shipment_status, 'pending')
        end as status,
        cast(null as {{ dbt.type_string() }}) as sentiment,
        ordered_at as occurred_at,
        updated_at
    from orders
),

checkout_interactions as (
    select
        {{ dbt.concat(["'checkout:'", "cast(checkouts.checkout_id as " ~ dbt.type_string() ~ ")"]) }} as interaction_id,
        identities.customer_id,
        'web' as channel,
        'checkout' as interaction_type,
        cast(null as {{ dbt.type_string() }}) as order_id,
        cast(null as {{ dbt.type_string() }}) as store_id,
        checkouts.total_amount as amount,
        case when checkouts.completed_at is null then 'abandoned' else 'recovered' end as status,
        cast(null as {{ dbt.type_string() }}) as sentiment,
        checkouts.created_at as occurred_at,
        checkouts.updated_at
    from checkouts
    left join identities
        on identities.record_key = {{ dbt.concat(["'shop:'", "cast(checkouts.shop_customer_id as " ~ dbt.type_string() ~ ")"]) }}
),

web_return_interactions as (
    select
        {{ dbt.concat(["'return:web:'", "cast(web_refunds.refund_id as " ~ dbt.type_string() ~ ")"]) }} as interaction_id,
        orders.customer_id,
        'web' as channel,
        'return' as interaction_type,
        orders.order_id,
        orders.store_id,
        web_refunds.refunded_amount as amount,
        'refunded' as status,
        cast(null as {{ dbt.type_string() }}) as sentiment,
        coalesce(web_refunds.refunded_at, orders.updated_at) as occurred_at,
        orders.updated_at
    from web_refunds
    inner join orders
        on orders.order_id = {{ dbt.concat(["'web:'", "cast(web_refunds.shop_order_id as " ~ dbt.type_string() ~ ")"]) }}
),

store_return_interactions as (
    select
        {{ dbt.concat(["'return:store:'", "store_returns.return_id"]) }} as interaction_id,
        orders.customer_id,
        'store' as channel,
        'return' as interaction_type,
        orders.order_id,
        orders.store_id,
        store_returns.refunded_amount as amount,
        'refunded' as status,
        cast(null as {{ dbt.type_string() }}) as sentiment,
        store_returns.returned_at as occurred_at,
        orders.updated_at
    from store_returns
    inner join orders
        on orders.order_id = {{ dbt.concat(["'store:'", "store_returns.pos_order_id"]) }}
),

social_interactions as (
    select
        {{ dbt.concat(["'social:'", "activities.activity_id"]) }} as interaction_id,
        identities.customer_id,
        'social' as channel,
        {{ dbt.concat(["'social_'", "activities.activity_kind"]) }} as interaction_type,
        cast(null as {{ dbt.type_string() }}) as order_id,
        cast(null as {{ dbt.type_string() }}) as store_id,
        cast(null as decimal(18, 2)) as amount,
        'received' as status,
        activities.sentiment,
        activities.created_at as occurred_at,
        activities.updated_at
    from activities
    left join identities
        on identities.record_key = {{ dbt.concat(["'social:'", "activities.social_user_id"]) }}
),

final as (
    select * from order_interactions
    union all
    select * from checkout_interactions
    union all
    select * from web_return_interactions
    union all
    select * from store_return_interactions
    union all
    select * from social_interactions
)

select * from final
