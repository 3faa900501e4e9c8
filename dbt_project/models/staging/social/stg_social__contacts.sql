with

source as (
    {{ raw_source('social', 'contacts', [
        'id', 'username', 'name', 'email', 'phone', 'updated_time',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as social_user_id,
        {{ to_text('username') }} as username,
        {{ to_text('name') }} as display_name,
        {{ to_text('email') }} as email,
        {{ to_text('phone') }} as phone,
        {{ to_utc_timestamp('updated_time') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'social_user_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        social_user_id,
        username,
        display_name,
        email,
        phone,
        updated_at,
        loaded_at
    from latest
)

select * from final
