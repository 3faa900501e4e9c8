{#- One row per cashback credit to hand to dispatch (holdout rows included, flagged): the
    loyalty account, and the amount (cashback_amount) or percent and cap (cashback_percent). -#}
with

decisions as (
    select * from {{ ref('int_campaign_eligibility') }}
),

campaigns as (
    select campaign_id, offer_max_reward_eur from {{ ref('stg_config__campaigns') }}
),

final as (
    select
        {{ triggers_key(['decisions.campaign_id', 'decisions.customer_id', 'decisions.trigger_key', "'loyalty_cashback'"]) }}
            as contact_id,
        decisions.campaign_id,
        decisions.customer_id,
        decisions.trigger_key,
        decisions.trigger_type,
        'loyalty_cashback' as channel,
        decisions.lead_channel is null as is_lead_channel,
        decisions.loyalty_account_id,
        decisions.first_name,
        decisions.store_id,
        decisions.offer_id,
        decisions.offer_kind,
        decisions.offer_value,
        case when decisions.offer_kind = 'cashback_amount' then decisions.offer_value end
            as cashback_amount_eur,
        case when decisions.offer_kind = 'cashback_percent' then decisions.offer_value end
            as cashback_percent,
        campaigns.offer_max_reward_eur as cashback_max_reward_eur,
        decisions.offer_valid_in,
        decisions.offer_valid_until,
        decisions.estimated_cost_eur,
        decisions.scheduled_send_at,
        decisions.is_holdout,
        decisions.is_transactional,
        decisions.priority,
        decisions.payload_json
    from decisions
    left join campaigns
        on decisions.campaign_id = campaigns.campaign_id
    where decisions.is_in_audience and decisions.sends_loyalty_cashback
)

select * from final
