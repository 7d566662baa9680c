-- Database health (run again at every `pgdw up`): pgdw.doctor(), the checks `pgdw doctor`
-- prints, and the views and history behind the example's database dashboard.
--
-- The functions that read other sessions' activity and statements are SECURITY DEFINER (a
-- dashboard's read-only role sees only its own otherwise) and return statement texts only as
-- pg_stat_statements normalized them: constants become $1, so no literal a session sent
-- reaches a dashboard. EXECUTE is revoked from PUBLIC; pgdw serve grants it to its reader.

CREATE TABLE IF NOT EXISTS pgdw.health_db_samples (
    taken_at           timestamptz PRIMARY KEY,
    wal_lsn            pg_lsn NOT NULL,
    checkpoints_timed  bigint NOT NULL,
    checkpoints_req    bigint NOT NULL,
    buffers_checkpoint bigint NOT NULL,
    blks_hit           bigint NOT NULL,
    blks_read          bigint NOT NULL,
    xact_commit        bigint NOT NULL,
    database_bytes     bigint NOT NULL
);
COMMENT ON TABLE pgdw.health_db_samples IS 'The database''s counters at each pgdw.health_sample(), for trends';

CREATE TABLE IF NOT EXISTS pgdw.health_table_samples (
    taken_at    timestamptz NOT NULL,
    table_name  text NOT NULL,
    total_bytes bigint NOT NULL,
    live_tuples bigint NOT NULL,
    dead_tuples bigint NOT NULL,
    PRIMARY KEY (taken_at, table_name)
);
COMMENT ON TABLE pgdw.health_table_samples IS 'The 50 largest tables (partitions summed into their parent) at each pgdw.health_sample()';

-- A table and its partitions, summed under the root's name.
CREATE OR REPLACE VIEW pgdw.health_tables AS
SELECT coalesce(pg_partition_root(t.relid), t.relid)::regclass::text AS table_name,
       sum(pg_total_relation_size(t.relid))::bigint AS total_bytes,
       sum(t.n_live_tup)::bigint AS live_tuples, sum(t.n_dead_tup)::bigint AS dead_tuples,
       max(greatest(t.last_vacuum, t.last_autovacuum)) AS last_vacuum,
       max(greatest(t.last_analyze, t.last_autoanalyze)) AS last_analyze
  FROM pg_stat_user_tables t
 GROUP BY 1;
COMMENT ON VIEW pgdw.health_tables IS 'Each table (partitions summed into their parent): size, live and dead rows, last vacuum and analyze';

CREATE OR REPLACE FUNCTION pgdw.health_sample(keep interval DEFAULT '30 days') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pgdw.health_db_samples
    SELECT now(), pg_current_wal_lsn(), b.checkpoints_timed, b.checkpoints_req, b.buffers_checkpoint,
           d.blks_hit, d.blks_read, d.xact_commit, pg_database_size(current_database())
      FROM pg_stat_bgwriter b, pg_stat_database d WHERE d.datname = current_database()
    ON CONFLICT DO NOTHING;
    INSERT INTO pgdw.health_table_samples
    SELECT now(), table_name, total_bytes, live_tuples, dead_tuples FROM pgdw.health_tables
     ORDER BY total_bytes DESC LIMIT 50
    ON CONFLICT DO NOTHING;
    DELETE FROM pgdw.health_db_samples WHERE taken_at < now() - keep;
    DELETE FROM pgdw.health_table_samples WHERE taken_at < now() - keep;
END $$;
COMMENT ON FUNCTION pgdw.health_sample(interval) IS
    'Record the database''s counters and its largest tables (schedule it: the database dashboard charts them)';

-- Who a statement comes from, where pgdw can tell: its panels, alert rules and jobs label
-- their statements with a comment; its worker and runtime call pgdw's own functions.
CREATE OR REPLACE FUNCTION pgdw.statement_label(query text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN query ~ '/\* pgdw (panel|alert|job): ' THEN substring(query FROM '/\* pgdw ((panel|alert|job): [^*]*?) \*/')
        WHEN query ~* 'pgdw\.run\(' THEN 'pgdw jobs (pg_cron, pgdw.run)'
        WHEN query ~* 'pgdw\.rollup_(run|schedule|done)' THEN 'pgdw worker (rollups)'
        WHEN query ~* 'pgdw\.materialize_' THEN 'pgdw worker (materialized columns)'
        WHEN query ~* 'pgdw\.(claim_tasks|complete_tasks|dispatch|renew_leases|queue_|worker_seen)' THEN 'pgdw worker (queue)'
        WHEN query ~* 'pgdw\.sync\(' THEN 'pgdw.sync'
    END;
$$;

-- pg_stat_statements of this database, or nothing when the extension is not installed.
CREATE OR REPLACE FUNCTION pgdw.health_statements()
RETURNS TABLE (queryid bigint, label text, query text, calls bigint, total_ms float8, mean_ms float8,
               rows bigint, share float8)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pss text := (SELECT format('%I.pg_stat_statements', n.nspname) FROM pg_extension e
                   JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements');
BEGIN
    IF pss IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.queryid, pgdw.statement_label(s.query), s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows,
                s.total_exec_time / nullif(sum(s.total_exec_time) OVER (), 0)
           FROM %s s WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())', pss);
END $$;
COMMENT ON FUNCTION pgdw.health_statements() IS
    'pg_stat_statements of this database (normalized texts), with who runs each where pgdw can tell';

-- Every other client session: what it does and waits for, how long, who blocks it. Its query
-- is pg_stat_statements' normalized text of it (by query_id), never the literal text.
CREATE OR REPLACE FUNCTION pgdw.health_activity()
RETURNS TABLE (pid int, usename text, application_name text, state text, wait_event_type text,
               wait_event text, xact_age interval, query_age interval, state_age interval,
               backend_xid_age int, backend_xmin_age int, blocked_by int[], query text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- pg_stat_statements read once, not once a session.
    RETURN QUERY
    WITH s AS MATERIALIZED (SELECT DISTINCT ON (st.queryid) st.queryid, st.query FROM pgdw.health_statements() st)
    SELECT a.pid, a.usename::text, a.application_name, a.state, a.wait_event_type, a.wait_event,
           now() - a.xact_start, now() - a.query_start, now() - a.state_change,
           age(a.backend_xid), age(a.backend_xmin),
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}' END,
           s.query
      FROM pg_stat_activity a LEFT JOIN s ON s.queryid = a.query_id
     WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
       AND a.datname = current_database();
END $$;
COMMENT ON FUNCTION pgdw.health_activity() IS
    'Each other client session: state, waits, ages, blockers, normalized query';

CREATE OR REPLACE VIEW pgdw.health_connections AS
SELECT coalesce(state, 'unknown') AS state, coalesce(nullif(application_name, ''), '(none)') AS application,
       count(*) AS sessions
  FROM pgdw.health_activity() GROUP BY 1, 2;

CREATE OR REPLACE VIEW pgdw.health_blocked AS
WITH a AS MATERIALIZED (SELECT * FROM pgdw.health_activity())
SELECT w.pid, w.application_name, w.query_age AS waiting, w.query, bp.pid AS blocker,
       b.application_name AS blocker_application, b.state AS blocker_state, b.xact_age AS blocker_xact_age,
       b.query AS blocker_query, w.usename
  FROM a w
  CROSS JOIN LATERAL unnest(w.blocked_by) bp (pid)
  LEFT JOIN a b ON b.pid = bp.pid;
COMMENT ON VIEW pgdw.health_blocked IS 'Sessions waiting for a lock, and each session holding it';

CREATE OR REPLACE VIEW pgdw.health_cache AS
SELECT round(100.0 * blks_hit / nullif(blks_hit + blks_read, 0), 2) AS hit_percent, blks_hit, blks_read
  FROM pg_stat_database WHERE datname = current_database();

-- Per hour, from the samples: WAL written, checkpoints (timed and requested), cache hits.
CREATE OR REPLACE VIEW pgdw.health_hourly AS
SELECT date_trunc('hour', taken_at) AS hour,
       sum(wal_bytes)::bigint AS wal_bytes, sum(timed)::bigint AS checkpoints_timed,
       sum(requested)::bigint AS checkpoints_requested,
       round(100.0 * sum(hit) / nullif(sum(hit) + sum(read), 0), 2) AS cache_hit_percent
  FROM (SELECT taken_at,
               greatest(wal_lsn - lag(wal_lsn) OVER w, 0) AS wal_bytes,
               greatest(checkpoints_timed - lag(checkpoints_timed) OVER w, 0) AS timed,
               greatest(checkpoints_req - lag(checkpoints_req) OVER w, 0) AS requested,
               greatest(blks_hit - lag(blks_hit) OVER w, 0) AS hit,
               greatest(blks_read - lag(blks_read) OVER w, 0) AS read
          FROM pgdw.health_db_samples WINDOW w AS (ORDER BY taken_at)) d
 GROUP BY 1;
COMMENT ON VIEW pgdw.health_hourly IS 'WAL written, checkpoints and cache hit ratio per hour, from pgdw.health_sample()';

-- Column order: the bytes a row's fixed-width columns take with `cols` in this order
-- (alignment padding included); variable-width ones at their average width (pg_stats),
-- unaligned below 127 bytes (a short varlena header has no alignment).
CREATE OR REPLACE FUNCTION pgdw.row_width(tbl regclass, cols text[]) RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
    off  int := 0;
    al   int;
    c    record;
BEGIN
    FOR c IN SELECT t.typlen, t.typalign, s.avg_width
               FROM unnest(cols) WITH ORDINALITY u (name, i)
               JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = u.name
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_stats s ON s.schemaname = (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = tbl)
                                   AND s.tablename = (SELECT relname FROM pg_class WHERE oid = tbl) AND s.attname = u.name
              ORDER BY u.i LOOP
        al := CASE c.typalign WHEN 'd' THEN 8 WHEN 'i' THEN 4 WHEN 's' THEN 2 ELSE 1 END;
        IF c.typlen > 0 THEN
            off := (off + al - 1) / al * al + c.typlen;
        ELSIF coalesce(c.avg_width, 8) < 127 THEN
            off := off + coalesce(c.avg_width, 8);
        ELSE
            off := (off + al - 1) / al * al + c.avg_width;
        END IF;
    END LOOP;
    RETURN off;
END $$;

-- The checks. Each finding: the check, its severity (info, warning, critical), the object, the
-- figure measured (text, and a number where one says it), and the advice: the statement or
-- setting to change. Thresholds are arguments; `pgdw doctor` passes its options.
-- What a check of pgdw.doctor returns: one row a finding.
DO $$
BEGIN
    IF to_regtype('pgdw.doctor_finding') IS NULL THEN
        CREATE TYPE pgdw.doctor_finding AS (check_name text, severity text, object text, figure text, value float8, advice text);
    END IF;
END $$;

-- pgdw.doctor's checks, one function each (called only by pgdw.doctor, as its owner: their
-- EXECUTE is revoked from PUBLIC). Each returns its findings, none when all is well.
CREATE OR REPLACE FUNCTION pgdw.doctor_statements() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Statements: the top five by total time and by mean time.
    FOR r IN (SELECT 'top_statement_total_time' AS c, s.* FROM pgdw.health_statements() s
               WHERE s.query NOT LIKE '%pgdw.doctor(%' ORDER BY s.total_ms DESC LIMIT 5)
             UNION ALL
             (SELECT 'top_statement_mean_time', s.* FROM pgdw.health_statements() s
               WHERE s.query NOT LIKE '%pgdw.doctor(%' ORDER BY s.mean_ms DESC LIMIT 5) LOOP
        f.check_name := r.c; f.severity := 'info';
        f.object := format('query %s%s: %s', r.queryid, coalesce(' (' || r.label || ')', ''),
                         left(regexp_replace(r.query, '\s+', ' ', 'g'), 160));
        f.figure := format('%s ms total (%s%% of all statements), %s calls, %s ms mean, %s rows',
                         round(r.total_ms::numeric, 1), round(100 * coalesce(r.share, 0)::numeric, 1), r.calls,
                         round(r.mean_ms::numeric, 2), r.rows);
        f.value := CASE WHEN r.c = 'top_statement_total_time' THEN r.total_ms ELSE r.mean_ms END;
        f.advice := 'EXPLAIN (ANALYZE, BUFFERS) it: an index on what it filters or joins by, or a rollup it can read instead (pgdw.rollup), takes the most time off';
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_dead_tuples() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Dead tuples, bloat, vacuum and analyze; autovacuum that cannot keep up.
    FOR r IN SELECT t.relid::regclass::text AS name, t.n_live_tup AS live, t.n_dead_tup AS dead,
                    pg_relation_size(t.relid) AS bytes, greatest(t.last_vacuum, t.last_autovacuum) AS vacuumed,
                    greatest(t.last_analyze, t.last_autoanalyze) AS analyzed,
                    coalesce((SELECT o.option_value FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'autovacuum_enabled'), 'true') AS av,
                    current_setting('autovacuum_vacuum_threshold')::float8 + current_setting('autovacuum_vacuum_scale_factor')::float8 * greatest(c.reltuples, 0) AS av_threshold
               FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
              WHERE t.n_dead_tup >= 1000 AND t.n_dead_tup > 0.2 * (t.n_live_tup + t.n_dead_tup) LOOP
        f.check_name := 'table_dead_tuples';
        f.severity := CASE WHEN r.dead > 0.5 * (r.live + r.dead) AND r.bytes > 1073741824 THEN 'critical' ELSE 'warning' END;
        f.object := r.name;
        f.value := 100.0 * r.dead / (r.live + r.dead);
        f.figure := format('%s%% dead (%s dead, %s live rows; ~%s of %s is dead space); last vacuum %s, last analyze %s%s',
                         round(f.value::numeric, 1), r.dead, r.live, pg_size_pretty((r.bytes * r.dead / (r.live + r.dead))::bigint),
                         pg_size_pretty(r.bytes), coalesce(to_char(r.vacuumed, 'YYYY-MM-DD HH24:MI'), 'never'),
                         coalesce(to_char(r.analyzed, 'YYYY-MM-DD HH24:MI'), 'never'),
                         CASE WHEN r.av = 'false' THEN '; autovacuum is disabled on it'
                              WHEN r.dead > r.av_threshold THEN '; past autovacuum''s threshold: it is not keeping up' ELSE '' END);
        f.advice := format('VACUUM (ANALYZE) %s;', r.name)
               || CASE WHEN r.av = 'false' THEN format(' ALTER TABLE %s RESET (autovacuum_enabled);', r.name)
                       ELSE format(' if it keeps coming back: ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.01); and look for long transactions (xmin_horizon)', r.name) END;
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_unused_indexes(min_index_bytes bigint) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record; f pgdw.doctor_finding;
    reset_at timestamptz := (SELECT coalesce(stats_reset, pg_postmaster_start_time()) FROM pg_stat_database WHERE datname = current_database());
BEGIN
    -- Unused indexes: no scan since the statistics were reset, large enough to matter, not
    -- enforcing a constraint. A partitioned index counts its partitions' scans.
    FOR r IN WITH idx AS (
                 SELECT i.indexrelid, i.indrelid, c.relkind,
                        CASE WHEN c.relkind = 'I' THEN (SELECT sum(coalesce(pg_stat_get_numscans(p.relid), 0)) FROM pg_partition_tree(i.indexrelid) p)
                             ELSE pg_stat_get_numscans(i.indexrelid) END AS scans,
                        CASE WHEN c.relkind = 'I' THEN (SELECT sum(pg_relation_size(p.relid)) FROM pg_partition_tree(i.indexrelid) p)
                             ELSE pg_relation_size(i.indexrelid) END AS bytes
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
                  WHERE NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
                    AND NOT t.relispartition AND t.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                    AND t.relnamespace::regnamespace::text NOT LIKE 'pg\_toast%')
             SELECT * FROM idx WHERE scans = 0 AND bytes >= min_index_bytes LOOP
        f.check_name := 'unused_index'; f.severity := 'warning';
        f.object := r.indexrelid::regclass::text;
        f.value := r.bytes;
        f.figure := format('0 scans since %s, %s, on %s', to_char(reset_at, 'YYYY-MM-DD HH24:MI'), pg_size_pretty(r.bytes::bigint), r.indrelid::regclass);
        f.advice := format('DROP INDEX %s%s; (every write to %s maintains it)',
                         CASE WHEN r.relkind = 'I' THEN '' ELSE 'CONCURRENTLY ' END, r.indexrelid::regclass, r.indrelid::regclass);
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_duplicate_indexes() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Duplicate indexes: the same table, columns, expressions, predicate and operator classes.
    FOR r IN SELECT i.indrelid, array_agg(i.indexrelid::regclass::text ORDER BY i.indisprimary DESC, i.indisunique DESC, i.indexrelid) AS same
               FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
              WHERE t.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) AND NOT t.relispartition
              GROUP BY i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text,
                       coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')
             HAVING count(*) > 1 LOOP
        f.check_name := 'duplicate_index'; f.severity := 'warning';
        f.object := array_to_string(r.same[2:], ', ');
        f.value := cardinality(r.same) - 1;
        f.figure := format('the same as %s on %s', r.same[1], r.indrelid::regclass);
        f.advice := (SELECT string_agg(format('DROP INDEX %s;', x), ' ') FROM unnest(r.same[2:]) x);
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_sessions(idle_in_transaction interval, long_query interval) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Sessions: blocked ones and their blockers, long queries, idle transactions.
    FOR r IN SELECT * FROM pgdw.health_blocked LOOP
        f.check_name := 'blocked_session';
        f.severity := CASE WHEN r.waiting > interval '5 minutes' THEN 'critical' ELSE 'warning' END;
        f.object := format('pid %s (%s)', r.pid, coalesce(nullif(r.application_name, ''), r.usename));
        f.value := extract(epoch FROM r.waiting);
        f.figure := format('waiting %s for a lock held by pid %s (%s, %s, transaction open %s%s)',
                         date_trunc('second', r.waiting), r.blocker, coalesce(nullif(r.blocker_application, ''), '-'),
                         coalesce(r.blocker_state, '?'), coalesce(date_trunc('second', r.blocker_xact_age)::text, '?'),
                         coalesce('; its last statement: ' || left(r.blocker_query, 120), ''));
        f.advice := CASE WHEN r.blocker_state LIKE 'idle in transaction%'
                       THEN format('SELECT pg_terminate_backend(%s); -- the blocker is idle in its transaction', r.blocker)
                       ELSE format('SELECT pg_cancel_backend(%s); -- or wait for it', r.blocker) END;
        RETURN NEXT f;
    END LOOP;
    FOR r IN SELECT * FROM pgdw.health_activity() a
              WHERE (a.state = 'active' AND a.query_age > long_query AND a.wait_event_type IS DISTINCT FROM 'Lock')
                 OR (a.state LIKE 'idle in transaction%' AND a.state_age > idle_in_transaction) LOOP
        IF r.state = 'active' THEN
            f.check_name := 'long_running_query';
            f.advice := format('SELECT pg_cancel_backend(%s); and give its role a limit: ALTER ROLE %I SET statement_timeout = ''%s''',
                             r.pid, r.usename, long_query);
            f.value := extract(epoch FROM r.query_age);
            f.figure := format('running for %s%s', date_trunc('second', r.query_age), coalesce(': ' || left(r.query, 160), ''));
        ELSE
            f.check_name := 'idle_in_transaction';
            f.advice := format('SELECT pg_terminate_backend(%s); and end such sessions for good: ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''5min''',
                             r.pid, current_database());
            f.value := extract(epoch FROM r.state_age);
            f.figure := format('idle in its transaction for %s (open %s)%s', date_trunc('second', r.state_age),
                             date_trunc('second', r.xact_age), coalesce('; its last statement: ' || left(r.query, 160), ''));
        END IF;
        f.severity := CASE WHEN r.xact_age > interval '1 hour' THEN 'critical' ELSE 'warning' END;
        f.object := format('pid %s (%s)', r.pid, coalesce(nullif(r.application_name, ''), r.usename));
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_xmin_horizon(idle_in_transaction interval, long_query interval) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- The xmin horizon: the oldest snapshot or transaction still needed, and what it holds back.
    FOR r IN SELECT * FROM (
                 SELECT format('pid %s (%s)', a.pid, coalesce(nullif(a.application_name, ''), a.usename)) AS who,
                        greatest(a.backend_xmin_age, a.backend_xid_age) AS xids, a.xact_age AS held, a.state
                   FROM pgdw.health_activity() a
                  WHERE a.backend_xmin_age IS NOT NULL OR a.backend_xid_age IS NOT NULL
                 UNION ALL
                 SELECT format('replication slot %s', s.slot_name), greatest(age(s.xmin), age(s.catalog_xmin)), NULL, CASE WHEN s.active THEN 'active' ELSE 'inactive' END
                   FROM pg_replication_slots s WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
                 UNION ALL
                 SELECT format('prepared transaction %s', p.gid), age(p.transaction), now() - p.prepared, 'prepared'
                   FROM pg_prepared_xacts p) h
              ORDER BY xids DESC NULLS LAST, held DESC NULLS LAST LIMIT 1 LOOP
        -- A session's transaction past the thresholds, a prepared transaction, or anything ten
        -- million transactions back (an active slot is normally a few behind).
        CONTINUE WHEN NOT (coalesce(r.held > least(long_query, idle_in_transaction), false)
                           OR r.state = 'prepared' OR coalesce(r.xids > 10000000, false));
        f.check_name := 'xmin_horizon';
        f.severity := CASE WHEN r.held > interval '1 hour' OR r.xids > 100000000 THEN 'critical' ELSE 'warning' END;
        f.object := r.who;
        f.value := r.xids;
        f.figure := format('holds the xmin horizon %s transactions back%s: VACUUM cannot remove rows deleted since (%s dead rows wait now), and the work queue''s finished tasks stay as dead rows until it ends',
                         r.xids, coalesce(' for ' || date_trunc('second', r.held), ''),
                         (SELECT sum(n_dead_tup) FROM pg_stat_user_tables));
        f.advice := CASE WHEN r.who LIKE 'pid %' THEN format('end it: SELECT pg_terminate_backend(%s);', split_part(r.who, ' ', 2))
                       WHEN r.who LIKE 'replication slot %' THEN format('drop the slot if nothing consumes it: SELECT pg_drop_replication_slot(%L);', substr(r.who, 18))
                       ELSE format('COMMIT PREPARED or ROLLBACK PREPARED %L', substr(r.who, 22)) END;
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_replication_slots(slot_wal_bytes bigint) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Replication slots here, and the sources' slots pgdw sampled.
    FOR r IN SELECT s.slot_name, s.slot_type, s.active, s.wal_status,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained
               FROM pg_replication_slots s LOOP
        f.check_name := 'replication_slot'; f.object := 'slot ' || r.slot_name; f.value := r.retained;
        f.severity := CASE WHEN r.wal_status = 'lost' THEN 'critical'
                         WHEN NOT r.active OR r.wal_status = 'unreserved' OR r.retained > slot_wal_bytes THEN 'warning'
                         ELSE 'info' END;
        f.figure := format('%s, %s, retains %s of WAL (wal_status %s)', r.slot_type, CASE WHEN r.active THEN 'active' ELSE 'inactive' END,
                         pg_size_pretty(coalesce(r.retained, 0)), coalesce(r.wal_status, '-'));
        f.advice := CASE WHEN r.wal_status = 'lost' THEN format('it cannot resume: SELECT pg_drop_replication_slot(%L); and copy its tables afresh (pgdw replicate resync)', r.slot_name)
                       WHEN NOT r.active THEN format('nothing reads it and its WAL accumulates: start its consumer, or SELECT pg_drop_replication_slot(%L);', r.slot_name)
                       WHEN r.retained > slot_wal_bytes THEN 'its consumer falls behind: look at the subscriber''s apply (pgdw status)'
                       ELSE 'none' END;
        RETURN NEXT f;
    END LOOP;
    FOR r IN SELECT * FROM pgdw.replication_source src
              WHERE src.wal_status IN ('unreserved', 'lost') OR src.retained_bytes > slot_wal_bytes LOOP
        f.check_name := 'source_replication_slot'; f.object := 'the source slot of ' || r.subscription;
        f.severity := CASE WHEN r.wal_status = 'lost' THEN 'critical' ELSE 'warning' END;
        f.value := r.retained_bytes;
        f.figure := format('retains %s of WAL on the source (wal_status %s, sampled %s)', pg_size_pretty(r.retained_bytes), r.wal_status,
                         to_char(r.sampled_at, 'YYYY-MM-DD HH24:MI:SS'));
        f.advice := CASE WHEN r.wal_status = 'lost' THEN format('pgdw replicate resync %s', r.subscription)
                       ELSE 'the subscription falls behind: pgdw status shows its apply; the source''s max_slot_wal_keep_size bounds the WAL kept' END;
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_wraparound() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record; f pgdw.doctor_finding;
    freeze_max bigint := current_setting('autovacuum_freeze_max_age')::bigint;
BEGIN
    -- Transaction ID wraparound: each database, and this database's oldest tables.
    FOR r IN SELECT datname AS name, age(datfrozenxid) AS xids, 'database' AS kind FROM pg_database WHERE datallowconn
             UNION ALL
             (SELECT c.oid::regclass::text, age(c.relfrozenxid), 'table' FROM pg_class c
               WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid ORDER BY age(c.relfrozenxid) DESC LIMIT 3) LOOP
        f.check_name := 'wraparound'; f.object := r.kind || ' ' || r.name; f.value := 2147483648 - r.xids;
        f.severity := CASE WHEN r.xids > 1500000000 THEN 'critical' WHEN r.xids > 1000000000 THEN 'warning' ELSE 'info' END;
        f.figure := format('%s transactions old, %s from wraparound (autovacuum freezes it from %s)', r.xids, 2147483648 - r.xids, freeze_max);
        f.advice := CASE WHEN f.severity = 'info' THEN 'none'
                       WHEN r.kind = 'database' THEN format('VACUUM (FREEZE) every table of %I; first end long transactions and inactive slots (xmin_horizon)', r.name)
                       ELSE format('VACUUM (FREEZE) %s;', r.name) END;
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_settings(idle_in_transaction interval, long_query interval) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Settings the seed names.
    FOR r IN SELECT name, setting::int AS v FROM pg_settings WHERE name IN ('from_collapse_limit', 'join_collapse_limit') AND setting::int <= 8 LOOP
        f.check_name := 'setting'; f.severity := 'info'; f.object := r.name; f.value := r.v;
        f.figure := format('%s = %s (the default)', r.name, r.v);
        f.advice := format('ALTER DATABASE %I SET %s = 12; -- a dashboard query joining more than %s tables is planned in pieces, in the order written, past this', current_database(), r.name, r.v);
        RETURN NEXT f;
    END LOOP;
    -- A long or idle transaction open now, as the sessions check finds them.
    IF EXISTS (SELECT 1 FROM pgdw.doctor_sessions(idle_in_transaction, long_query) s
                WHERE s.check_name IN ('long_running_query', 'idle_in_transaction')) THEN
        f.check_name := 'setting'; f.severity := 'warning'; f.object := 'vacuum_freeze_table_age';
        f.value := current_setting('vacuum_freeze_table_age')::float8;
        f.figure := format('vacuum_freeze_table_age = %s with long transactions open (above)', current_setting('vacuum_freeze_table_age'));
        f.advice := 'long transactions on the primary keep VACUUM from freezing rows; while they happen, keep vacuum_freeze_table_age well below autovacuum_freeze_max_age (ALTER SYSTEM SET vacuum_freeze_table_age = 100000000) and watch wraparound';
        RETURN NEXT f;
    END IF;
    IF current_setting('max_slot_wal_keep_size') = '-1' THEN
        f.check_name := 'setting'; f.object := 'max_slot_wal_keep_size'; f.value := -1;
        f.severity := CASE WHEN EXISTS (SELECT 1 FROM pg_replication_slots) THEN 'warning' ELSE 'info' END;
        f.figure := format('unlimited, with %s replication slots', (SELECT count(*) FROM pg_replication_slots));
        f.advice := 'ALTER SYSTEM SET max_slot_wal_keep_size = ''4GB''; SELECT pg_reload_conf(); -- an abandoned slot otherwise keeps WAL until the disk is full';
        RETURN NEXT f;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_standbys() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Standbys pgdw made: one that is not streaming keeps WAL in its slot (up to
    -- max_slot_wal_keep_size, then it is lost and must be made again); one that streams but
    -- falls behind serves stale panels and, in --sync mode, slows every commit.
    FOR r IN SELECT * FROM pgdw.standby_status s WHERE s.seen_from = 'primary' AND (s.state <> 'streaming'
                 OR s.replay_lag_bytes > 64 * 1024 * 1024 OR s.replay_lag_seconds > 10) LOOP
        f.check_name := 'standby'; f.object := 'standby ' || r.name; f.value := r.replay_lag_bytes;
        f.severity := CASE WHEN r.state <> 'streaming' AND r.sync THEN 'critical' ELSE 'warning' END;
        f.figure := CASE WHEN r.state <> 'streaming'
                       THEN format('%s%s; its slot retains %s of WAL (wal_status %s)', r.state,
                                   CASE WHEN r.sync THEN ', and it is synchronous: commits wait for it' ELSE '' END,
                                   pg_size_pretty(r.retained_wal_bytes), coalesce(r.wal_status, 'unknown'))
                       ELSE format('replays %s behind (%s s)', pg_size_pretty(r.replay_lag_bytes), round(r.replay_lag_seconds::numeric, 1)) END;
        f.advice := CASE WHEN r.state <> 'streaming'
                       THEN format('start it (pgdw --data-dir STANDBY_DIR up); if it is gone for good: pgdw standby remove STANDBY_DIR, or SELECT pg_drop_replication_slot(%L);', 'pgdw_standby_' || r.name)
                       ELSE 'the standby cannot keep up: look at its disk and CPU, and at long queries there (hot_standby_feedback holds rows they read)' END;
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_materialized_column_indexes() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- An index on a materialized column (or materialized_at): the workers' write-backs of a
    -- table with one cannot be HOT updates (a new entry in every index, a dead version each).
    FOR r IN SELECT DISTINCT i.indexrelid::regclass::text AS idx, m.tbl::text AS tbl, a.attname::text AS col
               FROM pgdw.materializations m
               JOIN pg_index i ON i.indrelid = m.tbl
               JOIN pg_attribute a ON a.attrelid = m.tbl AND (a.attnum = ANY (i.indkey)
                    OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\m' || a.attname || '\M')
                    OR pg_get_expr(i.indpred, i.indrelid) ~ ('\m' || a.attname || '\M'))
              WHERE a.attname = 'materialized_at' OR a.attname = ANY (m.columns) LOOP
        f.check_name := 'materialized_column_index'; f.severity := 'warning'; f.object := r.idx;
        f.value := NULL;
        f.figure := format('%s indexes %s, a column pgdw worker writes on %s: its write-backs cannot be HOT updates', r.idx, r.col, r.tbl);
        f.advice := format('DROP INDEX %s; -- unless reads need it: then give %s room to spare (ALTER TABLE %s SET (fillfactor = 80)) and expect each write-back to add an entry to every index', r.idx, r.tbl, r.tbl);
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_rollups() RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; f pgdw.doctor_finding; BEGIN
    -- Rollups no longer kept: their table or source was dropped (by a user, or a tool that
    -- replaces tables, as dbt's --full-refresh does), which only a NOTICE said at the time.
    FOR r IN SELECT * FROM pgdw.rollups_lost ORDER BY lost_at LOOP
        f.check_name := 'rollup_lost'; f.severity := 'warning'; f.object := 'rollup ' || r.name;
        f.value := extract(epoch FROM now() - r.lost_at);
        f.figure := format('no longer kept since %s: %s', to_char(r.lost_at, 'YYYY-MM-DD HH24:MI'), r.reason);
        f.advice := format('register it again: SELECT pgdw.rollup(%L, %L, source => %L, keys => %L); or, if it is gone for good: SELECT pgdw.rollup_forget(%L);',
                         r.name, r.query, r.source, r.keys, r.name);
        RETURN NEXT f;
    END LOOP;
    -- Rollups whose query reads tables besides its source: changes there are not captured.
    FOR r IN SELECT name::text AS name, source::text AS source, also_reads FROM pgdw.rollups WHERE cardinality(also_reads) > 0 LOOP
        f.check_name := 'rollup_reads_uncaptured'; f.severity := 'info'; f.object := 'rollup ' || r.name;
        f.value := cardinality(r.also_reads);
        f.figure := format('its query reads %s besides its source %s: a change there reaches the rollup only when the group''s source rows change',
                         array_to_string(r.also_reads, ', '), r.source);
        f.advice := 'keep what it reads there as a materialized column of the source (pgdw.materialize), or make that table the source of a rollup of its own';
        RETURN NEXT f;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION pgdw.doctor_column_padding(min_table_rows bigint) RETURNS SETOF pgdw.doctor_finding
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record; f pgdw.doctor_finding;
    fixed    text[];
    best     text[];
    now_w    int;
    best_w   int;
BEGIN
    -- Column order: per large table, what a better order would save per row.
    FOR r IN SELECT c.oid::regclass AS t, c.reltuples
               FROM pg_class c
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.reltuples >= min_table_rows
                AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) LOOP
        SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO fixed
          FROM pg_attribute a WHERE a.attrelid = r.t AND a.attnum > 0 AND NOT a.attisdropped;
        SELECT array_agg(a.attname::text ORDER BY (t.typlen > 0) DESC,
                         CASE t.typalign WHEN 'd' THEN 8 WHEN 'i' THEN 4 WHEN 's' THEN 2 ELSE 1 END DESC, t.typlen DESC, a.attnum)
          INTO best
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = r.t AND a.attnum > 0 AND NOT a.attisdropped;
        now_w := pgdw.row_width(r.t, fixed);
        best_w := pgdw.row_width(r.t, best);
        CONTINUE WHEN now_w - best_w < 4;
        f.check_name := 'column_padding'; f.object := r.t::text; f.value := now_w - best_w;
        f.severity := CASE WHEN now_w - best_w >= 8 AND (now_w - best_w) * 10 >= now_w THEN 'warning' ELSE 'info' END;
        f.figure := format('%s bytes of padding per row of %s (%s instead of %s bytes of columns), ~%s over its %s rows',
                         now_w - best_w, now_w, now_w, best_w, pg_size_pretty(((now_w - best_w) * r.reltuples)::bigint), r.reltuples::bigint);
        f.advice := format('recreate it with its columns in this order (widest alignment first, variable-width last): %s', array_to_string(best, ', '));
        RETURN NEXT f;
    END LOOP;
END $$;

-- Every check's findings, as `pgdw doctor`, the database dashboard and the health alerts read
-- them.
CREATE OR REPLACE FUNCTION pgdw.doctor(
    idle_in_transaction interval DEFAULT '1 minute',
    long_query          interval DEFAULT '5 minutes',
    min_index_bytes     bigint DEFAULT 1048576,
    min_table_rows      bigint DEFAULT 10000,
    slot_wal_bytes      bigint DEFAULT 1073741824)
RETURNS TABLE (check_name text, severity text, object text, figure text, value float8, advice text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pgdw.doctor_statements()
    UNION ALL
    SELECT * FROM pgdw.doctor_dead_tuples()
    UNION ALL
    SELECT * FROM pgdw.doctor_unused_indexes(min_index_bytes)
    UNION ALL
    SELECT * FROM pgdw.doctor_duplicate_indexes()
    UNION ALL
    SELECT * FROM pgdw.doctor_sessions(idle_in_transaction, long_query)
    UNION ALL
    SELECT * FROM pgdw.doctor_xmin_horizon(idle_in_transaction, long_query)
    UNION ALL
    SELECT * FROM pgdw.doctor_replication_slots(slot_wal_bytes)
    UNION ALL
    SELECT * FROM pgdw.doctor_wraparound()
    UNION ALL
    SELECT * FROM pgdw.doctor_settings(idle_in_transaction, long_query)
    UNION ALL
    SELECT * FROM pgdw.doctor_standbys()
    UNION ALL
    SELECT * FROM pgdw.doctor_materialized_column_indexes()
    UNION ALL
    SELECT * FROM pgdw.doctor_rollups()
    UNION ALL
    SELECT * FROM pgdw.doctor_column_padding(min_table_rows);
$$;
COMMENT ON FUNCTION pgdw.doctor(interval, interval, bigint, bigint, bigint) IS
    'What pgdw doctor reports: each finding with its check, severity, object, figure and advice';

REVOKE EXECUTE ON FUNCTION pgdw.doctor(interval, interval, bigint, bigint, bigint), pgdw.health_statements(),
    pgdw.health_activity() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgdw.doctor_statements(), pgdw.doctor_dead_tuples(), pgdw.doctor_unused_indexes(bigint),
    pgdw.doctor_duplicate_indexes(), pgdw.doctor_sessions(interval, interval), pgdw.doctor_xmin_horizon(interval, interval),
    pgdw.doctor_replication_slots(bigint), pgdw.doctor_wraparound(), pgdw.doctor_settings(interval, interval),
    pgdw.doctor_standbys(), pgdw.doctor_materialized_column_indexes(), pgdw.doctor_rollups(),
    pgdw.doctor_column_padding(bigint) FROM PUBLIC;
