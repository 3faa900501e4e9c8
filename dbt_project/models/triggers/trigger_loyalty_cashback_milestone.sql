{#-
    One row per customer and milestone crossed: cumulative net spend (or purchase count, web
    and store together) going from below a threshold to at or above it with one order. The
    thresholds are var loyalty_spend_milestones / loyalty_order_count_milestones plus every
    threshold a published campaign names, so a campaign's own threshold always has rows. The
    occurrence is the crossing order; the audience keeps crossings within
    var trigger_grace_days.
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

campaigns as (
    select * from {{ ref('stg_config__campaigns') }}
),

milestones as (
    {%- for threshold in triggers_var('loyalty_spend_milestones') %}
    select 'spend' as milestone_kind, cast({{ threshold }} as double precision) as threshold
    union all
    {%- endfor %}
    {%- for threshold in triggers_var('loyalty_order_count_milestones') %}
    select 'order_count' as milestone_kind, cast({{ threshold }} as double precision) as threshold
    union all
    {%- endfor %}
    select 'spend' as milestone_kind, cast(trigger_spend_threshold as double precision) as threshold
    from campaigns
    where trigger_type = 'loyalty_cashback_milestone' and trigger_spend_threshold is not null
    union all
    select 'order_count' as milestone_kind, cast(trigger_order_count_threshold as double precision) as threshold
    from campaigns
    where trigger_type = 'loyalty_cashback_milestone' and trigger_order_count_threshold is not null
),

distinct_milestones as (
    select distinct milestone_kind, threshold from milestones
),

progress as (
    select
        orders.customer_id,
        orders.order_id,
        orders.ordered_at,
        cast(sum(orders.net_amount) over (
            partition by orders.customer_id order by orders.ordered_at, orders.order_id
            rows between unbounded preceding and current row
        ) as double precision) as spend_after,
        cast(count(*) over (
            partition by orders.customer_id order by orders.ordered_at, orders.order_id
            rows between unbounded preceding and current row
        ) as double precision) as order_count_after,
        cast(orders.net_amount as double precision) as order_amount
    from orders
    cross join clock
    where orders.customer_id is not null
        and orders.ordered_at <= clock.as_of_at
        and coalesce(orders.financial_status, 'paid') <> 'refunded'
),

crossings as (
    select
        progress.customer_id,
        progress.order_id,
        progress.ordered_at,
        distinct_milestones.milestone_kind,
        distinct_milestones.threshold,
        case when distinct_milestones.milestone_kind = 'spend'
            then progress.spend_after else progress.order_count_after end as reached_value
    from progress
    inner join distinct_milestones
        on (
            distinct_milestones.milestone_kind = 'spend'
            and progress.spend_after - progress.order_amount < distinct_milestones.threshold
            and progress.spend_after >= distinct_milestones.threshold
        )
        or (
            distinct_milestones.milestone_kind = 'order_count'
            and progress.order_count_after - 1 < distinct_milestones.threshold
            and progress.order_count_after >= distinct_milestones.threshold
        )
),

-- A refund can take spend below a threshold and a later order cross it again: the first
-- crossing is the occurrence.
first_crossings as (
    select *
    from (
        select
            crossings.*,
            row_number() over (
                partition by crossings.customer_id, crossings.milestone_kind, crossings.threshold
                order by crossings.ordered_at, crossings.order_id
            ) as crossing_rank
        from crossings
    ) as ranked
    where crossing_rank = 1
),

final as (
    select
        {{ triggers_key(["'loyalty_cashback_milestone'", 'first_crossings.customer_id', 'first_crossings.milestone_kind', 'first_crossings.threshold']) }}
            as trigger_key,
        'loyalty_cashback_milestone' as trigger_type,
        first_crossings.customer_id,
        first_crossings.ordered_at as occurred_at,
        first_crossings.order_id,
        first_crossings.milestone_kind,
        first_crossings.threshold,
        first_crossings.reached_value,
        {{ dbt.datediff('cast(first_crossings.ordered_at as date)', 'clock.as_of_date', 'day') }}
            as days_since_crossed,
        {%- set milestone_json = triggers_json_object([
            ['kind', 'first_crossings.milestone_kind'],
            ['threshold', 'first_crossings.threshold'],
            ['reached_value', 'round(first_crossings.reached_value, 2)'],
        ]) %}
        {{ triggers_json_object([['milestone', 'cast(' ~ milestone_json ~ ' as json)']]) }} as payload_json
    from first_crossings
    cross join clock
)

select * from final
