{#-
    One row per abandoned checkout, with what happened next: the first later order by the same
    unified customer, within var abandoned_cart_outcome_days, that contains one of the cart's
    products (or is the checkout's own completed order) decides the outcome:
    recovered_online (a web order), bought_in_store (a store sale), or not_bought.
-#}
with

checkouts as (
    select * from {{ ref('stg_shop__checkouts') }}
),

checkout_lines as (
    select * from {{ ref('stg_shop__checkout_lines') }}
),

identities as (
    select * from {{ ref('int_customers_unified') }}
),

order_lines as (
    select * from {{ ref('int_order_lines_unioned') }}
),

orders as (
    select * from {{ ref('int_orders_unioned') }}
),

-- Guest checkouts carry only an email: resolve them through the email.
identities_by_email as (
    select email_normalized, min(customer_id) as customer_id
    from identities
    where email_normalized is not null
    group by email_normalized
),

carts as (
    select
        checkouts.checkout_id,
        checkouts.checkout_token,
        checkouts.shop_customer_id,
        coalesce(by_account.customer_id, by_email.customer_id) as customer_id,
        checkouts.created_at as abandoned_at,
        checkouts.completed_at,
        checkouts.subtotal_amount,
        checkouts.shipping_amount,
        checkouts.total_amount,
        checkouts.updated_at
    from checkouts
    left join identities as by_account
        on by_account.record_key = {{ dbt.concat(["'shop:'", "cast(checkouts.shop_customer_id as " ~ dbt.type_string() ~ ")"]) }}
    left join identities_by_email as by_email
        on by_email.email_normalized = {{ normalize_email('checkouts.email') }}
),

cart_items as (
    select
        checkout_id,
        count(distinct product_id) as product_count,
        sum(quantity) as item_quantity
    from checkout_lines
    group by checkout_id
),

-- Later purchases of a cart product by the same customer, within the window.
matching_purchases as (
    select
        carts.checkout_id,
        order_lines.order_id,
        order_lines.channel,
        order_lines.store_id,
        order_lines.ordered_at,
        sum(order_lines.line_amount) as matched_amount
    from carts
    inner join checkout_lines
        on carts.checkout_id = checkout_lines.checkout_id
    inner join order_lines
        on carts.customer_id = order_lines.customer_id
        and checkout_lines.product_id = order_lines.product_id
        and order_lines.ordered_at > carts.abandoned_at
        and order_lines.ordered_at <= {{ dbt.dateadd('day', var('abandoned_cart_outcome_days'), 'carts.abandoned_at') }}
    group by
        carts.checkout_id, order_lines.order_id, order_lines.channel, order_lines.store_id,
        order_lines.ordered_at
),

-- The checkout's own order (completed later online) counts whatever it contains.
own_orders as (
    select
        carts.checkout_id,
        orders.order_id,
        orders.channel,
        orders.store_id,
        orders.ordered_at,
        orders.subtotal_amount as matched_amount
    from carts
    inner join orders
        on orders.channel = 'web'
        and carts.checkout_id = orders.checkout_id
),

candidates as (
    select * from matching_purchases
    union all
    select * from own_orders
),

first_outcomes as (
    select *
    from (
        select
            candidates.*,
            row_number() over (
                partition by checkout_id order by ordered_at, order_id
            ) as outcome_rank
        from candidates
    ) as ranked
    where outcome_rank = 1
),

final as (
    select
        carts.checkout_id,
        carts.checkout_token,
        carts.customer_id,
        carts.shop_customer_id,
        carts.abandoned_at,
        cast(carts.abandoned_at as date) as abandoned_date,
        coalesce(cart_items.product_count, 0) as product_count,
        coalesce(cart_items.item_quantity, 0) as item_quantity,
        carts.subtotal_amount,
        carts.shipping_amount,
        carts.total_amount,
        case
            when first_outcomes.channel = 'web' then 'recovered_online'
            when first_outcomes.channel = 'store' then 'bought_in_store'
            when carts.completed_at is not null then 'recovered_online'
            else 'not_bought'
        end as outcome,
        first_outcomes.order_id as outcome_order_id,
        first_outcomes.store_id as outcome_store_id,
        coalesce(first_outcomes.ordered_at, carts.completed_at) as outcome_at,
        first_outcomes.matched_amount as recovered_amount,
        carts.updated_at
    from carts
    left join cart_items
        on carts.checkout_id = cart_items.checkout_id
    left join first_outcomes
        on carts.checkout_id = first_outcomes.checkout_id
)

select * from final
