-- Partitions: daily partitions and retention through pg_partman.

-- Where pg_partman's retention moves expired partitions (pgdw.partition_daily) until
-- pgdw.partition_maintenance drops them.
CREATE SCHEMA IF NOT EXISTS pgdw_retired;

CREATE OR REPLACE FUNCTION pgdw.partition_daily(
    parent regclass, control text, retention interval DEFAULT '30 days', epoch text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    typ  text;
    name text;  -- schema-qualified, as pg_partman wants it
BEGIN
    SELECT format('%I.%I', n.nspname, c.relname) INTO name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
    SELECT format_type(atttypid, NULL) INTO typ FROM pg_attribute
     WHERE attrelid = parent AND attname = control AND NOT attisdropped;
    IF typ IS NULL THEN
        RAISE EXCEPTION 'pgdw: % has no column %', parent, control;
    END IF;
    IF typ IN ('bigint', 'integer') AND partition_daily.epoch IS NULL THEN
        -- The seeds call create_parent on a bigint column without p_epoch, which pg_partman
        -- refuses; an integer time column is epoch seconds unless told otherwise.
        partition_daily.epoch := 'seconds';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = name) THEN
        PERFORM partman.create_parent(name, control, 'native', 'daily',
                                      p_epoch := coalesce(partition_daily.epoch, 'none'), p_premake := 2,
                                      -- Partitions back to the retention horizon, so that a
                                      -- backfill does not land in the default partition.
                                      p_start_partition := to_char(now() - partition_daily.retention, 'YYYY-MM-DD'));
    END IF;
    -- Expired partitions are detached and moved to schema pgdw_retired (above), then dropped
    -- by pgdw.partition_maintenance: pg_partman 4.7 drops them attached otherwise, and a table
    -- dropped while attached takes its rows away unseen (a rollup of it would have to
    -- recompute every group; detached, its keys are read first).
    UPDATE partman.part_config SET retention = partition_daily.retention::text, retention_keep_table = false,
                                   retention_schema = 'pgdw_retired', infinite_time_partitions = true
     WHERE parent_table = name;
    PERFORM pgdw.schedule('pgdw-partman-maintenance', '1 hour', 'SELECT pgdw.partition_maintenance()');
END $$;

-- pg_partman's maintenance (new partitions ahead, expired ones detached into pgdw_retired),
-- then the expired ones dropped. Returns how many were dropped.
CREATE OR REPLACE FUNCTION pgdw.partition_maintenance() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t       regclass;
    dropped int := 0;
BEGIN
    -- The function, not the procedure: no transaction control needed inside a cron job.
    PERFORM partman.run_maintenance();
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = to_regnamespace('pgdw_retired') AND c.relkind IN ('r', 'p') LOOP
        EXECUTE format('DROP TABLE %s', t);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;
COMMENT ON FUNCTION pgdw.partition_maintenance() IS
    'pg_partman''s maintenance, then the partitions it retired dropped (the hourly pgdw-partman-maintenance job)';

COMMENT ON FUNCTION pgdw.partition_daily(regclass, text, interval, text) IS
    'Daily partitions by pg_partman with retention that drops old partitions, maintained hourly';

-- Published SQL for pg_partman calls it unqualified (`SELECT create_parent(...)`, `UPDATE
-- part_config ...`), as where it lives in `public`. Here it keeps its own schema, which new
-- sessions of the warehouse find after public; a search_path the database already has is its
-- owner's choice and stays.
DO $$
BEGIN
    IF to_regnamespace('partman') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
         WHERE d.datname = current_database() AND s.setrole = 0
           AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'search\_path=%')) THEN
        EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, partman', current_database());
    END IF;
END $$;
