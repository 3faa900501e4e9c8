{#-
    Identifier normalisation used by identity resolution (documented in docs/identity.md).
-#}

{#- Email: trimmed, lower case; null when empty or without "@". -#}
{% macro normalize_email(column) -%}
    case
        when lower(trim({{ column }})) like '%_@_%' then lower(trim({{ column }}))
    end
{%- endmacro %}

{#- Only the digits of a text (portable regexp in a dispatched macro). -#}
{% macro digits_only(column) -%}
    {{ return(adapter.dispatch('digits_only', 'omni')(column)) }}
{%- endmacro %}

{% macro default__digits_only(column) -%}
    regexp_replace({{ column }}, '[^0-9]', '', 'g')
{%- endmacro %}

{#-
    Phone to E.164, Spanish numbers by default:
    "+34 600 11 22 33", "600112233", "0034600112233" -> "+34600112233".
    A leading "+" or "00" means an international number; 9 digits are a Spanish national
    number (prefix +34); anything shorter than 9 digits is not a usable phone (null).
-#}
{% macro normalize_phone(column) -%}
    case
        when {{ digits_only(column) }} is null or length({{ digits_only(column) }}) < 9 then null
        when trim({{ column }}) like '+%' then '+' || {{ digits_only(column) }}
        when {{ digits_only(column) }} like '00%'
            then '+' || substr({{ digits_only(column) }}, 3)
        when length({{ digits_only(column) }}) = 9 then '+34' || {{ digits_only(column) }}
        else '+' || {{ digits_only(column) }}
    end
{%- endmacro %}

{#- Social handle: trimmed, lower case, without a leading "@"; null when empty. -#}
{% macro normalize_handle(column) -%}
    nullif(lower(ltrim(trim({{ column }}), '@')), '')
{%- endmacro %}

{#- First given name as a match key: first word, lower case, without accents
    ("Iván Ruiz" and "IVAN" -> "ivan"); null when empty. -#}
{% macro normalize_first_name(column) -%}
    nullif(translate(
        lower(split_part(trim({{ column }}), ' ', 1)),
        'áàâäãéèêëíìîïóòôöõúùûüñç',
        'aaaaaeeeeiiiiooooouuuunc'
    ), '')
{%- endmacro %}
