{#- One row per unified customer (identity resolution in int_customers_unified). Attributes
    prefer the web shop record (it has the address, consent and contact window), then POS,
    then social. -#}
with

members as (
    select * from {{ ref('int_customers_unified') }}
),

lifecycle as (
    select * from {{ ref('int_customer_lifecycle') }}
),

shop_customers as (
    select * from {{ ref('stg_shop__customers') }}
),

pos_customers as (
    select * from {{ ref('stg_pos__customers') }}
),

loyalty_accounts as (
    select * from {{ ref('stg_pos__loyalty_accounts') }}
),

stores as (
    select * from {{ ref('dim_stores') }}
),

orders as (
    select * from {{ ref('int_orders_unioned') }}
),

-- The latest shop record of each customer (a person rarely has two web accounts).
shop_profiles as (
    select *
    from (
        select
            members.customer_id,
            shop_customers.*,
            row_number() over (
                partition by members.customer_id
                order by shop_customers.updated_at desc, shop_customers.shop_customer_id
            ) as profile_rank
        from members
        inner join shop_customers
            on members.source_system = 'shop'
            and members.source_record_id = cast(shop_customers.shop_customer_id as {{ dbt.type_string() }})
    ) as ranked
    where profile_rank = 1
),

pos_profiles as (
    select
        members.customer_id,
        min(pos_customers.pos_customer_id) as pos_customer_id,
        max(case when pos_customers.is_email_unsubscribed then 1 else 0 end) as has_pos_email_unsubscribe,
        max(case when pos_customers.email is not null and not pos_customers.is_email_unsubscribed
            then 1 else 0 end) as has_pos_email_permission
    from members
    inner join pos_customers
        on members.source_system = 'pos'
        and members.source_record_id = pos_customers.pos_customer_id
    group by members.customer_id
),

loyalty_profiles as (
    select
        members.customer_id,
        min(loyalty_accounts.loyalty_account_id) as loyalty_account_id,
        sum(loyalty_accounts.points_balance) as loyalty_points_balance
    from members
    inner join loyalty_accounts
        on members.source_system = 'loyalty'
        and members.source_record_id = loyalty_accounts.loyalty_account_id
    group by members.customer_id
),

-- Identifiers and names by source preference: shop, pos, loyalty, social.
identity_summary as (
    select
        customer_id,
        min(customer_key) as customer_key,
        count(*) as source_record_count,
        min(case when source_system = 'social' then source_record_id end) as social_user_id,
        min(case when source_system = 'social' then social_handle end) as social_handle,
        coalesce(
            min(case when source_system = 'shop' then email_normalized end),
            min(case when source_system = 'pos' then email_normalized end),
            min(email_normalized)
        ) as email,
        coalesce(
            min(case when source_system = 'shop' then phone_normalized end),
            min(case when source_system = 'pos' then phone_normalized end),
            min(phone_normalized)
        ) as phone,
        coalesce(
            min(case when source_system = 'shop' then first_name end),
            min(case when source_system = 'pos' then first_name end),
            min(first_name)
        ) as first_name,
        coalesce(
            min(case when source_system = 'shop' then last_name end),
            min(case when source_system = 'pos' then last_name end),
            min(last_name)
        ) as last_name,
        max(case when source_system = 'shop' then 1 else 0 end) as has_web_account,
        max(case when source_system in ('pos', 'loyalty') then 1 else 0 end) as has_store_account,
        max(case when source_system = 'social' then 1 else 0 end) as has_social_account
    from members
    group by customer_id
),

-- The store where the customer bought most often.
usual_stores as (
    select customer_id, store_id as usual_store_id
    from (
        select
            customer_id,
            store_id,
            row_number() over (
                partition by customer_id order by count(*) desc, max(ordered_at) desc, store_id
            ) as store_rank
        from orders
        where channel = 'store' and customer_id is not null and store_id is not null
        group by customer_id, store_id
    ) as ranked
    where store_rank = 1
),

-- The store nearest to the home address (haversine distance).
nearest_stores as (
    select customer_id, store_id as nearest_store_id, distance_km as nearest_store_distance_km
    from (
        select
            shop_profiles.customer_id,
            stores.store_id,
            {{ haversine_km('shop_profiles.latitude', 'shop_profiles.longitude', 'stores.latitude', 'stores.longitude') }}
                as distance_km,
            row_number() over (
                partition by shop_profiles.customer_id
                order by
                    {{ haversine_km('shop_profiles.latitude', 'shop_profiles.longitude', 'stores.latitude', 'stores.longitude') }},
                    stores.store_id
            ) as distance_rank
        from shop_profiles
        cross join stores
        where shop_profiles.latitude is not null
            and shop_profiles.longitude is not null
            and stores.latitude is not null
            and stores.longitude is not null
    ) as ranked
    where distance_rank = 1
),

final as (
    select
        identity_summary.customer_id,
        identity_summary.customer_key,
        shop_profiles.shop_customer_id,
        pos_profiles.pos_customer_id,
        loyalty_profiles.loyalty_account_id,
        identity_summary.social_user_id,
        identity_summary.source_record_count,
        identity_summary.first_name,
        identity_summary.last_name,
        identity_summary.email,
        identity_summary.phone,
        identity_summary.social_handle,
        identity_summary.has_web_account = 1 as has_web_account,
        identity_summary.has_store_account = 1 as has_store_account,
        identity_summary.has_social_account = 1 as has_social_account,
        loyalty_profiles.loyalty_account_id is not null as is_loyalty_member,
        coalesce(loyalty_profiles.loyalty_points_balance, 0) as loyalty_points_balance,
        -- Consent: any source's permission, and no source's unsubscribe.
        coalesce(
            identity_summary.email is not null
            and (
                shop_profiles.email_consent_state = 'subscribed'
                or (shop_profiles.customer_id is null and pos_profiles.has_pos_email_permission = 1)
            )
            and coalesce(shop_profiles.email_consent_state, '') <> 'unsubscribed'
            and coalesce(pos_profiles.has_pos_email_unsubscribe, 0) = 0,
            false
        ) as has_email_consent,
        coalesce(
            identity_summary.phone is not null and shop_profiles.sms_consent_state = 'subscribed',
            false
        ) as has_sms_consent,
        shop_profiles.address_line_1,
        shop_profiles.city,
        shop_profiles.postal_code,
        shop_profiles.latitude as home_latitude,
        shop_profiles.longitude as home_longitude,
        nearest_stores.nearest_store_id,
        nearest_stores.nearest_store_distance_km,
        usual_stores.usual_store_id,
        coalesce(
            shop_profiles.timezone, usual_store.timezone, nearest_store.timezone,
            '{{ var("default_timezone") }}'
        ) as timezone,
        coalesce(shop_profiles.contact_window_start_hour, {{ var('default_contact_window_start_hour') }})
            as contact_window_start_hour,
        coalesce(shop_profiles.contact_window_end_hour, {{ var('default_contact_window_end_hour') }})
            as contact_window_end_hour,
        lifecycle.as_of_date,
        lifecycle.lifecycle_stage,
        lifecycle.order_count,
        lifecycle.web_order_count,
        lifecycle.store_order_count,
        lifecycle.web_order_count > 0 and lifecycle.store_order_count > 0 as is_omnichannel_buyer,
        lifecycle.first_ordered_at,
        lifecycle.last_ordered_at,
        lifecycle.days_since_last_order,
        lifecycle.total_spent,
        {{ value_band('lifecycle.total_spent') }} as value_band,
        lifecycle.interaction_count,
        lifecycle.last_interaction_at,
        lifecycle.preferred_channel,
        lifecycle.recency_score,
        lifecycle.frequency_score,
        lifecycle.monetary_score,
        lifecycle.rfm_segment
    from identity_summary
    inner join lifecycle
        on identity_summary.customer_id = lifecycle.customer_id
    left join shop_profiles
        on identity_summary.customer_id = shop_profiles.customer_id
    left join pos_profiles
        on identity_summary.customer_id = pos_profiles.customer_id
    left join loyalty_profiles
        on identity_summary.customer_id = loyalty_profiles.customer_id
    left join usual_stores
        on identity_summary.customer_id = usual_stores.customer_id
    left join nearest_stores
        on identity_summary.customer_id = nearest_stores.customer_id
    left join stores as usual_store
        on usual_stores.usual_store_id = usual_store.store_id
    left join stores as nearest_store
        on nearest_stores.nearest_store_id = nearest_store.store_id
)

select * from final
