{{ config(materialized='view', schema='staging') }}
{#- One row per contact of the dispatch ledger (source dispatch.contacts, loaded by
    orchestration.dispatch.warehouse_load), or an empty set with the same columns before the
    first load; a column the loaded table lacks reads as null. -#}
with

source as (
    {{ activation_relation_or_empty('dispatch', 'contacts', [
        ['contact_id', dbt.type_string()],
        ['campaign_id', dbt.type_string()],
        ['customer_id', dbt.type_string()],
        ['trigger_key', dbt.type_string()],
        ['channel', dbt.type_string()],
        ['status', dbt.type_string()],
        ['contacted_at', 'timestamp'],
        ['is_transactional', 'boolean'],
        ['estimated_cost_eur', 'double precision'],
        ['state', dbt.type_string()],
        ['offer_id', dbt.type_string()],
        ['offer_code', dbt.type_string()],
        ['amount_eur', 'double precision'],
        ['scheduled_send_at', 'timestamp'],
        ['sent_at', 'timestamp'],
        ['provider_message_id', dbt.type_string()],
        ['attempts', 'bigint'],
        ['last_error', dbt.type_string()],
    ]) }}
),

final as (
    select
        contact_id,
        campaign_id,
        customer_id,
        trigger_key,
        channel,
        status as ledger_status,
        state as ledger_state,
        contacted_at,
        coalesce(is_transactional, false) as is_transactional,
        estimated_cost_eur,
        offer_id,
        offer_code,
        amount_eur,
        scheduled_send_at,
        sent_at,
        provider_message_id,
        attempts,
        last_error
    from source
)

select * from final
