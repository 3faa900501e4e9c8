{#-
    Every customer record any source knows, one row per record, with normalised identifiers:
    shop customers, POS customers, loyalty accounts, social contacts, and social users seen only
    through their activity (no contact details: they stay customers of their own).
    Rules in docs/identity.md.
-#}
with

shop_customers as (
    select * from {{ ref('stg_shop__customers') }}
),

pos_customers as (
    select * from {{ ref('stg_pos__customers') }}
),

loyalty_accounts as (
    select * from {{ ref('stg_pos__loyalty_accounts') }}
),

social_contacts as (
    select * from {{ ref('stg_social__contacts') }}
),

social_activities as (
    select * from {{ ref('stg_social__activities') }}
),

shop_records as (
    select
        'shop' as source_system,
        cast(shop_customer_id as {{ dbt.type_string() }}) as source_record_id,
        {{ normalize_email('email') }} as email_normalized,
        {{ normalize_phone('phone') }} as phone_normalized,
        cast(null as {{ dbt.type_string() }}) as social_handle,
        cast(null as {{ dbt.type_string() }}) as pos_customer_ref,
        first_name,
        last_name,
        updated_at
    from shop_customers
),

pos_records as (
    select
        'pos' as source_system,
        pos_customer_id as source_record_id,
        {{ normalize_email('email') }} as email_normalized,
        {{ normalize_phone('phone') }} as phone_normalized,
        cast(null as {{ dbt.type_string() }}) as social_handle,
        pos_customer_id as pos_customer_ref,
        first_name,
        last_name,
        updated_at
    from pos_customers
),

loyalty_records as (
    select
        'loyalty' as source_system,
        loyalty_account_id as source_record_id,
        cast(null as {{ dbt.type_string() }}) as email_normalized,
        -- No name, so the phone alone links nothing (households share phones): the account
        -- links to its owner through the POS customer id.
        {{ normalize_phone('phone') }} as phone_normalized,
        cast(null as {{ dbt.type_string() }}) as social_handle,
        pos_customer_id as pos_customer_ref,
        cast(null as {{ dbt.type_string() }}) as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        updated_at
    from loyalty_accounts
),

social_contact_records as (
    select
        'social' as source_system,
        social_user_id as source_record_id,
        {{ normalize_email('email') }} as email_normalized,
        {{ normalize_phone('phone') }} as phone_normalized,
        {{ normalize_handle('username') }} as social_handle,
        cast(null as {{ dbt.type_string() }}) as pos_customer_ref,
        display_name as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        updated_at
    from social_contacts
),

-- Social users who interacted but never shared contact details: latest handle seen.
social_authors as (
    select
        social_user_id,
        username,
        updated_at,
        row_number() over (
            partition by social_user_id order by updated_at desc, activity_id
        ) as author_rank
    from social_activities
    where social_user_id is not null
),

social_author_records as (
    select
        'social' as source_system,
        social_authors.social_user_id as source_record_id,
        cast(null as {{ dbt.type_string() }}) as email_normalized,
        cast(null as {{ dbt.type_string() }}) as phone_normalized,
        {{ normalize_handle('social_authors.username') }} as social_handle,
        cast(null as {{ dbt.type_string() }}) as pos_customer_ref,
        cast(null as {{ dbt.type_string() }}) as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        social_authors.updated_at
    from social_authors
    left join social_contacts
        on social_authors.social_user_id = social_contacts.social_user_id
    where social_authors.author_rank = 1
        and social_contacts.social_user_id is null
),

unioned as (
    select * from shop_records
    union all
    select * from pos_records
    union all
    select * from loyalty_records
    union all
    select * from social_contact_records
    union all
    select * from social_author_records
),

final as (
    select
        {{ dbt.concat(["source_system", "':'", "source_record_id"]) }} as record_key,
        source_system,
        source_record_id,
        email_normalized,
        phone_normalized,
        social_handle,
        pos_customer_ref,
        {{ normalize_first_name('first_name') }} as first_name_key,
        first_name,
        last_name,
        updated_at
    from unioned
)

select * from final
