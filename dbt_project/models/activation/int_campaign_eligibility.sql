{#-
    One row per campaign candidate (live campaign x customer with a qualifying trigger
    occurrence) with the decision: `suppression_reason` is null for the audience, else the
    first rule that failed, in this order:
      audience_lifecycle_stage / audience_segment / audience_value_band  (campaign filters)
      no_p_alive_prediction    the campaign filters on p_alive (audience.min_p_alive /
                               max_p_alive) and the model has no current score for the customer
      audience_p_alive         p_alive outside [min_p_alive, max_p_alive]
      re_entry_same_trigger    this trigger occurrence was already contacted by the campaign
      re_entry_once_ever       once_ever and the customer was contacted by the campaign before
      re_entry_cooldown        cooldown and the last contact is younger than cooldown_days
      no_eligible_channel      no channel of the campaign can reach the customer
      no_loyalty_account_for_cashback  a cashback offer cannot be credited without an account
      frequency_cap            N contacts in the rolling 7 days before now (one cap across all
                               channels and campaigns; transactional campaigns exempt and not
                               counted; frequency_cap_override replaces N for the campaign)
      lower_priority_campaign  a campaign of higher priority (tie: campaign id) wants the
                               customer in this run (transactional campaigns do not compete)
      budget_cap               the campaign's estimated cost (this run's, in arrival order,
                               plus what the ledger says it already spent) would pass its cap
    Channels: the lead message channel is the customer's preferred one among email and
    in-store (store preference -> in_store, otherwise email); the in-store staff card is also
    sent when the offer is valid in stores only; loyalty cashback whenever the customer has a
    loyalty account (it carries the credit). The holdout is a stable hash of campaign and
    customer; the send time is the next moment inside the customer's contact window.
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

candidates as (
    select * from {{ ref('int_campaign_candidates') }}
),

history as (
    select * from {{ ref('int_campaign_contact_history') }}
    where status is null
        or status not in {{ triggers_sql_list(triggers_var('re_entry_ignored_statuses')) }}
),

blocks as (
    select * from {{ ref('int_customer_channel_blocks') }}
),

campaign_history as (
    select
        candidates.campaign_id,
        candidates.customer_id,
        max(case when history.trigger_key = candidates.trigger_key then 1 else 0 end)
            as has_trigger_contact,
        count(history.campaign_id) as campaign_contact_count,
        max(history.contacted_at) as last_campaign_contact_at
    from candidates
    inner join history
        on candidates.campaign_id = history.campaign_id
        and candidates.customer_id = history.customer_id
    group by candidates.campaign_id, candidates.customer_id
),

-- What each campaign already spent: the offer cost of every earlier treated decision (one per
-- campaign, customer and trigger occurrence, whatever the channels), from the ledger.
campaign_spend as (
    select campaign_id, sum(decision_cost_eur) as spent_eur
    from (
        select
            campaign_id, customer_id, trigger_key,
            max(coalesce(estimated_cost_eur, 0)) as decision_cost_eur
        from history
        where status is null or status <> 'holdout'
        group by campaign_id, customer_id, trigger_key
    ) as decisions
    group by campaign_id
),

recent_contacts as (
    select
        history.customer_id,
        count(distinct {{ dbt.concat(['history.campaign_id', "'|'", "coalesce(history.trigger_key, '')"]) }})
            as contacts_last_7_days
    from history
    cross join clock
    where not coalesce(history.is_transactional, false)
        and history.status in {{ triggers_sql_list(triggers_var('frequency_cap_statuses')) }}
        and history.contacted_at > {{ dbt.dateadd('day', -7, 'clock.as_of_at') }}
        and history.contacted_at <= clock.as_of_at
    group by history.customer_id
),

channels as (
    select
        candidates.*,
        case when candidates.has_email then coalesce(email_blocks.block_reason, 'ok') end
            as email_check,
        case when candidates.has_loyalty_cashback then coalesce(loyalty_blocks.block_reason, 'ok') end
            as loyalty_cashback_check,
        case
            when not candidates.has_in_store then null
            when candidates.store_id is null then 'no_store'
            else coalesce(in_store_blocks.block_reason, 'ok')
        end as in_store_check
    from candidates
    left join blocks as email_blocks
        on candidates.customer_id = email_blocks.customer_id and email_blocks.channel = 'email'
    left join blocks as loyalty_blocks
        on candidates.customer_id = loyalty_blocks.customer_id and loyalty_blocks.channel = 'loyalty_cashback'
    left join blocks as in_store_blocks
        on candidates.customer_id = in_store_blocks.customer_id and in_store_blocks.channel = 'in_store'
),

lead_channels as (
    select
        channels.*,
        case
            when channels.preferred_channel = 'store' and channels.in_store_check = 'ok' then 'in_store'
            when channels.email_check = 'ok' then 'email'
            when channels.in_store_check = 'ok' then 'in_store'
        end as lead_channel
    from channels
),

routed as (
    select
        lead_channels.*,
        coalesce(lead_channels.lead_channel = 'email', false) as sends_email,
        coalesce(
            lead_channels.lead_channel = 'in_store'
            or (lead_channels.in_store_check = 'ok' and lead_channels.offer_valid_in = 'store_only'),
            false
        ) as sends_in_store,
        coalesce(lead_channels.loyalty_cashback_check = 'ok', false) as sends_loyalty_cashback
    from lead_channels
),

ruled as (
    select
        routed.*,
        coalesce(recent_contacts.contacts_last_7_days, 0) as contacts_last_7_days,
        coalesce(routed.frequency_cap_override, {{ triggers_var('frequency_cap_per_7_days') }}) as frequency_cap,
        case
            when not {{ activation_in_list('routed.audience_lifecycle_stages', 'routed.lifecycle_stage') }}
                then 'audience_lifecycle_stage'
            when not {{ activation_in_list('routed.audience_segments', 'routed.rfm_segment') }}
                then 'audience_segment'
            when not {{ activation_in_list('routed.audience_value_bands', 'routed.value_band') }}
                then 'audience_value_band'
            when (routed.audience_min_p_alive is not null or routed.audience_max_p_alive is not null)
                and routed.p_alive is null
                then 'no_p_alive_prediction'
            when routed.p_alive < routed.audience_min_p_alive
                or routed.p_alive > routed.audience_max_p_alive
                then 'audience_p_alive'
            when campaign_history.has_trigger_contact = 1 then 're_entry_same_trigger'
            when routed.re_entry_rule = 'once_ever' and campaign_history.campaign_contact_count > 0
                then 're_entry_once_ever'
            when routed.re_entry_rule = 'cooldown'
                and campaign_history.last_campaign_contact_at
                    > {{ dbt.dateadd('day', '-1 * routed.cooldown_days', 'clock.as_of_at') }}
                then 're_entry_cooldown'
            when not (routed.sends_email or routed.sends_in_store or routed.sends_loyalty_cashback)
                then 'no_eligible_channel'
            when routed.offer_kind in ('cashback_percent', 'cashback_amount')
                and not routed.sends_loyalty_cashback
                then 'no_loyalty_account_for_cashback'
            when not routed.is_transactional
                and coalesce(recent_contacts.contacts_last_7_days, 0)
                    >= coalesce(routed.frequency_cap_override, {{ triggers_var('frequency_cap_per_7_days') }})
                then 'frequency_cap'
        end as rule_reason
    from routed
    cross join clock
    left join campaign_history
        on routed.campaign_id = campaign_history.campaign_id
        and routed.customer_id = campaign_history.customer_id
    left join recent_contacts
        on routed.customer_id = recent_contacts.customer_id
),

prioritised as (
    select
        ruled.*,
        case
            when ruled.rule_reason is not null or ruled.is_transactional then null
            else row_number() over (
                partition by
                    ruled.customer_id,
                    case when ruled.rule_reason is null and not ruled.is_transactional then 1 else 0 end
                order by ruled.priority desc, ruled.campaign_id
            )
        end as priority_rank
    from ruled
),

assigned as (
    select
        prioritised.*,
        {{ activation_hash_bucket(dbt.concat(['prioritised.campaign_id', "':'", 'prioritised.customer_id'])) }}
            as holdout_bucket,
        {{ activation_hash_bucket(dbt.concat(['prioritised.campaign_id', "':'", 'prioritised.customer_id'])) }}
            < prioritised.holdout_percent * 100 as is_holdout,
        -- The offer's cost if redeemed (worst case), on the cart value or the usual basket.
        case prioritised.offer_kind
            when 'cashback_amount' then prioritised.offer_value
            when 'cashback_percent' then least(
                prioritised.offer_value / 100.0
                    * coalesce(prioritised.reference_amount, prioritised.average_order_value, 0),
                coalesce(prioritised.offer_max_reward_eur, 1e9)
            )
            when 'discount_code' then prioritised.offer_value / 100.0
                * coalesce(prioritised.reference_amount, prioritised.average_order_value, 0)
            when 'free_shipping' then {{ triggers_var('free_shipping_cost_eur') }}
            else 0
        end as offer_cost_eur
    from prioritised
),

budgeted as (
    select
        assigned.*,
        sum(case when assigned.is_holdout then 0 else assigned.offer_cost_eur end) over (
            partition by
                assigned.campaign_id,
                case when assigned.rule_reason is null and coalesce(assigned.priority_rank, 1) = 1 then 1 else 0 end
            order by assigned.occurred_at, assigned.customer_id
            rows between unbounded preceding and current row
        ) as cumulative_cost_eur
    from assigned
),

decided as (
    select
        budgeted.*,
        case
            when budgeted.rule_reason is not null then budgeted.rule_reason
            when coalesce(budgeted.priority_rank, 1) > 1 then 'lower_priority_campaign'
            when budgeted.cumulative_cost_eur + coalesce(campaign_spend.spent_eur, 0)
                > budgeted.budget_cap_eur then 'budget_cap'
        end as suppression_reason,
        {{ triggers_utc_to_local('clock.as_of_at', 'budgeted.timezone') }} as local_now
    from budgeted
    cross join clock
    left join campaign_spend
        on budgeted.campaign_id = campaign_spend.campaign_id
),

scheduled as (
    select
        decided.*,
        case
            -- in the window now (an overnight window wraps around midnight; equal hours = any time)
            when decided.contact_window_start_hour = decided.contact_window_end_hour
                or (decided.contact_window_start_hour < decided.contact_window_end_hour
                    and extract(hour from decided.local_now) >= decided.contact_window_start_hour
                    and extract(hour from decided.local_now) < decided.contact_window_end_hour)
                or (decided.contact_window_start_hour > decided.contact_window_end_hour
                    and (extract(hour from decided.local_now) >= decided.contact_window_start_hour
                        or extract(hour from decided.local_now) < decided.contact_window_end_hour))
                then decided.local_now
            -- before today's window opens
            when extract(hour from decided.local_now) < decided.contact_window_start_hour
                then {{ dbt.dateadd('hour', 'decided.contact_window_start_hour', 'cast(cast(decided.local_now as date) as timestamp)') }}
            -- after it closed: tomorrow's opening
            else {{ dbt.dateadd('hour', 'decided.contact_window_start_hour', dbt.dateadd('day', 1, 'cast(cast(decided.local_now as date) as timestamp)')) }}
        end as scheduled_send_local
    from decided
),

final as (
    select
        scheduled.campaign_id,
        scheduled.customer_id,
        scheduled.trigger_key,
        scheduled.trigger_type,
        scheduled.occurred_at,
        scheduled.days_since_occurred,
        scheduled.suppression_reason is null as is_in_audience,
        scheduled.suppression_reason,
        scheduled.is_holdout,
        scheduled.holdout_bucket,
        scheduled.holdout_percent,
        scheduled.priority,
        scheduled.priority_rank,
        scheduled.is_transactional,
        scheduled.contacts_last_7_days,
        scheduled.frequency_cap,
        scheduled.re_entry_rule,
        scheduled.lead_channel,
        scheduled.sends_email,
        scheduled.sends_loyalty_cashback,
        scheduled.sends_in_store,
        scheduled.email_check,
        scheduled.loyalty_cashback_check,
        scheduled.in_store_check,
        scheduled.preferred_channel,
        scheduled.store_id,
        scheduled.distance_km,
        scheduled.lifecycle_stage,
        scheduled.rfm_segment,
        scheduled.value_band,
        scheduled.p_alive,
        scheduled.offer_id,
        scheduled.offer_kind,
        scheduled.offer_value,
        scheduled.offer_code,
        scheduled.offer_valid_in,
        scheduled.offer_validity_days,
        scheduled.budget_cap_eur,
        cast(scheduled.offer_cost_eur as double precision) as estimated_cost_eur,
        scheduled.timezone,
        scheduled.contact_window_start_hour,
        scheduled.contact_window_end_hour,
        scheduled.scheduled_send_local,
        {{ triggers_local_to_utc('scheduled.scheduled_send_local', 'scheduled.timezone') }} as scheduled_send_at,
        cast({{ dbt.dateadd('day', 'scheduled.offer_validity_days', 'cast(scheduled.scheduled_send_local as date)') }} as date)
            as offer_valid_until,
        scheduled.email,
        scheduled.first_name,
        scheduled.loyalty_account_id,
        scheduled.cart_items_json,
        scheduled.payload_json
    from scheduled
)

select * from final
