{#-
    One row per customer in the recovery stage whose stage just before entering it was one of
    var win_back_previous_stages (default: retention, a regular customer whose frequency
    dropped). A customer enters recovery the day the last order becomes
    var lifecycle_recovery_after_days old, so the occurrence is that day; the audience keeps the
    customers who entered within var trigger_grace_days. Payload: days inactive and the
    "why did you leave?" survey link.
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

recovering as (
    select
        customers.customer_id,
        customers.order_count,
        customers.last_ordered_at,
        customers.days_since_last_order,
        customers.rfm_segment,
        -- The stage the day before entering recovery (same order history, one day younger).
        {{ lifecycle_stage('customers.order_count', var('lifecycle_recovery_after_days') ~ ' - 1') }}
            as previous_stage,
        cast({{ dbt.dateadd('day', var('lifecycle_recovery_after_days'), 'cast(customers.last_ordered_at as date)') }} as date)
            as entered_recovery_date,
        customers.days_since_last_order - {{ var('lifecycle_recovery_after_days') }} as days_since_entered
    from customers
    where customers.lifecycle_stage = 'recovery'
        and customers.last_ordered_at is not null
),

final as (
    select
        {{ triggers_key(["'win_back'", 'recovering.customer_id', 'recovering.entered_recovery_date']) }} as trigger_key,
        'win_back' as trigger_type,
        recovering.customer_id,
        cast(recovering.entered_recovery_date as timestamp) as occurred_at,
        recovering.entered_recovery_date,
        recovering.days_since_entered,
        recovering.previous_stage,
        recovering.order_count,
        recovering.days_since_last_order as days_inactive,
        {{ triggers_json_object([
            ['survey_url', dbt.concat(["'" ~ triggers_var('survey_base_url') ~ "/'", triggers_key(["'win_back'", 'recovering.customer_id', 'recovering.entered_recovery_date'])])],
            ['days_inactive', 'recovering.days_since_last_order'],
        ]) }} as payload_json
    from recovering
    where recovering.previous_stage in {{ triggers_sql_list(triggers_var('win_back_previous_stages')) }}
)

select * from final
