-- Product analytics over an event table (run again at every `pgdw up`, after rollup.sql: src/runtime/mod.rs).
--
-- pgdw.events(table, user_column, time_column, name_column) registers a table of events (a
-- user, a time, an event name); pgdw.active_users, pgdw.funnel, pgdw.retention and pgdw.trend
-- answer over it. Every boundary is in UTC whatever the session's TimeZone.
--
-- What registration keeps, all of it exact from the changes, by rollups (rollup.sql) chained
-- from one capture on the source, so writers pay for one statement trigger and nothing else:
--
--   source ─► user_day_name (user, day, name: events, first time, hour mask, every time)
--               ├─► user_day   (user, day: names, hour mask) ─┬─► user       (days active)
--               │                                              ├─► user_week  (user, Monday: names)
--               │                                              └─► user_month (user, month: names)
--               └─► firsts     (user, name: first time ever)
--
-- The layers read from user_day are recomputed only when a user-day's names or hours change
-- (a run rewrites only the groups whose values differ), not at every event.
--
-- The first level is the only one that reads the source; its groups below the source's oldest
-- retained partition are frozen (rollups.frozen_key), so raw events expiring take nothing out
-- of the answers (the seed's "TTL old raw events"). Each rollup table row contributes to
-- per-bucket counts on its own (a user's presence in an hour lives in one user_day row, in a
-- week in one user_week row), so statement triggers on the rollup tables fold the rows a run
-- replaced out of the counts and the new ones in, whatever order a run's statements take:
--
--   by_name   (kind h/d/w/m, bucket, name: events, users)   from user_day_name, user_week, user_month
--   by_bucket (kind h/d/w/m, bucket: users of any event)   from user_day, user_week, user_month
--   active    (day: wau, mau)                              from user (a day's dau is by_bucket's d)
--
-- Each table of counts has one writer per kind, so runs of different rollups never update the
-- same row. An unregistered table (or scan => true) answers from its rows, by the same SQL.

CREATE TABLE IF NOT EXISTS pgdw.event_tables (
    id          serial PRIMARY KEY,
    source      regclass NOT NULL UNIQUE,
    user_column text NOT NULL,
    time_column text NOT NULL,
    name_column text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.event_tables IS 'Event tables pgdw.events registered, whose analytics pgdw keeps';

-- An event table as the answers read it: its registration (NULL: scan it) and the SQL of its
-- user, time (timestamptz) and name (text).
DO $$
BEGIN
    CREATE TYPE pgdw.event_source AS (source regclass, reg int, u text, t text, n text);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- The objects of registration `id`, by what they hold.
CREATE OR REPLACE FUNCTION pgdw.events_object(id int, what text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('pgdw.%I', format('events_%s_%s', id, what));
$$;

-- The oldest instant a partitioned table still holds: the lowest lower bound of its range
-- partitions (pg_partman's expired ones are detached first). NULL when it is not partitioned.
-- A bound of a timestamp (or date) key is read as UTC, one of a timestamptz key carries its
-- offset: neither depends on the session's TimeZone.
CREATE OR REPLACE FUNCTION pgdw.events_retained_from(source regclass) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    -- A partition from MINVALUE holds everything before the others: nothing is expired.
    SELECT CASE WHEN bool_or(b.expr LIKE 'FOR VALUES FROM (MINVALUE)%') THEN NULL
                ELSE min(CASE WHEN k.typ = 'timestamptz'::regtype THEN r.v::timestamptz ELSE r.v::timestamp AT TIME ZONE 'UTC' END) END
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
           LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b,
           LATERAL (SELECT (regexp_match(b.expr, 'FROM \(''([^'']*)''\)'))[1] AS v) r,
           LATERAL (SELECT a.atttypid::regtype AS typ FROM pg_partitioned_table p JOIN pg_attribute a
                      ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] WHERE p.partrelid = source) k
     WHERE i.inhparent = source;
$$;

-- The index pgdw.events makes on the source (a change's rows found by user, day and name).
CREATE OR REPLACE FUNCTION pgdw.events_source_index(id int, source regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, left(format('pgdw_events_%s_%s', id, c.relname), 63))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
$$;

-- A column's time as timestamptz: a timestamp without time zone is read as UTC.
CREATE OR REPLACE FUNCTION pgdw.events_time_expr(source regclass, col text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a.atttypid = 'timestamp'::regtype THEN format('(%I AT TIME ZONE ''UTC'')', col) ELSE quote_ident(col) END
      FROM pg_attribute a WHERE a.attrelid = source AND a.attname = col;
$$;

-- Where a table's events are described: its registration, or the columns given for a scan.
-- Refuses what cannot be answered, naming the argument.
CREATE OR REPLACE FUNCTION pgdw.events_resolve(fn text, tbl text, user_column text, time_column text, name_column text)
RETURNS pgdw.event_source LANGUAGE plpgsql STABLE AS $$
DECLARE
    source_ regclass;
    reg int;
    e   pgdw.event_tables;
    typ regtype;
    c   text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION '%: tbl is NULL: name an event table', fn;
    END IF;
    source_ := to_regclass(tbl);
    IF source_ IS NULL OR (SELECT relkind FROM pg_class WHERE oid = source_) NOT IN ('r', 'p', 'v', 'm', 'f') THEN
        RAISE EXCEPTION '%: tbl: the table % does not exist', fn, tbl
            USING HINT = 'Name it as in FROM, schema-qualified if needed';
    END IF;
    IF NOT has_table_privilege(session_user, source_, 'SELECT') THEN
        RAISE EXCEPTION '%: tbl: permission denied for table %', fn, source_ USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO e FROM pgdw.event_tables x WHERE x.source = source_;
    IF FOUND AND user_column IS NULL AND time_column IS NULL AND name_column IS NULL THEN
        reg := e.id;
        user_column := e.user_column; time_column := e.time_column; name_column := e.name_column;
    ELSIF user_column IS NULL OR time_column IS NULL OR name_column IS NULL THEN
        RAISE EXCEPTION '%: tbl: % is not registered for analytics, and its columns are not given', fn, source_
            USING HINT = format('SELECT pgdw.events(%L, user_column => ..., time_column => ..., name_column => ...) keeps its answers; '
                             || 'or pass user_column, time_column and name_column to scan it', source_::text);
    END IF;
    FOREACH c IN ARRAY ARRAY[user_column, time_column, name_column] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = source_ AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION '%: %: % has no column %', fn,
                CASE c WHEN user_column THEN 'user_column' WHEN time_column THEN 'time_column' ELSE 'name_column' END, source_, c;
        END IF;
    END LOOP;
    typ := (SELECT atttypid FROM pg_attribute a WHERE a.attrelid = source_ AND a.attname = time_column);
    IF typ NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
        RAISE EXCEPTION '%: time_column: %.% is %, not a timestamp', fn, source_, time_column, typ;
    END IF;
    RETURN (source_, reg, quote_ident(user_column), pgdw.events_time_expr(source_, time_column), format('%I::text', name_column))::pgdw.event_source;
END $$;

-- Folding rollup rows into the counts ----------------------------------------------------------

-- Add the contributions of the rows in `old_rel` (taken out) and `new_rel` (put in) of one
-- layer of registration `id` to its tables of counts. Either relation may be NULL. Called by
-- the layers' statement triggers with their transition tables, and once per layer at
-- registration with the whole layer table. Returns the statement, for the trigger function to
-- run itself: transition tables are visible to the trigger's own statements only.
CREATE OR REPLACE FUNCTION pgdw.events_fold_sql(id int, layer text, old_rel text, new_rel text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    parts text[] := '{}';
    one   text;
    rel   text;
    sgn   int;
    q     text;
    by_name text := pgdw.events_object(id, 'by_name');
    by_bucket text := pgdw.events_object(id, 'by_bucket');
BEGIN
    FOR rel, sgn IN SELECT * FROM (VALUES (old_rel, -1), (new_rel, 1)) v WHERE v.column1 IS NOT NULL LOOP
        one := CASE layer
            -- Per name, per hour and per day: the events, and the user once.
            WHEN 'user_day_name' THEN format($q$
                SELECT 'n' AS tgt, 'h' AS kind, date_trunc('hour', x.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket, r.name,
                       %2$s * count(*) AS events, %2$s AS users
                  FROM %1$s r, unnest(r.times) x (at) GROUP BY r.user_id, r.day, r.name, 3
                UNION ALL
                SELECT 'n', 'd', r.day::timestamp AT TIME ZONE 'UTC', r.name, %2$s * r.events, %2$s FROM %1$s r$q$, rel, sgn)
            -- Any event, per hour (a bit of the mask each) and per day.
            WHEN 'user_day' THEN format($q$
                SELECT 'b', 'h', (r.day::timestamp + make_interval(hours => h)) AT TIME ZONE 'UTC', NULL::text, 0::bigint, %2$s
                  FROM %1$s r, generate_series(0, 23) h WHERE r.hours & (1 << h) <> 0
                UNION ALL
                SELECT 'b', 'd', r.day::timestamp AT TIME ZONE 'UTC', NULL, 0, %2$s FROM %1$s r$q$, rel, sgn)
            WHEN 'user_week' THEN format($q$
                SELECT 'n', 'w', r.week::timestamp AT TIME ZONE 'UTC', x.name, 0::bigint, %2$s FROM %1$s r, unnest(r.names) x (name)
                UNION ALL
                SELECT 'b', 'w', r.week::timestamp AT TIME ZONE 'UTC', NULL, 0, %2$s FROM %1$s r$q$, rel, sgn)
            WHEN 'user_month' THEN format($q$
                SELECT 'n', 'm', r.month::timestamp AT TIME ZONE 'UTC', x.name, 0::bigint, %2$s FROM %1$s r, unnest(r.names) x (name)
                UNION ALL
                SELECT 'b', 'm', r.month::timestamp AT TIME ZONE 'UTC', NULL, 0, %2$s FROM %1$s r$q$, rel, sgn)
            -- A day is in a user's week (month) when they were active on it or the 6 (29) days
            -- before: the days each user row covers, once each.
            WHEN 'user' THEN format($q$
                SELECT d, %2$s * count(*) FILTER (WHERE in_week) AS wau, %2$s * count(*) AS mau
                  FROM (SELECT r.user_id, a.day + k AS d, bool_or(k < 7) AS in_week
                          FROM %1$s r, unnest(r.days) a (day), generate_series(0, 29) k GROUP BY 1, 2) c
                 GROUP BY d$q$, rel, sgn)
            END;
        parts := parts || one;
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN 'SELECT';
    END IF;
    q := array_to_string(parts, ' UNION ALL ');
    IF layer = 'user' THEN
        RETURN format($s$
            INSERT INTO %1$s AS a (day, wau, mau)
            SELECT d, sum(wau), sum(mau) FROM (%2$s) c GROUP BY 1 HAVING sum(wau) <> 0 OR sum(mau) <> 0 ORDER BY 1
            ON CONFLICT (day) DO UPDATE SET wau = a.wau + EXCLUDED.wau, mau = a.mau + EXCLUDED.mau$s$,
            pgdw.events_object(id, 'active'), q);
    END IF;
    RETURN format($s$
        WITH c (tgt, kind, bucket, name, events, users) AS MATERIALIZED (%3$s),
        n AS (INSERT INTO %1$s AS t (kind, bucket, name, events, users)
              SELECT kind, bucket, name, sum(events), sum(users) FROM c WHERE tgt = 'n'
               GROUP BY 1, 2, 3 HAVING sum(events) <> 0 OR sum(users) <> 0 ORDER BY 1, 2, 3
              ON CONFLICT (kind, bucket, name) DO UPDATE SET events = t.events + EXCLUDED.events, users = t.users + EXCLUDED.users
              RETURNING 1)
        INSERT INTO %2$s AS t (kind, bucket, users)
        SELECT kind, bucket, sum(users) FROM c WHERE tgt = 'b' GROUP BY 1, 2 HAVING sum(users) <> 0 ORDER BY 1, 2
        ON CONFLICT (kind, bucket) DO UPDATE SET users = t.users + EXCLUDED.users$s$,
        by_name, by_bucket, q);
END $$;

CREATE OR REPLACE FUNCTION pgdw.events_fold_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE pgdw.events_fold_sql(TG_ARGV[0]::int, TG_ARGV[1],
                                 CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN 'pgdw_old' END,
                                 CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN 'pgdw_new' END);
    RETURN NULL;
END $$;

-- Register -----------------------------------------------------------------------------------

-- The layers of registration `id` over a source read with user `u`, time `t` (timestamptz),
-- name `n`: (layer, its rollup's query, its source, its keys), in the order they are built.
CREATE OR REPLACE FUNCTION pgdw.events_layers(id int, source regclass, u text, t text, n text)
RETURNS TABLE (layer text, query text, src text, keys text[])
LANGUAGE sql STABLE AS $$
    SELECT 'user_day_name',
           format($q$SELECT %1$s AS user_id, (%2$s AT TIME ZONE 'UTC')::date AS day, %3$s AS name, count(*) AS events,
                            min(%2$s) AS first_at, bit_or(1 << extract(hour FROM %2$s AT TIME ZONE 'UTC')::int) AS hours,
                            array_agg(%2$s ORDER BY %2$s) AS times
                       FROM %4$s WHERE %1$s IS NOT NULL AND %2$s IS NOT NULL AND %3$s IS NOT NULL GROUP BY 1, 2, 3$q$, u, t, n, source),
           source::text, ARRAY[u, format('(%s AT TIME ZONE ''UTC'')::date', t), n]
    UNION ALL
    SELECT 'user_day',
           format('SELECT user_id, day, array_agg(name ORDER BY name) AS names, bit_or(hours) AS hours FROM %s GROUP BY 1, 2',
                  pgdw.events_object(id, 'user_day_name')),
           pgdw.events_object(id, 'user_day_name'), ARRAY['user_id', 'day']
    UNION ALL
    SELECT 'user_week',
           format('SELECT user_id, date_trunc(''week'', day::timestamp)::date AS week, array_agg(DISTINCT x ORDER BY x) AS names FROM %s, unnest(names) x GROUP BY 1, 2',
                  pgdw.events_object(id, 'user_day')),
           pgdw.events_object(id, 'user_day'), ARRAY['user_id', 'date_trunc(''week'', day::timestamp)::date']
    UNION ALL
    SELECT 'user_month',
           format('SELECT user_id, date_trunc(''month'', day::timestamp)::date AS month, array_agg(DISTINCT x ORDER BY x) AS names FROM %s, unnest(names) x GROUP BY 1, 2',
                  pgdw.events_object(id, 'user_day')),
           pgdw.events_object(id, 'user_day'), ARRAY['user_id', 'date_trunc(''month'', day::timestamp)::date']
    UNION ALL
    SELECT 'firsts',
           format('SELECT user_id, name, min(first_at) AS first_at FROM %s GROUP BY 1, 2', pgdw.events_object(id, 'user_day_name')),
           pgdw.events_object(id, 'user_day_name'), ARRAY['user_id', 'name']
    UNION ALL
    SELECT 'user',
           format('SELECT user_id, array_agg(day ORDER BY day) AS days FROM %s GROUP BY 1', pgdw.events_object(id, 'user_day')),
           pgdw.events_object(id, 'user_day'), ARRAY['user_id'];
$$;

-- Every object of registration e goes, the index it made on the source too; the source's rows
-- are untouched.
CREATE OR REPLACE FUNCTION pgdw.events_uninstall(e pgdw.event_tables) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r pgdw.rollups;
    l text;
BEGIN
    -- Downstream layers first: a rollup's source must outlive it.
    FOREACH l IN ARRAY ARRAY['user', 'firsts', 'user_month', 'user_week', 'user_day', 'user_day_name'] LOOP
        SELECT * INTO r FROM pgdw.rollups x WHERE x.name = to_regclass(pgdw.events_object(e.id, l));
        IF FOUND THEN
            PERFORM pgdw.rollup_uninstall(r);
        END IF;
        EXECUTE format('DROP TABLE IF EXISTS %s', pgdw.events_object(e.id, l));
    END LOOP;
    EXECUTE format('DROP TABLE IF EXISTS %s, %s, %s', pgdw.events_object(e.id, 'by_name'),
                   pgdw.events_object(e.id, 'by_bucket'), pgdw.events_object(e.id, 'active'));
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = e.source) THEN
        EXECUTE format('DROP INDEX IF EXISTS %s', pgdw.events_source_index(e.id, e.source));
    END IF;
    DELETE FROM pgdw.event_tables WHERE id = e.id;
END $$;

CREATE OR REPLACE FUNCTION pgdw.events(tbl text, user_column text, time_column text, name_column text)
RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    src  pgdw.event_source;
    e    pgdw.event_tables;
    l    record;
    x    pgdw.event_tables;
    rows_ bigint;
BEGIN
    PERFORM pgdw.rollup_require_read_committed('events');
    IF user_column IS NULL OR time_column IS NULL OR name_column IS NULL THEN
        RAISE EXCEPTION 'pgdw.events: %: user_column, time_column and name_column are all needed',
            coalesce(tbl, 'tbl') USING HINT = 'SELECT pgdw.events(''app.events'', user_column => ''user_id'', time_column => ''occurred_at'', name_column => ''event_name'')';
    END IF;
    src := pgdw.events_resolve('pgdw.events', tbl, user_column, time_column, name_column);
    IF (SELECT relkind FROM pg_class WHERE oid = src.source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'pgdw.events: tbl: % is not a table, so its changes cannot be kept (the analytics functions still scan it when given its columns)', src.source;
    END IF;
    -- Registrations whose source was dropped where no event trigger saw it (pgdw installed
    -- by a role that may not create one).
    FOR x IN SELECT * FROM pgdw.event_tables y WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = y.source) LOOP
        PERFORM pgdw.events_uninstall(x);
    END LOOP;
    SELECT * INTO e FROM pgdw.event_tables y WHERE y.source = src.source;
    IF FOUND THEN
        IF (e.user_column, e.time_column, e.name_column) = (user_column, time_column, name_column) THEN
            RETURN format('%s is kept already', src.source);
        END IF;
        PERFORM pgdw.events_uninstall(e);
    END IF;
    INSERT INTO pgdw.event_tables (source, user_column, time_column, name_column)
    VALUES (src.source, user_column, time_column, name_column) RETURNING * INTO e;

    -- A change dirties (user, day, name): its rows are found by those.
    EXECUTE format('CREATE INDEX IF NOT EXISTS %s ON %s (%s, ((%s AT TIME ZONE ''UTC'')::date), (%s))',
                   split_part(pgdw.events_source_index(e.id, src.source), '.', 2), src.source, src.u, src.t, src.n);
    EXECUTE format('CREATE TABLE %s (kind "char" NOT NULL, bucket timestamptz NOT NULL, name text NOT NULL, events bigint NOT NULL, users bigint NOT NULL, PRIMARY KEY (kind, name, bucket))',
                   pgdw.events_object(e.id, 'by_name'));
    EXECUTE format('CREATE TABLE %s (kind "char" NOT NULL, bucket timestamptz NOT NULL, users bigint NOT NULL, PRIMARY KEY (kind, bucket))',
                   pgdw.events_object(e.id, 'by_bucket'));
    EXECUTE format('CREATE TABLE %s (day date PRIMARY KEY, wau bigint NOT NULL, mau bigint NOT NULL)',
                   pgdw.events_object(e.id, 'active'));

    FOR l IN SELECT * FROM pgdw.events_layers(e.id, src.source, src.u, src.t, src.n) LOOP
        IF l.layer = 'firsts' THEN
            -- firsts recomputes a group from the first layer's rows of one user and name: found
            -- by index, not among all the user's.
            EXECUTE format('CREATE INDEX ON %s (user_id, name, first_at)', pgdw.events_object(e.id, 'user_day_name'));
            EXECUTE format('ANALYZE %s', pgdw.events_object(e.id, 'user_day_name'));
        END IF;
        PERFORM pgdw.rollup(pgdw.events_object(e.id, l.layer), l.query, l.src::regclass, l.keys);
        IF l.layer <> 'firsts' THEN
            EXECUTE pgdw.events_fold_sql(e.id, l.layer, NULL, pgdw.events_object(e.id, l.layer));
            EXECUTE format('CREATE TRIGGER pgdw_events_fold_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgdw_new FOR EACH STATEMENT EXECUTE FUNCTION pgdw.events_fold_trigger(%s, %L)',
                           pgdw.events_object(e.id, l.layer), e.id, l.layer);
            EXECUTE format('CREATE TRIGGER pgdw_events_fold_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgdw_old NEW TABLE AS pgdw_new FOR EACH STATEMENT EXECUTE FUNCTION pgdw.events_fold_trigger(%s, %L)',
                           pgdw.events_object(e.id, l.layer), e.id, l.layer);
            EXECUTE format('CREATE TRIGGER pgdw_events_fold_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgdw_old FOR EACH STATEMENT EXECUTE FUNCTION pgdw.events_fold_trigger(%s, %L)',
                           pgdw.events_object(e.id, l.layer), e.id, l.layer);
        END IF;
    END LOOP;
    -- The first layer outlives the source's retention.
    UPDATE pgdw.rollups SET frozen_key = 'day',
           frozen_before = format('(SELECT ((r - interval ''1 microsecond'') AT TIME ZONE ''UTC'')::date + 1 FROM pgdw.events_retained_from(%s::oid) r)', src.source::oid)
     WHERE name = to_regclass(pgdw.events_object(e.id, 'user_day_name'));
    EXECUTE format('CREATE INDEX ON %s (name, day)', pgdw.events_object(e.id, 'user_day_name'));
    EXECUTE format('CREATE INDEX ON %s (name, first_at)', pgdw.events_object(e.id, 'firsts'));
    EXECUTE format('SELECT count(*) FROM %s', pgdw.events_object(e.id, 'user')) INTO rows_;
    RETURN format('%s: analytics kept from its changes (%s users)', src.source, rows_);
END $$;
COMMENT ON FUNCTION pgdw.events(text, text, text, text) IS
    'Register an event table: pgdw.active_users, funnel, retention and trend answer over it from state kept from its changes';

CREATE OR REPLACE FUNCTION pgdw.events_forget(tbl text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    e pgdw.event_tables;
BEGIN
    SELECT * INTO e FROM pgdw.event_tables WHERE source = to_regclass(tbl);
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pgdw.events_uninstall(e);
    RETURN true;
END $$;

-- A registration goes with its source: before the rollups' own look at dropped tables (event
-- triggers fire in name order), so its layers are not reported lost rollups.
CREATE OR REPLACE FUNCTION pgdw.events_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e pgdw.event_tables;
BEGIN
    FOR e IN SELECT * FROM pgdw.event_tables
              WHERE source IN (SELECT objid FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table') LOOP
        BEGIN
            PERFORM pgdw.events_uninstall(e);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgdw: the analytics of a dropped table after %: %', tg_tag, SQLERRM;
        END;
    END LOOP;
END $$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS pgdw_events_dropped;
        CREATE EVENT TRIGGER pgdw_events_dropped ON sql_drop
            WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION pgdw.events_dropped();
    END IF;
END $$;

-- The answers --------------------------------------------------------------------------------

-- (u, t, name) of the events in [since, until), of the names given (all when NULL): from the
-- kept per-user days when registered (history past retention included), else from the rows.
CREATE OR REPLACE FUNCTION pgdw.events_stream(src pgdw.event_source, since timestamptz, until timestamptz, names text[]) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN src.reg IS NOT NULL THEN format(
        $q$SELECT r.user_id AS u, x.t, r.name FROM %1$s r, unnest(r.times) x (t)
            WHERE r.day >= (%2$L::timestamptz AT TIME ZONE 'UTC')::date AND r.day <= (%3$L::timestamptz AT TIME ZONE 'UTC')::date
              AND x.t >= %2$L AND x.t < %3$L %4$s$q$,
        pgdw.events_object(src.reg, 'user_day_name'), since, until,
        CASE WHEN names IS NOT NULL THEN format('AND r.name = ANY (%L::text[])', names) ELSE '' END)
    ELSE format(
        $q$SELECT %1$s AS u, %2$s AS t, %3$s AS name FROM %4$s
            WHERE %2$s >= %5$L AND %2$s < %6$L AND %1$s IS NOT NULL AND %3$s IS NOT NULL %7$s$q$,
        src.u, src.t, src.n, src.source, since, until,
        CASE WHEN names IS NOT NULL THEN format('AND %s = ANY (%L::text[])', src.n, names) ELSE '' END)
    END;
$$;

CREATE OR REPLACE FUNCTION pgdw.events_active_users(tbl text, since date, until date,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS TABLE (day date, dau bigint, wau bigint, mau bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src pgdw.event_source := pgdw.events_resolve('pgdw.active_users', tbl, user_column, time_column, name_column);
BEGIN
    IF scan THEN
        src.reg := NULL;  -- the rows, as for a table not registered
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'pgdw.active_users: since (%) must be before until (%)', since, until;
    END IF;
    IF src.reg IS NOT NULL THEN
        RETURN QUERY EXECUTE format($q$
            SELECT d::date, coalesce(b.users, 0)::bigint, coalesce(a.wau, 0)::bigint, coalesce(a.mau, 0)::bigint
              FROM generate_series(%1$L::date, %2$L::date - 1, interval '1 day') d
              LEFT JOIN %3$s b ON b.kind = 'd' AND b.bucket = d::date::timestamp AT TIME ZONE 'UTC'
              LEFT JOIN %4$s a ON a.day = d::date
             ORDER BY 1$q$, since, until, pgdw.events_object(src.reg, 'by_bucket'), pgdw.events_object(src.reg, 'active'));
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH ud AS MATERIALIZED (SELECT DISTINCT u, (t AT TIME ZONE 'UTC')::date AS day FROM (%1$s) e),
        -- A user's week (month) covers the 7 (30) days from each active day: a day active
        -- after `prev` adds the days from max(day, prev + 7) to day + 6, counted as +1 and -1
        -- at the ends and summed over the calendar (no day expanded into 30 rows).
        l AS (SELECT day, lag(day) OVER (PARTITION BY u ORDER BY day) AS prev FROM ud),
        deltas AS (SELECT d, sum(w) AS w, sum(m) AS m FROM (
                       SELECT greatest(day, coalesce(prev + 7, day)) AS d, 1 AS w, 0 AS m FROM l
                       UNION ALL SELECT day + 7, -1, 0 FROM l
                       UNION ALL SELECT greatest(day, coalesce(prev + 30, day)), 0, 1 FROM l
                       UNION ALL SELECT day + 30, 0, -1 FROM l) x GROUP BY d),
        dau AS (SELECT day AS d, count(*) AS n FROM ud GROUP BY 1),
        tot AS (SELECT c.d::date AS d, sum(coalesce(x.w, 0)) OVER (ORDER BY c.d) AS wau, sum(coalesce(x.m, 0)) OVER (ORDER BY c.d) AS mau
                  FROM generate_series(%2$L::date - 60, %3$L::date - 1, interval '1 day') c (d) LEFT JOIN deltas x ON x.d = c.d::date)
        SELECT tot.d, coalesce(dau.n, 0)::bigint, tot.wau::bigint, tot.mau::bigint
          FROM tot LEFT JOIN dau ON dau.d = tot.d WHERE tot.d >= %2$L::date
         ORDER BY 1$q$,
        pgdw.events_stream(src, (since - 29)::timestamp AT TIME ZONE 'UTC', until::timestamp AT TIME ZONE 'UTC', NULL), since, until);
END $$;

CREATE OR REPLACE FUNCTION pgdw.events_funnel(tbl text, steps text[], within interval, since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS TABLE (step int, event text, users bigint, conversion numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src pgdw.event_source := pgdw.events_resolve('pgdw.funnel', tbl, user_column, time_column, name_column);
    q   text;
    k   int;
    counts text[] := '{}';
BEGIN
    IF scan THEN
        src.reg := NULL;  -- the rows, as for a table not registered
    END IF;
    IF steps IS NULL OR cardinality(steps) = 0 OR array_position(steps, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.funnel: steps must name at least one event, none of them NULL (got %)', coalesce(steps::text, 'NULL');
    END IF;
    IF within IS NULL OR within < interval '0' THEN
        RAISE EXCEPTION 'pgdw.funnel: within must be an interval of zero or more (got %)', coalesce(within::text, 'NULL');
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'pgdw.funnel: since (%) must be before until (%)', since, until;
    END IF;
    -- For each user and each first step in range, the earliest event of each next step that
    -- keeps the chain going: taking the earliest never loses a chain a later one would make.
    -- The earliest step-k event at or after each chain's step k-1 is a running minimum over the
    -- user's chains and step-k events merged in descending time (events first at equal
    -- times: a tie counts), so a step costs a sort, never a join of chains with events.
    q := format($q$WITH ev AS MATERIALIZED (SELECT e.u, e.t, s.i AS step FROM (%1$s) e JOIN unnest(%2$L::text[]) WITH ORDINALITY s (name, i) ON s.name = e.name),
                 c1 AS MATERIALIZED (SELECT DISTINCT u, t AS t1, t AS tk FROM ev WHERE step = 1 AND t < %3$L)$q$,
                pgdw.events_stream(src, since, until + within + interval '1 microsecond', steps), steps, until);
    FOR k IN 2 .. cardinality(steps) LOOP
        q := q || format($q$, c%1$s AS MATERIALIZED (
                SELECT u, t1, tk FROM (
                    SELECT u, t1, chain, min(t) FILTER (WHERE NOT chain) OVER (PARTITION BY u ORDER BY t DESC, chain ROWS UNBOUNDED PRECEDING) AS tk
                      FROM (SELECT u, t1, tk AS t, true AS chain FROM c%2$s UNION ALL SELECT u, NULL, t, false FROM ev WHERE step = %1$s) m) x
                 WHERE chain AND tk <= t1 + %3$L::interval)$q$, k, k - 1, within);
    END LOOP;
    FOR k IN 1 .. cardinality(steps) LOOP
        counts := counts || format('(%s, (SELECT count(DISTINCT u) FROM c%1$s))', k);
    END LOOP;
    RETURN QUERY EXECUTE q || format($q$
        , n (step, users) AS (VALUES %1$s)
        SELECT n.step::int, (%2$L::text[])[n.step], n.users,
               CASE WHEN n.step = 1 THEN 1::numeric WHEN f.users = 0 THEN 0::numeric ELSE round(n.users::numeric / f.users, 4) END
          FROM n, (SELECT users FROM n WHERE step = 1) f ORDER BY 1$q$, array_to_string(counts, ', '), steps);
END $$;

-- The index of period `p` counted from `cohort` in periods of `period`.
CREATE OR REPLACE FUNCTION pgdw.events_period_index(period text, cohort date, p date) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE period WHEN 'day' THEN p - cohort WHEN 'week' THEN (p - cohort) / 7
           ELSE (extract(year FROM p)::int * 12 + extract(month FROM p)::int) - (extract(year FROM cohort)::int * 12 + extract(month FROM cohort)::int) END;
$$;

-- Rows of pgdw.retention and pgdw.trend: an input and an output column share a name
-- (`period`, `bucket`), which RETURNS TABLE cannot say.
DO $$
BEGIN
    CREATE TYPE pgdw.retention_row AS (cohort date, period int, cohort_users bigint, users bigint, share numeric);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE TYPE pgdw.trend_row AS (bucket timestamptz, events bigint, users bigint);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE OR REPLACE FUNCTION pgdw.events_retention(tbl text, cohort_event text, return_event text, period text, periods int,
    since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS SETOF pgdw.retention_row
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    src pgdw.event_source := pgdw.events_resolve('pgdw.retention', tbl, user_column, time_column, name_column);
    step interval;
    firsts text;
    active text;
    horizon timestamptz;
BEGIN
    IF scan THEN
        src.reg := NULL;  -- the rows, as for a table not registered
    END IF;
    IF period IS NULL OR period NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'pgdw.retention: period must be day, week or month (got %)', coalesce(period, 'NULL');
    END IF;
    IF periods IS NULL OR periods < 1 THEN
        RAISE EXCEPTION 'pgdw.retention: periods must be 1 or more (got %)', coalesce(periods::text, 'NULL');
    END IF;
    IF cohort_event IS NULL THEN
        RAISE EXCEPTION 'pgdw.retention: cohort_event must name an event';
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'pgdw.retention: since (%) must be before until (%)', since, until;
    END IF;
    step := ('1 ' || period)::interval;
    -- The last period any reported cohort can reach.
    horizon := (date_trunc(period, until AT TIME ZONE 'UTC') + step * (periods + 1)) AT TIME ZONE 'UTC';
    IF src.reg IS NOT NULL THEN
        firsts := format('SELECT user_id AS u, first_at FROM %s WHERE name = %L', pgdw.events_object(src.reg, 'firsts'), cohort_event);
        -- The layer of the period: user_day, user_week, user_month, its period column named so.
        active := format($q$SELECT user_id AS u, %1$I AS p FROM %2$s WHERE %1$I >= (%3$L::timestamptz AT TIME ZONE 'UTC')::date
                             AND %1$I < (%4$L::timestamptz AT TIME ZONE 'UTC')::date %5$s$q$,
                         period, pgdw.events_object(src.reg, 'user_' || period),
                         since, horizon,
                         CASE WHEN return_event IS NOT NULL THEN format('AND %L = ANY (names)', return_event) ELSE '' END);
    ELSE
        firsts := format('SELECT %s AS u, min(%s) AS first_at FROM %s WHERE %s = %L AND %1$s IS NOT NULL GROUP BY 1',
                         src.u, src.t, src.source, src.n, cohort_event);
        active := format($q$SELECT DISTINCT u, date_trunc(%L, t AT TIME ZONE 'UTC')::date AS p FROM (%s) e$q$,
                         period, pgdw.events_stream(src, (date_trunc(period, since AT TIME ZONE 'UTC') - step) AT TIME ZONE 'UTC', horizon,
                                                    CASE WHEN return_event IS NOT NULL THEN ARRAY[return_event] END));
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH c AS MATERIALIZED (
                SELECT u, date_trunc(%1$L, first_at AT TIME ZONE 'UTC')::date AS cohort FROM (%2$s) f),
             c_in AS MATERIALIZED (SELECT * FROM c WHERE cohort >= (%3$L::timestamptz AT TIME ZONE 'UTC') AND cohort < (%4$L::timestamptz AT TIME ZONE 'UTC')),
             sizes AS (SELECT cohort, count(*) AS n FROM c_in GROUP BY 1),
             hits AS (SELECT c_in.cohort, pgdw.events_period_index(%1$L, c_in.cohort, a.p) AS period, count(DISTINCT c_in.u) AS users
                        FROM c_in JOIN (%5$s) a ON a.u = c_in.u AND a.p >= c_in.cohort
                       GROUP BY 1, 2)
        SELECT s.cohort, g.n, s.n, coalesce(h.users, 0)::bigint, round(coalesce(h.users, 0)::numeric / s.n, 4)
          FROM sizes s CROSS JOIN generate_series(0, %6$s - 1) g (n)
          LEFT JOIN hits h ON h.cohort = s.cohort AND h.period = g.n
         ORDER BY 1, 2$q$,
        period, firsts, since, until, active, periods);
END $$;

CREATE OR REPLACE FUNCTION pgdw.events_trend(tbl text, event text, bucket text, since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS SETOF pgdw.trend_row
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    src pgdw.event_source := pgdw.events_resolve('pgdw.trend', tbl, user_column, time_column, name_column);
    step interval;
    kind "char";
    aligned boolean;
    series text;
BEGIN
    IF scan THEN
        src.reg := NULL;  -- the rows, as for a table not registered
    END IF;
    IF bucket IS NULL OR bucket NOT IN ('minute', 'hour', 'day', 'week', 'month') THEN
        RAISE EXCEPTION 'pgdw.trend: bucket must be minute, hour, day, week or month (got %)', coalesce(bucket, 'NULL');
    END IF;
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'pgdw.trend: since (%) must be before until (%)', since, until;
    END IF;
    step := ('1 ' || bucket)::interval;
    series := format($q$SELECT g AT TIME ZONE 'UTC' AS b FROM generate_series(date_trunc(%1$L, %2$L::timestamptz AT TIME ZONE 'UTC'),
                            %3$L::timestamptz AT TIME ZONE 'UTC' - interval '1 microsecond', %4$L::interval) g$q$, bucket, since, until, step);
    aligned := date_trunc(bucket, since AT TIME ZONE 'UTC') = since AT TIME ZONE 'UTC'
           AND date_trunc(bucket, until AT TIME ZONE 'UTC') = until AT TIME ZONE 'UTC';
    IF src.reg IS NOT NULL AND aligned AND bucket <> 'minute' THEN
        kind := left(bucket, 1);
        -- Events of a week or month: the sum of its days' (users need the bucket's own row).
        RETURN QUERY EXECUTE format($q$
            SELECT s.b, coalesce(ev.events, 0)::bigint, coalesce(us.users, 0)::bigint
              FROM (%1$s) s
              LEFT JOIN (SELECT date_trunc(%2$L, n.bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS b, sum(n.events) AS events
                           FROM %3$s n WHERE n.kind = %4$L AND n.bucket >= %5$L AND n.bucket < %6$L %7$s GROUP BY 1) ev ON ev.b = s.b
              LEFT JOIN (SELECT x.bucket AS b, x.users FROM %8$s x WHERE x.kind = %9$L AND x.bucket >= %5$L AND x.bucket < %6$L %10$s) us ON us.b = s.b
             ORDER BY 1$q$,
            series, bucket, pgdw.events_object(src.reg, 'by_name'), CASE WHEN kind IN ('w', 'm') THEN 'd' ELSE kind END, since, until,
            CASE WHEN event IS NOT NULL THEN format('AND n.name = %L', event) ELSE '' END,
            pgdw.events_object(src.reg, CASE WHEN event IS NOT NULL THEN 'by_name' ELSE 'by_bucket' END), kind,
            CASE WHEN event IS NOT NULL THEN format('AND x.name = %L', event) ELSE '' END);
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH e AS (SELECT date_trunc(%1$L, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS b, u FROM (%2$s) x),
        g AS (SELECT b, count(*) AS events, count(DISTINCT u) AS users FROM e GROUP BY 1)
        SELECT s.b, coalesce(g.events, 0)::bigint, coalesce(g.users, 0)::bigint FROM (%3$s) s LEFT JOIN g ON g.b = s.b ORDER BY 1$q$,
        bucket, pgdw.events_stream(src, since, until, CASE WHEN event IS NOT NULL THEN ARRAY[event] END), series);
END $$;

-- The functions users call: the table named as the caller's search_path finds it, the answer
-- read by the owner's functions above (SECURITY DEFINER, whose own path is pinned).
CREATE OR REPLACE FUNCTION pgdw.events_qualify(tbl text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.oid = to_regclass(tbl)), tbl);
$$;

CREATE OR REPLACE FUNCTION pgdw.active_users(tbl text, since date, until date,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS TABLE (day date, dau bigint, wau bigint, mau bigint) LANGUAGE sql STABLE AS $$
    SELECT * FROM pgdw.events_active_users(pgdw.events_qualify(tbl), since, until, user_column, time_column, name_column, scan);
$$;
COMMENT ON FUNCTION pgdw.active_users(text, date, date, text, text, text, boolean) IS
    'Distinct users per UTC day with an event that day (dau), in the 7 days to it (wau) and the 30 (mau)';

CREATE OR REPLACE FUNCTION pgdw.funnel(tbl text, steps text[], within interval, since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS TABLE (step int, event text, users bigint, conversion numeric) LANGUAGE sql STABLE AS $$
    SELECT * FROM pgdw.events_funnel(pgdw.events_qualify(tbl), steps, within, since, until, user_column, time_column, name_column, scan);
$$;
COMMENT ON FUNCTION pgdw.funnel(text, text[], interval, timestamptz, timestamptz, text, text, text, boolean) IS
    'Users reaching each step of an ordered chain of events starting in [since, until) and ending within the interval (windowFunnel)';

CREATE OR REPLACE FUNCTION pgdw.retention(tbl text, cohort_event text, return_event text, period text, periods int,
    since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS SETOF pgdw.retention_row LANGUAGE sql STABLE AS $$
    SELECT * FROM pgdw.events_retention(pgdw.events_qualify(tbl), cohort_event, return_event, period, periods, since, until, user_column, time_column, name_column, scan);
$$;
COMMENT ON FUNCTION pgdw.retention(text, text, text, text, int, timestamptz, timestamptz, text, text, text, boolean) IS
    'Users of each cohort (the period of their first cohort_event) active again (return_event, any when NULL) in each later period';

CREATE OR REPLACE FUNCTION pgdw.trend(tbl text, event text, bucket text, since timestamptz, until timestamptz,
    user_column text DEFAULT NULL, time_column text DEFAULT NULL, name_column text DEFAULT NULL, scan boolean DEFAULT false)
RETURNS SETOF pgdw.trend_row LANGUAGE sql STABLE AS $$
    SELECT * FROM pgdw.events_trend(pgdw.events_qualify(tbl), event, bucket, since, until, user_column, time_column, name_column, scan);
$$;
COMMENT ON FUNCTION pgdw.trend(text, text, text, timestamptz, timestamptz, text, text, text, boolean) IS
    'Events and distinct users per UTC bucket (minute, hour, day, week starting Monday, month) in [since, until)';
