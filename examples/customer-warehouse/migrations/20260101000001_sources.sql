-- Sources. Addresses are set by pgdw.toml ([servers]) after migrations; the Clerk key by
-- [secrets]. Foreign tables are declared explicitly: nothing here connects anywhere.

CREATE SERVER control_plane_server FOREIGN DATA WRAPPER postgres_fdw OPTIONS (fetch_size '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER control_plane_server;
CREATE SCHEMA f;
CREATE FOREIGN TABLE f.organizations (organization_id text, name text, slug text, plan text,
    created_at timestamptz, updated_at timestamptz, deleted_at timestamptz)
  SERVER control_plane_server OPTIONS (schema_name 'public', table_name 'organizations');
CREATE FOREIGN TABLE f.instance_vw (organization_id text, instance_id text, instance_name text,
    entity_type text, created_at timestamptz, desired_spec jsonb, state text, environment text,
    updated_at timestamptz)
  SERVER control_plane_server OPTIONS (schema_name 'public', table_name 'instance_vw');
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
