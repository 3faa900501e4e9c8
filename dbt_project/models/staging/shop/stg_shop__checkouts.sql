with

source as (
    {{ raw_source('shop', 'checkouts', [
        'id', 'token', 'email', 'customer__id', 'created_at', 'updated_at', 'completed_at',
        'subtotal_price', 'total_price',
    ]) }}
),

renamed as (
    select
        {{ to_integer('id') }} as checkout_id,
        {{ to_text('token') }} as checkout_token,
        {{ to_integer('customer__id') }} as shop_customer_id,
        {{ to_text('email') }} as email,
        {{ to_money('subtotal_price') }} as subtotal_amount,
        {{ to_money('total_price') }} as total_amount,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ to_utc_timestamp('completed_at') }} as completed_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'checkout_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        checkout_id,
        checkout_token,
        shop_customer_id,
        email,
        subtotal_amount,
        -- Shipping as total minus subtotal (the shop charges no separate tax line).
        total_amount - subtotal_amount as shipping_amount,
        total_amount,
        created_at,
        updated_at,
        completed_at,
        completed_at is not null as is_completed,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
