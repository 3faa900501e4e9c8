{#- One row per in-store offer to hand to dispatch (store API + staff sheet; holdout rows
    included, flagged): the store, the customer as staff recognise them, the offer and, for
    abandoned carts, the cart items on this store's shelf. -#}
with

decisions as (
    select * from {{ ref('int_campaign_eligibility') }}
),

final as (
    select
        {{ triggers_key(['decisions.campaign_id', 'decisions.customer_id', 'decisions.trigger_key', "'in_store'"]) }}
            as contact_id,
        decisions.campaign_id,
        decisions.customer_id,
        decisions.trigger_key,
        decisions.trigger_type,
        'in_store' as channel,
        decisions.lead_channel = 'in_store' as is_lead_channel,
        decisions.store_id,
        decisions.distance_km,
        decisions.first_name,
        decisions.loyalty_account_id,
        decisions.offer_id,
        decisions.offer_kind,
        decisions.offer_value,
        decisions.offer_code,
        decisions.offer_valid_in,
        decisions.offer_valid_until,
        decisions.estimated_cost_eur,
        decisions.scheduled_send_at,
        decisions.is_holdout,
        decisions.is_transactional,
        decisions.priority,
        coalesce(decisions.cart_items_json, '[]') as cart_items_json,
        decisions.payload_json
    from decisions
    where decisions.is_in_audience and decisions.sends_in_store
)

select * from final
