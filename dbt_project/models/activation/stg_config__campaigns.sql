{{ config(materialized='view') }}
{#- The published campaign configs (orchestration.campaigns.publish), or none before the
    first publish. One row per valid campaign file. -#}
with

source as (
    {{ activation_relation_or_empty('config', 'campaigns', [
        ['campaign_id', dbt.type_string()], ['name', dbt.type_string()],
        ['owner', dbt.type_string()], ['status', dbt.type_string()],
        ['start_date', 'date'], ['end_date', 'date'],
        ['trigger_type', dbt.type_string()], ['trigger_params', dbt.type_string()],
        ['trigger_radius_km', 'double precision'], ['trigger_min_cart_value', 'double precision'],
        ['trigger_abandoned_after_minutes', 'integer'], ['trigger_max_cart_age_days', 'integer'],
        ['trigger_days_after_delivery', 'integer'], ['trigger_include_survey', 'boolean'],
        ['trigger_include_matching_products', 'boolean'], ['trigger_invite_to_newsletter', 'boolean'],
        ['trigger_spend_threshold', 'double precision'], ['trigger_order_count_threshold', 'integer'],
        ['trigger_days_since_first_purchase', 'integer'],
        ['audience_lifecycle_stages', dbt.type_string()], ['audience_segments', dbt.type_string()],
        ['audience_value_bands', dbt.type_string()],
        ['audience_min_p_alive', 'double precision'], ['audience_max_p_alive', 'double precision'],
        ['offer_id', dbt.type_string()], ['offer_kind', dbt.type_string()],
        ['offer_value', 'double precision'], ['offer_code', dbt.type_string()],
        ['offer_valid_in', dbt.type_string()], ['offer_validity_days', 'integer'],
        ['offer_max_reward_eur', 'double precision'], ['budget_cap_eur', 'double precision'],
        ['channels', dbt.type_string()], ['has_email', 'boolean'],
        ['has_loyalty_cashback', 'boolean'], ['has_in_store', 'boolean'],
        ['holdout_percent', 'double precision'], ['priority', 'integer'],
        ['re_entry_rule', dbt.type_string()], ['cooldown_days', 'integer'],
        ['frequency_cap_override', 'integer'], ['is_transactional', 'boolean'],
        ['attribution_window_days', 'integer'],
        ['source_file', dbt.type_string()], ['published_at', 'timestamp'],
    ]) }}
)

select * from source
