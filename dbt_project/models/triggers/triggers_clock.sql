{#-
    The moment triggers and audiences are evaluated at (one row). `as_of_date` is the
    warehouse's date (dim_customers.as_of_date: var as_of_date or the latest activity date);
    `as_of_at` is var activation_now when set, else the end of that date or the current time,
    whichever is earlier (a simulated world ends at its end date; production runs now).
-#}
with

customers as (
    select as_of_date from {{ ref('dim_customers') }}
),

as_of as (
    select max(as_of_date) as as_of_date from customers
),

final as (
    select
        as_of_date,
        {%- if triggers_var('activation_now') %}
        cast('{{ triggers_var("activation_now") }}' as timestamp) as as_of_at
        {%- else %}
        least(
            {{ dbt.dateadd('second', -1, dbt.dateadd('day', 1, 'cast(as_of_date as timestamp)')) }},
            cast({{ dbt.current_timestamp() }} as timestamp)
        ) as as_of_at
        {%- endif %}
    from as_of
)

select * from final
