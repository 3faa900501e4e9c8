{{ config(materialized='view') }}
{#- Every trigger model in one shape: one row per trigger occurrence, with the measures the
    campaigns' trigger parameters narrow and the template payload (JSON text). -#}
with

abandoned_carts as (
    select * from {{ ref('trigger_abandoned_cart_nearby_stock') }}
),

post_purchase as (
    select * from {{ ref('trigger_post_purchase_follow_up') }}
),

win_back as (
    select * from {{ ref('trigger_win_back') }}
),

milestones as (
    select * from {{ ref('trigger_loyalty_cashback_milestone') }}
),

second_purchase as (
    select * from {{ ref('trigger_second_purchase') }}
),

unioned as (
    select
        trigger_key, trigger_type, customer_id, occurred_at, store_id,
        cast(distance_km as double precision) as distance_km,
        cast(cart_value as double precision) as reference_amount,
        cart_age_minutes,
        cast(floor(cart_age_minutes / 1440.0) as integer) as days_since_occurred,
        cast(null as {{ dbt.type_string() }}) as milestone_kind,
        cast(null as double precision) as milestone_threshold,
        cart_items_json,
        payload_json
    from abandoned_carts
    union all
    select
        trigger_key, trigger_type, customer_id, occurred_at, store_id,
        cast(null as double precision), cast(order_value as double precision), cast(null as integer),
        cast(days_since_delivery as integer),
        null, null, cast(null as {{ dbt.type_string() }}), payload_json
    from post_purchase
    union all
    select
        trigger_key, trigger_type, customer_id, occurred_at, cast(null as {{ dbt.type_string() }}),
        null, null, null, cast(days_since_entered as integer),
        null, null, null, payload_json
    from win_back
    union all
    select
        trigger_key, trigger_type, customer_id, occurred_at, cast(null as {{ dbt.type_string() }}),
        null, null, null, cast(days_since_crossed as integer),
        milestone_kind, threshold, null, payload_json
    from milestones
    union all
    select
        trigger_key, trigger_type, customer_id, occurred_at, store_id,
        null, cast(first_order_value as double precision), null, cast(days_since_first_purchase as integer),
        null, null, null, payload_json
    from second_purchase
)

select * from unioned
