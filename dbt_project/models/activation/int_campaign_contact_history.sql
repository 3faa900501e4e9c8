{{ config(materialized='view') }}
{#- The contact history the frequency cap, re-entry, budget and email blocks read: every
    contact of the dispatch ledger as fct_campaign_contacts refines it (a spam report reads as
    `unsubscribed`: it blocks email the same way), plus every held-out decision as status
    `holdout` (re-entry treats a held-out decision like a treated one, so both groups enter a
    campaign under the same rules; the cap and the budget do not count holdouts). Empty until
    dispatch has been loaded once. The contract is in the model's YAML. -#}
with

contacts as (
    select * from {{ ref('fct_campaign_contacts') }}
),

holdouts as (
    select * from {{ ref('fct_campaign_holdouts') }}
),

final as (
    select
        contact_id,
        campaign_id,
        customer_id,
        trigger_key,
        channel,
        case when status = 'spamreport' then 'unsubscribed' else status end as status,
        contacted_at,
        is_transactional,
        estimated_cost_eur
    from contacts
    union all
    select
        holdout_id as contact_id,
        campaign_id,
        customer_id,
        trigger_key,
        cast(null as {{ dbt.type_string() }}) as channel,
        'holdout' as status,
        would_contact_at as contacted_at,
        false as is_transactional,
        cast(null as double precision) as estimated_cost_eur
    from holdouts
)

select * from final
