with

source as (
    {{ raw_source('pos', 'loyalty_accounts', [
        'id', 'program_id', 'customer_id', 'mapping__phone_number', 'balance',
        'lifetime_points', 'created_at', 'updated_at',
    ]) }}
),

renamed as (
    select
        {{ to_text('id') }} as loyalty_account_id,
        {{ to_text('program_id') }} as loyalty_program_id,
        {{ to_text('customer_id') }} as pos_customer_id,
        {{ to_text('mapping__phone_number') }} as phone,
        {{ to_integer('balance') }} as points_balance,
        {{ to_integer('lifetime_points') }} as lifetime_points,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from source
    where id is not null
),

latest as (
    {{ latest_version('renamed', 'loyalty_account_id', 'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        loyalty_account_id,
        loyalty_program_id,
        pos_customer_id,
        phone,
        points_balance,
        lifetime_points,
        created_at,
        updated_at,
        loaded_at
    from latest
)

select * from final
