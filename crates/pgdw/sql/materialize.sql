-- Materialized columns (run again at every `pgdw up`, after queue.sql).
--
-- Derived columns live on the table itself; a function computes them from one row. A row
-- whose materialized_at is NULL (inserted, or one of the columns its values depend on
-- changed) is pending; pgdw worker computes pending rows in batches ('materialize' tasks)
-- and writes back only the columns the functions return. A row whose function raises is
-- set aside (materialized_at = '-infinity', the error in pgdw.materialize_failed) and does
-- not block the others. Full refreshes never happen: a change costs the rows it touched.

CREATE TABLE IF NOT EXISTS pgdw.materializations (
    tbl            regclass NOT NULL,
    fn             text NOT NULL,            -- the function with its signature: venue_derive(venue)
    columns        text[] NOT NULL,          -- what it returns, written back
    depends_on     text[] NOT NULL,
    -- A function added to a table whose rows were computed before it: a pass over those rows
    -- computes its columns alone; backfill_after is the last key done.
    backfilled     boolean NOT NULL DEFAULT true,
    backfill_after jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, fn)
);
COMMENT ON TABLE pgdw.materializations IS 'Each function computing columns of a table (pgdw.materialize)';

CREATE TABLE IF NOT EXISTS pgdw.materialize_failures (
    tbl       regclass NOT NULL,
    key       jsonb NOT NULL,
    error     text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, key)
);

-- While a row here exists, a 'materialize' task for (tbl, slot) is queued or running: at most
-- `parallel` tasks per table, however many writers mark rows.
CREATE TABLE IF NOT EXISTS pgdw.materialize_slots (
    tbl  regclass NOT NULL,
    slot int NOT NULL,
    task bigint,
    PRIMARY KEY (tbl, slot)
);

CREATE OR REPLACE VIEW pgdw.materialize_failed AS
SELECT tbl AS table_name, key, error, failed_at FROM pgdw.materialize_failures;
COMMENT ON VIEW pgdw.materialize_failed IS
    'Rows whose derived columns could not be computed, with the error; pgdw.materialize again retries them';

-- The primary key's columns, in order (NULL: none).
CREATE OR REPLACE FUNCTION pgdw.primary_key(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k (attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = tbl AND i.indisprimary;
$$;

CREATE OR REPLACE FUNCTION pgdw.materialize_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.materialized_at := NULL;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION pgdw.materialize_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgdw_materialize', '');
    RETURN NULL;
END $$;

-- Pieces of SQL for tbl's registered functions: the SET list and the LATERAL calls over a row
-- aliased x (only `only_fn`'s when given).
CREATE OR REPLACE FUNCTION pgdw.materialize_sql(tbl regclass, only_fn text DEFAULT NULL,
    OUT sets text, OUT laterals text)
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('%1$I = d%2$s.%1$I', c, m.i), ', '),
           string_agg(DISTINCT format(' LEFT JOIN LATERAL (SELECT * FROM %s(x) LIMIT 1) d%s ON true',
                                      (m.fn::regprocedure)::oid::regproc, m.i), '')
      FROM (SELECT fn, columns, row_number() OVER (ORDER BY created_at, fn) AS i
              FROM pgdw.materializations WHERE materializations.tbl = materialize_sql.tbl
               AND (only_fn IS NULL OR fn = only_fn)) m,
           unnest(m.columns) c;
$$;

-- The primary key, as pieces of SQL: the column list, a jsonb_build_object argument list,
-- and the joins of alias x to b (the batch) and of t (the target) to x.
CREATE OR REPLACE FUNCTION pgdw.materialize_keys(tbl regclass,
    OUT klist text, OUT kobj text, OUT kjoin text, OUT tjoin text)
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('%I', k), ', '), string_agg(format('%L, %I', k, k), ', '),
           string_agg(format('x.%1$I = b.%1$I', k), ' AND '), string_agg(format('t.%1$I = x.%1$I', k), ' AND ')
      FROM unnest(pgdw.primary_key(tbl)) k;
$$;

-- `key` (a jsonb object of the primary key's values) as a condition on alias `a`.
CREATE OR REPLACE FUNCTION pgdw.materialize_key_cond(tbl regclass, a text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('%s.%I = ($1->>%L)::%s', a, k, k, format_type(t.atttypid, t.atttypmod)), ' AND ')
      FROM unnest(pgdw.primary_key(tbl)) k
      JOIN pg_attribute t ON t.attrelid = tbl AND t.attname = k;
$$;

-- Rows whose primary key sorts after `after` (a jsonb object of key values; none: every row).
CREATE OR REPLACE FUNCTION pgdw.materialize_after(tbl regclass, after jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN after IS NULL THEN 'true' ELSE
           format('(%s) > (%s)', string_agg(format('%I', k), ', '),
                  string_agg(format('(%L)::%s', after->>k, format_type(a.atttypid, a.atttypmod)), ', ')) END
      FROM unnest(pgdw.primary_key(tbl)) k JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = k;
$$;

-- Write the rows `keys` back: `sets` from `laterals` (pgdw.materialize_sql), and
-- materialized_at when `mark`. One statement; when it fails (a function raised for some row),
-- row by row, each row whose function raises set aside with its error, the others written.
CREATE OR REPLACE FUNCTION pgdw.materialize_write(tbl regclass, keys jsonb[], sets text,
    laterals text, mark boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ks   record := pgdw.materialize_keys(tbl);
    cond text := pgdw.materialize_key_cond(tbl, 'x');
    k    jsonb;
    stamp text := CASE WHEN mark THEN ', materialized_at = now()' ELSE '' END;
BEGIN
    BEGIN
        EXECUTE format('UPDATE %1$s t SET %2$s%3$s
                          FROM (SELECT %4$s FROM jsonb_populate_recordset(NULL::%1$s, to_jsonb($1))) b
                          JOIN %1$s x ON %5$s %6$s
                         WHERE %7$s',
                       tbl, sets, stamp, ks.klist, ks.kjoin, laterals, ks.tjoin)
          USING keys;
        IF EXISTS (SELECT 1 FROM pgdw.materialize_failures f WHERE f.tbl = materialize_write.tbl) THEN
            DELETE FROM pgdw.materialize_failures f WHERE f.tbl = materialize_write.tbl AND f.key = ANY (keys);
        END IF;
        RETURN;
    EXCEPTION WHEN others THEN
        NULL;  -- row by row below
    END;
    FOREACH k IN ARRAY keys LOOP
        BEGIN
            EXECUTE format('UPDATE %1$s t SET %2$s%3$s FROM %1$s x %4$s WHERE %5$s AND %6$s',
                           tbl, sets, stamp, laterals, cond, ks.tjoin)
              USING k;
        EXCEPTION WHEN others THEN
            EXECUTE format('UPDATE %s x SET materialized_at = ''-infinity'' WHERE %s', tbl, cond) USING k;
            INSERT INTO pgdw.materialize_failures (tbl, key, error) VALUES (tbl, k, SQLERRM)
            ON CONFLICT ON CONSTRAINT materialize_failures_pkey
            DO UPDATE SET error = EXCLUDED.error, failed_at = now();
        END;
    END LOOP;
END $$;

-- The one statement that computes and writes up to `size` pending rows of tbl (every
-- function's columns) and returns how many it wrote, or NULL when tbl has no functions. The
-- rows are locked as they are read (SKIP LOCKED: parallel tasks take different rows;
-- `descending` reads the pending index from its other end, so two tasks do not start on the
-- same rows), and only then do the functions join them (a function is never called for a row
-- another task holds; a LATERAL call the planner can inline: a SQL function becomes a join it
-- can hash or memoize, as in a view); each row is written
-- back where it was read: by its ctid, or by its key on a partitioned table, whose ctids
-- repeat across partitions. A row changed meanwhile is not written (its new version fails
-- the ctid condition) and stays pending. With `clear`, the rows written lose their entries in
-- pgdw.materialize_failures (a row set aside, changed since, computed now).
DROP FUNCTION IF EXISTS pgdw.materialize_statement(regclass, int, boolean);
CREATE OR REPLACE FUNCTION pgdw.materialize_statement(tbl regclass, size int, descending boolean,
    clear boolean DEFAULT false)
RETURNS text LANGUAGE sql STABLE AS $$
    WITH f AS (
        SELECT fn, columns, row_number() OVER (ORDER BY created_at, fn) AS i
          FROM pgdw.materializations m WHERE m.tbl = materialize_statement.tbl),
    c AS (SELECT c, f.i FROM f, unnest(f.columns) c),
    k AS (SELECT k FROM unnest(pgdw.primary_key(tbl)) k),
    part AS (SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = tbl) AS yes)
    SELECT format('WITH w AS (
                     UPDATE %1$s t SET %2$s, materialized_at = now()
                       FROM (SELECT %3$s, %4$s
                               FROM (SELECT %5$s, %12$s FROM %1$s v WHERE v.materialized_at IS NULL
                                      ORDER BY %6$s LIMIT %7$s FOR UPDATE SKIP LOCKED) x %8$s) b
                      WHERE %9$s
                     RETURNING %10$s)%11$s
                   SELECT count(*) FROM w',
                  tbl,
                  (SELECT string_agg(format('%1$I = b.%1$I', c), ', ') FROM c),
                  CASE WHEN part.yes THEN (SELECT string_agg(format('x.%I', k), ', ') FROM k)
                       ELSE 'x.pgdw_row' END,
                  (SELECT string_agg(format('d%s.%I', i, c), ', ') FROM c),
                  CASE WHEN part.yes THEN (SELECT string_agg(format('v.%I', k), ', ') FROM k)
                       ELSE 'v.ctid AS pgdw_row' END,
                  (SELECT string_agg(format('v.%I%s', k, CASE WHEN descending THEN ' DESC' ELSE '' END), ', ') FROM k),
                  size,
                  (SELECT string_agg(format(' LEFT JOIN LATERAL %s(ROW(%s)::%s) d%s ON true',
                                            (fn::regprocedure)::oid::regproc, cols.x, tbl, i), '') FROM f),
                  CASE WHEN part.yes THEN (SELECT string_agg(format('t.%1$I = b.%1$I', k), ' AND ') FROM k)
                       ELSE 't.ctid = b.pgdw_row' END,
                  (SELECT string_agg(format('t.%I', k), ', ') FROM k),
                  CASE WHEN clear THEN format(',
                   d AS (DELETE FROM pgdw.materialize_failures f
                          WHERE f.tbl = %L::regclass AND f.key IN (SELECT jsonb_build_object(%s) FROM w))',
                                              tbl, (pgdw.materialize_keys(tbl)).kobj)
                       ELSE '' END,
                  cols.v)
      FROM part,
           -- The row passed to the functions is rebuilt from its columns: an inlined function's
           -- field of it is then the column itself, not read from a row value made per row.
           (SELECT string_agg(format('v.%I AS %I', a.attname, 'pgdw_' || a.attnum), ', ' ORDER BY a.attnum) AS v,
                   string_agg(format('x.%I', 'pgdw_' || a.attnum), ', ' ORDER BY a.attnum) AS x
              FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped) cols
     WHERE EXISTS (SELECT 1 FROM f);
$$;

-- Compute up to `size` pending rows of tbl (every function's columns); returns how many rows
-- it took (computed or set aside). Slot 2, 4, ... read the pending rows from the other end.
-- In one statement; when it fails (a function raised for some row), the batch's keys are
-- locked and written row by row by pgdw.materialize_write, which sets the failing rows aside.
DROP FUNCTION IF EXISTS pgdw.materialize_batch(regclass, int);  -- before the slot argument
CREATE OR REPLACE FUNCTION pgdw.materialize_batch(tbl regclass, size int DEFAULT 1000, slot int DEFAULT 1)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    stmt text := pgdw.materialize_statement(tbl, size, slot % 2 = 0,
        EXISTS (SELECT 1 FROM pgdw.materialize_failures f WHERE f.tbl = materialize_batch.tbl));
    q    record;
    ks   record;
    keys jsonb[];
    n    bigint;
BEGIN
    IF stmt IS NULL THEN
        RETURN 0;  -- no functions registered
    END IF;
    BEGIN
        EXECUTE stmt INTO n;
        RETURN n;
    EXCEPTION WHEN others THEN
        NULL;  -- some row's function raised: row by row below
    END;
    q := pgdw.materialize_sql(tbl);
    ks := pgdw.materialize_keys(tbl);
    -- The batch's rows are locked (SKIP LOCKED: parallel tasks take different rows).
    EXECUTE format('SELECT array_agg(jsonb_build_object(%s)) FROM (SELECT %s FROM %s WHERE materialized_at IS NULL LIMIT %s FOR UPDATE SKIP LOCKED) b',
                   ks.kobj, ks.klist, tbl, size)
      INTO keys;
    IF keys IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pgdw.materialize_write(tbl, keys, q.sets, q.laterals, true);
    RETURN cardinality(keys);
END $$;

-- One step of a later function's pass over rows computed before it: up to `size` rows after
-- the last key done, its columns only. Returns how many rows it took.
CREATE OR REPLACE FUNCTION pgdw.materialize_backfill(tbl regclass, fn text, size int DEFAULT 1000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r    pgdw.materializations;
    q    record := pgdw.materialize_sql(tbl, fn);
    ks   record := pgdw.materialize_keys(tbl);
    keys jsonb[];
BEGIN
    SELECT * INTO r FROM pgdw.materializations m
     WHERE m.tbl = materialize_backfill.tbl AND m.fn = materialize_backfill.fn AND NOT m.backfilled
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    EXECUTE format('SELECT array_agg(jsonb_build_object(%s) ORDER BY %s) FROM (SELECT %s FROM %s
                     WHERE materialized_at > ''-infinity'' AND %s ORDER BY %s LIMIT %s) b',
                   ks.kobj, ks.klist, ks.klist, tbl, pgdw.materialize_after(tbl, r.backfill_after), ks.klist, size)
      INTO keys;
    IF keys IS NULL THEN
        UPDATE pgdw.materializations m SET backfilled = true, backfill_after = NULL
         WHERE m.tbl = r.tbl AND m.fn = r.fn;
        RETURN 0;
    END IF;
    PERFORM pgdw.materialize_write(tbl, keys, q.sets, q.laterals, false);
    UPDATE pgdw.materializations m SET backfill_after = keys[cardinality(keys)]
     WHERE m.tbl = r.tbl AND m.fn = r.fn;
    RETURN cardinality(keys);
END $$;

-- A 'materialize' task: a batch of pending rows (5,000: about 50 ms of row locks), then a step of any backfill; while there was
-- work, the task hands on to a new one (same slot), else the slot is freed.
CREATE OR REPLACE FUNCTION pgdw.materialize_run(tbl regclass, slot int DEFAULT 1, size int DEFAULT 5000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n    bigint;
    f    text;
    next bigint;
BEGIN
    n := pgdw.materialize_batch(tbl, size, slot);
    IF n < size THEN
        FOR f IN SELECT m.fn FROM pgdw.materializations m WHERE m.tbl = materialize_run.tbl AND NOT m.backfilled LOOP
            n := n + pgdw.materialize_backfill(tbl, f, size);
        END LOOP;
    END IF;
    IF n > 0 THEN
        next := pgdw.enqueue('materialize', jsonb_build_object('table', tbl::text, 'slot', slot));
        INSERT INTO pgdw.materialize_slots AS s VALUES (tbl, slot, next)
        ON CONFLICT ON CONSTRAINT materialize_slots_pkey DO UPDATE SET task = EXCLUDED.task;
    ELSE
        DELETE FROM pgdw.materialize_slots s WHERE s.tbl = materialize_run.tbl AND s.slot = materialize_run.slot;
    END IF;
    RETURN n;
END $$;

-- Rows of tbl still to compute: pending ones, and those a later function's pass has not
-- reached.
CREATE OR REPLACE FUNCTION pgdw.materialize_pending(tbl regclass) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n    bigint;
    more bigint;
    r    pgdw.materializations;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgdw.materializations m WHERE m.tbl = materialize_pending.tbl) THEN
        RAISE EXCEPTION 'pgdw.materialize_pending: % has no materialized columns (pgdw.materialize registers them)', tbl;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s WHERE materialized_at IS NULL', tbl) INTO n;
    FOR r IN SELECT * FROM pgdw.materializations m WHERE m.tbl = materialize_pending.tbl AND NOT m.backfilled LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE materialized_at > ''-infinity'' AND %s',
                       tbl, pgdw.materialize_after(tbl, r.backfill_after))
          INTO more;
        n := n + more;
    END LOOP;
    RETURN n;
END $$;

-- Queue tasks for tables with rows to compute, up to `parallel` per table. Workers call it
-- when they wake (LISTEN pgdw_materialize, or their poll).
CREATE OR REPLACE FUNCTION pgdw.materialize_schedule(parallel int DEFAULT 2) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t       regclass;
    s       int;
    queued  int := 0;
    pending boolean;
BEGIN
    -- A slot whose task failed for good is free again.
    DELETE FROM pgdw.materialize_slots m
     WHERE EXISTS (SELECT 1 FROM pgdw.task_history h WHERE h.id = m.task AND h.state = 'failed');
    -- Tables dropped since they were registered are forgotten (else every look would fail on
    -- them, and no other table would be computed).
    DELETE FROM pgdw.materializations m WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.tbl);
    DELETE FROM pgdw.materialize_failures f WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = f.tbl);
    DELETE FROM pgdw.materialize_slots m WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.tbl);
    FOR t IN SELECT DISTINCT m.tbl FROM pgdw.materializations m LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE materialized_at IS NULL)', t) INTO pending;
        pending := pending OR EXISTS (SELECT 1 FROM pgdw.materializations m WHERE m.tbl = t AND NOT m.backfilled);
        CONTINUE WHEN NOT pending;
        FOR s IN INSERT INTO pgdw.materialize_slots (tbl, slot)
                 SELECT t, g FROM generate_series(1, parallel) g
                 ON CONFLICT ON CONSTRAINT materialize_slots_pkey DO NOTHING RETURNING slot LOOP
            UPDATE pgdw.materialize_slots m SET task = pgdw.enqueue('materialize', jsonb_build_object('table', t::text, 'slot', s))
             WHERE m.tbl = t AND m.slot = s;
            queued := queued + 1;
        END LOOP;
    END LOOP;
    RETURN queued;
END $$;

-- Register `fn` as computing columns of `tbl`. See the top of this file; the checks come
-- first, and nothing is changed when one fails.
CREATE OR REPLACE FUNCTION pgdw.materialize(tbl regclass, fn text, depends_on text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    key      text[] := pgdw.primary_key(tbl);
    proc     regprocedure;
    sig      text;
    outs     text[];
    out_typs oid[];
    missing  text;
    had_col  boolean;
    old      pgdw.materializations;
    deps     text[];
    rel      text;
    retried  bigint := 0;
    part     regclass;
    trig     text;
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % has no primary key', tbl
            USING HINT = format('The worker writes each row back by its key: ALTER TABLE %s ADD PRIMARY KEY (...)', tbl);
    END IF;
    proc := to_regprocedure(format('%s(%s)', fn, tbl));
    IF proc IS NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: there is no function %(%)', fn, tbl
            USING HINT = format('It takes one row of the table: CREATE FUNCTION %s(r %s) RETURNS TABLE (column type, ...)', fn, tbl);
    END IF;
    sig := proc::text;
    SELECT array_agg(a.name ORDER BY a.i), array_agg(a.typ ORDER BY a.i) INTO outs, out_typs
      FROM pg_proc p,
           unnest(p.proargnames, p.proargmodes::text[], p.proallargtypes) WITH ORDINALITY a (name, mode, typ, i)
     WHERE p.oid = proc AND a.mode IN ('t', 'o');
    IF outs IS NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % must return TABLE (column type, ...), one row, named as the table''s columns', sig;
    END IF;
    SELECT string_agg(format('%s %s', o, format_type(t, NULL)), ', ') INTO missing
      FROM unnest(outs, out_typs) u (o, t)
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = o
                          AND NOT a.attisdropped AND a.attnum > 0 AND a.atttypid = t);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % returns columns % has not (with these types): %', sig, tbl, missing
            USING HINT = format('Add them first: ALTER TABLE %s ADD COLUMN ...', tbl);
    END IF;
    SELECT string_agg(o, ', ') INTO missing FROM unnest(outs) o
     WHERE o = ANY (key) OR o = 'materialized_at' OR o = ANY (coalesce(depends_on, '{}'));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % cannot compute %: a key column, materialized_at, or a column it depends on', sig, missing;
    END IF;
    SELECT string_agg(d, ', ') INTO missing FROM unnest(coalesce(depends_on, '{}')) d
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = d AND NOT a.attisdropped AND a.attnum > 0);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % has no column % (depends_on)', tbl, missing;
    END IF;
    SELECT string_agg(format('%s (by %s)', o, m.fn), ', ') INTO missing
      FROM pgdw.materializations m, unnest(m.columns) o
     WHERE m.tbl = materialize.tbl AND m.fn <> sig AND o = ANY (outs);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.materialize: % already has computed columns %', tbl, missing;
    END IF;

    -- Checked: install. Everything below is one transaction with the caller's.
    SELECT * INTO old FROM pgdw.materializations m WHERE m.tbl = materialize.tbl AND m.fn = sig;
    had_col := EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'materialized_at' AND NOT a.attisdropped);
    IF NOT had_col THEN
        -- Every existing row becomes pending.
        EXECUTE format('ALTER TABLE %s ADD COLUMN materialized_at timestamptz', tbl);
    END IF;
    INSERT INTO pgdw.materializations AS m (tbl, fn, columns, depends_on, backfilled)
    VALUES (tbl, sig, outs, coalesce(depends_on, '{}'), NOT had_col OR NOT EXISTS (
                SELECT 1 FROM pgdw.materializations o WHERE o.tbl = materialize.tbl))
    ON CONFLICT ON CONSTRAINT materializations_pkey
    DO UPDATE SET columns = EXCLUDED.columns, depends_on = EXCLUDED.depends_on;

    rel := (SELECT relname FROM pg_class WHERE oid = tbl);
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    WHERE i.indrelid = tbl AND c.relname = left(rel, 40) || '_pgdw_pending') THEN
        EXECUTE format('CREATE INDEX %I ON %s (%s) WHERE materialized_at IS NULL',
                       left(rel, 40) || '_pgdw_pending', tbl,
                       pgdw.idents(key));
    END IF;
    SELECT array_agg(DISTINCT d ORDER BY d) INTO deps
      FROM pgdw.materializations m, unnest(m.depends_on) d WHERE m.tbl = materialize.tbl;
    FOR trig IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname LIKE 'pgdw\_materialize\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig, tbl);
    END LOOP;
    EXECUTE format('CREATE TRIGGER pgdw_materialize_insert BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION pgdw.materialize_mark()', tbl);
    IF deps IS NOT NULL THEN
        -- Only a change of a column the values depend on makes the row pending again.
        EXECUTE format('CREATE TRIGGER pgdw_materialize_update BEFORE UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION pgdw.materialize_mark()',
                       pgdw.idents(deps), tbl,
                       (SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', d), ' OR ') FROM unnest(deps) d));
    END IF;
    EXECUTE format('CREATE TRIGGER pgdw_materialize_wake AFTER INSERT OR UPDATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgdw.materialize_wake()', tbl);
    -- Rows applied by logical replication too (its apply worker runs as a replica). The
    -- partitions' clones of the row triggers are set the same way.
    FOR part IN SELECT tbl UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = tbl LOOP
        FOR trig IN SELECT tgname FROM pg_trigger WHERE tgrelid = part AND tgname LIKE 'pgdw\_materialize\_%' LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', part, trig);
        END LOOP;
    END LOOP;

    -- Called again (a fixed function): rows set aside are computed again.
    IF old.fn IS NOT NULL THEN
        EXECUTE format('UPDATE %s SET materialized_at = NULL WHERE materialized_at = ''-infinity''', tbl);
        GET DIAGNOSTICS retried = ROW_COUNT;
        DELETE FROM pgdw.materialize_failures f WHERE f.tbl = materialize.tbl;
    END IF;
    PERFORM pgdw.materialize_schedule();
    RETURN format('%s computes %s of %s%s; %s rows to compute', sig, array_to_string(outs, ', '), tbl,
                  CASE WHEN retried > 0 THEN format(' (%s rows that failed before are retried)', retried) ELSE '' END,
                  pgdw.materialize_pending(tbl));
END $$;
COMMENT ON FUNCTION pgdw.materialize(regclass, text, text[]) IS
    'Keep columns of a table computed by a function of its row; pgdw worker computes pending rows';
