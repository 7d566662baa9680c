-- Running a job with a record: one run at a time per job, its outcome in the run log.

-- The advisory lock a run of `job` holds until its transaction ends (pgdw.run, each chunk of
-- a metric load, a metric load's tick): one key for all of them, or "a job runs once at a
-- time" would silently stop holding between them.
CREATE OR REPLACE FUNCTION pgdw.job_lock(job text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT hashtextextended('pgdw.run:' || job, 0) $$;

-- The run log's rows are written only here, by SQL jobs (pgdw.run) and the workers' metric
-- loads alike: a run starts, may add rows as it goes, and finishes, failed when `error` is
-- given, the counts it gives added to those it added as it went (NULL: none counted). Runs
-- older than 30 days are dropped as one finishes.
CREATE OR REPLACE FUNCTION pgdw.run_start(job text, waited interval DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO pgdw.runs (job, waited) VALUES (job, waited) RETURNING id;
$$;

CREATE OR REPLACE FUNCTION pgdw.run_progress(run bigint, inserted bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgdw.runs SET rows_inserted = coalesce(rows_inserted, 0) + inserted WHERE id = run;
$$;

CREATE OR REPLACE FUNCTION pgdw.run_finish(run bigint, error text DEFAULT NULL,
    inserted bigint DEFAULT NULL, updated bigint DEFAULT NULL, deleted bigint DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgdw.runs
       SET finished_at = clock_timestamp(),
           status = CASE WHEN run_finish.error IS NULL THEN 'succeeded' ELSE 'failed' END,
           error = run_finish.error,
           rows_inserted = CASE WHEN run_finish.inserted IS NULL THEN rows_inserted ELSE coalesce(rows_inserted, 0) + run_finish.inserted END,
           rows_updated = CASE WHEN run_finish.updated IS NULL THEN rows_updated ELSE coalesce(rows_updated, 0) + run_finish.updated END,
           rows_deleted = CASE WHEN run_finish.deleted IS NULL THEN rows_deleted ELSE coalesce(rows_deleted, 0) + run_finish.deleted END
     WHERE id = run;
    DELETE FROM pgdw.runs WHERE started_at < now() - interval '30 days';
$$;

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
    IF NOT pg_try_advisory_xact_lock(pgdw.job_lock(job)) THEN
        asked := clock_timestamp();
        RAISE NOTICE 'pgdw: job % waits for another run of it to finish', job;
        PERFORM pg_advisory_xact_lock(pgdw.job_lock(job));
    END IF;
    run_id := pgdw.run_start(job, clock_timestamp() - asked);
    BEGIN
        -- A query may return (inserted, updated, deleted) counts, as pgdw.sync does; any
        -- other statement (INSERT, REFRESH, CALL, DDL) returns no row to read them from.
        -- The comment names the job in pg_stat_statements (with pg_stat_statements.track =
        -- all, which records statements run inside procedures) for `pgdw doctor`.
        IF command ~* '^\s*(\(\s*)*(select|with|values|table)\M' THEN
            EXECUTE pgdw.sql_comment('pgdw job: ' || job) || ' ' || command INTO counts;
        ELSE
            EXECUTE pgdw.sql_comment('pgdw job: ' || job) || ' ' || command;
        END IF;
        PERFORM pgdw.run_finish(run_id, NULL, (to_jsonb(counts)->>'inserted')::bigint,
                                (to_jsonb(counts)->>'updated')::bigint, (to_jsonb(counts)->>'deleted')::bigint);
    EXCEPTION WHEN others THEN
        -- The command's changes are rolled back (the previous data stays); the failure is kept.
        PERFORM pgdw.run_finish(run_id, SQLERRM);
        RAISE WARNING 'pgdw: job % failed: %', job, SQLERRM;
    END;
END $$;
COMMENT ON PROCEDURE pgdw.run(text, text) IS
    'Run a command as job, recording it in pgdw.runs; a failure rolls the command back and is recorded';

-- `a, b, c`: column names quoted as identifiers, in their order (the SQL every generated
-- statement of pgdw's lists its columns with).
CREATE OR REPLACE FUNCTION pgdw.idents(cols text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(format('%I', c), ', ' ORDER BY i) FROM unnest(cols) WITH ORDINALITY u (c, i);
$$;
