{#-
    The lifecycle stage from order history (docs/lifecycle.md), thresholds from vars:
      acquisition      known to us, never ordered
      recovery         ordered before, but not in the last `lifecycle_recovery_after_days` days
      experimentation  exactly one order (a first trial), recent enough not to need recovery
      loyalty          two or more orders, the last within `lifecycle_loyalty_max_days` days
      retention        two or more orders, the last between those two boundaries (frequency
                       dropping: time to act before the customer is lost)
    Every customer gets exactly one stage.
-#}
{% macro lifecycle_stage(order_count, days_since_last_order) -%}
    case
        when coalesce({{ order_count }}, 0) = 0 then 'acquisition'
        when {{ days_since_last_order }} >= {{ var('lifecycle_recovery_after_days') }} then 'recovery'
        when {{ order_count }} = 1 then 'experimentation'
        when {{ days_since_last_order }} < {{ var('lifecycle_loyalty_max_days') }} then 'loyalty'
        else 'retention'
    end
{%- endmacro %}

{#- The date the warehouse describes: var as_of_date, else the latest activity date. -#}
{% macro as_of_date(occurred_at_column) -%}
    {%- if var('as_of_date') -%}
        coalesce(cast('{{ var("as_of_date") }}' as date), max(cast({{ occurred_at_column }} as date)))
    {%- else -%}
        max(cast({{ occurred_at_column }} as date))
    {%- endif -%}
{%- endmacro %}

{#- A 1..5 score from a percentile (ties share a score; 5 is best). -#}
{% macro quintile_score(order_by_expression) -%}
    (1 + cast(floor(percent_rank() over (order by {{ order_by_expression }}) * 4.999) as integer))
{%- endmacro %}
