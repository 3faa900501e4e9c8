{{ config(materialized='view', schema='staging') }}
{#- One row per SendGrid event (source dispatch.email_events): the event webhook may deliver
    an event more than once, so it is deduplicated on sg_event_id (the first received copy
    wins). Empty before the first load. -#}
with

source as (
    {{ activation_relation_or_empty('dispatch', 'email_events', [
        ['sg_event_id', dbt.type_string()],
        ['event', dbt.type_string()],
        ['email', dbt.type_string()],
        ['occurred_at', 'timestamp'],
        ['sg_message_id', dbt.type_string()],
        ['dispatch_id', dbt.type_string()],
        ['campaign_id', dbt.type_string()],
        ['customer_id', dbt.type_string()],
        ['reason', dbt.type_string()],
        ['url', dbt.type_string()],
        ['received_at', 'timestamp'],
    ]) }}
),

ranked as (
    select
        source.*,
        row_number() over (
            partition by sg_event_id
            order by received_at, occurred_at
        ) as copy_number
    from source
    where sg_event_id is not null
),

final as (
    select
        sg_event_id,
        lower(trim(event)) as event,
        lower(trim(email)) as email,
        occurred_at,
        sg_message_id,
        dispatch_id,
        campaign_id,
        customer_id,
        reason,
        url,
        received_at
    from ranked
    where copy_number = 1
)

select * from final
