-- Sources. Addresses are set by pgdw.toml ([servers]) after migrations; the Clerk key by
-- [secrets]. Foreign tables are declared explicitly: nothing here connects anywhere.

CREATE SERVER control_plane_server FOREIGN DATA WRAPPER postgres_fdw OPTIONS (fetch_size '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER control_plane_server;
CREATE SCHEMA f;
-- The control plane's tables as they are there: read by the polling path (see
-- 20260101000002_control_plane.sql) and handy for ad hoc comparisons with the replicas.
CREATE FOREIGN TABLE f.organizations (organization_id text, name text, slug text, plan text,
    created_at timestamptz, updated_at timestamptz, deleted_at timestamptz)
  SERVER control_plane_server OPTIONS (schema_name 'public', table_name 'organizations');
CREATE FOREIGN TABLE f.instances (instance_id text, organization_id text, instance_name text,
    entity_type text, environment text, cpu numeric(5,2), memory_gib numeric(6,2), storage_gib integer,
    desired_spec jsonb, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz)
  SERVER control_plane_server OPTIONS (schema_name 'public', table_name 'instances');
CREATE FOREIGN TABLE f.instance_state (id bigint, instance_id text, state text, event_type text,
    created_at timestamptz)
  SERVER control_plane_server OPTIONS (schema_name 'public', table_name 'instance_state');
CREATE FOREIGN TABLE f.a_saas_queue (msg_id bigint, read_ct int, enqueued_at timestamptz,
    archived_at timestamptz, vt timestamptz, message jsonb, headers jsonb)
  SERVER control_plane_server OPTIONS (schema_name 'pgmq', table_name 'a_saas_queue');

CREATE SERVER clerk_server FOREIGN DATA WRAPPER clerk_fdw OPTIONS (rate_limit '100/10s');
CREATE FOREIGN TABLE f.clerk_users (user_id text, first_name text, last_name text, email text,
    created_at bigint, updated_at bigint, last_sign_in_at bigint, attrs jsonb)
  SERVER clerk_server OPTIONS (object 'users');
CREATE FOREIGN TABLE f.clerk_organizations (organization_id text, name text, slug text,
    created_at bigint, updated_at bigint, created_by text, members_count int)
  SERVER clerk_server OPTIONS (object 'organizations');
CREATE FOREIGN TABLE f.clerk_organization_memberships (membership_id text, user_id text,
    organization_id text, role text, created_at bigint)
  SERVER clerk_server OPTIONS (object 'organization_memberships');

CREATE SERVER prometheus_server FOREIGN DATA WRAPPER prometheus_fdw;
CREATE FOREIGN TABLE f.metrics (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8)
  SERVER prometheus_server OPTIONS (object 'metrics', step '5m');
