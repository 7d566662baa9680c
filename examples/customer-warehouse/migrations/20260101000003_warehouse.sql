-- Local copies of Clerk and the metrics, refreshed by the jobs of the next migration.

CREATE TABLE clerk_users (user_id text PRIMARY KEY, first_name text, last_name text, email text,
    created_at bigint, updated_at bigint, last_sign_in_at bigint, attrs jsonb);
CREATE TABLE clerk_organizations (organization_id text PRIMARY KEY, name text, slug text,
    created_at bigint, updated_at bigint, created_by text, members_count int);
CREATE TABLE clerk_organization_memberships (membership_id text PRIMARY KEY, user_id text,
    organization_id text, role text, created_at bigint);

CREATE TABLE metric_labels (id bigserial PRIMARY KEY, name text NOT NULL, labels jsonb NOT NULL,
    UNIQUE (name, labels));
CREATE TABLE metric_values (label_id bigint NOT NULL REFERENCES metric_labels (id),
    time bigint NOT NULL, value float8 NOT NULL, UNIQUE (label_id, time))
  PARTITION BY RANGE (time);
SELECT pgdw.partition_daily('public.metric_values', 'time', retention => '30 days');
