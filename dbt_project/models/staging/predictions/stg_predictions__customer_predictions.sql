{#- The model's scores per customer (orchestration/predictions), or none before the first
    `predict` run. One row per customer scored. -#}
with

source as (
    {{ activation_relation_or_empty('predictions', 'customer_predictions', [
        ['customer_id', dbt.type_string()], ['as_of_date', 'date'],
        ['prediction_status', dbt.type_string()], ['p_alive', 'double precision'],
        ['expected_purchases_90d', 'double precision'], ['predicted_value_90d', 'double precision'],
        ['repeat_purchase_days', 'integer'], ['days_first_to_last_purchase', 'integer'],
        ['days_since_first_purchase', 'integer'],
        ['model_name', dbt.type_string()], ['fitted_at', 'timestamp'],
    ]) }}
)

select * from source
