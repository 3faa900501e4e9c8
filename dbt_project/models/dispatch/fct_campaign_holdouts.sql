{#-
    One row per held-out decision (campaign, customer, trigger occurrence): the customer
    qualified but the campaign's holdout hash kept them out, so nothing was sent.
    would_contact_at is when the treated would have been contacted (the decision's scheduled
    send time), the holdout's start for measurement.
-#}
with

holdouts as (
    select * from {{ ref('stg_dispatch__holdouts') }}
),

final as (
    select
        {{ triggers_key(['campaign_id', 'customer_id', 'trigger_key']) }} as holdout_id,
        campaign_id,
        customer_id,
        trigger_key,
        coalesce(would_contact_at, recorded_at) as would_contact_at,
        recorded_at,
        true as is_holdout
    from holdouts
)

select * from final
