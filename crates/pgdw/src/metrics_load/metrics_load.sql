-- Metric loads (run again at every `pgdw up`; its place in src/runtime/mod.rs).
--
-- `pgdw.load_metrics` keeps a local copy of one Prometheus metric read through a
-- prometheus_fdw foreign table: label sets in a labels table (id, name, labels), samples in a
-- target table (label_id, time, value), from a watermark (synced_to) on. Each schedule's tick
-- loads what came since, one of two ways that load the same rows:
-- * with a pgdw worker running, a 'metrics' task: the worker reads Prometheus through the same
--   Rust code as the foreign table and streams the samples into binary COPY FROM STDIN, six
--   hours per transaction. COPY inserts rows in batches; the executor's INSERT ... SELECT inserts
--   (and logs) them one at a time, and is the limit of the other way (about half COPY's rate).
-- * without one, INSERT ... SELECT from the foreign table, in the tick's own run.
-- Both record their runs in pgdw.runs under the load's name, so job_freshness, status and
-- the alert rules read them like any job.

CREATE TABLE IF NOT EXISTS pgdw.metric_loads (
    job       text PRIMARY KEY,
    source    regclass NOT NULL,      -- the prometheus_fdw foreign table
    metric    text NOT NULL,          -- its metric_name: the PromQL sent
    target    regclass NOT NULL,      -- (label_id, time, value)
    labels    regclass NOT NULL,      -- (id, name, labels), unique on (name, labels)
    since     interval NOT NULL,      -- how far back the first load reads
    lag       interval NOT NULL,      -- how far behind now a load stops (samples still arriving)
    synced_to bigint,                 -- epoch seconds loaded up to, inclusive
    task      bigint                  -- the worker's task while one is queued or running
);
COMMENT ON TABLE pgdw.metric_loads IS
    'Each metric kept by pgdw.load_metrics: where it is read, where it goes, how far it is loaded';

-- The type of a table's column (NULL: no such column).
CREATE OR REPLACE FUNCTION pgdw.column_type(tbl regclass, col text) RETURNS regtype
LANGUAGE sql STABLE AS $$
    SELECT atttypid::regtype FROM pg_attribute
     WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped;
$$;

-- The wrapper a foreign table reads through, named by its handler's function (the
-- extension's `<wrapper>_handler`), not by the FOREIGN DATA WRAPPER's name: the seeds and
-- Tembo's README create their own (`CREATE FOREIGN DATA WRAPPER prometheus_wrapper HANDLER
-- prometheus_fdw_handler ...`). NULL: not a foreign table, or a wrapper without a handler.
CREATE OR REPLACE FUNCTION pgdw.foreign_table_wrapper(t regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT regexp_replace(p.proname, '_handler$', '')
      FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
      JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
      JOIN pg_proc p ON p.oid = w.fdwhandler
     WHERE ft.ftrelid = t;
$$;

-- `who`'s error unless column `col` of `tbl` has one of `types`.
CREATE OR REPLACE FUNCTION pgdw.require_column(who text, tbl regclass, col text, types regtype[], hint text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    got regtype := pgdw.column_type(tbl, col);
BEGIN
    IF got IS NULL OR NOT got = ANY (types) THEN
        RAISE EXCEPTION '%: % needs a column % of type %, %', who, tbl, col, array_to_string(types::text[], ' or '),
              CASE WHEN got IS NULL THEN 'and has none' ELSE format('not %s', got) END
            USING HINT = hint;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION pgdw.metric_load_check(source regclass, metric text, target regclass, labels regclass)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    want record;
    kind text;
BEGIN
    SELECT pgdw.foreign_table_wrapper(source) AS wrapper,
           coalesce((SELECT split_part(o, '=', 2) FROM unnest(t.ftoptions) o WHERE o LIKE 'object=%'), 'metrics') AS object
      INTO want
      FROM pg_foreign_table t
     WHERE t.ftrelid = source;
    IF NOT FOUND OR want.wrapper IS DISTINCT FROM 'prometheus_fdw' THEN
        RAISE EXCEPTION 'pgdw.load_metrics: % is not a prometheus_fdw foreign table', source
            USING HINT = 'CREATE FOREIGN TABLE ... (metric_name text, metric_labels jsonb, metric_time bigint, metric_value float8) SERVER <prometheus server> OPTIONS (object ''metrics'')';
    END IF;
    kind := want.object;
    IF kind <> 'metrics' THEN
        RAISE EXCEPTION 'pgdw.load_metrics: % reads Prometheus'' % (object ''%''), not range queries', source, kind, kind
            USING HINT = 'use a foreign table with OPTIONS (object ''metrics'')';
    END IF;
    IF metric IS NULL OR btrim(metric) = '' THEN
        RAISE EXCEPTION 'pgdw.load_metrics: metric needs the metric''s name (or PromQL), for example ''up''';
    END IF;
    -- Each (table, column, types it may have): binary COPY writes exactly these types.
    FOR want IN SELECT * FROM (VALUES
            (source, 'metric_name', '{text}'::regtype[]), (source, 'metric_labels', '{jsonb}'),
            (source, 'metric_time', '{bigint}'), (source, 'metric_value', '{double precision}'),
            (labels, 'id', '{integer,bigint}'), (labels, 'name', '{text}'), (labels, 'labels', '{jsonb}'),
            (target, 'label_id', '{integer,bigint}'), (target, 'time', '{integer,bigint}'),
            (target, 'value', '{real,double precision}')) v (tbl, col, types) LOOP
        PERFORM pgdw.require_column('pgdw.load_metrics', want.tbl, want.col, want.types,
            'labels: (id bigint, name text, labels jsonb, UNIQUE (name, labels)); target: (label_id bigint, time bigint, value float8), time in epoch seconds');
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = labels AND i.indisunique AND i.indpred IS NULL
                      AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM unnest(i.indkey) k (attnum)
                             JOIN pg_attribute a ON a.attrelid = labels AND a.attnum = k.attnum) = '{labels,name}') THEN
        RAISE EXCEPTION 'pgdw.load_metrics: % needs a unique constraint on (name, labels): one id per label set', labels
            USING HINT = format('ALTER TABLE %s ADD UNIQUE (name, labels)', labels);
    END IF;
END $$;

-- Keep metric `metric` of foreign table `source` loaded into `target` (label ids from `labels`),
-- every `every`, from `since` ago on the first time. Again with the same job: its definition
-- changes, its watermark stays. Returns the pg_cron job's id.
CREATE OR REPLACE FUNCTION pgdw.load_metrics(job text, source regclass, metric text, target regclass,
    labels regclass, every text DEFAULT '1 minute', since interval DEFAULT '30 days',
    lag interval DEFAULT '1 minute')
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF job IS NULL OR btrim(job) = '' THEN
        RAISE EXCEPTION 'pgdw.load_metrics: a load needs a name (its job''s, for example ''metrics-cpu'')';
    END IF;
    PERFORM pgdw.metric_load_check(source, metric, target, labels);
    IF since IS NULL OR since <= interval '0' OR lag IS NULL OR lag < interval '0' THEN
        RAISE EXCEPTION 'pgdw.load_metrics: since must be positive and lag at least 0 (got % and %)', since, lag;
    END IF;
    INSERT INTO pgdw.metric_loads (job, source, metric, target, labels, since, lag)
    VALUES (job, source, metric, target, labels, since, lag)
    ON CONFLICT ON CONSTRAINT metric_loads_pkey DO UPDATE
       SET source = EXCLUDED.source, metric = EXCLUDED.metric, target = EXCLUDED.target,
           labels = EXCLUDED.labels, since = EXCLUDED.since, lag = EXCLUDED.lag;
    RETURN pgdw.schedule(job, every, format('CALL pgdw.metrics_tick(%L)', job));
END $$;
COMMENT ON FUNCTION pgdw.load_metrics(text, regclass, text, regclass, regclass, text, interval, interval) IS
    'Keep a Prometheus metric loaded into a samples table, by the workers'' COPY when they run, else through the foreign table';

-- A load's definition, or an error saying there is none.
CREATE OR REPLACE FUNCTION pgdw.metric_load(job text) RETURNS pgdw.metric_loads
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l pgdw.metric_loads;
BEGIN
    SELECT * INTO l FROM pgdw.metric_loads x WHERE x.job = metric_load.job;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdw: no metric load %', job USING HINT = 'pgdw.load_metrics creates one';
    END IF;
    RETURN l;
END $$;

-- Where a chunk starting after `lo` ends: the next multiple of `chunk` seconds (a divisor of
-- a day, so that a chunk never spans two daily partitions and COPY's batches go to one
-- partition at a time), or `upto`. Six hours unless said: both ways load six hours at a time.
CREATE OR REPLACE FUNCTION pgdw.metrics_chunk_end(lo bigint, upto bigint, chunk bigint DEFAULT NULL)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(lo, least((lo / coalesce(chunk, 6 * 3600) + 1) * coalesce(chunk, 6 * 3600), upto));
$$;

-- The window a load reads next, in epoch seconds: (lo, hi].
CREATE OR REPLACE FUNCTION pgdw.metrics_window(job text, OUT lo bigint, OUT hi bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(l.synced_to, extract(epoch FROM now() - l.since)::bigint),
           extract(epoch FROM now() - l.lag)::bigint
      FROM pgdw.metric_load(job) l;
$$;

-- Load (lo, hi] through the foreign table: label sets first, then the samples, skipping any
-- already there. The other way's fallback too, for a window that already holds samples.
CREATE OR REPLACE FUNCTION pgdw.metrics_insert(job text, lo bigint, hi bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    l pgdw.metric_loads := pgdw.metric_load(job);
    n bigint;
BEGIN
    EXECUTE format('INSERT INTO %s (name, labels) SELECT DISTINCT metric_name, metric_labels FROM %s
                     WHERE metric_name = $1 AND metric_time > $2 AND metric_time <= $3 ON CONFLICT DO NOTHING',
                   l.labels, l.source) USING l.metric, lo, hi;
    EXECUTE format('WITH ins AS (INSERT INTO %s (label_id, time, value)
                      SELECT x.id, m.metric_time, m.metric_value
                        FROM %s m JOIN %s x ON x.name = m.metric_name AND x.labels = m.metric_labels
                       WHERE m.metric_name = $1 AND m.metric_time > $2 AND m.metric_time <= $3
                      ON CONFLICT DO NOTHING RETURNING 1)
                    SELECT count(*) FROM ins', l.target, l.source, l.labels)
        INTO n USING l.metric, lo, hi;
    RETURN n;
END $$;

-- Whether (lo, hi] already holds samples of the load's metric (a window loaded another way,
-- or an earlier definition's): COPY would stop at the first duplicate, so it is not used there.
CREATE OR REPLACE FUNCTION pgdw.metrics_overlap(job text, lo bigint, hi bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l pgdw.metric_loads := pgdw.metric_load(job);
    found_ boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s x JOIN %s v ON v.label_id = x.id
                     WHERE x.name = $1 AND v.time > $2 AND v.time <= $3)', l.labels, l.target)
        INTO found_ USING l.metric, lo, hi;
    RETURN found_;
END $$;

-- The foreign-table way, as one job run (one transaction: a failure leaves the watermark and
-- the samples as they were): the window since the watermark, six hours per statement, then the
-- watermark. Per statement, because a statement holds Prometheus' replies for its whole range
-- (up to 11,000 points a series each, and the next one prefetched) and the foreign key's
-- queued checks for every row it inserted: a month in one statement took 600 MB of backend
-- memory for 200 series; six hours at a time stays flat whatever the range.
CREATE OR REPLACE FUNCTION pgdw.metrics_sync(job text, OUT inserted bigint, OUT updated bigint, OUT deleted bigint)
LANGUAGE plpgsql AS $$
DECLARE
    w  record := pgdw.metrics_window(job);
    lo bigint := w.lo;
    hi bigint;
BEGIN
    inserted := 0;
    WHILE lo < w.hi LOOP
        hi := pgdw.metrics_chunk_end(lo, w.hi);
        inserted := inserted + pgdw.metrics_insert(job, lo, hi);
        lo := hi;
    END LOOP;
    IF w.hi > w.lo THEN
        UPDATE pgdw.metric_loads SET synced_to = w.hi WHERE metric_loads.job = metrics_sync.job;
    END IF;
    updated := 0;
    deleted := 0;
END $$;

-- What the schedule runs. With workers: queue a 'metrics' task unless one is queued or running
-- (a task in the history has finished). Without: load through the foreign table now.
CREATE OR REPLACE PROCEDURE pgdw.metrics_tick(job text)
LANGUAGE plpgsql AS $$
DECLARE
    l pgdw.metric_loads;
BEGIN
    -- The job's lock first, as a worker's chunk and pgdw.run take it (the same order everywhere:
    -- no deadlock), so that two ticks never queue two tasks.
    PERFORM pg_advisory_xact_lock(pgdw.job_lock(job));
    l := pgdw.metric_load(job);
    IF pgdw.workers_running() THEN
        IF l.task IS NULL OR EXISTS (SELECT 1 FROM pgdw.task_history h WHERE h.id = l.task) THEN
            UPDATE pgdw.metric_loads x SET task = pgdw.enqueue('metrics', jsonb_build_object('job', l.job))
             WHERE x.job = l.job;
        END IF;
    ELSE
        CALL pgdw.run(job, format('SELECT * FROM pgdw.metrics_sync(%L)', job));
    END IF;
END $$;

-- The worker's way, one chunk: the window it may take next (`chunk` seconds at most, by default
-- six hours; a run's first is shorter, so that the server starts writing sooner) and where
-- the chunk after it ends (the worker reads it from Prometheus meanwhile), with the job's lock
-- (pgdw.run's) held until the chunk's transaction ends, so that no other run of the load
-- writes the same window. lo = hi: nothing left.
CREATE OR REPLACE FUNCTION pgdw.metrics_chunk(job text, chunk bigint, upto bigint,
    OUT lo bigint, OUT hi bigint, OUT overlap boolean, OUT next_hi bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(pgdw.job_lock(job));
    SELECT w.lo INTO lo FROM pgdw.metrics_window(job) w;
    hi := pgdw.metrics_chunk_end(lo, upto, chunk);
    next_hi := pgdw.metrics_chunk_end(hi, upto);
    overlap := hi > lo AND pgdw.metrics_overlap(job, lo, hi);
END $$;
