-- Runtime 0 to 1, after the current definitions are installed: what earlier releases left
-- to be moved over with today's functions.

-- Warehouses set up before retired partitions went through pgdw_retired.
DO $$
BEGIN
    IF to_regclass('partman.part_config') IS NOT NULL THEN  -- pgdw_retired: partitions.sql made it
        UPDATE partman.part_config SET retention_schema = 'pgdw_retired'
         WHERE retention IS NOT NULL AND retention_schema IS NULL AND NOT retention_keep_table;
    END IF;
    IF to_regclass('cron.job') IS NOT NULL
       AND EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'pgdw-partman-maintenance' AND command = 'SELECT partman.run_maintenance()') THEN
        PERFORM pgdw.schedule('pgdw-partman-maintenance', '1 hour', 'SELECT pgdw.partition_maintenance()');
    END IF;
END $$;

-- Every registration's pending set and triggers made as today's (a table registered before the
-- pending set existed gets its set, its pending index dropped and the keys of its pending rows
-- recorded; computed rows stay as they are), then what only the old triggers used.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT DISTINCT m.tbl FROM pgdw.materializations m
              WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.tbl) LOOP
        PERFORM pgdw.materialize_install(t);
    END LOOP;
END $$;
DROP FUNCTION IF EXISTS pgdw.materialize_wake();
