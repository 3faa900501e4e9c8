{{ config(
    materialized='incremental',
    unique_key='order_line_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
) }}

with

order_lines as (
    select * from {{ ref('int_order_lines_unioned') }}
),

{% if is_incremental() %}
changed_lines as (
    {{ incremental_changes('order_lines', 'order_line_id') }}
),
{% else %}
changed_lines as (
    select * from order_lines
),
{% endif %}

final as (
    select
        order_line_id,
        order_id,
        channel,
        customer_id,
        store_id,
        product_id,
        sku,
        quantity,
        unit_price,
        line_amount,
        ordered_at,
        cast(ordered_at as date) as order_date,
        updated_at
    from changed_lines
)

select * from final
