with

source as (
    {{ raw_source('shop', 'customers', [
        'id', 'email', 'phone', 'first_name', 'last_name',
        'email_marketing_consent__state', 'email_marketing_consent__consent_updated_at',
        'sms_marketing_consent__state',
        'default_address__address1', 'default_address__city', 'default_address__zip',
        'default_address__country_code', 'default_address__latitude', 'default_address__longitude',
        'timezone', 'contact_window_start_hour', 'contact_window_end_hour',
        'created_at', 'updated_at',
    ]) }}
),

renamed as (
    select
        {{ to_integer('id') }} as shop_customer_id,
        {{ to_text('email') }} as email,
        {{ to_text('phone') }} as phone,
        {{ to_text('first_name') }} as first_name,
        {{ to_text('last_name') }} as last_name,
        {{ to_text('email_marketing_consent__state') }} as email_consent_state,
        {{ to_utc_timestamp('email_marketing_consent__consent_updated_at') }} as email_consent_updated_at,
        {{ to_text('sms_marketing_consent__state') }} as sms_consent_state,
        {{ to_text('default_address__address1') }} as address_line_1,
        {{ to_text('default_address__city') }} as city,
        {{ to_text('default_address__zip') }} as postal_code,
        {{ to_text('default_address__country_code') }} as country_code,
        {{ to_float('default_address__latitude') }} as latitude,
        {{ to_float('default_address__longitude') }} as longitude,
        {{ to_text('timezone') }} as timezone,
        {{ to_integer('contact_window_start_hour') }} as contact_window_start_hour,
        {{ to_integer('contact_window_end_hour') }} as contact_window_end_hour,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'shop_customer_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        shop_customer_id,
        email,
        phone,
        first_name,
        last_name,
        email_consent_state,
        email_consent_updated_at,
        sms_consent_state,
        address_line_1,
        city,
        postal_code,
        country_code,
        case when latitude between -90 and 90 then latitude end as latitude,
        case when longitude between -180 and 180 then longitude end as longitude,
        timezone,
        contact_window_start_hour,
        contact_window_end_hour,
        created_at,
        updated_at,
        loaded_at,
        raw_row_id
    from latest
)

select * from final
