with

source as (
    {{ raw_source('pos', 'orders', [
        'id', 'location_id', 'customer_id', 'state', 'created_at', 'updated_at', 'closed_at',
        'total_money__amount', 'total_money__currency',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as pos_order_id,
        {{ to_text('location_id') }} as location_id,
        {{ to_text('customer_id') }} as pos_customer_id,
        {{ to_text('state') }} as order_state,
        {{ cents_to_money('total_money__amount') }} as total_amount,
        {{ to_text('total_money__currency') }} as currency,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ to_utc_timestamp('closed_at') }} as closed_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'pos_order_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        pos_order_id,
        location_id,
        pos_customer_id,
        order_state,
        total_amount,
        currency,
        created_at,
        updated_at,
        closed_at,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
