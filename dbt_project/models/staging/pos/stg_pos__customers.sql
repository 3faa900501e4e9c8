with

source as (
    {{ raw_source('pos', 'customers', [
        'id', 'given_name', 'family_name', 'email_address', 'phone_number',
        'preferences__email_unsubscribed', 'created_at', 'updated_at',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as pos_customer_id,
        {{ to_text('given_name') }} as first_name,
        {{ to_text('family_name') }} as last_name,
        {{ to_text('email_address') }} as email,
        {{ to_text('phone_number') }} as phone,
        {{ to_boolean('preferences__email_unsubscribed') }} as is_email_unsubscribed,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'pos_customer_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        pos_customer_id,
        first_name,
        last_name,
        email,
        phone,
        coalesce(is_email_unsubscribed, false) as is_email_unsubscribed,
        created_at,
        updated_at,
        loaded_at
    from latest
)

select * from final
