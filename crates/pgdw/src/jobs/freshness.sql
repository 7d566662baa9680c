-- Freshness in SQL (for dashboards and alert rules).

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

-- When a table pgdw loads was last up to date with its source, as `pgdw status` reports it:
-- a replicated table, the source's last sample less the lag then; a metric load's target, or
-- any table given with the job that loads it, that job's last success (pgdw.job_freshness); a
-- rollup, the older of its source's time and its oldest change not applied. What dbt's
-- `loaded_at_query` asks (docs/dbt.md). Security definer: it tells times, not data, to roles
-- that cannot read schema pgdw.
CREATE OR REPLACE FUNCTION pgdw.loaded_at(tbl regclass, job text DEFAULT NULL) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j    text := job;
    at   timestamptz;
    lag  record;
    src  regclass;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'pgdw.loaded_at: name the table';
    END IF;
    IF j IS NULL THEN
        SELECT min(l.job) INTO j FROM pgdw.metric_loads l WHERE l.target = tbl;
    END IF;
    IF j IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pgdw.job_freshness f WHERE f.job = j) THEN
            RAISE EXCEPTION 'pgdw.loaded_at: no job %', j USING HINT = 'pgdw status lists the jobs';
        END IF;
        RETURN (SELECT f.last_success FROM pgdw.job_freshness f WHERE f.job = j);
    END IF;
    SELECT r.sampled_at - r.lag INTO at
      FROM pgdw.subscriptions s
      JOIN pg_subscription sub ON sub.subname = pgdw.subscription_name(s.name)
      JOIN pg_subscription_rel sr ON sr.srsubid = sub.oid AND sr.srrelid = tbl
      LEFT JOIN pgdw.replication_source r ON r.subscription = s.name;
    IF FOUND THEN
        RETURN at;
    END IF;
    SELECT x.source INTO src FROM pgdw.rollups x WHERE x.name = tbl;
    IF FOUND THEN
        SELECT * INTO lag FROM pgdw.rollup_lag(tbl);
        at := CASE WHEN NOT lag.recompute_all THEN now() - lag.oldest_change_age END;
        -- A source pgdw does not load is as fresh as its last write: the rollup's own lag.
        BEGIN
            RETURN least(at, pgdw.loaded_at(src));
        EXCEPTION WHEN sqlstate 'PGDW1' THEN
            RETURN at;
        END;
    END IF;
    RAISE EXCEPTION 'pgdw.loaded_at: pgdw does not load %, or not by a job it can tell', tbl
        USING ERRCODE = 'PGDW1',
              HINT = 'name the job that loads it: loaded_at(''' || tbl::text || ''', job => ''...''); pgdw status lists the jobs';
END $$;
COMMENT ON FUNCTION pgdw.loaded_at(regclass, text) IS
    'When a table pgdw loads (replicated, a metric load, a job''s, a rollup) was last up to date, as pgdw status reports it';
