{#-
    Helpers of the measurement models (models/measurement, docs/measurement.md): their vars
    with defaults (so the models keep working if a var is removed from dbt_project.yml), the
    cost of one message per channel, and the statistics of the lift intervals.
-#}

{% macro measurement_var(name) -%}
    {%- set defaults = {
        'measurement_attribution_window_days': 14,
        'measurement_min_group_size': 30,
        'measurement_complete_windows_only': false,
        'measurement_treated_statuses': [
            'sent', 'delivered', 'opened', 'clicked', 'bounced', 'unsubscribed', 'spamreport'],
        'cost_per_email_eur': 0.001,
        'cost_per_in_store_offer_eur': 0.02,
        'cost_per_cashback_credit_eur': 0.01,
    } -%}
    {{ return(var(name, defaults[name])) }}
{%- endmacro %}

{#- The provider cost of one message on `channel_column` (vars cost_per_*_eur). -#}
{% macro measurement_message_cost(channel_column) -%}
    case {{ channel_column }}
        when 'email' then {{ measurement_var('cost_per_email_eur') }}
        when 'loyalty_cashback' then {{ measurement_var('cost_per_cashback_credit_eur') }}
        when 'in_store' then {{ measurement_var('cost_per_in_store_offer_eur') }}
        else 0
    end
{%- endmacro %}

{#- The 0.975 normal quantile: a 95 % two-sided interval. -#}
{% macro measurement_z_975() -%}1.959963985{%- endmacro %}

{#-
    The 0.975 quantile of Student's t with `df` degrees of freedom (Welch's interval), by the
    Cornish-Fisher expansion around the normal quantile (Abramowitz & Stegun 26.7.5). Error
    below 0.001 for df >= 5 and below 1e-5 for df >= 30, the smallest groups we call
    significant; the engine needs no statistics library. Null df gives null.
-#}
{% macro measurement_t_975(df) -%}
    {%- set z = measurement_z_975() | float -%}
    {%- set c1 = (z ** 3 + z) / 4 -%}
    {%- set c2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96 -%}
    {%- set c3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384 -%}
    {%- set c4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160 -%}
    ({{ z }} + {{ c1 }} / ({{ df }}) + {{ c2 }} / power({{ df }}, 2)
        + {{ c3 }} / power({{ df }}, 3) + {{ c4 }} / power({{ df }}, 4))
{%- endmacro %}

{#- x / y, null when y is 0 or null. -#}
{% macro measurement_ratio(numerator, denominator) -%}
    (cast({{ numerator }} as double precision) / nullif({{ denominator }}, 0))
{%- endmacro %}

{#- round(x, n) on every engine (Postgres has no round(double precision, integer)). -#}
{% macro measurement_round(expression, decimals) -%}
    {{ return(adapter.dispatch('measurement_round', 'omni')(expression, decimals)) }}
{%- endmacro %}

{% macro default__measurement_round(expression, decimals) -%}
    round(cast({{ expression }} as numeric), {{ decimals }})
{%- endmacro %}

{% macro duckdb__measurement_round(expression, decimals) -%}
    round({{ expression }}, {{ decimals }})
{%- endmacro %}
