{#- Comments, mentions and direct messages in one table (`activity_kind`), latest version of
    each. The three Graph endpoints share one shape. -#}
{%- set kinds = {'comment': 'comments', 'mention': 'mentions', 'message': 'messages'} %}
with

{% for kind, table in kinds.items() %}
{{ table }} as (
    {{ raw_source('social', table, [
        'id', 'created_time', 'updated_time', 'from__id', 'from__username', 'message',
        'post_id', 'sentiment', 'sentiment_score',
    ]) }}
),
{% endfor %}

unioned as (
    {% for kind, table in kinds.items() %}
    select
        '{{ kind }}' as activity_kind,
        {{ to_text('id') }} as source_activity_id,
        {{ to_text('from__id') }} as social_user_id,
        {{ to_text('from__username') }} as username,
        {{ to_text('post_id') }} as post_id,
        {{ to_text('message') }} as message_text,
        {{ to_text('sentiment') }} as sentiment,
        {{ to_float('sentiment_score') }} as sentiment_score,
        {{ to_utc_timestamp('created_time') }} as created_at,
        {{ to_utc_timestamp('updated_time') }} as updated_at,
        {{ dlt_loaded_at() }} as loaded_at,
        _dlt_id as raw_row_id,
        _dlt_load_id as raw_load_id
    from {{ table }}
    where id is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

latest as (
    {{ latest_version(
        'unioned', 'activity_kind, source_activity_id',
        'updated_at desc nulls last, raw_load_id desc, raw_row_id') }}
),

final as (
    select
        {{ dbt.concat(["activity_kind", "':'", "source_activity_id"]) }} as activity_id,
        activity_kind,
        source_activity_id,
        social_user_id,
        username,
        post_id,
        message_text,
        sentiment,
        sentiment_score,
        created_at,
        updated_at,
        loaded_at
    from latest
)

select * from final
