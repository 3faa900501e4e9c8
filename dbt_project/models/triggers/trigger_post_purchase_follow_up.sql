{#-
    One row per web order delivered (shipping) or picked up in store (store_pickup) within the
    last var post_purchase_max_days_after_delivery days, not refunded, with what the follow-up
    shows: the order and its items, a survey link, matching products (the most bought products
    of the order's categories that the order does not contain, bought by other customers) and a
    newsletter link for customers not subscribed. The audience keeps the orders delivered the
    campaign's days_after_delivery ago (var post_purchase_days_after_delivery by default).
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

order_lines as (
    select * from {{ ref('fct_order_lines') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

popularity as (
    select * from {{ ref('triggers_product_popularity') }}
),

delivered_orders as (
    select
        orders.order_id,
        orders.source_order_id,
        orders.customer_id,
        orders.fulfillment_type,
        orders.store_id,
        orders.delivered_at,
        orders.total_amount,
        {{ dbt.datediff('cast(orders.delivered_at as date)', 'clock.as_of_date', 'day') }}
            as days_since_delivery
    from orders
    cross join clock
    where orders.channel = 'web'
        and orders.customer_id is not null
        and orders.delivered_at is not null
        and orders.delivered_at <= clock.as_of_at
        and coalesce(orders.shipment_status, 'delivered') = 'delivered'
        and orders.fulfillment_type in ('shipping', 'store_pickup')
        and coalesce(orders.financial_status, 'paid') <> 'refunded'
        and {{ dbt.datediff('cast(orders.delivered_at as date)', 'clock.as_of_date', 'day') }}
            between 0 and {{ triggers_var('post_purchase_max_days_after_delivery') }}
),

lines as (
    select
        order_lines.order_id,
        order_lines.product_id,
        sum(order_lines.quantity) as quantity,
        max(order_lines.unit_price) as unit_price
    from order_lines
    inner join delivered_orders
        on order_lines.order_id = delivered_orders.order_id
    where order_lines.product_id is not null
    group by order_lines.order_id, order_lines.product_id
),

order_items as (
    select
        lines.order_id,
        {{ triggers_json_array_agg(triggers_json_object([
            ['product_id', 'lines.product_id'],
            ['sku', 'popularity.sku'],
            ['title', 'popularity.title'],
            ['quantity', 'lines.quantity'],
            ['unit_price', 'cast(lines.unit_price as double precision)'],
        ]), 'lines.product_id') }} as order_items_json
    from lines
    left join popularity
        on lines.product_id = popularity.product_id
    group by lines.order_id
),

order_categories as (
    select distinct lines.order_id, popularity.category
    from lines
    inner join popularity
        on lines.product_id = popularity.product_id
),

matching_candidates as (
    select
        order_categories.order_id,
        popularity.product_id,
        popularity.sku,
        popularity.title,
        popularity.web_price,
        row_number() over (
            partition by order_categories.order_id
            order by popularity.buyer_count desc, popularity.product_id
        ) as match_rank
    from order_categories
    inner join popularity
        on order_categories.category = popularity.category
    left join lines
        on order_categories.order_id = lines.order_id
        and popularity.product_id = lines.product_id
    where lines.product_id is null
        and popularity.buyer_count > 0
),

matching_products as (
    select
        order_id,
        {{ triggers_json_array_agg(triggers_json_object([
            ['product_id', 'product_id'],
            ['sku', 'sku'],
            ['title', 'title'],
            ['price', 'cast(web_price as double precision)'],
        ]), 'match_rank') }} as matching_products_json
    from matching_candidates
    where match_rank <= {{ triggers_var('matching_products_count') }}
    group by order_id
),

joined as (
    select
        {{ triggers_key(["'post_purchase_follow_up'", 'delivered_orders.order_id']) }} as trigger_key,
        'post_purchase_follow_up' as trigger_type,
        delivered_orders.customer_id,
        delivered_orders.delivered_at as occurred_at,
        delivered_orders.order_id,
        delivered_orders.fulfillment_type,
        delivered_orders.store_id,
        delivered_orders.days_since_delivery,
        delivered_orders.total_amount as order_value,
        customers.has_email_consent as is_newsletter_subscriber,
        {{ triggers_json_object([
            ['order_id', 'delivered_orders.order_id'],
            ['order_number', 'delivered_orders.source_order_id'],
            ['total', 'cast(delivered_orders.total_amount as double precision)'],
            ['fulfillment_type', 'delivered_orders.fulfillment_type'],
            ['delivered_at', 'delivered_orders.delivered_at'],
        ]) }} as order_json,
        coalesce(order_items.order_items_json, '[]') as order_items_json,
        coalesce(matching_products.matching_products_json, '[]') as matching_products_json
    from delivered_orders
    inner join customers
        on delivered_orders.customer_id = customers.customer_id
    left join order_items
        on delivered_orders.order_id = order_items.order_id
    left join matching_products
        on delivered_orders.order_id = matching_products.order_id
),

final as (
    select
        joined.*,
        {{ triggers_json_object([
            ['order', 'cast(joined.order_json as json)'],
            ['order_items', 'cast(joined.order_items_json as json)'],
            ['survey_url', dbt.concat(["'" ~ triggers_var('survey_base_url') ~ "/'", 'joined.trigger_key'])],
            ['matching_products', 'cast(joined.matching_products_json as json)'],
            ['newsletter_url', "case when joined.is_newsletter_subscriber then '' else '" ~ triggers_var('newsletter_url') ~ "' end"],
        ]) }} as payload_json
    from joined
)

select * from final
