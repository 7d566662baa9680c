-- The control plane's tables, under their own names: public.organizations, public.instances,
-- public.instance_state and pgmq.a_saas_queue.
--
-- With [replicate.control_plane] in pgdw.toml (the default), `pgdw migrate` creates them as
-- replicas before any migration runs, and changes arrive within a second. Where the source
-- cannot grant REPLICATION, delete that section: each table is then created here as a local
-- copy and polled through postgres_fdw every 5 minutes (`pgdw.sync`, recorded in pgdw.runs).
-- Everything after this migration reads the same names either way.
DO $$
BEGIN
  IF to_regclass('public.organizations') IS NULL THEN
    CREATE TABLE public.organizations (organization_id text PRIMARY KEY, name text NOT NULL,
        slug text, plan text NOT NULL, created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL, deleted_at timestamptz);
    PERFORM pgdw.schedule('organizations', '5 minutes',
      $job$CALL pgdw.run('organizations', 'SELECT * FROM pgdw.sync(''public.organizations'', ''f.organizations'', ''{organization_id}'')')$job$);
  END IF;
  IF to_regclass('public.instances') IS NULL THEN
    CREATE TABLE public.instances (instance_id text PRIMARY KEY, organization_id text NOT NULL,
        instance_name text NOT NULL, entity_type text NOT NULL, environment text NOT NULL,
        cpu numeric(5,2) NOT NULL, memory_gib numeric(6,2) NOT NULL, storage_gib integer NOT NULL,
        desired_spec jsonb NOT NULL, created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL, deleted_at timestamptz);
    PERFORM pgdw.schedule('instances', '5 minutes',
      $job$CALL pgdw.run('instances', 'SELECT * FROM pgdw.sync(''public.instances'', ''f.instances'', ''{instance_id}'', ''updated_at'')')$job$);
  END IF;
  IF to_regclass('public.instance_state') IS NULL THEN
    -- An append-only event log: only new ids are read.
    CREATE TABLE public.instance_state (id bigint PRIMARY KEY, instance_id text NOT NULL,
        state text NOT NULL, event_type text, created_at timestamptz NOT NULL);
    PERFORM pgdw.schedule('instance-state', '5 minutes',
      $job$CALL pgdw.run('instance-state', 'SELECT * FROM pgdw.sync(''public.instance_state'', ''f.instance_state'', ''{id}'', ''id'', deletes => false)')$job$);
  END IF;
  IF to_regclass('pgmq.a_saas_queue') IS NULL THEN
    -- pgmq's archive: append-only too, and kept here after the control plane trims it.
    CREATE SCHEMA IF NOT EXISTS pgmq;
    CREATE TABLE pgmq.a_saas_queue (msg_id bigint PRIMARY KEY, read_ct int NOT NULL,
        enqueued_at timestamptz NOT NULL, archived_at timestamptz NOT NULL, vt timestamptz NOT NULL,
        message jsonb, headers jsonb);
    PERFORM pgdw.schedule('saas-queue-archive', '5 minutes',
      $job$CALL pgdw.run('saas-queue-archive', 'SELECT * FROM pgdw.sync(''pgmq.a_saas_queue'', ''f.a_saas_queue'', ''{msg_id}'', ''msg_id'', deletes => false)')$job$);
  END IF;
END $$;

-- The latest state of an instance is one index probe (replicas get only their primary key).
CREATE INDEX instance_state_latest_idx ON public.instance_state (instance_id, created_at DESC, id DESC);

-- Each instance that exists, with its latest state: the control plane's own instance_vw.
CREATE VIEW instance_vw AS
SELECT i.organization_id, i.instance_id, i.instance_name, i.entity_type, i.created_at,
       i.desired_spec, s.state, i.environment, greatest(i.updated_at, s.created_at) AS updated_at
  FROM public.instances i
  LEFT JOIN LATERAL (
    SELECT st.state, st.created_at FROM public.instance_state st
     WHERE st.instance_id = i.instance_id
     ORDER BY st.created_at DESC, st.id DESC LIMIT 1) s ON true
 WHERE i.deleted_at IS NULL;

-- The names the answers, dashboards and alerts were written against.
CREATE VIEW ingested_clusters AS SELECT * FROM instance_vw;
CREATE VIEW saas_queue_archive AS SELECT * FROM pgmq.a_saas_queue;
