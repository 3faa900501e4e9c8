{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
) }}

with

orders as (
    select * from {{ ref('int_orders_unioned') }}
),

{% if is_incremental() %}
changed_orders as (
    {{ incremental_changes('orders', 'order_id') }}
),
{% else %}
changed_orders as (
    select * from orders
),
{% endif %}

final as (
    select
        order_id,
        channel,
        source_order_id,
        customer_id,
        shop_customer_id,
        pos_customer_id,
        store_id,
        checkout_id,
        fulfillment_type,
        financial_status,
        shipment_status,
        delivered_at,
        item_quantity,
        subtotal_amount,
        shipping_amount,
        total_amount,
        refunded_amount,
        total_amount - refunded_amount as net_amount,
        ordered_at,
        cast(ordered_at as date) as order_date,
        updated_at,
        loaded_at
    from changed_orders
)

select * from final
