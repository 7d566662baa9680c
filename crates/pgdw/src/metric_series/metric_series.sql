-- Metric series at a panel's resolution (run again at every `pgdw up`; its place in
-- src/runtime/mod.rs).
--
-- A panel over a year asks for as many points as it is wide, not for the year's samples.
-- `pgdw.metric_series(metric, labels_filter, from, to, max_points)` (and `dw.metric_series`
-- for BI tools) answers from the coarsest rollup of the samples whose buckets are no wider
-- than one point, raw samples when none is: its cost follows the points asked, not the range
-- (grafana/grafana#89154 and apache/superset#2432 ask for exactly this).
--
-- The rollups are pgdw.rollup's, declared once per samples table with
-- `pgdw.metric_resolutions`. They are exact up to their last run; a bucket with changes not
-- applied yet (a key captured in its rollup's changes table, or in the one of the rollup it is
-- built on) is read from the samples instead. So an answer equals the same aggregate over the
-- raw samples at any moment, not only once the workers have caught up.
--
-- Reading the changes tables follows pgdw.rollup_lag's rule: a run empties them with TRUNCATE,
-- which is not MVCC, so their lock is taken first and the answer read with a snapshot taken
-- after it (READ COMMITTED; each statement of the function gets its own).

CREATE TABLE IF NOT EXISTS pgdw.metric_series_sources (
    samples regclass PRIMARY KEY,       -- (label_id, time, value), time in epoch seconds
    labels  regclass NOT NULL           -- (id, name, labels)
);
COMMENT ON TABLE pgdw.metric_series_sources IS
    'Each samples table pgdw.metric_series reads, with its labels table';

CREATE TABLE IF NOT EXISTS pgdw.metric_tiers (
    rollup   regclass PRIMARY KEY,      -- a pgdw.rollup keyed (label id, bucket start)
    samples  regclass NOT NULL REFERENCES pgdw.metric_series_sources ON DELETE CASCADE,
    width    int NOT NULL CHECK (width > 0),   -- its buckets' width in seconds
    sum_expr text NOT NULL              -- a bucket's sum of values, over the rollup's columns
);
COMMENT ON TABLE pgdw.metric_tiers IS
    'The rollups of a samples table pgdw.metric_series may read instead of the samples, by bucket width';

-- The bucket rollup r's second key gives a row of its source at time `t` (label 1): its
-- key expressions evaluated over one made-up row of the source's columns, in the schemas they
-- were checked in.
CREATE OR REPLACE FUNCTION pgdw.metric_bucket_of(r pgdw.rollups, label_col text, time_col text, t bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    cols text;
    b    bigint;
    was  text := pgdw.rollup_enter(r);
BEGIN
    SELECT string_agg(format(CASE a.attname WHEN time_col THEN t::text || '::%s AS %I'
                                            WHEN label_col THEN '1::%s AS %I'
                                            ELSE 'NULL::%s AS %I' END,
                             format_type(a.atttypid, a.atttypmod), a.attname), ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_attribute a WHERE a.attrelid = r.source AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('SELECT (%s)::bigint FROM (SELECT %s) AS %I', r.keys[2], cols,
                   (SELECT relname FROM pg_class WHERE oid = r.source))
       INTO b;
    PERFORM pgdw.rollup_leave(was);
    RETURN b;
END $$;

-- Declare the rollups pgdw.metric_series may read for `samples`, as {"rollup": "width"}, for
-- example '{"metric_hourly": "1 hour", "metric_daily": "1 day"}' (again: replaces the
-- declaration). Each is a pgdw.rollup of the samples or of a finer one declared with it, whose
-- keys are the label id and the bucket's start in epoch seconds, with columns `min`, `max`,
-- `samples` (the count) and `sum` or `avg`. Returns how many were declared.
CREATE OR REPLACE FUNCTION pgdw.metric_resolutions(samples regclass, rollups jsonb DEFAULT '{}',
    labels regclass DEFAULT NULL)
RETURNS int LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    lbl    regclass := labels;
    want   record;
    t      record;
    tier   regclass;
    r      pgdw.rollups;
    below  pgdw.metric_tiers;
    secs   numeric;
    src_w  int;
    lcol   text;
    tcol   text;
    probe  bigint;
    n      int := 0;
BEGIN
    IF samples IS NULL THEN
        RAISE EXCEPTION 'pgdw.metric_resolutions: samples needs the samples table (label_id, time, value)';
    END IF;
    IF lbl IS NULL THEN
        SELECT min(l.labels::text)::regclass INTO lbl FROM pgdw.metric_loads l WHERE l.target = samples;
    END IF;
    IF lbl IS NULL THEN
        RAISE EXCEPTION 'pgdw.metric_resolutions: no metric load writes %, so its labels table is not known', samples
            USING HINT = 'name it: labels => ''metric_labels''';
    END IF;
    FOR want IN SELECT * FROM (VALUES
            (lbl, 'id', '{integer,bigint}'::regtype[]), (lbl, 'name', '{text}'), (lbl, 'labels', '{jsonb}'),
            (samples, 'label_id', '{integer,bigint}'), (samples, 'time', '{integer,bigint}'),
            (samples, 'value', '{real,double precision}')) v (tbl, col, types) LOOP
        PERFORM pgdw.require_column('pgdw.metric_resolutions', want.tbl, want.col, want.types,
            'labels: (id bigint, name text, labels jsonb); samples: (label_id bigint, time bigint, value float8), time in epoch seconds, as pgdw.load_metrics writes them');
    END LOOP;
    IF rollups IS NULL OR jsonb_typeof(rollups) <> 'object' THEN
        RAISE EXCEPTION 'pgdw.metric_resolutions: rollups must be an object of rollup names and widths, for example ''{"metric_hourly": "1 hour"}'', not %', rollups;
    END IF;
    FOR t IN SELECT key, value FROM jsonb_each_text(rollups) LOOP
        BEGIN
            secs := extract(epoch FROM t.value::interval);
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
            RAISE EXCEPTION 'pgdw.metric_resolutions: the width of % must be an interval such as ''1 hour'', not %', t.key, t.value;
        END;
        IF secs <= 0 OR secs <> trunc(secs) OR secs > 2147483647 THEN
            RAISE EXCEPTION 'pgdw.metric_resolutions: the width of % must be a positive whole number of seconds, not %', t.key, t.value;
        END IF;
    END LOOP;

    DELETE FROM pgdw.metric_tiers m WHERE m.samples = samples;
    INSERT INTO pgdw.metric_series_sources (samples, labels) VALUES (samples, lbl)
    ON CONFLICT ON CONSTRAINT metric_series_sources_pkey DO UPDATE SET labels = EXCLUDED.labels;
    -- Finest first: a rollup built on another must find it declared.
    FOR t IN SELECT key, extract(epoch FROM value::interval)::int AS width
               FROM jsonb_each_text(rollups) ORDER BY 2 LOOP
        tier := to_regclass(t.key);
        SELECT * INTO r FROM pgdw.rollups x WHERE x.name = tier;
        IF tier IS NULL OR NOT FOUND THEN
            RAISE EXCEPTION 'pgdw.metric_resolutions: % is not a rollup', t.key
                USING HINT = 'pgdw.rollup makes one, keyed (label_id, time / 3600 * 3600) for hourly buckets';
        END IF;
        IF cardinality(r.keys) <> 2 THEN
            RAISE EXCEPTION 'pgdw.metric_resolutions: % has % keys; a metric rollup has two, the label id and the bucket''s start', tier, cardinality(r.keys);
        END IF;
        IF r.source = samples THEN
            src_w := 1;
            lcol := 'label_id';
            tcol := 'time';
        ELSE
            SELECT * INTO below FROM pgdw.metric_tiers m WHERE m.rollup = r.source AND m.samples = samples;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'pgdw.metric_resolutions: % is built on %, which is neither % nor a finer rollup declared with it', tier, r.source, samples;
            END IF;
            IF t.width % below.width <> 0 THEN
                RAISE EXCEPTION 'pgdw.metric_resolutions: % (% s) is built on % (% s): its width must be a multiple of that', tier, t.width, r.source, below.width;
            END IF;
            src_w := below.width;
            SELECT x.key_columns[1], x.key_columns[2] INTO lcol, tcol FROM pgdw.rollups x WHERE x.name = r.source;
        END IF;
        IF NOT ARRAY['min', 'max', 'samples'] <@ r.value_columns OR NOT r.value_columns && ARRAY['sum', 'avg'] THEN
            RAISE EXCEPTION 'pgdw.metric_resolutions: % needs columns min, max, samples (the count) and sum or avg; it has %', tier, array_to_string(r.value_columns, ', ');
        END IF;
        -- The second key must put each time of the source in the bucket starting at the
        -- multiple of the width at or below it: checked at the edges of a few buckets.
        FOREACH probe IN ARRAY ARRAY[0, t.width - src_w, t.width, 2 * t.width - src_w,
                                     1700000000::bigint / t.width * t.width,
                                     1700000000::bigint / t.width * t.width + t.width - src_w] LOOP
            IF pgdw.metric_bucket_of(r, lcol, tcol, probe) IS DISTINCT FROM probe / t.width * t.width THEN
                RAISE EXCEPTION 'pgdw.metric_resolutions: the key % of % puts time % in bucket %, not %: its buckets are not % s wide',
                      r.keys[2], tier, probe, pgdw.metric_bucket_of(r, lcol, tcol, probe), probe / t.width * t.width, t.width;
            END IF;
        END LOOP;
        INSERT INTO pgdw.metric_tiers (rollup, samples, width, sum_expr)
        VALUES (tier, samples, t.width,
                CASE WHEN 'sum' = ANY (r.value_columns) THEN 't.sum' ELSE 't.avg * t.samples' END);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION pgdw.metric_resolutions(regclass, jsonb, regclass) IS
    'Declare the rollups (and their widths) pgdw.metric_series may read for a samples table';

-- The rollups tier `tier` is computed from, itself first, down to the one built on the samples
-- (shorter when one in between is no longer a rollup).
CREATE OR REPLACE FUNCTION pgdw.metric_tier_chain(tier regclass) RETURNS SETOF pgdw.rollups
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (name, depth) AS (
        SELECT tier, 1
        UNION ALL
        SELECT r.source, c.depth + 1 FROM chain c JOIN pgdw.rollups r ON r.name = c.name
         WHERE EXISTS (SELECT 1 FROM pgdw.metric_tiers m WHERE m.rollup = r.source)
    )
    SELECT r.* FROM chain c JOIN pgdw.rollups r ON r.name = c.name ORDER BY c.depth;
$$;

-- Whether tier `tier` can answer now: it and every rollup it is built on are still kept and
-- none is to be recomputed whole (a TRUNCATE, a dropped partition). Takes their changes
-- tables' locks, held to the end of the transaction, before the answer's snapshot. Security
-- definer: readers of the rollups do not read pgdw's tables.
CREATE OR REPLACE FUNCTION pgdw.metric_tier_ready(tier regclass) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r       pgdw.rollups;
    samples regclass := (SELECT m.samples FROM pgdw.metric_tiers m WHERE m.rollup = tier);
    last    regclass;
BEGIN
    FOR r IN SELECT * FROM pgdw.metric_tier_chain(tier) LOOP
        EXECUTE format('LOCK TABLE %s IN ACCESS SHARE MODE', pgdw.rollup_changes(r.id));
        IF r.full_since IS NOT NULL THEN
            RETURN false;
        END IF;
        last := r.source;
    END LOOP;
    RETURN last IS NOT NULL AND last = samples;
END $$;

-- The (label id, bucket) groups of tier `tier` with changes not applied yet, in it or in a
-- rollup it is built on. STABLE: read with the caller's snapshot, taken after
-- pgdw.metric_tier_ready's locks.
CREATE OR REPLACE FUNCTION pgdw.metric_stale(tier regclass) RETURNS TABLE (label_id bigint, bucket bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    w int := (SELECT width FROM pgdw.metric_tiers WHERE rollup = tier);
    q text;
BEGIN
    SELECT string_agg(format('SELECT pgdw_k1::bigint, pgdw_k2::bigint / %s * %1$s FROM %s', w, pgdw.rollup_changes(r.id)), ' UNION ')
      INTO q FROM pgdw.metric_tier_chain(tier) r;
    IF q IS NOT NULL THEN
        RETURN QUERY EXECUTE q;
    END IF;
END $$;

-- What pgdw.metric_series reads for a range and a number of points: the coarsest declared
-- rollup whose buckets are no wider than one point and that can answer now (NULL: the
-- samples), and the width of a point, a multiple of the rollup's width, so that the whole
-- buckets between `from` and `to` number at most max_points.
CREATE OR REPLACE FUNCTION pgdw.metric_series_resolution(samples regclass, "from" timestamptz,
    "to" timestamptz, max_points int, OUT rollup regclass, OUT bucket_seconds bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    lo   bigint := floor(extract(epoch FROM "from"));
    hi   bigint := ceil(extract(epoch FROM "to"));
    step bigint;
    unit bigint := 1;
    t    record;
BEGIN
    IF "from" IS NULL OR "to" IS NULL OR "from" >= "to" THEN
        RAISE EXCEPTION 'pgdw.metric_series: from must be before to (got % and %)', "from", "to";
    END IF;
    IF max_points IS NULL OR max_points < 1 THEN
        RAISE EXCEPTION 'pgdw.metric_series: max_points must be at least 1, not %', max_points;
    END IF;
    step := greatest(1, ceil((hi - lo)::numeric / max_points));
    FOR t IN SELECT m.rollup, m.width FROM pgdw.metric_tiers m
              WHERE m.samples = samples AND m.width <= step ORDER BY m.width DESC LOOP
        IF pgdw.metric_tier_ready(t.rollup) THEN
            rollup := t.rollup;
            unit := t.width;
            EXIT;
        END IF;
    END LOOP;
    bucket_seconds := (step + unit - 1) / unit * unit;
    -- Aligned to the epoch, the range's first and last buckets are partly outside it: widen
    -- until the whole buckets fit.
    WHILE ceil(hi::numeric / bucket_seconds) - floor(lo::numeric / bucket_seconds) > max_points LOOP
        bucket_seconds := bucket_seconds + unit;
    END LOOP;
END $$;

-- The samples table a metric is read from: the one given, else the only one declared.
CREATE OR REPLACE FUNCTION pgdw.metric_series_source(samples regclass) RETURNS pgdw.metric_series_sources
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s pgdw.metric_series_sources;
    n int;
BEGIN
    IF samples IS NOT NULL THEN
        SELECT * INTO s FROM pgdw.metric_series_sources x WHERE x.samples = metric_series_source.samples;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pgdw.metric_series: % is not declared', samples
                USING HINT = format('SELECT pgdw.metric_resolutions(%L, ''{}'', labels => ...) declares it (with no rollups: read raw)', samples);
        END IF;
        RETURN s;
    END IF;
    SELECT count(*) INTO n FROM pgdw.metric_series_sources;
    IF n <> 1 THEN
        RAISE EXCEPTION 'pgdw.metric_series: % samples tables are declared; name one with source => ...', n
            USING HINT = 'pgdw.metric_resolutions declares a samples table and its rollups';
    END IF;
    SELECT * INTO s FROM pgdw.metric_series_sources;
    RETURN s;
END $$;

-- One point per series (label set of `metric` containing `labels_filter`) and bucket: the
-- buckets are bucket_seconds wide (pgdw.metric_series_resolution), aligned to the epoch, every
-- one that overlaps [from, to) and whole (a point is the bucket it names, not its part inside
-- the range). avg, min, max and the count of the bucket's samples.
--
-- The series' ids are read first, into an array the queries are given: the planner then
-- knows how many series it reads (an id list from a jsonb containment is a guess, and a wrong
-- one made it read the whole tier instead of each series' range by its key index).
CREATE OR REPLACE FUNCTION pgdw.metric_series(metric text, labels_filter jsonb, "from" timestamptz,
    "to" timestamptz, max_points int DEFAULT 1000, source regclass DEFAULT NULL)
RETURNS TABLE ("time" timestamptz, labels jsonb, avg double precision, min double precision,
               max double precision, samples bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    src  pgdw.metric_series_sources := pgdw.metric_series_source(source);
    res  record;
    t    pgdw.metric_tiers;
    r    pgdw.rollups;
    w    bigint;
    lo   bigint;
    hi   bigint;
    ids  bigint[];
    lbl  text;
BEGIN
    IF metric IS NULL THEN
        RAISE EXCEPTION 'pgdw.metric_series: metric needs the metric''s name';
    END IF;
    res := pgdw.metric_series_resolution(src.samples, "from", "to", max_points);
    w := res.bucket_seconds;
    lo := floor(extract(epoch FROM "from") / w) * w;
    hi := ceil(extract(epoch FROM "to") / w) * w;
    EXECUTE format('SELECT array_agg(id::bigint ORDER BY id) FROM %s WHERE name = $1 AND labels @> coalesce($2, ''{}'')', src.labels)
       INTO ids USING metric, labels_filter;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    lbl := format('(SELECT id::bigint AS id, labels FROM %s WHERE id = ANY ($1)) ids', src.labels);
    IF res.rollup IS NULL THEN
        RETURN QUERY EXECUTE format(
            'SELECT to_timestamp(a.b * %s), ids.labels, a.avg, a.min, a.max, a.n
               FROM (SELECT v.label_id::bigint AS label_id, v.time::bigint / %1$s AS b, avg(v.value)::float8 AS avg,
                            min(v.value)::float8 AS min, max(v.value)::float8 AS max, count(*) AS n
                       FROM %s v WHERE v.label_id = ANY ($1) AND v.time >= %s AND v.time < %s
                      GROUP BY 1, 2) a
               JOIN %s ON ids.id = a.label_id
              ORDER BY ids.id, a.b', w, src.samples, lo, hi, lbl)
            USING ids;
        RETURN;
    END IF;
    SELECT * INTO t FROM pgdw.metric_tiers m WHERE m.rollup = res.rollup;
    SELECT * INTO r FROM pgdw.rollups x WHERE x.name = res.rollup;
    -- Whole buckets of the rollup, except those with changes not applied: those from the samples.
    -- Grouped by label id, the labels joined after: sorting by a jsonb costs more than the rest.
    RETURN QUERY EXECUTE format(
        'WITH stale AS MATERIALIZED (
             SELECT s.label_id, s.bucket FROM pgdw.metric_stale(%1$L) s
              WHERE s.label_id = ANY ($1) AND s.bucket >= %2$s AND s.bucket < %3$s),
         parts AS (
             SELECT t.%4$I::bigint AS label_id, t.%5$I::bigint AS b, (%6$s)::float8 AS sum,
                    t.min::float8 AS min, t.max::float8 AS max, t.samples::bigint AS n
               FROM %1$s t
              WHERE t.%4$I = ANY ($1) AND t.%5$I >= %2$s AND t.%5$I < %3$s
                AND NOT EXISTS (SELECT 1 FROM stale s WHERE s.label_id = t.%4$I AND s.bucket = t.%5$I)
             UNION ALL
             SELECT s.label_id, s.bucket, sum(v.value)::float8, min(v.value)::float8, max(v.value)::float8, count(*)
               FROM stale s JOIN %7$s v ON v.label_id = s.label_id AND v.time >= s.bucket AND v.time < s.bucket + %8$s
              GROUP BY 1, 2)
         SELECT to_timestamp(a.b * %9$s), ids.labels, a.sum / a.n, a.min, a.max, a.n
           FROM (SELECT p.label_id, p.b / %9$s AS b, sum(p.sum) AS sum, min(p.min) AS min, max(p.max) AS max,
                        sum(p.n)::bigint AS n
                   FROM parts p WHERE p.n > 0 GROUP BY 1, 2) a
           JOIN %10$s ON ids.id = a.label_id
          ORDER BY ids.id, a.b',
        t.rollup, lo, hi, r.key_columns[1], r.key_columns[2], t.sum_expr, src.samples, t.width, w, lbl)
        USING ids;
END $$;
COMMENT ON FUNCTION pgdw.metric_series(text, jsonb, timestamptz, timestamptz, int, regclass) IS
    'A metric''s series between two times in at most max_points buckets, from the coarsest rollup that fits (exact at any moment)';
