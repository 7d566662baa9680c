-- pgdw's refresh runtime: installed (idempotently) by `pgdw up` in schema pgdw, for warehouse
-- migrations to call. Needs pg_cron 1.4 and pg_partman 4.7 (schema partman).

CREATE SCHEMA IF NOT EXISTS pgdw;
COMMENT ON SCHEMA pgdw IS 'pgdw refresh runtime: schedules, run log, incremental sync, partitions';

-- Secrets -------------------------------------------------------------------------------------
-- A secret reaches the server only as a bound parameter of `SELECT pgdw.set_option($1, ...)`:
-- pg_stat_statements and the server log keep a statement's text (utility statements verbatim,
-- a failing one by default), so no statement pgdw sends ever holds a secret. The ALTER is built
-- here, inside the server, and never leaves it: not tracked (nested), not logged (nested), and
-- not in an error's CONTEXT (the error is re-raised from here, with the value masked).

CREATE OR REPLACE FUNCTION pgdw.hide_statements() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    setting text;
BEGIN
    -- For the rest of the caller's transaction, where a superuser can: no statement or
    -- parameter logging, no utility tracking (track = 'all' would see nested statements).
    FOREACH setting IN ARRAY ARRAY['log_statement=none', 'log_min_duration_statement=-1',
                                   'log_parameter_max_length=0', 'log_parameter_max_length_on_error=0',
                                   'pg_stat_statements.track_utility=off'] LOOP
        BEGIN
            PERFORM set_config(split_part(setting, '=', 1), split_part(setting, '=', 2), true);
        EXCEPTION WHEN others THEN
            NULL;  -- not a superuser: then none of these is on unless the server was set so
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION pgdw.hide_statements() IS
    'Best effort, for the current transaction: statements and parameters are neither logged nor tracked';

CREATE OR REPLACE FUNCTION pgdw.set_option(kind text, object_name text, option text, value text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    present boolean;
BEGIN
    IF kind = 'role password' THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', object_name, value);
        RETURN;
    ELSIF kind = 'server' THEN
        target := format('SERVER %I', object_name);
        -- The option's name compared exactly (a LIKE would take `_` for any character).
        present := EXISTS (SELECT 1 FROM pg_foreign_server s, unnest(s.srvoptions) o
                            WHERE s.srvname = object_name AND split_part(o, '=', 1) = option);
    ELSIF kind = 'user mapping' THEN
        EXECUTE format('CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER %I', object_name);
        target := format('USER MAPPING FOR CURRENT_USER SERVER %I', object_name);
        present := EXISTS (SELECT 1 FROM pg_user_mappings m, unnest(m.umoptions) o
                            WHERE m.srvname = object_name AND m.usename = current_user
                              AND split_part(o, '=', 1) = option);
    ELSE
        RAISE EXCEPTION 'pgdw.set_option: kind must be server, user mapping or role password, not %', kind;
    END IF;
    EXECUTE format('ALTER %s OPTIONS (%s %I %L)', target,
                   CASE WHEN present THEN 'SET' ELSE 'ADD' END, option, value);
EXCEPTION WHEN others THEN
    -- Re-raised from here: the generated statement is not this error's CONTEXT.
    RAISE EXCEPTION 'setting % on % % failed: %', option, kind, object_name,
          replace(SQLERRM, value, '********') USING ERRCODE = SQLSTATE;
END $$;
COMMENT ON FUNCTION pgdw.set_option(text, text, text, text) IS
    'Set a server option, a user-mapping option (creating the mapping) or a role password, with the value as a parameter';

-- Run log -------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS pgdw.runs (
    id            bigserial PRIMARY KEY,
    job           text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    rows_inserted bigint,
    rows_updated  bigint,
    rows_deleted  bigint,
    error         text
);
-- How long the run waited for another run of the same job to finish (NULL: it did not wait).
ALTER TABLE pgdw.runs ADD COLUMN IF NOT EXISTS waited interval;
CREATE INDEX IF NOT EXISTS runs_job_started_idx ON pgdw.runs (job, started_at DESC);
COMMENT ON TABLE pgdw.runs IS 'One row per refresh run: when, how it ended, rows changed, the error';

CREATE TABLE IF NOT EXISTS pgdw.watermarks (
    job        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.watermarks IS 'How far each incremental sync has read its source';

-- Schedules -----------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgdw.cron_schedule(every text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    secs numeric;
    n    integer;
BEGIN
    every := btrim(every);
    -- Already cron: five fields, or @hourly-style.
    IF every ~ '^@(yearly|annually|monthly|weekly|daily|hourly|reboot)$'
       OR every ~ '^\S+\s+\S+\s+\S+\s+\S+\s+\S+$' THEN
        RETURN every;
    END IF;
    BEGIN
        secs := extract(epoch FROM every::interval);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'pgdw: "%" is neither cron syntax nor an interval', every
            USING HINT = 'write cron like ''*/5 * * * *'' or an interval like ''5 minutes'', ''1 hour'', ''1 day''';
    END;
    IF secs <= 0 THEN
        RAISE EXCEPTION 'pgdw: a schedule interval must be positive, not "%"', every;
    END IF;
    IF secs % 60 <> 0 THEN
        RAISE EXCEPTION 'pgdw: pg_cron 1.4 schedules by the minute; "%" cannot be run', every
            USING HINT = 'the shortest interval is ''1 minute''';
    END IF;
    IF secs < 3600 THEN
        n := secs / 60;
        IF 60 % n <> 0 THEN
            RAISE EXCEPTION 'pgdw: "%" does not divide an hour, so cron cannot repeat it evenly', every
                USING HINT = 'use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes, or cron syntax';
        END IF;
        RETURN CASE WHEN n = 1 THEN '* * * * *' ELSE format('*/%s * * * *', n) END;
    ELSIF secs < 86400 THEN
        IF secs % 3600 <> 0 OR 24 % (secs / 3600)::int <> 0 THEN
            RAISE EXCEPTION 'pgdw: "%" is not a whole number of hours dividing a day', every
                USING HINT = 'use 1, 2, 3, 4, 6, 8 or 12 hours, or cron syntax';
        END IF;
        n := secs / 3600;
        RETURN CASE WHEN n = 1 THEN '0 * * * *' ELSE format('0 */%s * * *', n) END;
    ELSIF secs = 86400 THEN
        RETURN '0 0 * * *';
    ELSIF secs = 604800 THEN
        RETURN '0 0 * * 0';
    END IF;
    RAISE EXCEPTION 'pgdw: "%" is longer than a day and not a week', every
        USING HINT = 'use cron syntax, e.g. ''0 3 */2 * *'' for every other day at 03:00';
END $$;
COMMENT ON FUNCTION pgdw.cron_schedule(text) IS
    'Cron syntax for an interval such as ''5 minutes'' (pg_cron 1.4 takes only cron); cron passes through';

CREATE TABLE IF NOT EXISTS pgdw.schedules (
    job    text PRIMARY KEY,
    every  text NOT NULL,
    period interval
);
COMMENT ON TABLE pgdw.schedules IS
    'How often each job scheduled through pgdw.schedule runs (period: NULL for cron syntax)';

CREATE OR REPLACE FUNCTION pgdw.schedule(job_name text, every text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cron_text text := pgdw.cron_schedule(every);
    period    interval;
BEGIN
    IF cron_text IS DISTINCT FROM btrim(every) THEN
        period := every::interval;
    END IF;
    INSERT INTO pgdw.schedules VALUES (job_name, every, period)
    ON CONFLICT (job) DO UPDATE SET every = EXCLUDED.every, period = EXCLUDED.period;
    -- pg_cron updates a job of the same name and user: scheduling twice is harmless.
    RETURN cron.schedule(job_name, cron_text, command);
END $$;
COMMENT ON FUNCTION pgdw.schedule(text, text, text) IS
    'Schedule (or reschedule) a pg_cron job by name, accepting intervals as well as cron';

-- Running a job with a record -------------------------------------------------------------

CREATE OR REPLACE PROCEDURE pgdw.run(job text, command text)
LANGUAGE plpgsql AS $$
DECLARE
    run_id bigint;
    counts record;
    asked  timestamptz;
BEGIN
    -- One run of a job at a time: a second one (a manual run while pg_cron's is in progress;
    -- pg_cron never overlaps its own runs of a job) would re-read the window the first is
    -- writing. It waits for the first to commit, then reads from the watermark that one left,
    -- and records how long it waited. The lock lasts until the caller's transaction ends.
    IF NOT pg_try_advisory_xact_lock(hashtextextended('pgdw.run:' || job, 0)) THEN
        asked := clock_timestamp();
        RAISE NOTICE 'pgdw: job % waits for another run of it to finish', job;
        PERFORM pg_advisory_xact_lock(hashtextextended('pgdw.run:' || job, 0));
    END IF;
    INSERT INTO pgdw.runs (job, waited) VALUES (job, clock_timestamp() - asked) RETURNING id INTO run_id;
    BEGIN
        -- A query may return (inserted, updated, deleted) counts, as pgdw.sync does; any
        -- other statement (INSERT, REFRESH, CALL, DDL) returns no row to read them from.
        -- The comment names the job in pg_stat_statements (with pg_stat_statements.track =
        -- all, which records statements run inside procedures) for `pgdw doctor`.
        IF command ~* '^\s*(\(\s*)*(select|with|values|table)\M' THEN
            EXECUTE format('/* pgdw job: %s */ %s', replace(replace(job, '*/', '* /'), '/*', '/ *'), command) INTO counts;
        ELSE
            EXECUTE format('/* pgdw job: %s */ %s', replace(replace(job, '*/', '* /'), '/*', '/ *'), command);
        END IF;
        UPDATE pgdw.runs SET finished_at = clock_timestamp(), status = 'succeeded',
               rows_inserted = CASE WHEN counts IS NULL THEN NULL ELSE (to_jsonb(counts)->>'inserted')::bigint END,
               rows_updated  = CASE WHEN counts IS NULL THEN NULL ELSE (to_jsonb(counts)->>'updated')::bigint END,
               rows_deleted  = CASE WHEN counts IS NULL THEN NULL ELSE (to_jsonb(counts)->>'deleted')::bigint END
         WHERE id = run_id;
    EXCEPTION WHEN others THEN
        -- The command's changes are rolled back (the previous data stays); the failure is kept.
        UPDATE pgdw.runs SET finished_at = clock_timestamp(), status = 'failed', error = SQLERRM
         WHERE id = run_id;
        RAISE WARNING 'pgdw: job % failed: %', job, SQLERRM;
    END;
    DELETE FROM pgdw.runs WHERE started_at < now() - interval '30 days';
END $$;
COMMENT ON PROCEDURE pgdw.run(text, text) IS
    'Run a command as job, recording it in pgdw.runs; a failure rolls the command back and is recorded';

-- `a, b, c`: column names quoted as identifiers, in their order (the SQL every generated
-- statement of pgdw's lists its columns with).
CREATE OR REPLACE FUNCTION pgdw.idents(cols text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(format('%I', c), ', ' ORDER BY i) FROM unnest(cols) WITH ORDINALITY u (c, i);
$$;

-- Incremental sync ------------------------------------------------------------------------

-- The signature before `overlap` existed; left in place it would make calls ambiguous.
DROP FUNCTION IF EXISTS pgdw.sync(regclass, regclass, text[], text, boolean);
CREATE OR REPLACE FUNCTION pgdw.sync(
    target regclass, source regclass, key text[],
    updated_at text DEFAULT NULL, deletes boolean DEFAULT true, overlap interval DEFAULT '1 minute',
    OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    -- Names stay arrays of plain names until format('%I') quotes each: never a joined list
    -- split again, never generated text rewritten.
    cols     text[];
    non_key  text[];
    job_name text := 'sync:' || target::text;
    mark     text;
    mark_typ text;
    filter   text := '';
    newmark  text;
    col_list text;
    s_cols   text;
    t_cols   text;
    key_list text;
    key_join text;
    set_list text;
BEGIN
    -- The columns both have: a column only the target has (a materialized column, its
    -- materialized_at) is the warehouse's own and left alone.
    SELECT array_agg(t.attname::text ORDER BY t.attnum) INTO cols
      FROM pg_attribute t
     WHERE t.attrelid = target AND t.attnum > 0 AND NOT t.attisdropped
       AND EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = source AND s.attname = t.attname
                      AND s.attnum > 0 AND NOT s.attisdropped);
    IF EXISTS (SELECT 1 FROM unnest(key) k WHERE k <> ALL (cols)) THEN
        RAISE EXCEPTION 'pgdw.sync: % has no column % (the key argument)',
            CASE WHEN EXISTS (SELECT 1 FROM unnest(key) k WHERE NOT EXISTS (
                     SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = k AND NOT a.attisdropped))
                 THEN target ELSE source END,
            (SELECT string_agg(quote_ident(k), ', ') FROM unnest(key) k WHERE k <> ALL (cols));
    END IF;
    non_key := ARRAY(SELECT c FROM unnest(cols) WITH ORDINALITY u(c, i) WHERE c <> ALL (key) ORDER BY i);
    SELECT string_agg(format('%I', c), ', ' ORDER BY i), string_agg(format('s.%I', c), ', ' ORDER BY i),
           string_agg(format('t.%I', c), ', ' ORDER BY i)
      INTO col_list, s_cols, t_cols FROM unnest(cols) WITH ORDINALITY u(c, i);
    SELECT string_agg(format('%I', k), ', ' ORDER BY i), string_agg(format('t.%1$I = s.%1$I', k), ' AND ' ORDER BY i)
      INTO key_list, key_join FROM unnest(key) WITH ORDINALITY u(k, i);
    SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ' ORDER BY i)
      INTO set_list FROM unnest(non_key) WITH ORDINALITY u(c, i);
    IF updated_at IS NOT NULL THEN
        SELECT format_type(atttypid, NULL) INTO mark_typ FROM pg_attribute
         WHERE attrelid = target AND attname = sync.updated_at AND NOT attisdropped;
        IF mark_typ IS NULL THEN
            RAISE EXCEPTION 'pgdw.sync: % has no column % (the updated_at argument)', target, sync.updated_at;
        END IF;
        SELECT value INTO mark FROM pgdw.watermarks w WHERE w.job = job_name;
        IF mark IS NOT NULL THEN
            -- A constant (a literal, not a parameter), so the source can be sent the filter.
            filter := format(' AND s.%I > %L::%s', updated_at, mark, mark_typ);
        END IF;
    END IF;
    -- One statement reads the source and upserts: a failing source fails it whole, and the
    -- caller's transaction (pgdw.run) keeps the previous data. Rows identical to the local
    -- copy are filtered out before the upsert, which would lock (and log) them otherwise.
    -- (An UPDATE ... FROM plus INSERT of new keys was slower: without statistics on the
    -- source, the planner hashes the whole target.)
    EXECUTE format(
        'WITH up AS (INSERT INTO %1$s AS t (%2$s)
                     SELECT %3$s FROM %4$s s
                      WHERE NOT EXISTS (SELECT 1 FROM %1$s t WHERE %5$s AND (%6$s) IS NOT DISTINCT FROM (%3$s))%7$s
                     ON CONFLICT (%8$s) DO %9$s
                     RETURNING (xmax = 0) AS ins, %10$s AS mark)
         SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins), max(mark)::text FROM up',
        target, col_list, s_cols, source, key_join, t_cols, filter, key_list,
        -- Only key columns: nothing to update, a present key is already identical.
        CASE WHEN set_list IS NULL THEN 'NOTHING'
             ELSE 'UPDATE SET ' || set_list || ' WHERE (t.*) IS DISTINCT FROM (EXCLUDED.*)' END,
        coalesce(quote_ident(updated_at), 'NULL::text'))
      INTO inserted, updated, newmark;
    deleted := 0;
    IF deletes THEN
        -- A full key pass against the source: rows gone there go here.
        EXECUTE format('DELETE FROM %s t WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE %s)', target, source, key_join);
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    -- Only written rows move the watermark (skipped ones were already here). A timestamp
    -- watermark stays `overlap` behind the clock: a row committed late, with the earlier now()
    -- of a long transaction, is still ahead of it next time. Re-read rows change nothing.
    IF newmark IS NOT NULL AND mark IS NOT NULL THEN
        EXECUTE format('SELECT greatest(%L::%s, %L::%s)::text', mark, mark_typ, newmark, mark_typ) INTO newmark;
    END IF;
    IF newmark IS NOT NULL AND mark_typ LIKE 'timestamp%' THEN
        EXECUTE format('SELECT least(%L::%s, (now() - %L::interval)::%s)::text', newmark, mark_typ, overlap, mark_typ)
           INTO newmark;
    END IF;
    IF newmark IS NOT NULL THEN
        INSERT INTO pgdw.watermarks (job, value) VALUES (job_name, newmark)
        ON CONFLICT (job) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
END $$;
COMMENT ON FUNCTION pgdw.sync(regclass, regclass, text[], text, boolean, interval) IS
    'Upsert source rows changed since the watermark (less overlap) into target (unique on key), delete rows gone from source';

-- Partitions ------------------------------------------------------------------------------

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
    -- Expired partitions are detached and moved to schema pgdw_retired, then dropped by
    -- pgdw.partition_maintenance: pg_partman 4.7 drops them attached otherwise, and a table
    -- dropped while attached takes its rows away unseen (a rollup of it would have to
    -- recompute every group; detached, its keys are read first).
    CREATE SCHEMA IF NOT EXISTS pgdw_retired;
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

-- Warehouses set up before retired partitions went through pgdw_retired.
DO $$
BEGIN
    IF to_regclass('partman.part_config') IS NOT NULL THEN
        CREATE SCHEMA IF NOT EXISTS pgdw_retired;
        UPDATE partman.part_config SET retention_schema = 'pgdw_retired'
         WHERE retention IS NOT NULL AND retention_schema IS NULL AND NOT retention_keep_table;
    END IF;
    IF to_regclass('cron.job') IS NOT NULL
       AND EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'pgdw-partman-maintenance' AND command = 'SELECT partman.run_maintenance()') THEN
        PERFORM pgdw.schedule('pgdw-partman-maintenance', '1 hour', 'SELECT pgdw.partition_maintenance()');
    END IF;
END $$;
COMMENT ON FUNCTION pgdw.partition_daily(regclass, text, interval, text) IS
    'Daily partitions by pg_partman with retention that drops old partitions, maintained hourly';

-- Freshness in SQL (for dashboards and alert rules) -----------------------------------------

-- When cron fires a schedule, in SQL: the one definition of "stale" and "next run" that
-- `pgdw status`, the built-in panels, alert rules and BI tools all read (pgdw.job_freshness).

CREATE OR REPLACE FUNCTION pgdw.cron_field(spec text, lo int, hi int) RETURNS int[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    part  text;
    span  text;
    step  int;
    a     int;
    b     int;
    vals  int[] := '{}';
BEGIN
    FOREACH part IN ARRAY string_to_array(spec, ',') LOOP
        step := 1;
        span := part;
        IF strpos(part, '/') > 0 THEN
            span := split_part(part, '/', 1);
            step := split_part(part, '/', 2)::int;
        END IF;
        IF span = '*' THEN
            a := lo; b := hi;
        ELSIF strpos(span, '-') > 0 THEN
            a := split_part(span, '-', 1)::int; b := split_part(span, '-', 2)::int;
        ELSE
            a := span::int; b := CASE WHEN step > 1 THEN hi ELSE a END;
        END IF;
        IF step < 1 OR a < lo OR b > hi OR a > b THEN
            RETURN NULL;
        END IF;
        vals := vals || ARRAY(SELECT generate_series(a, b, step));
    END LOOP;
    RETURN vals;
EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
    RETURN NULL;  -- names (jan, mon) and other syntax this does not read: no times, never stale
END $$;
COMMENT ON FUNCTION pgdw.cron_field(text, int, int) IS
    'The values one cron field allows (lists, ranges, steps), NULL when it cannot be read';

CREATE OR REPLACE FUNCTION pgdw.cron_day(d date, mons int[], doms int[], dows int[], either boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT extract(month FROM d)::int = ANY (mons) AND
           CASE WHEN either THEN extract(day FROM d)::int = ANY (doms) OR extract(dow FROM d)::int = ANY (dows)
                ELSE extract(day FROM d)::int = ANY (doms) AND extract(dow FROM d)::int = ANY (dows) END
$$;
COMMENT ON FUNCTION pgdw.cron_day(date, int[], int[], int[], boolean) IS
    'Whether cron fires on day d: its month, and its day of month and/or week (either, when both are restricted)';

CREATE OR REPLACE FUNCTION pgdw.cron_fires(schedule text, around timestamptz DEFAULT now(),
    OUT prev2 timestamptz, OUT prev1 timestamptz, OUT next1 timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f       text[];
    mins    int[];
    hrs     int[];
    doms    int[];
    mons    int[];
    dows    int[];
    either  boolean;
    t       timestamp := around AT TIME ZONE 'UTC';  -- pg_cron 1.4 reads schedules in UTC
    d       date;
    fire    timestamp;
    h       int;
    m       int;
BEGIN
    schedule := CASE btrim(schedule)
        WHEN '@hourly' THEN '0 * * * *' WHEN '@daily' THEN '0 0 * * *'
        WHEN '@weekly' THEN '0 0 * * 0' WHEN '@monthly' THEN '0 0 1 * *'
        WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *'
        ELSE btrim(schedule) END;
    f := regexp_split_to_array(schedule, '\s+');
    IF array_length(f, 1) IS DISTINCT FROM 5 THEN
        RETURN;
    END IF;
    mins := pgdw.cron_field(f[1], 0, 59);
    hrs  := pgdw.cron_field(f[2], 0, 23);
    doms := pgdw.cron_field(f[3], 1, 31);
    mons := pgdw.cron_field(f[4], 1, 12);
    dows := ARRAY(SELECT v % 7 FROM unnest(pgdw.cron_field(f[5], 0, 7)) v);
    IF mins IS NULL OR hrs IS NULL OR doms IS NULL OR mons IS NULL OR dows = '{}' THEN
        RETURN;
    END IF;
    -- cron's rule: when both day fields are restricted (neither starts with *), a day that
    -- matches either one fires; otherwise it must match both.
    either := left(f[3], 1) <> '*' AND left(f[5], 1) <> '*';
    mins := ARRAY(SELECT v FROM unnest(mins) v ORDER BY v DESC);
    hrs := ARRAY(SELECT v FROM unnest(hrs) v ORDER BY v DESC);
    -- The two latest fire times at or before t, searching back day by day.
    FOR i IN 0..800 LOOP
        d := t::date - i;
        CONTINUE WHEN NOT pgdw.cron_day(d, mons, doms, dows, either);
        FOREACH h IN ARRAY hrs LOOP
            FOREACH m IN ARRAY mins LOOP
                fire := d + make_interval(hours => h, mins => m);
                CONTINUE WHEN fire > t;
                IF prev1 IS NULL THEN
                    prev1 := fire AT TIME ZONE 'UTC';
                ELSE
                    prev2 := fire AT TIME ZONE 'UTC';
                    EXIT;
                END IF;
            END LOOP;
            EXIT WHEN prev2 IS NOT NULL;
        END LOOP;
        EXIT WHEN prev2 IS NOT NULL;
    END LOOP;
    -- The next fire time after t, searching forward.
    mins := ARRAY(SELECT v FROM unnest(mins) v ORDER BY v);
    hrs := ARRAY(SELECT v FROM unnest(hrs) v ORDER BY v);
    FOR i IN 0..800 LOOP
        d := t::date + i;
        CONTINUE WHEN NOT pgdw.cron_day(d, mons, doms, dows, either);
        FOREACH h IN ARRAY hrs LOOP
            FOREACH m IN ARRAY mins LOOP
                fire := d + make_interval(hours => h, mins => m);
                IF fire > t THEN
                    next1 := fire AT TIME ZONE 'UTC';
                    RETURN;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
COMMENT ON FUNCTION pgdw.cron_fires(text, timestamptz) IS
    'The two latest times a cron schedule fired at or before `around`, and the next one (UTC, as pg_cron 1.4)';
-- dw.job_freshness calls it for roles that may read schema dw but not use schema pgdw (BI
-- tools), and its body names pgdw's helpers: it runs as its owner. It reads no table.
ALTER FUNCTION pgdw.cron_fires(text, timestamptz) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

ALTER TABLE pgdw.schedules ADD COLUMN IF NOT EXISTS scheduled_at timestamptz NOT NULL DEFAULT now();

-- Every pg_cron job, scheduled through pgdw.schedule or directly with cron.schedule. Its runs
-- are those of pgdw.run when it records any, else pg_cron's own run details. Stale: no success
-- within two periods (the time between its last two scheduled fires); a job that never
-- succeeded is stale two periods after it was scheduled (or first ran). Failing: the last run
-- failed.
CREATE OR REPLACE VIEW pgdw.job_freshness AS
SELECT j.job, j.every, j.period, last.status AS last_status, last.started_at AS last_started,
       last.error AS last_error, ok.finished_at AS last_success,
       now() - ok.finished_at AS age,
       coalesce(CASE WHEN ok.finished_at IS NOT NULL THEN now() - ok.finished_at > 2 * j.period
                     ELSE coalesce(j.scheduled_at, first.started_at) < now() - 2 * j.period END,
                false) AS stale,
       coalesce(last.status = 'failed', false) AS failing,
       j.schedule, j.active, last.finished_at AS last_finished,
       last.rows_inserted, last.rows_updated, last.rows_deleted, j.next1 AS next_run
  FROM (SELECT coalesce(c.jobname, 'cron job ' || c.jobid) AS job, c.jobid, c.schedule, c.active,
               coalesce(s.every, c.schedule) AS every, s.scheduled_at,
               f.prev1 - f.prev2 AS period, f.next1,
               EXISTS (SELECT 1 FROM pgdw.runs r WHERE r.job = c.jobname) AS recorded
          FROM cron.job c
          LEFT JOIN pgdw.schedules s ON s.job = c.jobname
          LEFT JOIN LATERAL pgdw.cron_fires(c.schedule) f ON true) j
  LEFT JOIN LATERAL (
        SELECT r.status, r.started_at, r.finished_at, r.error, r.rows_inserted, r.rows_updated, r.rows_deleted
          FROM pgdw.runs r WHERE j.recorded AND r.job = j.job
        UNION ALL
        SELECT CASE WHEN d.status IN ('succeeded', 'failed') THEN d.status ELSE 'running' END,
               d.start_time, d.end_time, CASE WHEN d.status = 'failed' THEN d.return_message END,
               NULL, NULL, NULL
          FROM cron.job_run_details d WHERE NOT j.recorded AND d.jobid = j.jobid
        ORDER BY 2 DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (
        SELECT max(r.finished_at) AS finished_at FROM pgdw.runs r
         WHERE j.recorded AND r.job = j.job AND r.status = 'succeeded'
        UNION ALL
        SELECT max(d.end_time) FROM cron.job_run_details d
         WHERE NOT j.recorded AND d.jobid = j.jobid AND d.status = 'succeeded'
        ORDER BY 1 DESC NULLS LAST LIMIT 1) ok ON true
  LEFT JOIN LATERAL (
        SELECT min(r.started_at) AS started_at FROM pgdw.runs r WHERE j.recorded AND r.job = j.job
        UNION ALL
        SELECT min(d.start_time) FROM cron.job_run_details d WHERE NOT j.recorded AND d.jobid = j.jobid
        ORDER BY 1 NULLS LAST LIMIT 1) first ON true;
COMMENT ON VIEW pgdw.job_freshness IS
    'Per pg_cron job: the last run, the last success, its age, stale (no success within two periods) and failing';

-- Alerts --------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS pgdw.alert_state (
    alert          text PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('ok', 'firing', 'error')),
    since          timestamptz NOT NULL,
    evaluated_at   timestamptz NOT NULL,
    detail         text
);
COMMENT ON TABLE pgdw.alert_state IS 'Each alert rule''s current state (pgdw serve evaluates the rules)';

CREATE TABLE IF NOT EXISTS pgdw.alert_events (
    id           bigserial PRIMARY KEY,
    alert        text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    from_state   text,
    to_state     text NOT NULL,
    detail       text,
    delivered_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX IF NOT EXISTS alert_events_alert_at_idx ON pgdw.alert_events (alert, at DESC);
COMMENT ON TABLE pgdw.alert_events IS 'Every alert state change, and its delivery to the webhook';

-- Replication ---------------------------------------------------------------------------------
-- `[replicate.NAME]` in pgdw.toml: PostgreSQL's own logical replication from a source database
-- (publication, slot and subscription all named pgdw_NAME). pgdw records what it made, so that
-- it never touches a table it did not create, and samples the source's side (the slot, the
-- walsender's lag) into the warehouse, so that status, panels and alert rules read it in SQL.

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
    sub text := 'pgdw_' || name;
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
  LEFT JOIN pg_subscription sub ON sub.subname = 'pgdw_' || s.name AND sub.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
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
  JOIN pg_subscription sub ON sub.subname = 'pgdw_' || s.name
  JOIN pg_subscription_rel r ON r.srsubid = sub.oid
  JOIN pg_class c ON c.oid = r.srrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW pgdw.replication_tables IS 'Each replicated table and its sync state (initializing, copying, ready)';

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
