{#- One row per email contact to hand to dispatch (holdout rows included, flagged). -#}
with

decisions as (
    select * from {{ ref('int_campaign_eligibility') }}
),

final as (
    select
        {{ triggers_key(['decisions.campaign_id', 'decisions.customer_id', 'decisions.trigger_key', "'email'"]) }}
            as contact_id,
        decisions.campaign_id,
        decisions.customer_id,
        decisions.trigger_key,
        decisions.trigger_type,
        'email' as channel,
        decisions.lead_channel = 'email' as is_lead_channel,
        decisions.email,
        decisions.first_name,
        decisions.store_id,
        decisions.distance_km,
        decisions.offer_id,
        decisions.offer_kind,
        decisions.offer_value,
        decisions.offer_code,
        decisions.offer_valid_in,
        decisions.offer_valid_until,
        decisions.estimated_cost_eur,
        decisions.scheduled_send_at,
        decisions.timezone,
        decisions.is_holdout,
        decisions.is_transactional,
        decisions.priority,
        decisions.payload_json
    from decisions
    where decisions.is_in_audience and decisions.sends_email
)

select * from final
