{#-
    One row per journey type x maturity dimension (seed 002, PRODUCT.md item 7): score 0-100 =
    100 x numerator / denominator, the share of the journey's instances that pass the
    dimension's measurable proxy (null when the journey has no instance yet).

    Journey types and their instances:
      web_order            web orders (fct_customer_interactions, web_order); channel web
      store_sale           store sales (store_sale); channel store
      abandoned_cart       abandoned web carts (fct_abandoned_carts); channel web
      social_conversation  social messages, comments and mentions; channel social
      campaign_contact     campaign contacts (fct_campaign_contacts); channel of the message:
                           email -> web, loyalty_cashback and in_store -> store

    Dimensions and proxies (an instance passes when):
      availability   the customer can go on elsewhere: they are known on at least one channel
                     other than the instance's (web account, store/loyalty account, social
                     handle; dim_customers)
      persistence    the journey is kept with the person, not lost as an anonymous event: the
                     instance carries a unified customer_id
      traceability   its current state is recorded: an order / sale / message status, a
                     contact status past `queued`, a cart whose outcome is decided (bought, or
                     not bought after var abandoned_cart_outcome_days)
      history        the customer's central history (fct_customer_interactions) holds
                     interactions on at least two channels
-#}
with

interactions as (
    select * from {{ ref('fct_customer_interactions') }}
),

carts as (
    select * from {{ ref('fct_abandoned_carts') }}
),

contacts as (
    select * from {{ ref('fct_campaign_contacts') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

data_through as (
    select max(occurred_at) as data_through_at from interactions
),

customer_channels as (
    select customer_id, count(distinct channel) as history_channel_count
    from interactions
    where customer_id is not null
    group by customer_id
),

instances as (
    select
        case interaction_type when 'web_order' then 'web_order' else 'store_sale' end as journey_type,
        customer_id,
        channel,
        status is not null and status not in ('pending', 'unknown') as is_state_known
    from interactions
    where interaction_type in ('web_order', 'store_sale')
    union all
    select
        'social_conversation',
        customer_id,
        'social',
        status is not null
    from interactions
    where channel = 'social'
    union all
    select
        'abandoned_cart',
        carts.customer_id,
        'web',
        carts.outcome <> 'not_bought'
            or {{ dbt.dateadd('day', var('abandoned_cart_outcome_days'), 'carts.abandoned_at') }}
                <= data_through.data_through_at
    from carts
    cross join data_through
    union all
    select
        'campaign_contact',
        customer_id,
        case when channel = 'email' then 'web' else 'store' end,
        status is not null and status <> 'queued'
    from contacts
),

scored as (
    select
        instances.journey_type,
        count(*) as instance_count,
        sum(case
            when (instances.channel <> 'web' and customers.has_web_account)
                or (instances.channel <> 'store' and customers.has_store_account)
                or (instances.channel <> 'social' and customers.has_social_account)
            then 1 else 0 end) as availability,
        sum(case when instances.customer_id is not null then 1 else 0 end) as persistence,
        sum(case when instances.is_state_known then 1 else 0 end) as traceability,
        sum(case when customer_channels.history_channel_count >= 2 then 1 else 0 end) as history
    from instances
    left join customers
        on instances.customer_id = customers.customer_id
    left join customer_channels
        on instances.customer_id = customer_channels.customer_id
    group by instances.journey_type
),

journey_types as (
    select 'web_order' as journey_type
    union all select 'store_sale'
    union all select 'abandoned_cart'
    union all select 'social_conversation'
    union all select 'campaign_contact'
),

dimensions as (
    select 'availability' as dimension,
        'instances whose customer is known on another channel' as proxy
    union all select 'persistence', 'instances linked to a unified customer id'
    union all select 'traceability', 'instances whose current status is recorded'
    union all select 'history', 'instances whose customer has interactions on 2+ channels'
),

cells as (
    select
        journey_types.journey_type,
        dimensions.dimension,
        dimensions.proxy,
        case dimensions.dimension
            when 'availability' then scored.availability
            when 'persistence' then scored.persistence
            when 'traceability' then scored.traceability
            else scored.history
        end as passing,
        scored.instance_count
    from journey_types
    cross join dimensions
    left join scored
        on journey_types.journey_type = scored.journey_type
),

final as (
    select
        journey_type,
        dimension,
        {{ measurement_round("100.0 * passing / nullif(instance_count, 0)", 1) }} as score,
        coalesce(passing, 0) as numerator,
        coalesce(instance_count, 0) as denominator,
        proxy
    from cells
)

select * from final
