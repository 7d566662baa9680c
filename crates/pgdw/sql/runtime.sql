-- pgdw's refresh runtime: installed (idempotently) by `pgdw up` in schema pgdw, for warehouse
-- migrations to call. Needs pg_cron 1.4 and pg_partman 4.7 (schema partman).

CREATE SCHEMA IF NOT EXISTS pgdw;
COMMENT ON SCHEMA pgdw IS 'pgdw refresh runtime: schedules, run log, incremental sync, partitions';

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
BEGIN
    INSERT INTO pgdw.runs (job) VALUES (job) RETURNING id INTO run_id;
    BEGIN
        -- A command may return (inserted, updated, deleted) counts, as pgdw.sync does.
        EXECUTE command INTO counts;
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

-- Incremental sync ------------------------------------------------------------------------

-- The signature before `overlap` existed; left in place it would make calls ambiguous.
DROP FUNCTION IF EXISTS pgdw.sync(regclass, regclass, text[], text, boolean);
CREATE OR REPLACE FUNCTION pgdw.sync(
    target regclass, source regclass, key text[],
    updated_at text DEFAULT NULL, deletes boolean DEFAULT true, overlap interval DEFAULT '1 minute',
    OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cols     text;
    set_list text;
    key_list text;
    key_join text;
    job_name text := 'sync:' || target::text;
    mark     text;
    mark_typ text;
    t_cols   text;
    s_cols   text;
    filter   text := '';
    newmark  text;
BEGIN
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
           string_agg(format('%1$I = EXCLUDED.%1$I', attname), ', ' ORDER BY attnum)
           FILTER (WHERE NOT attname = ANY (key))
      INTO cols, set_list
      FROM pg_attribute WHERE attrelid = target AND attnum > 0 AND NOT attisdropped;
    SELECT string_agg(quote_ident(k), ', '), string_agg(format('t.%1$I = s.%1$I', k), ' AND ')
      INTO key_list, key_join FROM unnest(key) k;
    IF updated_at IS NOT NULL THEN
        SELECT format_type(atttypid, NULL) INTO mark_typ FROM pg_attribute
         WHERE attrelid = target AND attname = sync.updated_at AND NOT attisdropped;
        IF mark_typ IS NULL THEN
            RAISE EXCEPTION 'pgdw.sync: % has no column % (the updated_at argument)', target, sync.updated_at;
        END IF;
        SELECT value INTO mark FROM pgdw.watermarks w WHERE w.job = job_name;
        IF mark IS NOT NULL THEN
            filter := format(' WHERE s.%I > %L::%s', updated_at, mark, mark_typ);
        END IF;
    END IF;
    SELECT string_agg(format('t.%I', c), ', '), string_agg(format('s.%I', c), ', ')
      INTO t_cols, s_cols
      FROM unnest(string_to_array(cols, ', ')) c;
    -- One statement reads the source and upserts: a failing source fails it whole, and the
    -- caller's transaction (pgdw.run) keeps the previous data. Rows identical to the local
    -- copy are filtered out before the upsert, which would lock (and log) them otherwise.
    -- (An UPDATE ... FROM plus INSERT of new keys was slower: without statistics on the
    -- source, the planner hashes the whole target.)
    EXECUTE format(
        'WITH up AS (INSERT INTO %1$s AS t (%2$s)
                     SELECT %3$s FROM %4$s s
                      WHERE NOT EXISTS (SELECT 1 FROM %1$s t WHERE %5$s AND (%6$s) IS NOT DISTINCT FROM (%3$s))%7$s
                     ON CONFLICT (%8$s) DO UPDATE SET %9$s WHERE (t.*) IS DISTINCT FROM (EXCLUDED.*)
                     RETURNING (xmax = 0) AS ins, %10$s AS mark)
         SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins), max(mark)::text FROM up',
        target, cols, s_cols, source, key_join, t_cols,
        replace(filter, ' WHERE ', ' AND '), key_list,
        coalesce(set_list, key_list || ' = EXCLUDED.' || key_list),
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
    UPDATE partman.part_config SET retention = partition_daily.retention::text, retention_keep_table = false,
                                   infinite_time_partitions = true
     WHERE parent_table = name;
    -- The function, not the procedure: no transaction control needed inside a cron job.
    PERFORM pgdw.schedule('pgdw-partman-maintenance', '1 hour', 'SELECT partman.run_maintenance()');
END $$;
COMMENT ON FUNCTION pgdw.partition_daily(regclass, text, interval, text) IS
    'Daily partitions by pg_partman with retention that drops old partitions, maintained hourly';

-- Freshness in SQL (for dashboards and alert rules) -----------------------------------------

CREATE OR REPLACE VIEW pgdw.job_freshness AS
SELECT s.job, s.every, s.period, last.status AS last_status, last.started_at AS last_started,
       last.error AS last_error, ok.finished_at AS last_success,
       now() - ok.finished_at AS age,
       -- Stale: no success within two periods (or ever, once a period has passed).
       coalesce(now() - ok.finished_at > 2 * s.period, false) AS stale,
       coalesce(last.status = 'failed', false) AS failing
  FROM pgdw.schedules s
  LEFT JOIN LATERAL (SELECT status, started_at, error FROM pgdw.runs r WHERE r.job = s.job
                      ORDER BY r.id DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (SELECT finished_at FROM pgdw.runs r WHERE r.job = s.job AND r.status = 'succeeded'
                      ORDER BY r.id DESC LIMIT 1) ok ON true;
COMMENT ON VIEW pgdw.job_freshness IS
    'Per scheduled job: the last run, the last success, its age, stale (no success within two periods) and failing';

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
