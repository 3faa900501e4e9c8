{{ config(
    materialized='incremental',
    unique_key='interaction_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
) }}

with

interactions as (
    select * from {{ ref('int_interactions_unioned') }}
),

{% if is_incremental() %}
changed_interactions as (
    {{ incremental_changes('interactions', 'interaction_id') }}
),
{% else %}
changed_interactions as (
    select * from interactions
),
{% endif %}

final as (
    select
        interaction_id,
        customer_id,
        channel,
        interaction_type,
        order_id,
        store_id,
        amount,
        status,
        sentiment,
        occurred_at,
        cast(occurred_at as date) as occurred_date,
        updated_at
    from changed_interactions
)

select * from final
