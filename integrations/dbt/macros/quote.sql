{#- A SQL string literal of `s` (standard_conforming_strings, PostgreSQL's default since 9.1). -#}
{% macro literal(s) -%}
  '{{ s | string | replace("'", "''") }}'
{%- endmacro %}
