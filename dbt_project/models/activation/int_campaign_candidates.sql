{#-
    One row per live campaign and customer with a qualifying trigger occurrence: the campaign
    is active and the as-of date is within its dates; the occurrence is of the campaign's
    trigger type and passes the campaign's trigger parameters (or the var defaults); when a
    customer has several, the latest occurrence is kept (one contact per campaign per run).
    Carries the customer attributes the eligibility rules need, with the predictive model's
    p_alive when it was fitted for this as-of date or at most `predictions_max_age_days` before
    (a prediction from after the as-of date would leak the future into a backfill).
-#}
with

clock as (
    select * from {{ ref('triggers_clock') }}
),

campaigns as (
    select * from {{ ref('stg_config__campaigns') }}
),

occurrences as (
    select * from {{ ref('int_trigger_occurrences') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

predictions as (
    select predictions.*
    from {{ ref('stg_predictions__customer_predictions') }} as predictions
    cross join clock
    where predictions.as_of_date <= clock.as_of_date
        and predictions.as_of_date
            >= {{ dbt.dateadd('day', -1 * triggers_var('predictions_max_age_days'), 'clock.as_of_date') }}
),

live_campaigns as (
    select campaigns.*
    from campaigns
    cross join clock
    where campaigns.status = 'active'
        and clock.as_of_date between campaigns.start_date and campaigns.end_date
),

{%- set grace = triggers_var('trigger_grace_days') %}

matched as (
    select
        live_campaigns.campaign_id,
        occurrences.*
    from live_campaigns
    inner join occurrences
        on live_campaigns.trigger_type = occurrences.trigger_type
    where
        case live_campaigns.trigger_type
            when 'abandoned_cart_nearby_stock' then
                occurrences.distance_km <= coalesce(live_campaigns.trigger_radius_km, {{ triggers_var('abandoned_cart_max_radius_km') }})
                and occurrences.reference_amount >= coalesce(live_campaigns.trigger_min_cart_value, 0)
                and occurrences.cart_age_minutes >= coalesce(live_campaigns.trigger_abandoned_after_minutes, {{ triggers_var('abandoned_cart_min_minutes') }})
                and occurrences.cart_age_minutes < 1440 * coalesce(live_campaigns.trigger_max_cart_age_days, {{ triggers_var('abandoned_cart_max_age_days') }})
            when 'post_purchase_follow_up' then
                occurrences.days_since_occurred
                    between coalesce(live_campaigns.trigger_days_after_delivery, {{ triggers_var('post_purchase_days_after_delivery') }})
                    and coalesce(live_campaigns.trigger_days_after_delivery, {{ triggers_var('post_purchase_days_after_delivery') }}) + {{ grace }}
            when 'second_purchase' then
                occurrences.days_since_occurred
                    between coalesce(live_campaigns.trigger_days_since_first_purchase, {{ triggers_var('second_purchase_days_since_first_purchase') }})
                    and coalesce(live_campaigns.trigger_days_since_first_purchase, {{ triggers_var('second_purchase_days_since_first_purchase') }}) + {{ grace }}
            when 'win_back' then
                occurrences.days_since_occurred between 0 and {{ grace }}
            when 'loyalty_cashback_milestone' then
                occurrences.days_since_occurred between 0 and {{ grace }}
                and (
                    (occurrences.milestone_kind = 'spend'
                        and occurrences.milestone_threshold = live_campaigns.trigger_spend_threshold)
                    or (occurrences.milestone_kind = 'order_count'
                        and occurrences.milestone_threshold = live_campaigns.trigger_order_count_threshold)
                )
            else false
        end
),

latest as (
    select *
    from (
        select
            matched.*,
            row_number() over (
                partition by matched.campaign_id, matched.customer_id
                order by matched.occurred_at desc, matched.trigger_key
            ) as occurrence_rank
        from matched
    ) as ranked
    where occurrence_rank = 1
),

final as (
    select
        latest.campaign_id,
        latest.customer_id,
        latest.trigger_key,
        latest.trigger_type,
        latest.occurred_at,
        latest.days_since_occurred,
        coalesce(latest.store_id, customers.usual_store_id, customers.nearest_store_id) as store_id,
        latest.distance_km,
        latest.reference_amount,
        latest.cart_items_json,
        latest.payload_json,
        live_campaigns.priority,
        live_campaigns.is_transactional,
        live_campaigns.holdout_percent,
        live_campaigns.re_entry_rule,
        live_campaigns.cooldown_days,
        live_campaigns.frequency_cap_override,
        live_campaigns.audience_lifecycle_stages,
        live_campaigns.audience_segments,
        live_campaigns.audience_value_bands,
        live_campaigns.audience_min_p_alive,
        live_campaigns.audience_max_p_alive,
        live_campaigns.has_email,
        live_campaigns.has_loyalty_cashback,
        live_campaigns.has_in_store,
        live_campaigns.offer_id,
        live_campaigns.offer_kind,
        live_campaigns.offer_value,
        live_campaigns.offer_code,
        live_campaigns.offer_valid_in,
        live_campaigns.offer_validity_days,
        live_campaigns.offer_max_reward_eur,
        live_campaigns.budget_cap_eur,
        customers.lifecycle_stage,
        customers.rfm_segment,
        customers.value_band,
        predictions.p_alive,
        customers.email,
        customers.first_name,
        customers.has_email_consent,
        customers.is_loyalty_member,
        customers.loyalty_account_id,
        customers.phone,
        customers.preferred_channel,
        customers.timezone,
        customers.contact_window_start_hour,
        customers.contact_window_end_hour,
        case when customers.order_count > 0
            then cast(customers.total_spent as double precision) / customers.order_count
        end as average_order_value
    from latest
    inner join live_campaigns
        on latest.campaign_id = live_campaigns.campaign_id
    inner join customers
        on latest.customer_id = customers.customer_id
    left join predictions
        on latest.customer_id = predictions.customer_id
)

select * from final
