{#-
    One row per (assignment, order): every order, web or store, by the assignment's customer
    after assigned_at and at most attribution_window_days later:
        assigned_at < ordered_at <= assigned_at + attribution_window_days days
    Treatment and holdout rows are found by the same rule (a holdout from would_contact_at).
    An order in the windows of two assignments (two campaigns, or two occurrences of one)
    converts both. Gross margin is line revenue at list price minus unit cost (dim_products)
    x quantity, reduced in proportion to refunds; the campaign's own discounts and cashback
    are costs of the campaign (measurement_assignments), not margin, so they count once.
-#}
with

assignments as (
    select * from {{ ref('measurement_assignments') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

order_lines as (
    select * from {{ ref('fct_order_lines') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

order_margins as (
    select
        order_lines.order_id,
        sum(order_lines.line_amount) as line_revenue_eur,
        sum(order_lines.line_amount - order_lines.quantity * coalesce(products.cost, order_lines.unit_price))
            as line_margin_eur
    from order_lines
    left join products
        on order_lines.product_id = products.product_id
    group by order_lines.order_id
),

in_window as (
    select
        assignments.assignment_id,
        assignments.campaign_id,
        assignments.customer_id,
        assignments.trigger_key,
        assignments.assignment_group,
        assignments.is_holdout,
        assignments.assigned_at,
        assignments.has_email_contact,
        assignments.has_loyalty_cashback_contact,
        assignments.has_in_store_contact,
        orders.order_id,
        orders.channel as order_channel,
        orders.store_id,
        orders.ordered_at,
        orders.net_amount,
        orders.refunded_amount
    from assignments
    inner join orders
        on assignments.customer_id = orders.customer_id
        and orders.ordered_at > assignments.assigned_at
        and orders.ordered_at <= {{ dbt.dateadd('day', 'assignments.attribution_window_days', 'assignments.assigned_at') }}
),

final as (
    select
        {{ dbt.hash(dbt.concat(['in_window.assignment_id', "'|'", 'in_window.order_id'])) }} as conversion_id,
        in_window.assignment_id,
        in_window.campaign_id,
        in_window.customer_id,
        in_window.trigger_key,
        in_window.assignment_group,
        in_window.is_holdout,
        in_window.assigned_at,
        in_window.order_id,
        in_window.order_channel,
        in_window.store_id,
        in_window.ordered_at,
        {{ measurement_round(
            dbt.datediff('in_window.assigned_at', 'in_window.ordered_at', 'second') ~ ' / 3600.0', 2
        ) }} as hours_after_assignment,
        coalesce(in_window.net_amount, 0) as revenue_eur,
        coalesce(order_margins.line_revenue_eur, 0) as line_revenue_eur,
        coalesce(
            order_margins.line_margin_eur * (
                1 - least(1, coalesce(in_window.refunded_amount, 0) / nullif(order_margins.line_revenue_eur, 0))
            ),
            0
        ) as gross_margin_eur,
        -- The journey went on elsewhere: a store order after an email or loyalty message, or a
        -- web order after an in-store offer (holdouts had no contact: null).
        case
            when in_window.is_holdout then null
            when in_window.order_channel = 'store'
                then in_window.has_email_contact or in_window.has_loyalty_cashback_contact
            when in_window.order_channel = 'web' then in_window.has_in_store_contact
            else false
        end as is_cross_channel
    from in_window
    left join order_margins
        on in_window.order_id = order_margins.order_id
)

select * from final
