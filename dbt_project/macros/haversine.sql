{#-
    Great-circle distance in kilometres between two points given in degrees (haversine),
    in plain SQL (radians(), sin(), cos(), asin(), sqrt() exist on DuckDB, Postgres, Spark,
    Trino, Snowflake, BigQuery).
-#}
{% macro haversine_km(latitude_1, longitude_1, latitude_2, longitude_2) -%}
    (2 * 6371.0 * asin(sqrt(
        power(sin((radians({{ latitude_2 }}) - radians({{ latitude_1 }})) / 2), 2)
        + cos(radians({{ latitude_1 }})) * cos(radians({{ latitude_2 }}))
        * power(sin((radians({{ longitude_2 }}) - radians({{ longitude_1 }})) / 2), 2)
    )))
{%- endmacro %}
