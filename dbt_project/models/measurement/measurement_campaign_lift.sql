{#-
    One row per campaign and breakdown (dimension, dimension_value): treatment against holdout.
    The unit is an assignment (campaign, customer, trigger occurrence; measurement_assignments);
    its outcome is whether it converted in its window and the revenue and gross margin of its
    conversions (measurement_conversions; 0 when none).

    Breakdowns (dimension -> dimension_value):
      overall          'all'
      segment          the RFM segment (current), both arms split alike
      lifecycle_stage  the stage at assignment, both arms split alike
      channel          email | loyalty_cashback | in_store: the treated assignments contacted on
                       that channel against the campaign's WHOLE holdout (a holdout has no
                       channel); a multi-channel assignment counts under each of its channels
      product_category every category with a converting order line in the campaign: both arms,
                       outcome = converted with a line in that category, revenue / margin of
                       those lines; cost = the campaign's treated cost x the category's share of
                       treated line revenue

    Statistics (95 %): conversion: unpooled Wald interval of the difference of proportions,
    diff +- 1.959964 x sqrt(p_t (1 - p_t) / n_t + p_h (1 - p_h) / n_h); relative lift
    p_t / p_h - 1 with a log-ratio (delta method) interval; revenue per customer: Welch's
    interval, diff +- t(0.975, df_welch) x sqrt(s_t^2 / n_t + s_h^2 / n_h).
    incremental_* = (per-customer treatment - per-customer holdout) x n_treatment.
    roi = (incremental_gross_margin - cost_eur) / cost_eur (null when cost is 0).
    Fewer than var measurement_min_group_size units in either arm: is_small_sample, and never
    is_significant. Rates are rounded to 6 decimals, euros to 2, roi to 4.
-#}
with

assignments as (
    select * from {{ ref('measurement_assignments') }}
    {%- if measurement_var('measurement_complete_windows_only') %}
    where is_window_complete
    {%- endif %}
),

conversions as (
    select * from {{ ref('measurement_conversions') }}
),

order_lines as (
    select * from {{ ref('fct_order_lines') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

assignment_outcomes as (
    select
        assignment_id,
        sum(revenue_eur) as revenue_eur,
        sum(gross_margin_eur) as gross_margin_eur
    from conversions
    group by assignment_id
),

units as (
    select
        assignments.assignment_id,
        assignments.campaign_id,
        assignments.is_holdout,
        assignments.segment,
        assignments.lifecycle_stage,
        assignments.has_email_contact,
        assignments.has_loyalty_cashback_contact,
        assignments.has_in_store_contact,
        case when assignment_outcomes.assignment_id is null then 0 else 1 end as converted,
        coalesce(assignment_outcomes.revenue_eur, 0) as revenue_eur,
        coalesce(assignment_outcomes.gross_margin_eur, 0) as gross_margin_eur,
        assignments.message_cost_eur,
        assignments.cashback_redeemed_eur,
        assignments.discount_honoured_eur
    from assignments
    left join assignment_outcomes
        on assignments.assignment_id = assignment_outcomes.assignment_id
),

-- Converting lines per assignment and product category.
category_outcomes as (
    select
        conversions.assignment_id,
        conversions.campaign_id,
        coalesce(products.category, 'unknown') as category,
        sum(order_lines.line_amount) as revenue_eur,
        sum(order_lines.line_amount - order_lines.quantity * coalesce(products.cost, order_lines.unit_price))
            as gross_margin_eur
    from conversions
    inner join order_lines
        on conversions.order_id = order_lines.order_id
    left join products
        on order_lines.product_id = products.product_id
    group by conversions.assignment_id, conversions.campaign_id, coalesce(products.category, 'unknown')
),

campaign_categories as (
    select distinct campaign_id, category from category_outcomes
),

-- A category's share of the campaign's treated line revenue (allocates the campaign's cost).
category_cost_shares as (
    select
        category_outcomes.campaign_id,
        category_outcomes.category,
        sum(category_outcomes.revenue_eur)
            / nullif(max(campaign_totals.revenue_eur), 0) as cost_share
    from category_outcomes
    inner join units
        on category_outcomes.assignment_id = units.assignment_id
        and not units.is_holdout
    inner join (
        select treated.campaign_id, sum(treated_lines.revenue_eur) as revenue_eur
        from category_outcomes as treated_lines
        inner join units as treated
            on treated_lines.assignment_id = treated.assignment_id
            and not treated.is_holdout
        group by treated.campaign_id
    ) as campaign_totals
        on category_outcomes.campaign_id = campaign_totals.campaign_id
    group by category_outcomes.campaign_id, category_outcomes.category
),

treated_channels as (
    select campaign_id, 'email' as channel from units where has_email_contact
    union
    select campaign_id, 'loyalty_cashback' from units where has_loyalty_cashback_contact
    union
    select campaign_id, 'in_store' from units where has_in_store_contact
),

breakdown_units as (
    select
        'overall' as dimension, 'all' as dimension_value, campaign_id, is_holdout, converted,
        revenue_eur, gross_margin_eur, message_cost_eur, cashback_redeemed_eur,
        discount_honoured_eur, 1.0 as cost_share
    from units
    union all
    select
        'segment', segment, campaign_id, is_holdout, converted, revenue_eur, gross_margin_eur,
        message_cost_eur, cashback_redeemed_eur, discount_honoured_eur, 1.0
    from units
    union all
    select
        'lifecycle_stage', lifecycle_stage, campaign_id, is_holdout, converted, revenue_eur,
        gross_margin_eur, message_cost_eur, cashback_redeemed_eur, discount_honoured_eur, 1.0
    from units
    union all
    select
        'channel', treated_channels.channel, units.campaign_id, units.is_holdout, units.converted,
        units.revenue_eur, units.gross_margin_eur, units.message_cost_eur,
        units.cashback_redeemed_eur, units.discount_honoured_eur, 1.0
    from units
    inner join treated_channels
        on units.campaign_id = treated_channels.campaign_id
        and (
            units.is_holdout
            or (treated_channels.channel = 'email' and units.has_email_contact)
            or (treated_channels.channel = 'loyalty_cashback' and units.has_loyalty_cashback_contact)
            or (treated_channels.channel = 'in_store' and units.has_in_store_contact)
        )
    union all
    select
        'product_category', campaign_categories.category, units.campaign_id, units.is_holdout,
        case when category_outcomes.assignment_id is null then 0 else 1 end,
        coalesce(category_outcomes.revenue_eur, 0), coalesce(category_outcomes.gross_margin_eur, 0),
        units.message_cost_eur, units.cashback_redeemed_eur, units.discount_honoured_eur,
        coalesce(category_cost_shares.cost_share, 0)
    from units
    inner join campaign_categories
        on units.campaign_id = campaign_categories.campaign_id
    left join category_outcomes
        on units.assignment_id = category_outcomes.assignment_id
        and campaign_categories.category = category_outcomes.category
    left join category_cost_shares
        on campaign_categories.campaign_id = category_cost_shares.campaign_id
        and campaign_categories.category = category_cost_shares.category
),

arms as (
    select
        campaign_id,
        dimension,
        coalesce(dimension_value, 'unknown') as dimension_value,
        cast(sum(case when is_holdout then 0 else 1 end) as integer) as n_treatment,
        cast(sum(case when is_holdout then 1 else 0 end) as integer) as n_holdout,
        cast(sum(case when is_holdout then 0 else converted end) as integer) as conversions_treatment,
        cast(sum(case when is_holdout then converted else 0 end) as integer) as conversions_holdout,
        avg(case when is_holdout then null else revenue_eur end) as rev_per_customer_t,
        avg(case when is_holdout then revenue_eur end) as rev_per_customer_h,
        var_samp(case when is_holdout then null else revenue_eur end) as rev_variance_t,
        var_samp(case when is_holdout then revenue_eur end) as rev_variance_h,
        avg(case when is_holdout then null else gross_margin_eur end) as margin_per_customer_t,
        avg(case when is_holdout then gross_margin_eur end) as margin_per_customer_h,
        sum(case when is_holdout then 0 else message_cost_eur * cost_share end) as message_cost_eur,
        sum(case when is_holdout then 0 else cashback_redeemed_eur * cost_share end) as cashback_redeemed_eur,
        sum(case when is_holdout then 0 else discount_honoured_eur * cost_share end) as discount_honoured_eur
    from breakdown_units
    group by campaign_id, dimension, coalesce(dimension_value, 'unknown')
),

rates as (
    select
        arms.*,
        {{ measurement_ratio('conversions_treatment', 'n_treatment') }} as conv_rate_t,
        {{ measurement_ratio('conversions_holdout', 'n_holdout') }} as conv_rate_h,
        rev_variance_t / nullif(n_treatment, 0) as rev_se2_t,
        rev_variance_h / nullif(n_holdout, 0) as rev_se2_h,
        message_cost_eur + cashback_redeemed_eur + discount_honoured_eur as cost_eur,
        n_treatment < {{ measurement_var('measurement_min_group_size') }}
            or n_holdout < {{ measurement_var('measurement_min_group_size') }} as is_small_sample
    from arms
),

differences as (
    select
        rates.*,
        conv_rate_t - conv_rate_h as lift_conv,
        sqrt(conv_rate_t * (1 - conv_rate_t) / n_treatment + conv_rate_h * (1 - conv_rate_h) / nullif(n_holdout, 0))
            as se_conv,
        case when conv_rate_t > 0 and conv_rate_h > 0 then
            sqrt((1 - conv_rate_t) / (n_treatment * conv_rate_t) + (1 - conv_rate_h) / (n_holdout * conv_rate_h))
        end as se_log_ratio,
        rev_per_customer_t - rev_per_customer_h as lift_rev_per_customer,
        sqrt(rev_se2_t + rev_se2_h) as se_rev,
        -- Welch-Satterthwaite degrees of freedom
        power(rev_se2_t + rev_se2_h, 2) / nullif(
            power(rev_se2_t, 2) / nullif(n_treatment - 1, 0) + power(rev_se2_h, 2) / nullif(n_holdout - 1, 0), 0
        ) as welch_df,
        (margin_per_customer_t - margin_per_customer_h) * n_treatment as incremental_gross_margin
    from rates
),

intervals as (
    select
        differences.*,
        lift_conv - {{ measurement_z_975() }} * se_conv as ci_low_raw,
        lift_conv + {{ measurement_z_975() }} * se_conv as ci_high_raw,
        case when se_log_ratio is not null then
            exp(ln(conv_rate_t / conv_rate_h) - {{ measurement_z_975() }} * se_log_ratio) - 1
        end as relative_ci_low_raw,
        case when se_log_ratio is not null then
            exp(ln(conv_rate_t / conv_rate_h) + {{ measurement_z_975() }} * se_log_ratio) - 1
        end as relative_ci_high_raw,
        case
            when se_rev = 0 then 0
            else {{ measurement_t_975('welch_df') }} * se_rev
        end as rev_half_width
    from differences
),

final as (
    select
        campaign_id,
        dimension,
        dimension_value,
        n_treatment,
        n_holdout,
        conversions_treatment,
        conversions_holdout,
        {{ measurement_round("conv_rate_t", 6) }} as conv_rate_t,
        {{ measurement_round("conv_rate_h", 6) }} as conv_rate_h,
        {{ measurement_round("lift_conv", 6) }} as lift_conv,
        {{ measurement_round("ci_low_raw", 6) }} as ci_low,
        {{ measurement_round("ci_high_raw", 6) }} as ci_high,
        {{ measurement_round("conv_rate_t / nullif(conv_rate_h, 0) - 1", 6) }} as relative_lift_conv,
        {{ measurement_round("relative_ci_low_raw", 6) }} as relative_ci_low,
        {{ measurement_round("relative_ci_high_raw", 6) }} as relative_ci_high,
        {{ measurement_round("rev_per_customer_t", 2) }} as rev_per_customer_t,
        {{ measurement_round("rev_per_customer_h", 2) }} as rev_per_customer_h,
        {{ measurement_round("lift_rev_per_customer", 2) }} as lift_rev_per_customer,
        {{ measurement_round("lift_rev_per_customer - rev_half_width", 2) }} as rev_ci_low,
        {{ measurement_round("lift_rev_per_customer + rev_half_width", 2) }} as rev_ci_high,
        {{ measurement_round("welch_df", 2) }} as welch_df,
        {{ measurement_round("margin_per_customer_t", 2) }} as margin_per_customer_t,
        {{ measurement_round("margin_per_customer_h", 2) }} as margin_per_customer_h,
        {{ measurement_round("lift_conv * n_treatment", 2) }} as incremental_conversions,
        {{ measurement_round("lift_rev_per_customer * n_treatment", 2) }} as incremental_revenue,
        {{ measurement_round("incremental_gross_margin", 2) }} as incremental_gross_margin,
        {{ measurement_round("message_cost_eur", 2) }} as message_cost_eur,
        {{ measurement_round("cashback_redeemed_eur", 2) }} as cashback_redeemed_eur,
        {{ measurement_round("discount_honoured_eur", 2) }} as discount_honoured_eur,
        {{ measurement_round("cost_eur", 2) }} as cost_eur,
        {{ measurement_round("(incremental_gross_margin - cost_eur) / nullif(cost_eur, 0)", 4) }} as roi,
        is_small_sample,
        coalesce(not is_small_sample and (ci_low_raw > 0 or ci_high_raw < 0), false) as is_significant,
        coalesce(
            not is_small_sample
            and (lift_rev_per_customer - rev_half_width > 0 or lift_rev_per_customer + rev_half_width < 0),
            false
        ) as is_revenue_significant
    from intervals
)

select * from final
