{#-
    Why someone got nothing (or not on a channel): one row per campaign, customer and scope.
    scope `contact`: the customer gets nothing from the campaign in this run (channel `all`;
    the reason from int_campaign_eligibility, or `holdout` for the control group).
    scope `channel`: the customer is contacted, but not on this channel of the campaign
    (no_email_consent, not_loyalty_member, no_store... or other_channel_preferred).
-#}
with

decisions as (
    select * from {{ ref('int_campaign_eligibility') }}
),

contact_level as (
    select
        campaign_id, customer_id, trigger_key,
        'contact' as scope,
        'all' as channel,
        case when suppression_reason is not null then suppression_reason else 'holdout' end as reason
    from decisions
    where suppression_reason is not null or is_holdout
),

channel_level as (
    select campaign_id, customer_id, trigger_key, 'channel' as scope, 'email' as channel,
        case when email_check = 'ok' then 'other_channel_preferred' else email_check end as reason
    from decisions
    where is_in_audience and not is_holdout and email_check is not null and not sends_email
    union all
    select campaign_id, customer_id, trigger_key, 'channel', 'loyalty_cashback',
        loyalty_cashback_check
    from decisions
    where is_in_audience and not is_holdout and loyalty_cashback_check is not null
        and not sends_loyalty_cashback
    union all
    select campaign_id, customer_id, trigger_key, 'channel', 'in_store',
        case when in_store_check = 'ok' then 'other_channel_preferred' else in_store_check end
    from decisions
    where is_in_audience and not is_holdout and in_store_check is not null and not sends_in_store
),

final as (
    select * from contact_level
    union all
    select * from channel_level
)

select * from final
