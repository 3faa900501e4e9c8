{#-
    One row per (campaign, customer, trigger occurrence) that entered a campaign's experiment:
    `treatment` when at least one contact reached a treated status (var
    measurement_treated_statuses) or `holdout` when the customer was held out. Both arms start
    at the same kind of moment, the decision's scheduled send time: assigned_at = the earliest
    scheduled_send_at of the treated contacts (else their sent time) and, for a holdout,
    would_contact_at (the earliest scheduled_send_at of the held-out decision). A dispatch
    delay therefore shifts neither arm's window against the other (first_contacted_at keeps
    the moment the provider accepted the first message). Lifecycle stage and
    value band are recomputed at assigned_at from the order history before it; the RFM
    segment is the customer's current one (RFM scores are population percentiles; no history
    of them is kept). Costs: provider cost per message sent (vars cost_per_*_eur), cashback
    actually redeemed (POS) and discounts actually honoured (web orders with the campaign's
    code), each redemption or discount counted once, for the latest treated assignment of
    that campaign and customer before it.
-#}
with

contacts as (
    select * from {{ ref('fct_campaign_contacts') }}
),

holdouts as (
    select * from {{ ref('fct_campaign_holdouts') }}
),

campaigns as (
    select * from {{ ref('stg_config__campaigns') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

orders as (
    select * from {{ ref('fct_orders') }}
),

cashback_redemptions as (
    select * from {{ ref('stg_pos__cashback_redemptions') }}
),

discount_codes as (
    select * from {{ ref('stg_shop__order_discount_codes') }}
),

treated_contacts as (
    select
        contact_id,
        campaign_id,
        customer_id,
        trigger_key,
        channel,
        offer_id,
        offer_code,
        provider_message_id,
        coalesce(scheduled_send_at, sent_at, contacted_at) as scheduled_at,
        coalesce(sent_at, contacted_at) as contacted_at
    from contacts
    where status in {{ triggers_sql_list(measurement_var('measurement_treated_statuses')) }}
),

treatment as (
    select
        campaign_id,
        customer_id,
        trigger_key,
        min(scheduled_at) as assigned_at,
        min(contacted_at) as first_contacted_at,
        count(*) as messages_sent,
        sum(case when channel = 'email' then 1 else 0 end) as email_messages,
        sum(case when channel = 'loyalty_cashback' then 1 else 0 end) as loyalty_cashback_messages,
        sum(case when channel = 'in_store' then 1 else 0 end) as in_store_messages,
        sum({{ measurement_message_cost('channel') }}) as message_cost_eur
    from treated_contacts
    group by campaign_id, customer_id, trigger_key
),

-- A held-out occurrence that was nevertheless contacted is measured as treated.
holdout as (
    select
        holdouts.campaign_id,
        holdouts.customer_id,
        holdouts.trigger_key,
        holdouts.would_contact_at as assigned_at
    from holdouts
    left join treatment
        on holdouts.campaign_id = treatment.campaign_id
        and holdouts.customer_id = treatment.customer_id
        and holdouts.trigger_key = treatment.trigger_key
    where treatment.campaign_id is null
),

arms as (
    select
        campaign_id, customer_id, trigger_key, 'treatment' as assignment_group, assigned_at,
        first_contacted_at, messages_sent, email_messages, loyalty_cashback_messages, in_store_messages,
        message_cost_eur
    from treatment
    union all
    select
        campaign_id, customer_id, trigger_key, 'holdout' as assignment_group, assigned_at,
        cast(null as timestamp), 0, 0, 0, 0, 0
    from holdout
),

assigned as (
    select
        {{ dbt.hash(dbt.concat(['arms.campaign_id', "'|'", 'arms.customer_id', "'|'", 'arms.trigger_key'])) }}
            as assignment_id,
        arms.*,
        coalesce(
            campaigns.attribution_window_days, {{ measurement_var('measurement_attribution_window_days') }}
        ) as attribution_window_days,
        campaigns.offer_id,
        campaigns.offer_code
    from arms
    left join campaigns
        on arms.campaign_id = campaigns.campaign_id
),

-- The order history before assigned_at (lifecycle stage and value band at assignment).
history as (
    select
        assigned.assignment_id,
        count(orders.order_id) as prior_order_count,
        max(orders.ordered_at) as prior_last_ordered_at,
        coalesce(sum(orders.total_amount), 0) as prior_spent_eur
    from assigned
    left join orders
        on assigned.customer_id = orders.customer_id
        and orders.ordered_at < assigned.assigned_at
    group by assigned.assignment_id
),

data_through as (
    select max(ordered_at) as data_through_at from orders
),

-- Each redemption / honoured discount belongs to one treated assignment: a cashback
-- redemption to the contact whose loyalty credit it used (credit_id = the ledger's provider
-- id of the credit), else to the latest assignment of the customer's loyalty account with the
-- same offer before it; a discount to the latest assignment with the code before the order.
credited_redemptions as (
    select
        cashback_redemptions.redemption_id,
        cashback_redemptions.amount_eur,
        assigned.assignment_id,
        assigned.assigned_at,
        0 as match_rank
    from cashback_redemptions
    inner join treated_contacts as credited
        on credited.channel = 'loyalty_cashback'
        and cashback_redemptions.credit_id = credited.provider_message_id
    inner join assigned
        on assigned.assignment_group = 'treatment'
        and assigned.campaign_id = credited.campaign_id
        and assigned.customer_id = credited.customer_id
        and assigned.trigger_key = credited.trigger_key
),

offer_redemptions as (
    select
        cashback_redemptions.redemption_id,
        cashback_redemptions.amount_eur,
        assigned.assignment_id,
        assigned.assigned_at,
        1 as match_rank
    from cashback_redemptions
    inner join customers
        on cashback_redemptions.loyalty_account_id = customers.loyalty_account_id
    inner join assigned
        on assigned.assignment_group = 'treatment'
        and assigned.customer_id = customers.customer_id
        and cashback_redemptions.offer_id = assigned.offer_id
        and cashback_redemptions.redeemed_at >= assigned.assigned_at
),

redemption_candidates as (
    select
        assignment_id,
        redemption_id,
        amount_eur,
        row_number() over (
            partition by redemption_id
            order by match_rank, assigned_at desc, assignment_id
        ) as candidate_rank
    from (
        select * from credited_redemptions
        union all
        select * from offer_redemptions
    ) as candidates
),

cashback_costs as (
    select assignment_id, sum(amount_eur) as cashback_redeemed_eur
    from redemption_candidates
    where candidate_rank = 1
    group by assignment_id
),

discount_candidates as (
    select
        assigned.assignment_id,
        orders.order_id,
        discount_codes.discount_code,
        discount_codes.amount_eur,
        row_number() over (
            partition by orders.order_id, discount_codes.discount_code
            order by assigned.assigned_at desc, assigned.assignment_id
        ) as candidate_rank
    from discount_codes
    inner join orders
        on orders.order_id = {{ dbt.concat(["'web:'", "cast(discount_codes.shop_order_id as " ~ dbt.type_string() ~ ")"]) }}
    inner join assigned
        on orders.customer_id = assigned.customer_id
        and assigned.assignment_group = 'treatment'
        and upper(discount_codes.discount_code) = upper(assigned.offer_code)
        and orders.ordered_at >= assigned.assigned_at
),

discount_costs as (
    select assignment_id, sum(amount_eur) as discount_honoured_eur
    from discount_candidates
    where candidate_rank = 1
    group by assignment_id
),

final as (
    select
        assigned.assignment_id,
        assigned.campaign_id,
        assigned.customer_id,
        assigned.trigger_key,
        assigned.assignment_group,
        assigned.assignment_group = 'holdout' as is_holdout,
        assigned.assigned_at,
        cast(assigned.assigned_at as date) as assigned_date,
        assigned.first_contacted_at,
        assigned.attribution_window_days,
        {{ dbt.dateadd('day', 'assigned.attribution_window_days', 'assigned.assigned_at') }}
            as window_end_at,
        coalesce(
            {{ dbt.dateadd('day', 'assigned.attribution_window_days', 'assigned.assigned_at') }}
                <= data_through.data_through_at,
            false
        ) as is_window_complete,
        assigned.messages_sent,
        assigned.email_messages > 0 as has_email_contact,
        assigned.loyalty_cashback_messages > 0 as has_loyalty_cashback_contact,
        assigned.in_store_messages > 0 as has_in_store_contact,
        case when assigned.assignment_group = 'treatment' then
            {{ dbt.concat([
                "case when assigned.email_messages > 0 then 'email,' else '' end",
                "case when assigned.loyalty_cashback_messages > 0 then 'loyalty_cashback,' else '' end",
                "case when assigned.in_store_messages > 0 then 'in_store,' else '' end",
            ]) }}
        end as channels_with_trailing_comma,
        {{ lifecycle_stage(
            'history.prior_order_count',
            dbt.datediff('cast(history.prior_last_ordered_at as date)', 'cast(assigned.assigned_at as date)', 'day'),
        ) }} as lifecycle_stage,
        coalesce(customers.rfm_segment, 'unknown') as segment,
        {{ value_band('history.prior_spent_eur') }} as value_band,
        history.prior_order_count,
        history.prior_spent_eur,
        assigned.message_cost_eur,
        coalesce(cashback_costs.cashback_redeemed_eur, 0) as cashback_redeemed_eur,
        coalesce(discount_costs.discount_honoured_eur, 0) as discount_honoured_eur,
        assigned.message_cost_eur
            + coalesce(cashback_costs.cashback_redeemed_eur, 0)
            + coalesce(discount_costs.discount_honoured_eur, 0) as cost_eur
    from assigned
    inner join history
        on assigned.assignment_id = history.assignment_id
    cross join data_through
    left join customers
        on assigned.customer_id = customers.customer_id
    left join cashback_costs
        on assigned.assignment_id = cashback_costs.assignment_id
    left join discount_costs
        on assigned.assignment_id = discount_costs.assignment_id
)

select
    assignment_id,
    campaign_id,
    customer_id,
    trigger_key,
    assignment_group,
    is_holdout,
    assigned_at,
    assigned_date,
    first_contacted_at,
    attribution_window_days,
    window_end_at,
    is_window_complete,
    messages_sent,
    has_email_contact,
    has_loyalty_cashback_contact,
    has_in_store_contact,
    nullif(
        substring(channels_with_trailing_comma, 1, {{ dbt.length('channels_with_trailing_comma') }} - 1), ''
    ) as channels,
    lifecycle_stage,
    segment,
    value_band,
    prior_order_count,
    prior_spent_eur,
    message_cost_eur,
    cashback_redeemed_eur,
    discount_honoured_eur,
    cost_eur
from final
