{#-
    One row per contact_id: the dispatch ledger's contacts with their status refined by the
    provider's events (email: SendGrid events whose dispatch_id is the contact id).
    A contact the ledger reports `sent` (or `queued`: an attempt awaiting reconciliation that
    the provider has events for) takes the most advanced event: delivered < opened < clicked,
    and bounced (bounce, dropped), unsubscribed (unsubscribe, group_unsubscribe) and
    spamreport override them (spamreport > unsubscribed > bounced). `failed` and `cancelled`
    stay as they are. An event without a contact id cannot be attached and is left out.
-#}
with

contacts as (
    select * from {{ ref('stg_dispatch__contacts') }}
),

events as (
    select * from {{ ref('stg_dispatch__email_events') }}
    where dispatch_id is not null
),

contact_events as (
    select
        dispatch_id as contact_id,
        min(case when event = 'delivered' then occurred_at end) as delivered_at,
        min(case when event = 'open' then occurred_at end) as first_opened_at,
        min(case when event = 'click' then occurred_at end) as first_clicked_at,
        min(case when event in ('bounce', 'dropped') then occurred_at end) as bounced_at,
        min(case when event in ('unsubscribe', 'group_unsubscribe') then occurred_at end)
            as unsubscribed_at,
        min(case when event = 'spamreport' then occurred_at end) as spam_reported_at,
        max(occurred_at) as last_event_at,
        count(*) as event_count
    from events
    group by dispatch_id
),

final as (
    select
        contacts.contact_id,
        contacts.campaign_id,
        contacts.customer_id,
        contacts.trigger_key,
        contacts.channel,
        case
            when contacts.ledger_status not in ('sent', 'queued')
                or contact_events.contact_id is null then contacts.ledger_status
            when contact_events.spam_reported_at is not null then 'spamreport'
            when contact_events.unsubscribed_at is not null then 'unsubscribed'
            when contact_events.bounced_at is not null then 'bounced'
            when contact_events.first_clicked_at is not null then 'clicked'
            when contact_events.first_opened_at is not null then 'opened'
            when contact_events.delivered_at is not null then 'delivered'
            else 'sent'
        end as status,
        contacts.ledger_status,
        contacts.ledger_state,
        contacts.contacted_at,
        contacts.is_transactional,
        contacts.estimated_cost_eur,
        contacts.offer_id,
        contacts.offer_code,
        contacts.amount_eur,
        contacts.scheduled_send_at,
        contacts.sent_at,
        contacts.provider_message_id,
        contacts.attempts,
        contacts.last_error,
        contact_events.delivered_at,
        contact_events.first_opened_at,
        contact_events.first_clicked_at,
        contact_events.bounced_at,
        contact_events.unsubscribed_at,
        contact_events.spam_reported_at,
        contact_events.last_event_at,
        coalesce(contact_events.event_count, 0) as event_count,
        false as is_holdout
    from contacts
    left join contact_events
        on contacts.contact_id = contact_events.contact_id
)

select * from final
