{{ config(materialized='view', schema='staging') }}
{#- One row per held-out decision (source dispatch.holdouts: campaign, customer, trigger
    occurrence), or an empty set before the first load. -#}
with

source as (
    {{ activation_relation_or_empty('dispatch', 'holdouts', [
        ['campaign_id', dbt.type_string()],
        ['customer_id', dbt.type_string()],
        ['trigger_key', dbt.type_string()],
        ['would_contact_at', 'timestamp'],
        ['recorded_at', 'timestamp'],
    ]) }}
),

final as (
    select
        campaign_id,
        customer_id,
        trigger_key,
        would_contact_at,
        recorded_at
    from source
)

select * from final
