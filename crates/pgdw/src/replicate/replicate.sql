-- Replication: the warehouse's record of each [replicate.NAME] subscription (src/replicate/).
-- `[replicate.NAME]` in pgdw.toml: PostgreSQL's own logical replication from a source database
-- (publication, slot and subscription all named pgdw_NAME). pgdw records what it made, so that
-- it never touches a table it did not create, and samples the source's side (the slot, the
-- walsender's lag) into the warehouse, so that status, panels and alert rules read it in SQL.

-- The name of section `name`'s publication, slot and subscription (as `object_name` in
-- src/replicate/config.rs).
CREATE OR REPLACE FUNCTION pgdw.subscription_name(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'pgdw_' || name $$;

CREATE TABLE IF NOT EXISTS pgdw.subscriptions (
    name         text PRIMARY KEY,
    max_lag      interval NOT NULL DEFAULT '30 seconds',
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.subscriptions IS
    'Each [replicate.NAME] section pgdw set up: subscription pgdw_NAME and its allowed lag';

CREATE TABLE IF NOT EXISTS pgdw.replicas (
    table_schema text NOT NULL,
    table_name   text NOT NULL,
    subscription text NOT NULL,
    replicating  boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name)
);
COMMENT ON TABLE pgdw.replicas IS
    'Warehouse tables pgdw created as replicas of a source''s tables (replicating: still in the publication)';

CREATE TABLE IF NOT EXISTS pgdw.replication_source (
    subscription   text PRIMARY KEY,
    sampled_at     timestamptz NOT NULL,
    lag_bytes      bigint,
    lag            interval,
    retained_bytes bigint,
    wal_status     text,
    problem        text
);
COMMENT ON TABLE pgdw.replication_source IS
    'The latest sample of each source''s side: WAL not yet confirmed, the walsender''s lag, WAL the slot retains, its wal_status';

CREATE TABLE IF NOT EXISTS pgdw.replication_lsns (
    subscription text NOT NULL,
    sampled_at   timestamptz NOT NULL,
    lsn          bigint NOT NULL,
    PRIMARY KEY (subscription, sampled_at)
);
COMMENT ON TABLE pgdw.replication_lsns IS
    'The source''s WAL position at each sample: the oldest one the slot has not confirmed dates the lag';

-- One sample of a source: lag is the age of the oldest sampled source position the
-- subscription has not confirmed yet (0 when it confirmed every one), so a stuck apply worker
-- shows its real delay, with the sampling interval as resolution.
CREATE OR REPLACE FUNCTION pgdw.record_source_sample(name text, current_lsn bigint, confirmed_lsn bigint,
                                                     retained bigint, wal_status text, problem text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_lsn IS NOT NULL THEN
        INSERT INTO pgdw.replication_lsns VALUES (name, clock_timestamp(), current_lsn) ON CONFLICT DO NOTHING;
    END IF;
    DELETE FROM pgdw.replication_lsns l
     WHERE l.subscription = name AND (l.lsn <= confirmed_lsn OR l.sampled_at < now() - interval '7 days');
    INSERT INTO pgdw.replication_source AS s (subscription, sampled_at, lag_bytes, lag, retained_bytes, wal_status, problem)
    VALUES (name, clock_timestamp(), greatest(current_lsn - confirmed_lsn, 0),
            coalesce(clock_timestamp() - (SELECT min(l.sampled_at) FROM pgdw.replication_lsns l WHERE l.subscription = name),
                     interval '0'),
            retained, wal_status, problem)
    ON CONFLICT (subscription) DO UPDATE SET sampled_at = EXCLUDED.sampled_at, lag_bytes = EXCLUDED.lag_bytes,
        lag = EXCLUDED.lag, retained_bytes = EXCLUDED.retained_bytes, wal_status = EXCLUDED.wal_status,
        problem = EXCLUDED.problem;
END $$;
COMMENT ON FUNCTION pgdw.record_source_sample(text, bigint, bigint, bigint, text, text) IS
    'Record a sample of a source (its WAL position, the slot''s confirmed position and retained WAL) and the lag it implies';

CREATE OR REPLACE FUNCTION pgdw.create_subscription(name text, conninfo text, max_lag interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sub text := pgdw.subscription_name(name);
BEGIN
    -- The connection string holds the source's password: it arrives as a parameter, the
    -- statements built here are neither tracked nor logged (see pgdw.set_option), and it is
    -- kept only where PostgreSQL keeps it (pg_subscription.subconninfo, superusers only).
    INSERT INTO pgdw.subscriptions (name, max_lag) VALUES (name, max_lag)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO UPDATE SET max_lag = EXCLUDED.max_lag;
    IF NOT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = sub) THEN
        -- The slot exists already (pgdw creates it on the source): then this may run in a
        -- transaction, and the subscription starts with a copy of every published table.
        -- With a synchronous standby, the apply commits synchronously too: it reports to the
        -- source only what the standby has (src/standby/mod.rs says why).
        EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (create_slot = false, slot_name = %L, copy_data = true, synchronous_commit = %L)',
                       sub, conninfo, sub, sub,
                       CASE WHEN current_setting('synchronous_standby_names') <> '' THEN 'on' ELSE 'off' END);
        RETURN 'created';
    END IF;
    IF (SELECT subconninfo FROM pg_subscription WHERE subname = sub) IS DISTINCT FROM conninfo THEN
        EXECUTE format('ALTER SUBSCRIPTION %I CONNECTION %L', sub, conninfo);
        RETURN 'reconnected';
    END IF;
    RETURN 'unchanged';
EXCEPTION WHEN others THEN
    -- Re-raised from here: the statement (and its password) is not this error's CONTEXT.
    RAISE EXCEPTION 'subscription %: %', sub, replace(SQLERRM, conninfo, '<source>') USING ERRCODE = SQLSTATE;
END $$;
COMMENT ON FUNCTION pgdw.create_subscription(text, text, interval) IS
    'Create subscription pgdw_NAME on the existing slot pgdw_NAME (or change its connection), the connection as a parameter';

CREATE OR REPLACE VIEW pgdw.replication AS
SELECT s.name, sub.subname AS subscription, sub.subenabled AS enabled,
       w.pid IS NOT NULL AS applying,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = sub.oid) AS tables,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = sub.oid AND r.srsubstate = 'r') AS tables_ready,
       st.apply_error_count, st.sync_error_count,
       w.latest_end_time, src.sampled_at, src.lag_bytes, coalesce(src.lag, interval '0') AS lag,
       src.retained_bytes, src.wal_status, src.problem, s.max_lag,
       CASE WHEN sub.oid IS NULL THEN 'MISSING'
            WHEN NOT sub.subenabled THEN 'DISABLED'
            WHEN src.wal_status = 'lost' THEN 'LOST'
            WHEN w.pid IS NULL THEN 'STOPPED'
            WHEN src.lag > s.max_lag THEN 'LAGGING'
            WHEN src.sampled_at < now() - greatest(s.max_lag, interval '1 minute') * 2 THEN 'UNKNOWN'
            WHEN EXISTS (SELECT 1 FROM pg_subscription_rel r WHERE r.srsubid = sub.oid AND r.srsubstate <> 'r') THEN 'COPYING'
            ELSE 'OK' END AS state
  FROM pgdw.subscriptions s
  LEFT JOIN pg_subscription sub ON sub.subname = pgdw.subscription_name(s.name) AND sub.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  LEFT JOIN pg_stat_subscription w ON w.subid = sub.oid AND w.relid IS NULL
  LEFT JOIN pg_stat_subscription_stats st ON st.subid = sub.oid
  LEFT JOIN pgdw.replication_source src ON src.subscription = s.name;
COMMENT ON VIEW pgdw.replication IS
    'Each replicated source: the subscription, its apply worker, tables copied, errors, lag and the source slot; state OK, COPYING, LAGGING, STOPPED, DISABLED, LOST, UNKNOWN or MISSING';

CREATE OR REPLACE VIEW pgdw.replication_tables AS
SELECT s.name, n.nspname AS table_schema, c.relname AS table_name,
       CASE r.srsubstate WHEN 'i' THEN 'initializing' WHEN 'd' THEN 'copying' WHEN 'f' THEN 'copied'
                         WHEN 's' THEN 'synchronized' WHEN 'r' THEN 'ready' ELSE r.srsubstate::text END AS sync_state
  FROM pgdw.subscriptions s
  JOIN pg_subscription sub ON sub.subname = pgdw.subscription_name(s.name)
  JOIN pg_subscription_rel r ON r.srsubid = sub.oid
  JOIN pg_class c ON c.oid = r.srrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW pgdw.replication_tables IS 'Each replicated table and its sync state (initializing, copying, ready)';
