-- What BI tools should read, in a schema they list: SQLAlchemy 1.4's PostgreSQL dialect (and so
-- Superset) lists schemas with `nspname NOT LIKE 'pg_%'`, where `_` matches any character, so
-- `pgdw` never appears in their schema pickers. Schema `dw` holds a view of each table and view
-- a BI user reads; re-created at every `pgdw up`, so new columns appear in them.
CREATE SCHEMA IF NOT EXISTS dw;
COMMENT ON SCHEMA dw IS 'pgdw''s run log, job freshness, alerts and replication, as views BI tools can list (schema pgdw is hidden from SQLAlchemy''s schema picker)';
CREATE OR REPLACE VIEW dw.runs AS SELECT * FROM pgdw.runs;
CREATE OR REPLACE VIEW dw.job_freshness AS SELECT * FROM pgdw.job_freshness;
CREATE OR REPLACE VIEW dw.alert_state AS SELECT * FROM pgdw.alert_state;
CREATE OR REPLACE VIEW dw.alert_events AS SELECT * FROM pgdw.alert_events;
CREATE OR REPLACE VIEW dw.replication AS SELECT * FROM pgdw.replication;
CREATE OR REPLACE VIEW dw.replication_tables AS SELECT * FROM pgdw.replication_tables;

-- A metric's series at a panel's resolution (pgdw.metric_series), where BI tools list
-- functions. A Grafana panel's query:
--   SELECT time, labels->>'instance' AS metric, avg
--     FROM dw.metric_series('cpu', '{}', $__timeFrom(), $__timeTo(), $__maxDataPoints)
-- A BI role has no USAGE on schema pgdw, whose functions this calls: it runs as its owner,
-- after checking that the session's own user may read every table it would read (the
-- session user, not the current one: a session can always RESET ROLE to it, never more).
CREATE OR REPLACE FUNCTION dw.metric_series(metric text, labels_filter jsonb, "from" timestamptz,
    "to" timestamptz, max_points int DEFAULT 1000, source regclass DEFAULT NULL)
RETURNS TABLE ("time" timestamptz, labels jsonb, avg double precision, min double precision,
               max double precision, samples bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    src pgdw.metric_series_sources := pgdw.metric_series_source(source);
    tbl regclass;
BEGIN
    FOR tbl IN SELECT src.samples UNION ALL SELECT src.labels
               UNION ALL SELECT m.rollup FROM pgdw.metric_tiers m WHERE m.samples = src.samples LOOP
        IF NOT has_table_privilege(session_user, tbl, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied for table %', tbl
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('dw.metric_series reads it for %s: GRANT SELECT ON %s TO %I', src.samples, tbl, session_user);
        END IF;
    END LOOP;
    RETURN QUERY SELECT * FROM pgdw.metric_series(metric, labels_filter, "from", "to", max_points, src.samples);
END $$;
COMMENT ON FUNCTION dw.metric_series(text, jsonb, timestamptz, timestamptz, int, regclass) IS
    'A metric''s series between two times in at most max_points buckets, read from the coarsest rollup that fits';

-- When a table pgdw loads was last up to date (pgdw.loaded_at), for roles that cannot read
-- schema pgdw: dbt's loaded_at_query (docs/dbt.md).
CREATE OR REPLACE FUNCTION dw.loaded_at(tbl regclass, job text DEFAULT NULL) RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgdw.loaded_at(tbl, job);
$$;
COMMENT ON FUNCTION dw.loaded_at(regclass, text) IS
    'When a table pgdw loads was last up to date with its source, as pgdw status reports it';
