{#-
    One row per customer in the experimentation stage (exactly one order, recent enough not to
    need recovery): the occurrence is the first order; `days_since_first_purchase` lets the
    audience pick the customers whose first order is the campaign's days_since_first_purchase
    old (var second_purchase_days_since_first_purchase by default). Payload: the first order
    and recommended products (the most bought products of its categories, not bought yet).
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

order_lines as (
    select * from {{ ref('fct_order_lines') }}
),

popularity as (
    select * from {{ ref('triggers_product_popularity') }}
),

first_orders as (
    select *
    from (
        select
            orders.order_id,
            orders.customer_id,
            orders.channel,
            orders.store_id,
            orders.total_amount,
            orders.ordered_at,
            row_number() over (
                partition by orders.customer_id order by orders.ordered_at, orders.order_id
            ) as order_rank
        from orders
        inner join customers
            on orders.customer_id = customers.customer_id
        cross join clock
        where customers.lifecycle_stage = 'experimentation'
            and orders.ordered_at <= clock.as_of_at
    ) as ranked
    where order_rank = 1
),

bought as (
    select distinct order_lines.customer_id, order_lines.product_id
    from order_lines
    inner join first_orders
        on order_lines.customer_id = first_orders.customer_id
    where order_lines.product_id is not null
),

first_categories as (
    select distinct first_orders.customer_id, popularity.category
    from first_orders
    inner join order_lines
        on first_orders.order_id = order_lines.order_id
    inner join popularity
        on order_lines.product_id = popularity.product_id
),

recommendation_candidates as (
    select
        first_categories.customer_id,
        popularity.product_id,
        popularity.sku,
        popularity.title,
        popularity.web_price,
        row_number() over (
            partition by first_categories.customer_id
            order by popularity.buyer_count desc, popularity.product_id
        ) as recommendation_rank
    from first_categories
    inner join popularity
        on first_categories.category = popularity.category
    left join bought
        on first_categories.customer_id = bought.customer_id
        and popularity.product_id = bought.product_id
    where bought.product_id is null
        and popularity.buyer_count > 0
),

recommendations as (
    select
        customer_id,
        {{ triggers_json_array_agg(triggers_json_object([
            ['product_id', 'product_id'],
            ['sku', 'sku'],
            ['title', 'title'],
            ['price', 'cast(web_price as double precision)'],
        ]), 'recommendation_rank') }} as recommended_products_json
    from recommendation_candidates
    where recommendation_rank <= {{ triggers_var('matching_products_count') }}
    group by customer_id
),

final as (
    select
        {{ triggers_key(["'second_purchase'", 'first_orders.customer_id', 'first_orders.order_id']) }} as trigger_key,
        'second_purchase' as trigger_type,
        first_orders.customer_id,
        first_orders.ordered_at as occurred_at,
        first_orders.order_id as first_order_id,
        first_orders.channel as first_order_channel,
        first_orders.store_id,
        first_orders.total_amount as first_order_value,
        {{ dbt.datediff('cast(first_orders.ordered_at as date)', 'clock.as_of_date', 'day') }}
            as days_since_first_purchase,
        {%- set first_order_json = triggers_json_object([
            ['order_id', 'first_orders.order_id'],
            ['total', 'cast(first_orders.total_amount as double precision)'],
            ['channel', 'first_orders.channel'],
            ['ordered_at', 'first_orders.ordered_at'],
        ]) %}
        {{ triggers_json_object([
            ['first_order', 'cast(' ~ first_order_json ~ ' as json)'],
            ['recommended_products', "cast(coalesce(recommendations.recommended_products_json, '[]') as json)"],
        ]) }} as payload_json
    from first_orders
    cross join clock
    left join recommendations
        on first_orders.customer_id = recommendations.customer_id
)

select * from final
