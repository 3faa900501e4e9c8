{{ config(materialized='view') }}
{#-
    One row per customer and channel that cannot be used, with the reason: no email address or
    no email consent (dim_customers: shop/POS consent and unsubscribes), an email that bounced
    or a customer who unsubscribed through a message (dispatch ledger statuses `bounced` and
    `unsubscribed`; email events will arrive there), no loyalty account (cashback cannot be
    credited), nothing staff could recognise the customer by in a store.
-#}
with

customers as (
    select * from {{ ref('dim_customers') }}
),

history as (
    select * from {{ ref('int_campaign_contact_history') }}
),

email_events as (
    select
        customer_id,
        max(case when status = 'unsubscribed' then 1 else 0 end) as has_unsubscribed,
        max(case when status = 'bounced' then 1 else 0 end) as has_bounced
    from history
    where channel = 'email' and status in ('unsubscribed', 'bounced')
    group by customer_id
),

blocks as (
    select
        customers.customer_id,
        'email' as channel,
        case
            when customers.email is null then 'no_email_address'
            when email_events.has_unsubscribed = 1 then 'email_unsubscribed'
            when not customers.has_email_consent then 'no_email_consent'
            when email_events.has_bounced = 1 then 'email_bounced'
        end as block_reason
    from customers
    left join email_events
        on customers.customer_id = email_events.customer_id
    union all
    select
        customer_id,
        'loyalty_cashback' as channel,
        case when not is_loyalty_member then 'not_loyalty_member' end as block_reason
    from customers
    union all
    select
        customer_id,
        'in_store' as channel,
        case when loyalty_account_id is null and phone is null and email is null
            then 'not_recognisable_in_store' end as block_reason
    from customers
),

final as (
    select * from blocks where block_reason is not null
)

select * from final
