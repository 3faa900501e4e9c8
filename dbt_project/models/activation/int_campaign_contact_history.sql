{{ config(materialized='view') }}
{#- Every contact the dispatch ledger recorded (source dispatch.contacts), or an empty set with
    the same columns until dispatch has run once (a missing optional column reads as null).
    The contract is in the model's YAML. -#}
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
    ]) }}
)

select * from source
