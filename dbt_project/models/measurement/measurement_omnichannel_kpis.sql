{#-
    One row per omnichannel KPI (kpi is the key): value, its unit, and the numerator and
    denominator it was computed from, so a reader can check it. The proxies:
      spend_per_customer_single_channel / _multi_channel: net spend (fct_orders.net_amount,
        all history) per buying customer whose orders are on one channel (web or store) /
        on both; multi_channel_spend_uplift = multi / single - 1 (seed 001 cites +15-30 %).
      abandoned_cart_store_completion_share: abandoned web carts whose outcome is a store
        purchase of a cart product (fct_abandoned_carts) / all abandoned carts;
        abandoned_cart_store_completion_median_hours: median hours from abandonment to that
        store purchase (numerator null, denominator = those carts);
        abandoned_cart_online_recovery_share for comparison.
      For the uplift, numerator and denominator are the two spends per customer.
      contact_cross_channel_continuation_share: treated assignments (measurement_assignments)
        with a conversion on another channel than the contact's (is_cross_channel: a store
        order after an email or loyalty message, a web order after an in-store offer) /
        all treated assignments; converted_contact_cross_channel_share: the same among the
        treated assignments that converted.
      price_mismatch_product_share: products with a web price that have at least one price
        mismatch (measurement_price_consistency) / products with a web price.
    A ratio with a zero denominator is null.
-#}
with

orders as (
    select * from {{ ref('fct_orders') }}
),

carts as (
    select * from {{ ref('fct_abandoned_carts') }}
),

assignments as (
    select * from {{ ref('measurement_assignments') }}
),

conversions as (
    select * from {{ ref('measurement_conversions') }}
),

mismatches as (
    select * from {{ ref('measurement_price_consistency') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

customer_spend as (
    select
        customer_id,
        count(distinct channel) as channel_count,
        sum(coalesce(net_amount, 0)) as spend_eur
    from orders
    where customer_id is not null
    group by customer_id
),

spend as (
    select
        sum(case when channel_count = 1 then spend_eur else 0 end) as single_spend_eur,
        sum(case when channel_count = 1 then 1 else 0 end) as single_customers,
        sum(case when channel_count > 1 then spend_eur else 0 end) as multi_spend_eur,
        sum(case when channel_count > 1 then 1 else 0 end) as multi_customers
    from customer_spend
),

cart_outcomes as (
    select
        count(*) as carts,
        sum(case when outcome = 'bought_in_store' then 1 else 0 end) as bought_in_store,
        sum(case when outcome = 'recovered_online' then 1 else 0 end) as recovered_online,
        percentile_cont(0.5) within group (
            order by case when outcome = 'bought_in_store'
                then {{ dbt.datediff('abandoned_at', 'outcome_at', 'minute') }} / 60.0 end
        ) as median_hours_to_store
    from carts
),

treated_journeys as (
    select
        assignments.assignment_id,
        max(case when conversions.assignment_id is not null then 1 else 0 end) as has_conversion,
        max(case when conversions.is_cross_channel then 1 else 0 end) as has_cross_channel
    from assignments
    left join conversions
        on assignments.assignment_id = conversions.assignment_id
    where not assignments.is_holdout
    group by assignments.assignment_id
),

journeys as (
    select
        count(*) as treated,
        sum(has_conversion) as converted,
        sum(has_cross_channel) as cross_channel
    from treated_journeys
),

prices as (
    select
        (select count(distinct product_id) from mismatches) as mismatched_products,
        (select count(*) from products where web_price is not null) as priced_products
),

kpis as (
    select
        'spend_per_customer_single_channel' as kpi, 'eur' as unit,
        single_spend_eur / nullif(single_customers, 0) as kpi_value,
        single_spend_eur as numerator, single_customers as denominator
    from spend
    union all
    select
        'spend_per_customer_multi_channel', 'eur', multi_spend_eur / nullif(multi_customers, 0),
        multi_spend_eur, multi_customers
    from spend
    union all
    select
        'multi_channel_spend_uplift', 'ratio',
        (multi_spend_eur / nullif(multi_customers, 0)) / nullif(single_spend_eur / nullif(single_customers, 0), 0) - 1,
        multi_spend_eur / nullif(multi_customers, 0), single_spend_eur / nullif(single_customers, 0)
    from spend
    union all
    select
        'abandoned_cart_store_completion_share', 'share', {{ measurement_ratio('bought_in_store', 'carts') }},
        bought_in_store, carts
    from cart_outcomes
    union all
    select
        'abandoned_cart_store_completion_median_hours', 'hours', median_hours_to_store,
        null, bought_in_store
    from cart_outcomes
    union all
    select
        'abandoned_cart_online_recovery_share', 'share', {{ measurement_ratio('recovered_online', 'carts') }},
        recovered_online, carts
    from cart_outcomes
    union all
    select
        'contact_cross_channel_continuation_share', 'share', {{ measurement_ratio('cross_channel', 'treated') }},
        cross_channel, treated
    from journeys
    union all
    select
        'converted_contact_cross_channel_share', 'share', {{ measurement_ratio('cross_channel', 'converted') }},
        cross_channel, converted
    from journeys
    union all
    select
        'price_mismatch_product_share', 'share', {{ measurement_ratio('mismatched_products', 'priced_products') }},
        mismatched_products, priced_products
    from prices
),

final as (
    select
        kpi,
        unit,
        {{ measurement_round("cast(kpi_value as double precision)", 4) }} as value,
        {{ measurement_round("cast(numerator as double precision)", 2) }} as numerator,
        {{ measurement_round("cast(denominator as double precision)", 2) }} as denominator
    from kpis
)

select * from final
