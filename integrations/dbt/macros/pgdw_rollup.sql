{#-
  materialized='pgdw_rollup': the model's compiled query registered with pgdw.rollup (through
  dw.rollup, which a transformation role may call; docs/dbt.md), under the model's name in the
  model's schema. pgdw's workers then keep it exact from the source's changes, whatever their
  age, between dbt runs.

    {{ config(materialized='pgdw_rollup', source='shop.orders',
              keys=['customer_id', "date_trunc('day', created_at)"]) }}

  keys: the group keys as expressions over one row of the source, the query's first columns
  in order. source: the table whose changes are captured; when left out, the model's only
  source() or ref(). An unchanged model is a no-op; a changed query rebuilds; --full-refresh
  drops and rebuilds.
-#}
{% materialization pgdw_rollup, adapter='postgres' %}
  {%- set keys = config.require('keys') -%}
  {%- if keys is string or keys | length == 0 -%}
    {{ exceptions.raise_compiler_error("pgdw_rollup: keys must be a list of expressions over one row of the source, for example ['customer_id', \"date_trunc('day', created_at)\"]") }}
  {%- endif -%}
  {%- set source = config.get('source') or pgdw.rollup_only_input() -%}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set existing = load_cached_relation(this) -%}
  {%- set rebuild = should_full_refresh() and existing is not none -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {#- A relation of that name that pgdw does not keep (the model was a table or a view before)
      is dbt's to replace. -#}
  {%- if existing is not none and not pgdw.is_rollup(existing) -%}
    {{ adapter.drop_relation(existing) }}
    {%- set rebuild = false -%}
  {%- endif -%}

  {% call statement('main', fetch_result=True) -%}
    select dw.rollup(
      {{ pgdw.literal(target_relation.include(database=false)) }},
      {{ pgdw.literal(sql) }},
      {{ pgdw.literal(source) }}::regclass,
      array[{% for k in keys %}{{ pgdw.literal(k) }}{% if not loop.last %}, {% endif %}{% endfor %}]::text[],
      {{ 'true' if rebuild else 'false' }}) as pgdw
  {%- endcall %}
  {{ log(load_result('main').table.columns['pgdw'].values()[0], info=True) }}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- Whether pgdw keeps `relation` as a rollup. -#}
{% macro is_rollup(relation) -%}
  {%- set found = run_query("select dw.is_rollup(" ~ pgdw.literal(relation.include(database=false)) ~ ")") -%}
  {{ return(found.columns[0].values()[0]) }}
{%- endmacro %}

{#- The model's only input, a source() or a ref(), as schema.table. -#}
{% macro rollup_only_input() -%}
  {%- set nodes = model.depends_on.nodes -%}
  {%- if nodes | length != 1 -%}
    {{ exceptions.raise_compiler_error("pgdw_rollup: " ~ model.name ~ " reads " ~ (nodes | length) ~ " models or sources; name the one whose changes are captured with config(source='schema.table')") }}
  {%- endif -%}
  {%- set id = nodes[0] -%}
  {%- set node = graph.sources[id] if id.startswith('source.') else graph.nodes[id] -%}
  {%- set name = node.identifier if id.startswith('source.') else (node.alias or node.name) -%}
  {{ return(adapter.quote(node.schema) ~ '.' ~ adapter.quote(name)) }}
{%- endmacro %}
