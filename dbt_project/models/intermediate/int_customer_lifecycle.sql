{#-
    One row per unified customer: order history, lifecycle stage, RFM scores and observed
    preferred channel, as of one date (var as_of_date, default the latest activity date in the
    data, so a simulated world gives the same answer on any day). Activity after that date is
    ignored.
-#}
with

customers as (
    select distinct customer_id from {{ ref('int_customers_unified') }}
),

interactions as (
    select * from {{ ref('int_interactions_unioned') }}
    where customer_id is not null
),

as_of as (
    select {{ as_of_date('occurred_at') }} as as_of_date
    from {{ ref('int_interactions_unioned') }}
),

known_interactions as (
    select interactions.*
    from interactions
    cross join as_of
    where cast(interactions.occurred_at as date) <= as_of.as_of_date
),

orders as (
    select
        customer_id,
        count(*) as order_count,
        sum(case when channel = 'web' then 1 else 0 end) as web_order_count,
        sum(case when channel = 'store' then 1 else 0 end) as store_order_count,
        min(occurred_at) as first_ordered_at,
        max(occurred_at) as last_ordered_at,
        sum(amount) as total_spent
    from known_interactions
    where interaction_type in ('web_order', 'store_sale')
    group by customer_id
),

channel_counts as (
    select
        customer_id,
        channel,
        count(*) as interaction_count,
        max(occurred_at) as last_interaction_at
    from known_interactions
    group by customer_id, channel
),

preferred_channels as (
    select
        customer_id,
        channel as preferred_channel,
        row_number() over (
            partition by customer_id
            order by interaction_count desc, last_interaction_at desc, channel
        ) as channel_rank
    from channel_counts
),

interaction_totals as (
    select
        customer_id,
        sum(interaction_count) as interaction_count,
        max(last_interaction_at) as last_interaction_at
    from channel_counts
    group by customer_id
),

history as (
    select
        customers.customer_id,
        as_of.as_of_date,
        coalesce(orders.order_count, 0) as order_count,
        coalesce(orders.web_order_count, 0) as web_order_count,
        coalesce(orders.store_order_count, 0) as store_order_count,
        orders.first_ordered_at,
        orders.last_ordered_at,
        {{ dbt.datediff('cast(orders.last_ordered_at as date)', 'as_of.as_of_date', 'day') }}
            as days_since_last_order,
        coalesce(orders.total_spent, 0) as total_spent,
        coalesce(interaction_totals.interaction_count, 0) as interaction_count,
        interaction_totals.last_interaction_at,
        preferred_channels.preferred_channel
    from customers
    cross join as_of
    left join orders
        on customers.customer_id = orders.customer_id
    left join interaction_totals
        on customers.customer_id = interaction_totals.customer_id
    left join preferred_channels
        on customers.customer_id = preferred_channels.customer_id
        and preferred_channels.channel_rank = 1
),

scored as (
    select
        customer_id,
        {{ quintile_score('days_since_last_order desc') }} as recency_score,
        {{ quintile_score('order_count') }} as frequency_score,
        {{ quintile_score('total_spent') }} as monetary_score
    from history
    where order_count > 0
),

final as (
    select
        history.*,
        {{ lifecycle_stage('history.order_count', 'history.days_since_last_order') }}
            as lifecycle_stage,
        scored.recency_score,
        scored.frequency_score,
        scored.monetary_score,
        case
            when scored.customer_id is null then 'no_purchase'
            when scored.recency_score >= 4 and scored.frequency_score >= 4 then 'champions'
            when scored.recency_score >= 3 and scored.frequency_score >= 3 then 'loyal'
            when scored.recency_score >= 4 then 'promising'
            when scored.recency_score <= 2 and scored.frequency_score >= 3 then 'at_risk'
            when scored.recency_score <= 2 then 'hibernating'
            else 'needs_attention'
        end as rfm_segment
    from history
    left join scored
        on history.customer_id = scored.customer_id
)

select * from final
