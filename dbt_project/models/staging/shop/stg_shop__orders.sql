with

source as (
    {{ raw_source('shop', 'orders', [
        'id', 'name', 'order_number', 'email', 'customer__id', 'checkout_id',
        'created_at', 'updated_at', 'currency', 'subtotal_price', 'total_price',
        'total_shipping_price', 'financial_status', 'fulfillment_status', 'source_name',
    ]) }}
),

renamed as (
    select
        {{ to_integer('id') }} as shop_order_id,
        {{ to_text('name') }} as order_name,
        {{ to_integer('order_number') }} as order_number,
        {{ to_integer('customer__id') }} as shop_customer_id,
        {{ to_integer('checkout_id') }} as checkout_id,
        {{ to_text('email') }} as email,
        {{ to_text('currency') }} as currency,
        {{ to_money('subtotal_price') }} as subtotal_amount,
        {{ to_money('total_shipping_price') }} as shipping_amount,
        {{ to_money('total_price') }} as total_amount,
        {{ to_text('financial_status') }} as financial_status,
        {{ to_text('fulfillment_status') }} as fulfillment_status,
        {{ to_text('source_name') }} as source_name,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'shop_order_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        shop_order_id,
        order_name,
        order_number,
        shop_customer_id,
        checkout_id,
        email,
        currency,
        subtotal_amount,
        shipping_amount,
        total_amount,
        financial_status,
        fulfillment_status,
        source_name,
        created_at,
        updated_at,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
