-- Materialized columns (run again at every `pgdw up`; its place in src/runtime/mod.rs).
--
-- Derived columns live on the table itself; a function computes them from one row. A row
-- whose materialized_at is NULL (inserted, or one of the columns its values depend on
-- changed) is pending; pgdw worker computes pending rows in batches ('materialize' tasks)
-- and writes back only the columns the functions return. A row whose function raises is
-- set aside (materialized_at = '-infinity', the error in pgdw.materialize_failed) and does
-- not block the others. Full refreshes never happen: a change costs the rows it touched.
--
-- Which rows wait is kept outside them, in the table's pending set (pgdw.materialize_pending_<id>):
-- no index names materialized_at or a derived column, so a write-back changes only unindexed
-- columns and is a HOT update when its page has room (PostgreSQL counts a partial index's
-- predicate column as indexed: the pending index this replaced made every write-back a new
-- tuple in every index, and a dead version for the next reader to prune). The set is keys
-- only, in 8 buckets (a hash of the key) of two partitions each, as the rollups' changes
-- tables: writers only insert (the trigger that marks a row also records its key), into the
-- partition their bucket's `gen` names, so they never wait for each other and leave no dead
-- tuples. A worker switches a bucket's writers to its other partition, waits for those still
-- inside the old one (LOCK ... EXCLUSIVE), computes the pending rows of all its keys in one
-- transaction, and TRUNCATEs it. Buckets spread workers over the keys: a
-- bucket is drained by one worker at a time (an advisory lock), and each slot drains its own
-- share of the buckets first (pgdw.materialize_buckets).
--
-- The invariant: a pending row's key is in its set, in a part not yet drained. A key leaves
-- only when a drain passes it, and a drain computes the pending rows of the keys it passes
-- (locked as read; one locked by another transaction is recorded again for a later drain).

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

-- Each materialized table's pending set: per bucket, the partition writers add to.
CREATE TABLE IF NOT EXISTS pgdw.materialize_sets (
    tbl       regclass PRIMARY KEY,
    id        serial UNIQUE,
    gens      smallint[] NOT NULL DEFAULT '{0,0,0,0,0,0,0,0}'
);
COMMENT ON TABLE pgdw.materialize_sets IS 'The pending set of each materialized table: the partition of each bucket writers add to';

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

-- The pending set of set `id`, or one of its partitions (bucket * 2 + gen).
CREATE OR REPLACE FUNCTION pgdw.materialize_set(id int, part int DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('pgdw.%I', 'materialize_pending_' || id || coalesce('_' || part, ''));
$$;

-- The pending set of tbl (see pgdw.materialize_set).
CREATE OR REPLACE FUNCTION pgdw.materialize_set_of(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT pgdw.materialize_set(id) FROM pgdw.materialize_sets m WHERE m.tbl = materialize_set_of.tbl;
$$;

-- `v.k1 = pk.k1 AND ...`: a row of tbl aliased v joined to its key aliased pk.
CREATE OR REPLACE FUNCTION pgdw.materialize_key_join(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(format('v.%1$I = pk.%1$I', k), ' AND ') FROM unnest(pgdw.primary_key(tbl)) k;
$$;

-- The bucket (0 to 7) of the key of a row aliased `a`: the same expression wherever a key
-- enters a set.
CREATE OR REPLACE FUNCTION pgdw.materialize_bucket(tbl regclass, a text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('(hashtextextended(row(%s)::text, 0) & 7)::int', string_agg(format('%s.%I', a, k), ', '))
      FROM unnest(pgdw.primary_key(tbl)) k;
$$;

-- `INSERT INTO <set> ...` of the keys of the rows `rows_sql` gives (aliased r): into the
-- partition their bucket's writers use, read from pgdw.materialize_sets when the statement
-- runs (NULL there, for a writer whose snapshot predates the set: partition 0 of the bucket,
-- which is drained in its turn too).
CREATE OR REPLACE FUNCTION pgdw.materialize_record_sql(tbl regclass, id int, rows_sql text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('INSERT INTO %1$s (pgdw_part, %2$s)
                   SELECT r.pgdw_b * 2 + coalesce(m.gens[r.pgdw_b + 1], 0), %4$s
                     FROM (SELECT %5$s AS pgdw_b, %4$s FROM (%6$s) r) r LEFT JOIN pgdw.materialize_sets m ON m.id = %3$s',
                  pgdw.materialize_set(id), pgdw.idents(key), id,
                  (SELECT string_agg(format('r.%I', k), ', ') FROM unnest(key) k),
                  pgdw.materialize_bucket(tbl, 'r'),
                  rows_sql)
      FROM (SELECT pgdw.primary_key(tbl) AS key) k;
$$;

-- The set of tbl, its partitions, and the trigger function that records keys in it (one,
-- for the statement-level trigger with its transition table and the row-level ones).
CREATE OR REPLACE FUNCTION pgdw.materialize_install_set(tbl regclass) RETURNS pgdw.materialize_sets
LANGUAGE plpgsql AS $$
DECLARE
    s pgdw.materialize_sets;
    p int;
BEGIN
    INSERT INTO pgdw.materialize_sets AS m (tbl) VALUES (materialize_install_set.tbl) ON CONFLICT ON CONSTRAINT materialize_sets_pkey DO NOTHING;
    SELECT * INTO s FROM pgdw.materialize_sets m WHERE m.tbl = materialize_install_set.tbl;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %s (pgdw_part smallint NOT NULL, %s) PARTITION BY LIST (pgdw_part)',
                   pgdw.materialize_set(s.id),
                   (SELECT string_agg(format('%I %s', k, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY i)
                      FROM unnest(pgdw.primary_key(tbl)) WITH ORDINALITY u (k, i)
                      JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = k));
    FOR p IN 0 .. 15 LOOP
        -- Only inserts and TRUNCATE reach them: autovacuum has nothing to do there.
        EXECUTE format('CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES IN (%s) WITH (autovacuum_enabled = false)',
                       pgdw.materialize_set(s.id, p), pgdw.materialize_set(s.id), p);
    END LOOP;
    -- What the writer pays for a row's key (a single-row update): one trigger call (BEFORE
    -- UPDATE: the row made pending and its key recorded in the same call), a hash, a lookup
    -- of its bucket's gen and one INSERT of a prepared plan straight into the partition (no
    -- tuple routing). Only the first key of a partition its last drain emptied (TRUNCATE:
    -- the key lands at (0,1)) wakes the workers: they drain the partition whole, so later
    -- keys find them awake, and a notifying commit takes a database-wide lock that would
    -- serialize every writer's commit. (A first key whose transaction aborted leaves the next
    -- one uncounted: the workers' poll, every second, finds it.) A statement's keys recorded
    -- from its transition table notify once; statements that make no row pending (the
    -- workers' write-backs among them) notify no one.
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgdw.%1$I() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    b  int;
    at tid;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        %2$s;
        PERFORM pg_notify('pgdw_materialize', '');
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.materialized_at := NULL;
        IF OLD.materialized_at IS NULL THEN
            RETURN NEW;  -- pending already: its key is in the set
        END IF;
    END IF;
    b := %3$s;
    CASE b * 2 + coalesce((SELECT m.gens[b + 1] FROM pgdw.materialize_sets m WHERE m.id = %4$s), 0)
%5$s
    END CASE;
    IF at = '(0,1)' THEN
        PERFORM pg_notify('pgdw_materialize', '');
    END IF;
    RETURN NEW;
END $body$
$f$, 'materialize_record_' || s.id,
        pgdw.materialize_record_sql(tbl, s.id, 'SELECT * FROM pgdw_new WHERE materialized_at IS NULL'),
        pgdw.materialize_bucket(tbl, 'NEW'),
        s.id,
        (SELECT string_agg(format('    WHEN %1$s THEN INSERT INTO %2$s (pgdw_part, %3$s) VALUES (%1$s, %4$s) RETURNING ctid INTO at;',
                                  g.leaf, pgdw.materialize_set(s.id, g.leaf), pgdw.idents(pgdw.primary_key(tbl)),
                                  (SELECT string_agg(format('NEW.%I', k), ', ') FROM unnest(pgdw.primary_key(tbl)) k)),
                           E'\n' ORDER BY g.leaf)
           FROM generate_series(0, 15) g (leaf)));
    RETURN s;
END $$;

-- Record the keys of tbl's pending rows that its set does not hold (a registration, or a
-- table registered before the set existed). Returns how many.
CREATE OR REPLACE FUNCTION pgdw.materialize_record_pending(tbl regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s pgdw.materialize_sets;
    n bigint;
BEGIN
    SELECT * INTO s FROM pgdw.materialize_sets m WHERE m.tbl = materialize_record_pending.tbl;
    EXECUTE pgdw.materialize_record_sql(tbl, s.id, format(
        'SELECT v.* FROM %s v WHERE v.materialized_at IS NULL AND NOT EXISTS (SELECT 1 FROM %s pk WHERE %s)',
        tbl, pgdw.materialize_set(s.id), pgdw.materialize_key_join(tbl)));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION pgdw.materialize_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.materialized_at := NULL;
    RETURN NEW;
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

-- The one statement that computes and writes the pending rows among the keys `keys_sql`
-- gives (every function's columns) and returns how many it wrote and how many keys there
-- were, or NULL when tbl has no functions. Each key's row is looked up by the primary key and locked as it is read (SKIP
-- LOCKED: a row another transaction holds is left for a later drain, pgdw.materialize_batch
-- records it again), and only then do the functions join them (a function is never called
-- for a row another task holds; a LATERAL call the planner can inline: a SQL function becomes
-- a join it can hash or memoize, as in a view); each row is written back where it was read:
-- by its ctid, or by its key on a partitioned table, whose ctids repeat across partitions.
-- With `clear`, the rows written lose their entries in pgdw.materialize_failures (a row set
-- aside, changed since, computed now).
CREATE OR REPLACE FUNCTION pgdw.materialize_statement(tbl regclass, keys_sql text, clear boolean DEFAULT false)
RETURNS text LANGUAGE sql STABLE AS $$
    WITH f AS (
        SELECT fn, columns, row_number() OVER (ORDER BY created_at, fn) AS i
          FROM pgdw.materializations m WHERE m.tbl = materialize_statement.tbl),
    c AS (SELECT c, f.i FROM f, unnest(f.columns) c),
    k AS (SELECT k FROM unnest(pgdw.primary_key(tbl)) k),
    part AS (SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = tbl) AS yes)
    SELECT format('WITH pk AS MATERIALIZED (%5$s),
                   w AS (
                     UPDATE %1$s t SET %2$s, materialized_at = now()
                       FROM (SELECT %3$s, %4$s
                               FROM (SELECT x.* FROM pk,
                                            LATERAL (SELECT %6$s FROM %1$s v WHERE %7$s AND v.materialized_at IS NULL
                                                        FOR UPDATE SKIP LOCKED) x) x %8$s) b
                      WHERE %9$s
                     RETURNING %10$s)%11$s
                   SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM pk)',
                  tbl,
                  (SELECT string_agg(format('%1$I = b.%1$I', c), ', ') FROM c),
                  CASE WHEN part.yes THEN (SELECT string_agg(format('x.%I', k), ', ') FROM k)
                       ELSE 'x.pgdw_row' END,
                  (SELECT string_agg(format('d%s.%I', i, c), ', ') FROM c),
                  keys_sql,
                  cols.v || CASE WHEN part.yes THEN '' ELSE ', v.ctid AS pgdw_row' END,
                  pgdw.materialize_key_join(tbl),
                  (SELECT string_agg(format(' LEFT JOIN LATERAL %s(ROW(%s)::%s) d%s ON true',
                                            (fn::regprocedure)::oid::regproc, cols.x, tbl, i), '') FROM f),
                  CASE WHEN part.yes THEN (SELECT string_agg(format('t.%1$I = b.%1$I', k), ' AND ') FROM k)
                       ELSE 't.ctid = b.pgdw_row' END,
                  (SELECT string_agg(format('t.%I', k), ', ') FROM k),
                  CASE WHEN clear THEN format(',
                   d AS (DELETE FROM pgdw.materialize_failures f
                          WHERE f.tbl = %L::regclass AND f.key IN (SELECT jsonb_build_object(%s) FROM w))',
                                              tbl, (pgdw.materialize_keys(tbl)).kobj)
                       ELSE '' END)
      FROM part,
           -- The row passed to the functions is rebuilt from its columns: an inlined function's
           -- field of it is then the column itself, not read from a row value made per row.
           -- The key columns keep their names too (the write-back joins by them).
           (SELECT string_agg(format('v.%I AS %I', a.attname, 'pgdw_' || a.attnum), ', ' ORDER BY a.attnum)
                   || ', ' || (SELECT string_agg(format('v.%1$I', k), ', ') FROM unnest(pgdw.primary_key(tbl)) k) AS v,
                   string_agg(format('x.%I', 'pgdw_' || a.attnum), ', ' ORDER BY a.attnum) AS x
              FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped) cols
     WHERE EXISTS (SELECT 1 FROM f);
$$;

-- Blocks of a set's partition one batch drains: about `size` keys (a key of a bigint takes
-- 40 bytes of a block's 8,192).
CREATE OR REPLACE FUNCTION pgdw.materialize_batch_blocks(size int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, size / 150);
$$;

-- Compute the pending rows among the keys `keys_sql` gives: in one statement; when it fails
-- (a function raised for some row), the keys' pending rows are locked and written row by row
-- by pgdw.materialize_write, which sets the failing rows aside. A pending row left (another
-- transaction held it) is recorded in the set again. Returns the keys' rows computed or set
-- aside, and those recorded again.
CREATE OR REPLACE FUNCTION pgdw.materialize_keys_compute(tbl regclass, s pgdw.materialize_sets, keys_sql text,
    OUT done bigint, OUT again bigint)
LANGUAGE plpgsql AS $$
DECLARE
    stmt text := pgdw.materialize_statement(tbl, keys_sql,
        EXISTS (SELECT 1 FROM pgdw.materialize_failures f WHERE f.tbl = materialize_keys_compute.tbl));
    q    record;
    keys jsonb[];
    pk   text := pgdw.materialize_key_join(tbl);
    nkeys bigint;
BEGIN
    again := 0;
    BEGIN
        EXECUTE stmt INTO done, nkeys;
        IF done = nkeys THEN
            RETURN;  -- every key's row computed: none left to record again
        END IF;
    EXCEPTION WHEN others THEN
        -- Some row's function raised: row by row.
        q := pgdw.materialize_sql(tbl);
        EXECUTE format('SELECT array_agg(jsonb_build_object(%s)) FROM (%s) pk,
                          LATERAL (SELECT 1 FROM %s v WHERE %s AND v.materialized_at IS NULL FOR UPDATE SKIP LOCKED) x',
                       (SELECT string_agg(format('%L, pk.%I', k, k), ', ') FROM unnest(pgdw.primary_key(tbl)) k),
                       keys_sql, tbl, pk)
          INTO keys;
        done := coalesce(cardinality(keys), 0);
        IF keys IS NOT NULL THEN
            PERFORM pgdw.materialize_write(tbl, keys, q.sets, q.laterals, true);
        END IF;
    END;
    EXECUTE pgdw.materialize_record_sql(tbl, s.id, format(
        'SELECT v.* FROM (%s) pk, LATERAL (SELECT * FROM %s v WHERE %s AND v.materialized_at IS NULL OFFSET 0) v',
        keys_sql, tbl, pk));
    GET DIAGNOSTICS again = ROW_COUNT;
END $$;

-- A task's transaction commits without waiting for its WAL to reach the disk (or a
-- synchronous standby): a crash can lose only its last commits, whole, and what they did is
-- redone, since a drain's write-backs and the TRUNCATE of its keys commit together (the keys
-- stay, the rows stay pending) and a switch lost leaves the writers where they were. Any
-- commit that depends on one (a writer's key in the partition a switch named) comes after it
-- in the WAL, and flushing that commit flushes it. Saves a WAL flush per batch.
CREATE OR REPLACE FUNCTION pgdw.materialize_commit_async() RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('synchronous_commit', 'off', true);
$$;

-- The buckets in the order slot `slot` of `slots` visits them: its share first (bucket b is
-- slot (b mod slots) + 1's), then the others'. Each slot drains its own share and takes
-- another's only when its own is empty, so slots finish together instead of the first to
-- lock a bucket taking more than its share.
CREATE OR REPLACE FUNCTION pgdw.materialize_buckets(slot int, slots int DEFAULT 1, OUT bucket int, OUT own boolean)
RETURNS SETOF record LANGUAGE sql IMMUTABLE AS $$
    SELECT b, b % greatest(slots, 1) = (slot - 1) % greatest(slots, 1)
      FROM generate_series(0, 7) b
     ORDER BY b % greatest(slots, 1) <> (slot - 1) % greatest(slots, 1), (b - slot + 1 + 8) % 8;
$$;

-- Bucket b of set `id`, once this transaction holds it (an advisory lock; NULL when another
-- does): 'drain' when its drained partition holds keys (that partition's name in `leaf`),
-- else 'switched' when its writers' partition holds committed keys (their next keys go to
-- the other one once this commits), else 'empty'. Committed keys only: a writer still
-- inside its transaction would otherwise see its bucket switched under it, its keys split
-- over both partitions, and the drain wait for its commit anyway. (The partitions read stay
-- locked until this commits; no other slot drains them meanwhile: the bucket is this one's.)
CREATE OR REPLACE FUNCTION pgdw.materialize_bucket_take(id int, b int, OUT state text, OUT leaf text)
LANGUAGE plpgsql AS $$
DECLARE
    gen  smallint;
    any_ boolean;
BEGIN
    IF NOT pg_try_advisory_xact_lock(id, b) THEN
        RETURN;
    END IF;
    SELECT m.gens[b + 1] INTO gen FROM pgdw.materialize_sets m WHERE m.id = materialize_bucket_take.id;
    leaf := pgdw.materialize_set(id, b * 2 + 1 - gen);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', leaf) INTO any_;
    IF any_ THEN
        state := 'drain';
        RETURN;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', pgdw.materialize_set(id, b * 2 + gen)) INTO any_;
    IF any_ THEN
        UPDATE pgdw.materialize_sets m SET gens[b + 1] = 1 - gen WHERE m.id = materialize_bucket_take.id;
        state := 'switched';
    ELSE
        state := 'empty';
    END IF;
END $$;

-- Switch every bucket of tbl whose writers' partition holds keys and whose drained one is
-- empty, in the order of `slot`; returns how many. A task commits this first, so the batch
-- after it in the same task drains what the change before it wrote (a bucket's keys can be
-- drained only once its writers have moved to the other partition).
CREATE OR REPLACE FUNCTION pgdw.materialize_switch(tbl regclass, slot int DEFAULT 1) RETURNS int
LANGUAGE sql AS $$
    SELECT pgdw.materialize_commit_async();
    SELECT count(*)::int
      FROM pgdw.materialize_sets m, pgdw.materialize_buckets(slot) b,
           LATERAL pgdw.materialize_bucket_take(m.id, b.bucket) t
     WHERE m.tbl = materialize_switch.tbl AND t.state = 'switched';
$$;

-- One batch of tbl's pending rows for task slot `slot`, up to about `size` keys: over the
-- buckets of this slot's share (else another's), those no other batch holds (an advisory
-- lock), each drained partition whole, then TRUNCATEd; and a bucket whose other partition is
-- drained and whose writers' one holds keys is switched (its writers go to the other
-- partition when this commits; a later batch drains it). A task switches first, in a
-- transaction of its own (pgdw.materialize_switch), so its batch drains what a change wrote
-- just before. Returns how many keys it took (computed or set aside; 1 for each switch or
-- empty last step), 0 when it could do nothing.
CREATE OR REPLACE FUNCTION pgdw.materialize_batch(tbl regclass, size int DEFAULT 1000, slot int DEFAULT 1)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    s      pgdw.materialize_sets;
    b      int;
    own    boolean;
    t      record;
    any_   boolean;
    leaf   text;
    leaves text[] := '{}';
    sizes  int[] := '{}';
    total  bigint := 0;
    per    int := pgdw.materialize_batch_blocks(size);
    chunk  text[] := '{}';
    used   int := 0;
    lo     int;
    hi     int;
    r      record;
    taken  bigint := 0;
    keys   text := pgdw.idents(pgdw.primary_key(tbl));
    waited text := current_setting('lock_timeout');
BEGIN
    SELECT * INTO s FROM pgdw.materialize_sets m WHERE m.tbl = materialize_batch.tbl;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pgdw.materializations m WHERE m.tbl = materialize_batch.tbl) THEN
        RETURN 0;
    END IF;
    -- The partitions to drain: this slot's share of the buckets (among the slots the table's
    -- tasks hold now), or another's when its own has nothing, until they hold `size` keys.
    FOR b, own IN SELECT * FROM pgdw.materialize_buckets(slot, (SELECT count(*)::int FROM pgdw.materialize_slots m
                                                                 WHERE m.tbl = materialize_batch.tbl)) LOOP
        EXIT WHEN total >= size OR (total > 0 AND NOT own);
        t := pgdw.materialize_bucket_take(s.id, b);
        IF t.state = 'switched' THEN
            taken := taken + 1;
        END IF;
        CONTINUE WHEN t.state IS DISTINCT FROM 'drain';
        -- Writers that read the old `gen` may still be inserting: keep any later one (a
        -- snapshot older than the switch) out until this commits, and leave the bucket to a
        -- later batch while one is still inside it. Never wait for it: this transaction may
        -- already hold rows that writer waits for (a deadlock, the writer's transaction lost).
        BEGIN
            EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE NOWAIT', t.leaf);
            any_ := true;
        EXCEPTION WHEN lock_not_available THEN
            any_ := false;
        END;
        CONTINUE WHEN NOT any_;
        leaves := leaves || t.leaf;
        sizes := sizes || (pg_relation_size(t.leaf::regclass) / current_setting('block_size')::int)::int;
        EXECUTE format('SELECT %s + count(*) FROM ONLY %s', total, t.leaf) INTO total;
    END LOOP;
    -- Each partition whole, from its first block, in this transaction: a writer that read the
    -- old gen before the switch may still add a key after this commits, into any block with
    -- room (not only past the last), so no position is kept between batches; a batch that
    -- could not TRUNCATE leaves it whole for the next one (its computed rows are no longer
    -- pending: passing them again costs a lookup each). One statement per `per` blocks, over
    -- as many partitions as they span (a statement costs about 1.6 ms to build and plan, a
    -- bucket's share of a 1% change of a million rows 14 ms to compute), its keys in key
    -- order: each lookup then lands near the last one, in the index and in the table (7% less
    -- time than in the order of a hash, 1,268 keys by psql).
    FOR i IN 1 .. cardinality(leaves) LOOP
        lo := 0;
        WHILE lo < sizes[i] LOOP
            hi := least(sizes[i], lo + per - used);
            chunk := chunk || format('SELECT %s FROM ONLY %s WHERE ctid >= ''(%s,0)''::tid AND ctid < ''(%s,0)''::tid',
                                     keys, leaves[i], lo, hi);
            used := used + hi - lo;
            lo := hi;
            CONTINUE WHEN used < per AND NOT (i = cardinality(leaves) AND lo >= sizes[i]);
            r := pgdw.materialize_keys_compute(tbl, s, format('SELECT DISTINCT %1$s FROM (%2$s) k ORDER BY %1$s',
                                                              keys, array_to_string(chunk, ' UNION ALL ')));
            -- Only rows others hold, recorded again: nothing done; the next look tries again.
            taken := taken + CASE WHEN r.done = 0 AND r.again > 0 THEN 0 ELSE greatest(r.done, 1) END;
            chunk := '{}';
            used := 0;
        END LOOP;
    END LOOP;
    -- Every key passed (no writer can add one while the lock is held). TRUNCATE waits for
    -- readers of the set (pgdw.materialize_pending's count, a user's query): for a moment only,
    -- since a reader may wait in turn for a partition this transaction emptied before (a cycle
    -- the deadlock detector would break only after deadlock_timeout); past it, a later batch
    -- passes the keys again instead. (A lock_timeout set inside the block is undone with it.)
    FOREACH leaf IN ARRAY leaves LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '200ms', true);
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', leaf);
            PERFORM set_config('lock_timeout', waited, true);
            EXECUTE format('TRUNCATE %s', leaf);
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
    END LOOP;
    RETURN taken;
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
    PERFORM pgdw.materialize_commit_async();
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
    -- The pending rows are those of the set's keys (each looked up by the primary key): no
    -- scan of the table, which has no index on materialized_at.
    EXECUTE format('SELECT count(*) FROM (SELECT DISTINCT %s FROM %s) pk,
                      LATERAL (SELECT 1 FROM %s v WHERE %s AND v.materialized_at IS NULL OFFSET 0) v',
                   pgdw.idents(pgdw.primary_key(tbl)), pgdw.materialize_set_of(tbl), tbl, pgdw.materialize_key_join(tbl))
      INTO n;
    FOR r IN SELECT * FROM pgdw.materializations m WHERE m.tbl = materialize_pending.tbl AND NOT m.backfilled LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE materialized_at > ''-infinity'' AND %s',
                       tbl, pgdw.materialize_after(tbl, r.backfill_after))
          INTO more;
        n := n + more;
    END LOOP;
    RETURN n;
END $$;

-- Whether any key of tbl waits in its pending set (cheap: no row looked up). False: no row is
-- pending. True: some may be (a drained part is emptied at its last step). Never waits: a
-- partition a drain has emptied but not yet committed counts as waiting, where reading it
-- would wait for that commit while holding the partitions read before, and hold up their
-- TRUNCATE by another slot until then.
CREATE OR REPLACE FUNCTION pgdw.materialize_waiting(tbl regclass) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    id   int;
    part text;
    any_ boolean;
BEGIN
    SELECT m.id INTO id FROM pgdw.materialize_sets m WHERE m.tbl = materialize_waiting.tbl;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR p IN 0 .. 15 LOOP
        part := pgdw.materialize_set(id, p);
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS SHARE MODE NOWAIT', part);
        EXCEPTION WHEN lock_not_available THEN
            RETURN true;
        END;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', part) INTO any_;
        IF any_ THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
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
    FOR s IN DELETE FROM pgdw.materialize_sets m WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = m.tbl) RETURNING id LOOP
        EXECUTE format('DROP TABLE IF EXISTS %s', pgdw.materialize_set(s));
        EXECUTE format('DROP FUNCTION IF EXISTS pgdw.%I()', 'materialize_record_' || s);
    END LOOP;
    FOR t IN SELECT DISTINCT m.tbl FROM pgdw.materializations m LOOP
        pending := pgdw.materialize_waiting(t);
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

-- The pending set of tbl and the triggers that keep it: run at each registration, and at
-- `pgdw up` for tables registered before the set existed (their pending index dropped, their
-- pending rows' keys recorded, nothing recomputed that was computed).
CREATE OR REPLACE FUNCTION pgdw.materialize_install(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s     pgdw.materialize_sets := pgdw.materialize_install_set(tbl);
    deps  text[];
    part  regclass;
    trig  text;
    old_index text;
    rec   text := format('pgdw.%I()', 'materialize_record_' || s.id);
    plain boolean := NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = tbl);
BEGIN
    -- The pending index of the contract before the set: it made every write-back non-HOT.
    -- (Looked up first: DROP INDEX IF EXISTS would tell every new registration it had none.)
    SELECT format('%I.%I', n.nspname, left(c.relname, 40) || '_pgdw_pending') INTO old_index
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF to_regclass(old_index) IS NOT NULL THEN
        EXECUTE format('DROP INDEX %s', old_index);
    END IF;
    SELECT array_agg(DISTINCT d ORDER BY d) INTO deps
      FROM pgdw.materializations m, unnest(m.depends_on) d WHERE m.tbl = materialize_install.tbl;
    FOR trig IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND tgname LIKE 'pgdw\_materialize\_%' AND tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig, tbl);
    END LOOP;
    EXECUTE format('CREATE TRIGGER pgdw_materialize_insert BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION pgdw.materialize_mark()', tbl);
    -- A row becomes pending, its key recorded in the same call, when a column its values
    -- depend on changes, or when a user sets materialized_at to NULL. The workers'
    -- write-backs set materialized_at and change no such column: their WHEN is false, and
    -- no trigger runs for them.
    EXECUTE format('CREATE TRIGGER pgdw_materialize_update BEFORE UPDATE OF %s ON %s FOR EACH ROW
                      WHEN (%s (NEW.materialized_at IS NULL AND OLD.materialized_at IS NOT NULL)) EXECUTE FUNCTION %s',
                   pgdw.idents(coalesce(deps, '{}') || 'materialized_at'::text), tbl,
                   (SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I OR ', d), '') FROM unnest(deps) d), rec);
    -- Inserted rows: row by row on a partitioned table (cloned onto partitions created later,
    -- whichever table a statement names) and for rows logical replication applies (its apply
    -- worker fires row triggers only); on a plain table, once per statement besides (a bulk
    -- load is one call), the row-level one then enabled for replicas only (below).
    EXECUTE format('CREATE TRIGGER pgdw_materialize_record_applied AFTER INSERT ON %s FOR EACH ROW
                      WHEN (NEW.materialized_at IS NULL) EXECUTE FUNCTION %s', tbl, rec);
    IF plain THEN
        EXECUTE format('CREATE TRIGGER pgdw_materialize_record_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgdw_new
                          FOR EACH STATEMENT EXECUTE FUNCTION %s', tbl, rec);
    END IF;
    -- Rows applied by logical replication too (its apply worker runs as a replica). The
    -- partitions' clones of the row triggers are set the same way.
    FOR part IN SELECT tbl UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = tbl LOOP
        FOR trig IN SELECT tgname FROM pg_trigger WHERE tgrelid = part AND tgname LIKE 'pgdw\_materialize\_%' LOOP
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', part, trig);
        END LOOP;
    END LOOP;
    IF plain THEN
        -- The statement-level trigger records locally inserted rows; this one, replicated ones.
        EXECUTE format('ALTER TABLE %s ENABLE REPLICA TRIGGER pgdw_materialize_record_applied', tbl);
    END IF;
    PERFORM pgdw.materialize_record_pending(tbl);
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
    retried  bigint := 0;
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

    PERFORM pgdw.materialize_install(tbl);

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

