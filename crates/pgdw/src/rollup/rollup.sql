-- Incremental rollups (run again at every `pgdw up`; its place in src/runtime/mod.rs).
--
-- pgdw.rollup(name, query, source, keys) keeps the table `name` equal to `query` (a GROUP BY
-- whose first N output columns are the group keys) by recomputing only the groups a change
-- touched. Changes are captured by key, never by time range, so a late row costs its group.
--
-- Capture, on the source (and each of its partitions):
-- * statement-level AFTER triggers with transition tables write the DISTINCT keys of the rows a
--   statement inserted, updated (old and new) or deleted: a million-row load is one trigger
--   call and one INSERT ... SELECT DISTINCT, not a million;
-- * a row-level trigger enabled only for replicas catches rows applied by logical replication
--   (its apply worker fires row triggers only); partitions created later get a clone of it;
-- * TRUNCATE, and a partition dropped while attached, mark the whole rollup for recomputing;
--   a partition detached (pgdw's retention detaches expired ones into pgdw_retired before
--   dropping them) or attached has its keys captured while its rows still exist (an event
--   trigger on the ALTER TABLE, or the worker's next check where event triggers cannot be
--   created).
--
-- The changed keys go to an append-only table of two partitions (pgdw.rollup_changes_<id>):
-- writers insert into the one `gen` names and never update or delete, so concurrent writers
-- never wait for each other or for a unique index, and the table holds no dead tuples. A run
-- switches writers to the other partition, waits for the writers still inside the old one
-- (LOCK ... EXCLUSIVE), recomputes its distinct keys' groups from the query restricted to
-- them (so every aggregate, distinct counts included, stays exact), deletes the groups that
-- became empty, and TRUNCATEs the partition (PgQ's rotation).

CREATE TABLE IF NOT EXISTS pgdw.rollups (
    id            serial PRIMARY KEY,
    name          regclass NOT NULL UNIQUE,   -- the rollup table
    query         text NOT NULL,
    source        regclass NOT NULL,
    keys          text[] NOT NULL,            -- the group keys over one source row
    key_columns   text[] NOT NULL,            -- the query's first N columns
    value_columns text[] NOT NULL,            -- the others
    gen           smallint NOT NULL DEFAULT 0 CHECK (gen IN (0, 1)),  -- the changes partition written
    partitions    oid[] NOT NULL DEFAULT '{}',  -- the source's partitions when last checked
    full_since    timestamptz,                -- every group is to be recomputed (a TRUNCATE, a dropped partition)
    full_reason   text,
    applied_at    timestamptz,
    last_run      jsonb,                      -- what the last run did: groups, updated, deleted, ms, full
    created_at    timestamptz NOT NULL DEFAULT now(),
    search_path   text,                       -- the schemas the query and keys were resolved in (pgdw.rollup_search_path)
    also_reads    text[] NOT NULL DEFAULT '{}',  -- tables the query reads besides the source: their changes are not captured
    -- History kept past the source's retention (pgdw.events' per-user days): groups whose key
    -- column `frozen_key` is below the value of the expression `frozen_before` (evaluated at
    -- each run) are never recomputed, so a partition that expires takes its rows out of the
    -- source but not its groups out of the rollup.
    frozen_key    text,
    frozen_before text
);
COMMENT ON TABLE pgdw.rollups IS 'Each rollup pgdw.rollup keeps, with its capture state';

-- Rollups that stopped being kept because their table or source was dropped (by a user, or by
-- a tool that replaces tables, such as dbt's --full-refresh): pgdw status, pgdw doctor and the
-- example's alerts say so until the rollup is registered again or pgdw.rollup_forget(name).
CREATE TABLE IF NOT EXISTS pgdw.rollups_lost (
    name    text PRIMARY KEY,                 -- the rollup table's name when it was lost
    source  text NOT NULL,
    query   text NOT NULL,
    keys    text[] NOT NULL,
    reason  text NOT NULL,
    lost_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.rollups_lost IS 'Rollups no longer kept because their table or source was dropped';

CREATE OR REPLACE FUNCTION pgdw.rollup_forget(name text) RETURNS boolean
LANGUAGE sql AS $$
    DELETE FROM pgdw.rollups_lost l WHERE l.name = rollup_forget.name RETURNING true;
$$;
COMMENT ON FUNCTION pgdw.rollup_forget(text) IS
    'Stop reporting a rollup that was lost (its table or source dropped) and is not to be registered again';

-- The current search_path, resolved to the schemas that exist, for a rollup to be run with
-- whatever the worker's, a writer's or an event trigger's own path is: the schemas the query
-- and keys were checked in, temporary tables never found first.
CREATE OR REPLACE FUNCTION pgdw.rollup_search_path() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(', ', string_agg(quote_ident(s), ', ' ORDER BY i), 'pg_temp')
      FROM unnest(current_schemas(false)) WITH ORDINALITY u (s, i)
     WHERE s NOT LIKE 'pg\_temp\_%';
$$;
UPDATE pgdw.rollups SET search_path = pgdw.rollup_search_path() WHERE search_path IS NULL;

-- Run with rollup r's search_path; returns the one to put back (pgdw.rollup_leave). An error in
-- between aborts the (sub)transaction, which restores the path by itself.
CREATE OR REPLACE FUNCTION pgdw.rollup_enter(r pgdw.rollups) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    was text := current_setting('search_path');
BEGIN
    PERFORM set_config('search_path', coalesce(r.search_path, was), true);
    RETURN was;
END $$;

CREATE OR REPLACE FUNCTION pgdw.rollup_leave(was text) RETURNS void
LANGUAGE sql AS $$
    SELECT set_config('search_path', was, true);
$$;

-- A rollup's runs must see every change committed before their lock (see pgdw.rollup_apply):
-- a snapshot taken earlier, as REPEATABLE READ and SERIALIZABLE keep, would miss some for good.
CREATE OR REPLACE FUNCTION pgdw.rollup_require_read_committed(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pgdw.%: run it in a READ COMMITTED transaction (this one is %)', what,
            upper(current_setting('transaction_isolation'))
            USING HINT = 'Its snapshot would miss rows committed while it waits for the source''s writers; '
                      || 'BEGIN ISOLATION LEVEL READ COMMITTED, or SET default_transaction_isolation = ''read committed''';
    END IF;
END $$;

-- While a row here exists, a 'rollup' task for it is queued or running (one at a time).
CREATE TABLE IF NOT EXISTS pgdw.rollup_slots (
    rollup int PRIMARY KEY,
    task   bigint
);

-- Names of a rollup's objects -----------------------------------------------------------------

-- schema.table, quoted, whatever the search_path: how pgdw.rollups_lost names tables (as
-- pg_event_trigger_dropped_objects' object_identity does).
CREATE OR REPLACE FUNCTION pgdw.rollup_qualified(t regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = t;
$$;

CREATE OR REPLACE FUNCTION pgdw.rollup_changes(id int, gen int DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('pgdw.%I', 'rollup_changes_' || id || coalesce('_' || gen, ''));
$$;

-- `a.k1 = b.k2 AND ...` over two lists of columns, with `op` between each pair.
CREATE OR REPLACE FUNCTION pgdw.rollup_pairs(a text, acols text[], b text, bcols text[], op text, sep text DEFAULT ' AND ')
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(format('%s.%I %s %s.%I', a, x, op, b, y), sep ORDER BY i)
      FROM unnest(acols, bcols) WITH ORDINALITY u (x, y, i);
$$;

CREATE OR REPLACE FUNCTION pgdw.rollup_change_columns(n int) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg('pgdw_k' || i ORDER BY i) FROM generate_series(1, n) i;
$$;

-- Capture ---------------------------------------------------------------------------------------

-- The trigger functions of rollup r, generated with its key expressions in them (static SQL,
-- planned once per trigger), and the changes table.
CREATE OR REPLACE FUNCTION pgdw.rollup_install_capture(r pgdw.rollups) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    kc    text[] := pgdw.rollup_change_columns(cardinality(r.keys));
    klist text := array_to_string(r.keys, ', ');
    cols  text := pgdw.idents(kc);
    -- A writer whose snapshot predates the registration (REPEATABLE READ, SERIALIZABLE) sees
    -- no row here: either partition is applied in its turn (pgdw.rollup_rotate), so 0 is safe.
    gen   text := format('coalesce((SELECT gen FROM pgdw.rollups WHERE id = %s), 0)', r.id);
    -- The keys are evaluated with the schemas they were checked in, whatever the writer's path.
    path  text := format('SET search_path = %s', coalesce(r.search_path, pgdw.rollup_search_path()));
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %s (gen smallint NOT NULL, %s, changed_at timestamptz NOT NULL) PARTITION BY LIST (gen)',
                   pgdw.rollup_changes(r.id),
                   (SELECT string_agg(format('%I %s', c, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                      FROM unnest(kc, r.key_columns) u (c, k) JOIN pg_attribute a ON a.attrelid = r.name AND a.attname = k));
    EXECUTE format('CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES IN (0)', pgdw.rollup_changes(r.id, 0), pgdw.rollup_changes(r.id));
    EXECUTE format('CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES IN (1)', pgdw.rollup_changes(r.id, 1), pgdw.rollup_changes(r.id));
    -- Nothing but inserts reach it: autovacuum has nothing to do there.
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', pgdw.rollup_changes(r.id, 0));
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', pgdw.rollup_changes(r.id, 1));

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgdw.%1$I() RETURNS trigger LANGUAGE plpgsql %6$s AS $body$
#variable_conflict use_column
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO %2$s (gen, %3$s, changed_at)
        SELECT %4$s, s.*, statement_timestamp() FROM (SELECT DISTINCT %5$s FROM pgdw_new) s;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO %2$s (gen, %3$s, changed_at)
        SELECT %4$s, s.*, statement_timestamp() FROM (SELECT %5$s FROM pgdw_old UNION SELECT %5$s FROM pgdw_new) s;
    ELSE
        INSERT INTO %2$s (gen, %3$s, changed_at)
        SELECT %4$s, s.*, statement_timestamp() FROM (SELECT DISTINCT %5$s FROM pgdw_old) s;
    END IF;
    RETURN NULL;
END $body$
$f$, 'rollup_capture_' || r.id, pgdw.rollup_changes(r.id), cols, gen, klist, path);

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION pgdw.%1$I() RETURNS trigger LANGUAGE plpgsql %6$s AS $body$
#variable_conflict use_column
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO %2$s (gen, %3$s, changed_at) SELECT %4$s, %5$s, statement_timestamp() FROM (SELECT OLD.*) s;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO %2$s (gen, %3$s, changed_at) SELECT %4$s, %5$s, statement_timestamp() FROM (SELECT NEW.*) s;
    END IF;
    RETURN NULL;
END $body$
$f$, 'rollup_capture_row_' || r.id, pgdw.rollup_changes(r.id), cols, gen, klist, path);
END $$;

CREATE OR REPLACE FUNCTION pgdw.rollup_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgdw.rollup_mark_whole(TG_ARGV[0]::int, format('%s was truncated', TG_RELID::regclass));
    RETURN NULL;
END $$;

-- The statement-level triggers of rollup r on one table (the source, or one of its partitions:
-- a statement naming a partition fires that partition's statement triggers, not the parent's).
CREATE OR REPLACE FUNCTION pgdw.rollup_statement_triggers(r pgdw.rollups, tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p text := 'pgdw_rollup_' || r.id;
    f text := format('pgdw.%I()', 'rollup_capture_' || r.id);
BEGIN
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pgdw_new FOR EACH STATEMENT EXECUTE FUNCTION %s', p || '_insert', tbl, f);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgdw_old NEW TABLE AS pgdw_new FOR EACH STATEMENT EXECUTE FUNCTION %s', p || '_update', tbl, f);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS pgdw_old FOR EACH STATEMENT EXECUTE FUNCTION %s', p || '_delete', tbl, f);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgdw.rollup_truncated(%L)', p || '_truncate', tbl, r.id);
    -- A TRUNCATE replicated from a source reaches the apply worker as one.
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, p || '_truncate');
    -- An inheritance child (not a partition: those get a clone of the source's) needs the
    -- replicas' row trigger of its own.
    IF tbl <> r.source AND NOT (SELECT relispartition FROM pg_class WHERE oid = tbl) THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgdw.%I()',
                       p || '_row', tbl, 'rollup_capture_row_' || r.id);
        EXECUTE format('ALTER TABLE %s ENABLE REPLICA TRIGGER %I', tbl, p || '_row');
    END IF;
END $$;

CREATE OR REPLACE FUNCTION pgdw.rollup_drop_triggers(r pgdw.rollups, tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl AND NOT tgisinternal AND tgparentid = 0
                AND tgname LIKE 'pgdw\_rollup\_' || r.id || '\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
END $$;

-- The tables whose rows a query of the source reads: its partitions and inheritance children,
-- every level (pg_inherits holds both; pg_partition_tree only the partitions).
CREATE OR REPLACE FUNCTION pgdw.rollup_source_partitions(source regclass) RETURNS oid[]
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE d (relid) AS (
        SELECT inhrelid FROM pg_inherits WHERE inhparent = source
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.relid)
    SELECT coalesce(array_agg(relid ORDER BY relid), '{}') FROM d;
$$;

-- Bring rollup r's view of its source's partitions up to date: a new or attached partition
-- gets the statement triggers and its rows' keys are captured; a detached one has its keys
-- captured (its rows left the source) and loses the triggers; one gone while attached (rows
-- unknown) marks every group for recomputing. Cheap when nothing changed.
-- Every group of rollup rid is to be recomputed (its source lost rows unseen), and why.
CREATE OR REPLACE FUNCTION pgdw.rollup_mark_whole(rid int, reason text) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgdw.rollups SET full_since = coalesce(full_since, statement_timestamp()), full_reason = reason
     WHERE id = rid;
$$;

-- The keys of every row of `tbl` (a partition attached or detached) as changes of rollup r.
CREATE OR REPLACE FUNCTION pgdw.rollup_capture_table(r pgdw.rollups, tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    was text := pgdw.rollup_enter(r);
BEGIN
    EXECUTE format('INSERT INTO %s (gen, %s, changed_at) SELECT %s, s.*, statement_timestamp() FROM (SELECT DISTINCT %s FROM ONLY %s) s',
                   pgdw.rollup_changes(r.id), pgdw.idents(pgdw.rollup_change_columns(cardinality(r.keys))),
                   r.gen, array_to_string(r.keys, ', '), tbl);
    PERFORM pgdw.rollup_leave(was);
END $$;

CREATE OR REPLACE FUNCTION pgdw.rollup_check_partitions(rid int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r    pgdw.rollups;
    now_ oid[];
    p    oid;
BEGIN
    SELECT * INTO r FROM pgdw.rollups WHERE id = rid;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    now_ := pgdw.rollup_source_partitions(r.source);
    IF now_ = r.partitions THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM pgdw.rollups WHERE id = rid FOR UPDATE;
    now_ := pgdw.rollup_source_partitions(r.source);
    FOR p IN SELECT x FROM unnest(r.partitions) x EXCEPT SELECT y FROM unnest(now_) y LOOP
        IF EXISTS (SELECT 1 FROM pg_class WHERE oid = p) THEN
            PERFORM pgdw.rollup_capture_table(r, p::regclass);
            PERFORM pgdw.rollup_drop_triggers(r, p::regclass);
        ELSE
            PERFORM pgdw.rollup_mark_whole(r.id, format('a partition of %s was dropped while attached', r.source));
        END IF;
    END LOOP;
    FOR p IN SELECT y FROM unnest(now_) y EXCEPT SELECT x FROM unnest(r.partitions) x LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = p AND tgname = 'pgdw_rollup_' || r.id || '_insert') THEN
            PERFORM pgdw.rollup_statement_triggers(r, p::regclass);
        END IF;
        IF (SELECT relkind FROM pg_class WHERE oid = p) = 'r' THEN
            PERFORM pgdw.rollup_capture_table(r, p::regclass);
        END IF;
    END LOOP;
    UPDATE pgdw.rollups SET partitions = now_ WHERE id = r.id;
END $$;

-- Unregister rollup r: its triggers, functions and changes table go; the rollup table stays.
CREATE OR REPLACE FUNCTION pgdw.rollup_uninstall(r pgdw.rollups) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p oid;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = r.source) THEN
        PERFORM pgdw.rollup_drop_triggers(r, r.source);
        FOREACH p IN ARRAY pgdw.rollup_source_partitions(r.source) LOOP
            PERFORM pgdw.rollup_drop_triggers(r, p::regclass);
        END LOOP;
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS pgdw.%I() CASCADE', 'rollup_capture_' || r.id);
    EXECUTE format('DROP FUNCTION IF EXISTS pgdw.%I() CASCADE', 'rollup_capture_row_' || r.id);
    EXECUTE format('DROP TABLE IF EXISTS %s', pgdw.rollup_changes(r.id));
    DELETE FROM pgdw.rollup_slots WHERE rollup = r.id;
    DELETE FROM pgdw.rollups WHERE id = r.id;
END $$;

-- DDL on sources: partitions created, attached, detached (ddl_command_end), and tables dropped
-- (sql_drop). Installed where the role may create event triggers (a superuser); elsewhere
-- the worker's schedule runs the same partition check. They fire for every role's DDL (a BI
-- tool's temporary table too): they run as their owner, and a failure is a warning, never the
-- DDL's failure (the workers' next look, every 100 ms, checks the partitions again).
CREATE OR REPLACE FUNCTION pgdw.rollup_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rid int;
BEGIN
    IF current_setting('pgdw.rollup_ddl', true) = 'on' OR NOT EXISTS (SELECT 1 FROM pgdw.rollups) THEN
        RETURN;
    END IF;
    PERFORM set_config('pgdw.rollup_ddl', 'on', true);
    BEGIN
        FOR rid IN SELECT id FROM pgdw.rollups LOOP
            PERFORM pgdw.rollup_check_partitions(rid);
        END LOOP;
    EXCEPTION WHEN others THEN
        RAISE WARNING 'pgdw: checking the rollups'' partitions after %: %', tg_tag, SQLERRM;
    END;
    PERFORM set_config('pgdw.rollup_ddl', 'off', true);
END $$;

CREATE OR REPLACE FUNCTION pgdw.rollup_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pgdw.rollups;
    gone oid[];
    lost_name text;
    lost_source text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgdw.rollups) THEN
        RETURN;
    END IF;
    SELECT array_agg(objid) INTO gone FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table';
    IF gone IS NULL THEN
        RETURN;
    END IF;
    FOR r IN SELECT * FROM pgdw.rollups WHERE name = ANY (gone) OR source = ANY (gone) OR partitions && gone LOOP
        BEGIN
            IF r.name = ANY (gone) OR r.source = ANY (gone) THEN
                -- Dropped objects are gone from pg_class: their names come from the event.
                SELECT coalesce((SELECT o.object_identity FROM pg_event_trigger_dropped_objects() o
                                  WHERE o.objid = r.name AND o.object_type = 'table' LIMIT 1), pgdw.rollup_qualified(r.name)),
                       coalesce((SELECT o.object_identity FROM pg_event_trigger_dropped_objects() o
                                  WHERE o.objid = r.source AND o.object_type = 'table' LIMIT 1), pgdw.rollup_qualified(r.source))
                  INTO lost_name, lost_source;
                INSERT INTO pgdw.rollups_lost (name, source, query, keys, reason)
                VALUES (lost_name, lost_source, r.query, r.keys,
                        format('its %s was dropped (%s)', CASE WHEN r.name = ANY (gone) THEN 'table' ELSE 'source ' || lost_source END, tg_tag))
                ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, query = EXCLUDED.query, keys = EXCLUDED.keys,
                                                 reason = EXCLUDED.reason, lost_at = EXCLUDED.lost_at;
                RAISE WARNING 'pgdw: the rollup % is no longer kept: its % was dropped', lost_name,
                    CASE WHEN r.name = ANY (gone) THEN 'table' ELSE 'source' END
                    USING HINT = 'Register it again with pgdw.rollup (pgdw status and pgdw doctor list it until then), or SELECT pgdw.rollup_forget(name)';
                PERFORM pgdw.rollup_uninstall(r);
            ELSE
                PERFORM pgdw.rollup_mark_whole(r.id, format('a partition of %s was dropped while attached', r.source));
                UPDATE pgdw.rollups SET partitions = (SELECT coalesce(array_agg(p), '{}') FROM unnest(partitions) p WHERE p <> ALL (gone))
                 WHERE id = r.id;
            END IF;
        EXCEPTION WHEN others THEN
            RAISE WARNING 'pgdw: a rollup after %: %', tg_tag, SQLERRM;
        END;
    END LOOP;
END $$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS pgdw_rollup_ddl;
        DROP EVENT TRIGGER IF EXISTS pgdw_rollup_dropped;
        CREATE EVENT TRIGGER pgdw_rollup_ddl ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION pgdw.rollup_ddl();
        CREATE EVENT TRIGGER pgdw_rollup_dropped ON sql_drop
            WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION pgdw.rollup_dropped();
    END IF;
END $$;

-- Apply -----------------------------------------------------------------------------------------

-- Recompute groups of rollup r: those whose keys are in the changes partition `gen`, or every
-- group (`whole`). Returns what it did.
-- Whether columns `cols` of `tbl` can be sorted (their types have a default btree operator
-- class): a group key needs only equality, so some cannot.
CREATE OR REPLACE FUNCTION pgdw.rollup_sortable(tbl regclass, cols text[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(bool_and(EXISTS (SELECT 1 FROM pg_opclass o JOIN pg_am m ON m.oid = o.opcmethod
                                      WHERE m.amname = 'btree' AND o.opcdefault
                                        AND o.opcintype = coalesce(NULLIF(t.typbasetype, 0), a.atttypid))), false)
      FROM unnest(cols) c JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = c
      JOIN pg_type t ON t.oid = a.atttypid;
$$;

CREATE OR REPLACE FUNCTION pgdw.rollup_recompute(r pgdw.rollups, gen int, whole boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    kc      text[] := pgdw.rollup_change_columns(cardinality(r.keys));
    klist   text := pgdw.idents(r.key_columns);
    kclist  text := pgdw.idents(kc);
    all_cols text := pgdw.idents(r.key_columns || r.value_columns);
    upsert  text;
    anynull text := (SELECT string_agg(format('%I IS NULL', c), ' OR ') FROM unnest(kc) c);
    tnull   text := (SELECT string_agg(format('t.%I IS NULL', c), ' OR ') FROM unnest(r.key_columns) c);
    has_null boolean;
    groups  bigint;
    ups     bigint;
    dels    bigint;
    dup     text;
    bound   text;
    keep_t  text := '';   -- `AND` a group of the rollup table `t` is not frozen
    keep_c  text := '';   -- the same over a recomputed row `c` (or `fresh`)
    was     text := pgdw.rollup_enter(r);
BEGIN
    IF r.frozen_key IS NOT NULL THEN
        EXECUTE format('SELECT (%s)::text', r.frozen_before) INTO bound;
        IF bound IS NOT NULL THEN
            keep_t := format(' AND NOT coalesce(t.%I < %L, false)', r.frozen_key, bound);
            keep_c := format(' AND NOT coalesce(c.%I < %L, false)', r.frozen_key, bound);
        END IF;
    END IF;
  BEGIN
    -- Always DO UPDATE, never DO NOTHING: a group proposed twice by one statement then fails
    -- (cardinality_violation, below) instead of one of its rows being dropped unseen.
    upsert := CASE WHEN cardinality(r.value_columns) = 0 THEN format('DO UPDATE SET %1$I = EXCLUDED.%1$I WHERE false', r.key_columns[1]) ELSE
        format('DO UPDATE SET %s WHERE (%s) IS DISTINCT FROM (%s)',
               (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ') FROM unnest(r.value_columns) c),
               pgdw.rollup_comparable(r.name, r.value_columns, 't') || CASE WHEN cardinality(r.value_columns) = 1 THEN ', NULL' ELSE '' END,
               pgdw.rollup_comparable(r.name, r.value_columns, 'EXCLUDED') || CASE WHEN cardinality(r.value_columns) = 1 THEN ', NULL' ELSE '' END) END;
    IF whole THEN
        EXECUTE format($s$
            WITH fresh AS MATERIALIZED (SELECT %2$s FROM (%3$s) c WHERE true %9$s),
            del AS (DELETE FROM %1$s t
                     WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE %4$s)
                       AND NOT ((%5$s) AND EXISTS (SELECT 1 FROM fresh f WHERE %6$s)) %10$s
                    RETURNING 1),
            up AS (INSERT INTO %1$s AS t (%2$s) SELECT %2$s FROM fresh %11$s ON CONFLICT (%7$s) %8$s RETURNING 1)
            SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM up), (SELECT count(*) FROM del),
                   (SELECT row(%7$s)::text FROM fresh GROUP BY %7$s HAVING count(*) > 1 LIMIT 1)$s$,
            r.name, all_cols, r.query,
            pgdw.rollup_pairs('f', r.key_columns, 't', r.key_columns, '='),
            tnull,
            pgdw.rollup_pairs('f', r.key_columns, 't', r.key_columns, 'IS NOT DISTINCT FROM'),
            klist, upsert, keep_c, keep_t,
            -- Written in key order (a registration fills an empty table): a range of one key's
            -- groups, one series' hours, then lies on few pages instead of one page a group.
            CASE WHEN pgdw.rollup_sortable(r.name, r.key_columns) THEN 'ORDER BY ' || klist ELSE '' END)
          INTO groups, ups, dels, dup;
    ELSE
        -- Each dirty group from the query restricted to its keys: the conditions are pushed
        -- into the query's WHERE (OFFSET 0 keeps the subquery from being flattened into a join
        -- that would aggregate every group), so a group costs an index lookup of its rows.
        -- Keys compare with =, which an index serves; a NULL key (a group too) needs IS NOT
        -- DISTINCT FROM, which no index serves, so that path is added only when one is dirty.
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s WHERE %s)', pgdw.rollup_changes(r.id, gen), anynull)
          INTO has_null;
        EXECUTE format($s$
            WITH d AS (SELECT DISTINCT %2$s FROM ONLY %3$s),
            c AS MATERIALIZED (
                SELECT d.*, f.* FROM d LEFT JOIN LATERAL (
                    SELECT true AS pgdw_found, q.* FROM (%4$s) q WHERE %5$s OFFSET 0) f ON true
                 WHERE NOT (%6$s)
                %7$s),
            del AS (DELETE FROM %1$s t USING c WHERE c.pgdw_found IS NULL AND %8$s %14$s RETURNING 1),
            %9$s
            up AS (INSERT INTO %1$s AS t (%10$s) SELECT %10$s FROM c WHERE c.pgdw_found %15$s
                   ON CONFLICT (%11$s) %12$s RETURNING 1)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM up), (SELECT count(*) FROM del) %13$s,
                   (SELECT row(%2$s)::text FROM c WHERE c.pgdw_found GROUP BY %2$s HAVING count(*) > 1 LIMIT 1)
            $s$,
            r.name, kclist, pgdw.rollup_changes(r.id, gen), r.query,
            pgdw.rollup_pairs('q', r.key_columns, 'd', kc, '='),
            anynull,
            CASE WHEN has_null THEN format(
                'UNION ALL SELECT d.*, f.* FROM d LEFT JOIN LATERAL (
                    SELECT true AS pgdw_found, q.* FROM (%s) q WHERE %s OFFSET 0) f ON true
                 WHERE %s', r.query, pgdw.rollup_pairs('q', r.key_columns, 'd', kc, 'IS NOT DISTINCT FROM'), anynull) ELSE '' END,
            pgdw.rollup_pairs('t', r.key_columns, 'c', kc, '='),
            CASE WHEN has_null THEN format(
                'del_null AS (DELETE FROM %s t USING c WHERE c.pgdw_found IS NULL AND (%s) AND %s %s RETURNING 1),',
                r.name, (SELECT string_agg(format('c.%I IS NULL', x), ' OR ') FROM unnest(kc) x),
                pgdw.rollup_pairs('t', r.key_columns, 'c', kc, 'IS NOT DISTINCT FROM'), keep_t) ELSE '' END,
            all_cols, klist, upsert,
            CASE WHEN has_null THEN '+ (SELECT count(*) FROM del_null)' ELSE '' END,
            keep_t, keep_c)
          INTO groups, ups, dels, dup;
    END IF;
  EXCEPTION WHEN cardinality_violation THEN
    -- The upsert met a group twice (the statement's own check, `dup`, did not get to say
    -- which). Name it with a full run of the query: this is the error path.
    EXECUTE format('SELECT row(%1$s)::text FROM (%2$s) q GROUP BY %1$s HAVING count(*) > 1 LIMIT 1', klist, r.query) INTO dup;
    dup := coalesce(dup, '(one of the changed ones)');
  END;
    -- A group the query gives twice would be kept as whichever row came last: never silently.
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % gives the group % more than once', r.name, dup
            USING HINT = format('a rollup''s keys (%s) must be unique in its query''s result: GROUP BY them', array_to_string(r.key_columns, ', '));
    END IF;
    PERFORM pgdw.rollup_leave(was);
    RETURN jsonb_build_object('groups', groups, 'updated', ups, 'deleted', dels, 'full', whole);
END $$;

-- `p.a, p.b::text`: columns of `tbl` as they can be compared (by =, and by EXCEPT in
-- pgdw.rollup_verify), a type without a default btree or hash operator class (json, xml, hll's
-- and tdigest's sketches) as its text.
CREATE OR REPLACE FUNCTION pgdw.rollup_comparable(tbl regclass, cols text[], p text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(concat_ws('.', p, quote_ident(c))
                      || CASE WHEN a.atttypid IN ('json'::regtype, 'xml'::regtype)
                                OR (a.atttypid IS NOT NULL AND NOT EXISTS (
                                        SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                                         WHERE oc.opcintype = a.atttypid AND oc.opcdefault AND am.amname IN ('btree', 'hash'))
                                    AND (SELECT typcategory FROM pg_type WHERE oid = a.atttypid) <> 'A')
                              THEN '::text' ELSE '' END, ', ' ORDER BY i)
      FROM unnest(cols) WITH ORDINALITY u (c, i)
      LEFT JOIN pg_attribute a ON a.attrelid = tbl AND a.attname = c AND NOT a.attisdropped;
$$;

-- Which changes partition a run consumes: the one writers left, if a run stopped before
-- emptying it; else the current one, after switching writers to the other. NULL: nothing to do.
CREATE OR REPLACE FUNCTION pgdw.rollup_rotate(rid int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r   pgdw.rollups;
    any_ boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('pgdw.rollup', rid));
    SELECT * INTO r FROM pgdw.rollups WHERE id = rid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', pgdw.rollup_changes(rid, 1 - r.gen)) INTO any_;
    IF any_ THEN
        RETURN 1 - r.gen;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', pgdw.rollup_changes(rid, r.gen)) INTO any_;
    IF any_ THEN
        UPDATE pgdw.rollups SET gen = 1 - r.gen WHERE id = rid;
        RETURN r.gen;
    END IF;
    RETURN CASE WHEN r.full_since IS NOT NULL THEN 1 - r.gen END;
END $$;

-- Apply the changes partition `gen` of rollup rid (after pgdw.rollup_rotate, in a later
-- transaction: writers must see the switch first). Returns what it did.
CREATE OR REPLACE FUNCTION pgdw.rollup_apply(rid int, gen int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    r       pgdw.rollups;
    started timestamptz := clock_timestamp();
    dirty   bigint;
    whole   boolean;
    did     jsonb;
BEGIN
    PERFORM pgdw.rollup_require_read_committed('rollup_apply');
    PERFORM pg_advisory_xact_lock(hashtextextended('pgdw.rollup', rid));
    -- Writers that read the old `gen` may still be inserting: wait for them, and keep any
    -- later one (a snapshot older than the switch) out until the TRUNCATE commits.
    EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', pgdw.rollup_changes(rid, gen));
    SELECT * INTO r FROM pgdw.rollups WHERE id = rid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SET LOCAL jit = off;
    -- Many groups at once (a bulk load): one pass over the query beats a lookup per group.
    -- Cheap to decide: only past 10,000 changed keys are they counted, and against a fifth of
    -- the rollup's groups.
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s LIMIT 10001) x', pgdw.rollup_changes(rid, gen)) INTO dirty;
    IF dirty > 10000 THEN
        EXECUTE format('SELECT count(*) FROM (SELECT DISTINCT %s FROM %s) x',
                       pgdw.idents(pgdw.rollup_change_columns(cardinality(r.keys))),
                       pgdw.rollup_changes(rid, gen))
          INTO dirty;
    END IF;
    whole := r.full_since IS NOT NULL
          OR dirty > greatest(10000, (SELECT reltuples FROM pg_class WHERE oid = r.name) / 5);
    did := pgdw.rollup_recompute(r, gen, whole);
    EXECUTE format('TRUNCATE %s', pgdw.rollup_changes(rid, gen));
    UPDATE pgdw.rollups SET full_since = CASE WHEN whole THEN NULL ELSE full_since END,
                            full_reason = CASE WHEN whole THEN NULL ELSE full_reason END,
                            applied_at = now(),
                            last_run = did || jsonb_build_object('ms', round(extract(epoch FROM clock_timestamp() - started) * 1000, 1))
     WHERE id = rid;
    RETURN did;
END $$;

-- One run of rollup `name`, as the worker's 'rollup' task does it: switch, then apply, in two
-- transactions. Runs without a worker too: CALL pgdw.rollup_run('orders_daily').
CREATE OR REPLACE PROCEDURE pgdw.rollup_run(name regclass)
LANGUAGE plpgsql AS $$
DECLARE
    rid int := (SELECT id FROM pgdw.rollups r WHERE r.name = rollup_run.name);
    gen int;
BEGIN
    IF rid IS NULL THEN
        RAISE EXCEPTION 'pgdw.rollup_run: % is not a rollup (pgdw.rollup creates one)', name;
    END IF;
    PERFORM pgdw.rollup_require_read_committed('rollup_run');
    PERFORM pgdw.rollup_check_partitions(rid);
    gen := pgdw.rollup_rotate(rid);
    COMMIT;
    IF gen IS NOT NULL THEN
        PERFORM pgdw.rollup_apply(rid, gen);
    END IF;
END $$;

-- Queue a 'rollup' task for each rollup with changes and none queued. Every worker calls it
-- every 100 ms.
CREATE OR REPLACE FUNCTION pgdw.rollup_schedule() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r      pgdw.rollups;
    queued int := 0;
    any_   boolean;
BEGIN
    -- A slot whose task failed for good is free again.
    DELETE FROM pgdw.rollup_slots s
     WHERE EXISTS (SELECT 1 FROM pgdw.task_history h WHERE h.id = s.task AND h.state = 'failed');
    FOR r IN SELECT * FROM pgdw.rollups LOOP
        PERFORM pgdw.rollup_check_partitions(r.id);
        CONTINUE WHEN EXISTS (SELECT 1 FROM pgdw.rollup_slots s WHERE s.rollup = r.id);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', pgdw.rollup_changes(r.id)) INTO any_;
        CONTINUE WHEN NOT any_ AND NOT EXISTS (SELECT 1 FROM pgdw.rollups x WHERE x.id = r.id AND x.full_since IS NOT NULL);
        INSERT INTO pgdw.rollup_slots (rollup, task)
        VALUES (r.id, pgdw.enqueue('rollup', jsonb_build_object('rollup', r.name::text)))
        ON CONFLICT (rollup) DO NOTHING;
        queued := queued + 1;
    END LOOP;
    RETURN queued;
END $$;

-- After a 'rollup' task's run: its slot is free. Changes that arrived meanwhile wait for the
-- workers' next look (every 100 ms), not a task of their own at once: under a steady stream
-- of writes, each run then takes what accumulated in between, instead of a run per change.
CREATE OR REPLACE FUNCTION pgdw.rollup_done(name regclass) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM pgdw.rollup_slots s USING pgdw.rollups r WHERE r.name = rollup_done.name AND s.rollup = r.id;
$$;

-- Lag ---------------------------------------------------------------------------------------

-- Runs read the changes tables under a lock and empty them with TRUNCATE, which is not MVCC:
-- a snapshot taken before a run committed would see its partition empty and its result not
-- yet there, and call the rollup caught up. So the lag first takes the changes table's lock
-- (waiting for a TRUNCATE in progress to commit; keeping the next one out), then counts with
-- a snapshot taken after it (VOLATILE: each statement here gets its own). Called as the first
-- statement of a REPEATABLE READ transaction, the snapshot is older than the lock: read it in
-- READ COMMITTED.
CREATE OR REPLACE FUNCTION pgdw.rollup_lag(name regclass,
    OUT dirty_groups bigint, OUT oldest_change_age interval, OUT recompute_all boolean)
LANGUAGE plpgsql AS $$
DECLARE
    r pgdw.rollups;
BEGIN
    SELECT * INTO r FROM pgdw.rollups x WHERE x.name = rollup_lag.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdw.rollup_lag: % is not a rollup (pgdw.rollup creates one)', name;
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS SHARE MODE', pgdw.rollup_changes(r.id));
    SELECT * INTO r FROM pgdw.rollups x WHERE x.name = rollup_lag.name;
    EXECUTE format('SELECT count(*), now() - min(changed_at) FROM (SELECT %s, min(changed_at) AS changed_at FROM %s GROUP BY %1$s) d',
                   pgdw.idents(pgdw.rollup_change_columns(cardinality(r.keys))),
                   pgdw.rollup_changes(r.id))
      INTO dirty_groups, oldest_change_age;
    recompute_all := r.full_since IS NOT NULL;
    IF recompute_all THEN
        oldest_change_age := greatest(oldest_change_age, now() - r.full_since);
    END IF;
    oldest_change_age := greatest(coalesce(oldest_change_age, interval '0'), interval '0');
END $$;
COMMENT ON FUNCTION pgdw.rollup_lag(regclass) IS
    'How far a rollup is behind its source: groups to recompute and the age of the oldest change not applied';

CREATE OR REPLACE VIEW pgdw.rollup_status AS
SELECT r.name::text AS rollup, r.source::text AS source, l.dirty_groups, l.oldest_change_age,
       l.recompute_all, r.full_reason, r.applied_at, r.last_run, r.also_reads
  FROM pgdw.rollups r, LATERAL pgdw.rollup_lag(r.name) l;
COMMENT ON VIEW pgdw.rollup_status IS 'Each rollup with its lag (pgdw status lists it)';

-- Register ------------------------------------------------------------------------------------

-- The nodes of an EXPLAIN (FORMAT JSON) plan, with their depth and whether they run inside a
-- subquery expression (SubPlan, InitPlan) rather than the query's own tree.
CREATE OR REPLACE FUNCTION pgdw.rollup_plan_nodes(plan jsonb)
RETURNS TABLE (node jsonb, depth int, sub boolean) LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE n (node, depth, sub) AS (
        SELECT plan, 0, false
        UNION ALL
        SELECT c, n.depth + 1, n.sub OR coalesce(c->>'Parent Relationship' IN ('SubPlan', 'InitPlan'), false)
          FROM n, jsonb_array_elements(coalesce(n.node->'Plans', '[]'::jsonb)) c)
    SELECT * FROM n;
$$;

-- The table a plan node scans, if any.
CREATE OR REPLACE FUNCTION pgdw.rollup_plan_relation(node jsonb) RETURNS regclass
LANGUAGE sql STABLE AS $$
    SELECT to_regclass(format('%I.%I', node->>'Schema', node->>'Relation Name')) WHERE node ? 'Relation Name';
$$;

-- The names EXPLAIN qualifies the source's columns with in `plan`: the scans' aliases (a
-- partition's is its parent's with _N added) and the source's own name.
CREATE OR REPLACE FUNCTION pgdw.rollup_plan_aliases(plan jsonb, family oid[], source regclass) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(DISTINCT a) FROM (
        SELECT n.node->>'Alias' FROM pgdw.rollup_plan_nodes(plan) n WHERE pgdw.rollup_plan_relation(n.node) = ANY (family)
        UNION
        SELECT regexp_replace(n.node->>'Alias', '_[0-9]+$', '') FROM pgdw.rollup_plan_nodes(plan) n WHERE pgdw.rollup_plan_relation(n.node) = ANY (family)
        UNION
        SELECT relname::text FROM pg_class WHERE oid = source) x (a)
     WHERE a IS NOT NULL;
$$;

-- An expression as EXPLAIN prints it, made comparable with another plan's: the parentheses
-- around the whole of it and the source's qualifiers taken off.
CREATE OR REPLACE FUNCTION pgdw.rollup_expr_norm(e text, aliases text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    a       text;
    depth   int;
    wrapped boolean;
BEGIN
    LOOP
        EXIT WHEN left(e, 1) <> '(' OR right(e, 1) <> ')';
        depth := 0;
        wrapped := true;
        FOR i IN 1 .. length(e) - 1 LOOP
            depth := depth + CASE substr(e, i, 1) WHEN '(' THEN 1 WHEN ')' THEN -1 ELSE 0 END;
            IF depth = 0 THEN
                wrapped := false;
                EXIT;
            END IF;
        END LOOP;
        EXIT WHEN NOT wrapped;
        e := substr(e, 2, length(e) - 2);
    END LOOP;
    FOREACH a IN ARRAY coalesce(aliases, '{}') LOOP
        e := regexp_replace(e, '(^|[^A-Za-z0-9_$."])' || regexp_replace(quote_ident(a), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') || '\.',
                            '\1', 'g');
    END LOOP;
    RETURN e;
END $$;

-- The first grouping node of a plan's own tree (an Aggregate or Group; NULL without one).
CREATE OR REPLACE FUNCTION pgdw.rollup_plan_grouping(plan jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT n.node FROM pgdw.rollup_plan_nodes(plan) n
     WHERE NOT n.sub AND n.node->>'Node Type' IN ('Aggregate', 'Group') ORDER BY n.depth LIMIT 1;
$$;

-- What the query's plan says about it as a rollup, refusing what cannot be recomputed a group
-- at a time: LIMIT/OFFSET and window functions (a group's row depends on other groups),
-- grouping sets (one row is several groups), and keys that are not its GROUP BY (a change
-- would dirty another group than the one its row is in). Returns the tables it reads besides
-- the source (their changes are not captured) and whether it is one aggregate over the whole
-- source (no GROUP BY: its keys are constants).
CREATE OR REPLACE FUNCTION pgdw.rollup_check_query(name text, query text, source regclass, keys text[],
    OUT also_reads text[], OUT whole_source boolean)
LANGUAGE plpgsql AS $$
DECLARE
    family oid[] := source::oid || pgdw.rollup_source_partitions(source);
    pj     json;
    plan   jsonb;
    probe  jsonb;
    g      jsonb;
    pg     jsonb;
    got    text[];
    want   text[];
    bad    text;
    k      text;
BEGIN
    EXECUTE 'EXPLAIN (VERBOSE, FORMAT JSON) ' || query INTO pj;
    plan := pj::jsonb->0->'Plan';
    SELECT string_agg(DISTINCT CASE n.node->>'Node Type' WHEN 'Limit' THEN 'LIMIT or OFFSET' ELSE 'a window function' END, ' and ')
      INTO bad FROM pgdw.rollup_plan_nodes(plan) n WHERE NOT n.sub AND n.node->>'Node Type' IN ('Limit', 'WindowAgg');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % uses %, so a group''s row depends on other groups and cannot be recomputed alone', name, bad
            USING HINT = 'Keep the groups whole in the rollup, and rank, limit or window over it in a view';
    END IF;
    IF EXISTS (SELECT 1 FROM pgdw.rollup_plan_nodes(plan) n WHERE NOT n.sub AND n.node ? 'Grouping Sets') THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % uses GROUPING SETS, ROLLUP or CUBE: one source row is in several groups (the group () of every row among them), which keys cannot name', name
            USING HINT = 'Register one rollup per grouping (each its own GROUP BY), and UNION ALL them in a view';
    END IF;

    SELECT coalesce(array_agg(DISTINCT coalesce(pg_partition_root(t), t)::regclass::text), '{}') INTO also_reads
      FROM (SELECT pgdw.rollup_plan_relation(n.node) FROM pgdw.rollup_plan_nodes(plan) n) x (t)
     WHERE t IS NOT NULL AND t <> ALL (family);

    g := pgdw.rollup_plan_grouping(plan);
    whole_source := g IS NOT NULL AND g->>'Strategy' = 'Plain' AND NOT g ? 'Group Key';
    IF whole_source THEN
        FOREACH k IN ARRAY keys LOOP
            BEGIN
                EXECUTE 'SELECT ' || k;
            EXCEPTION WHEN others THEN
                RAISE EXCEPTION 'pgdw.rollup: the query of % has no GROUP BY (one row over the whole source), so its keys must be constants; % is not', name, k
                    USING HINT = 'SELECT true AS whole, count(*) AS n FROM ... with keys => ARRAY[''true''], or GROUP BY the keys';
            END;
        END LOOP;
    ELSIF g ? 'Group Key' THEN
        EXECUTE format('EXPLAIN (VERBOSE, FORMAT JSON) SELECT 1 FROM %s GROUP BY %s', source, array_to_string(keys, ', ')) INTO pj;
        probe := pj::jsonb->0->'Plan';
        pg := pgdw.rollup_plan_grouping(probe);
        SELECT coalesce(array_agg(pgdw.rollup_expr_norm(x, a.aliases) ORDER BY 1), '{}') INTO got
          FROM jsonb_array_elements_text(g->'Group Key') x, (SELECT pgdw.rollup_plan_aliases(plan, family, source) AS aliases) a;
        SELECT coalesce(array_agg(pgdw.rollup_expr_norm(x, a.aliases) ORDER BY 1), '{}') INTO want
          FROM jsonb_array_elements_text(coalesce(pg->'Group Key', '[]')) x, (SELECT pgdw.rollup_plan_aliases(probe, family, source) AS aliases) a;
        IF got <> want THEN
            RAISE EXCEPTION 'pgdw.rollup: the query of % groups by (%), but its keys over a row of % are (%)', name,
                (SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(g->'Group Key') x), source, array_to_string(keys, ', ')
                USING HINT = 'keys are the query''s GROUP BY expressions, in the order of its first columns, written over one row of the source: '
                          || 'a change to a row must dirty the group the row is in';
        END IF;
    END IF;
END $$;


CREATE OR REPLACE FUNCTION pgdw.rollup(name text, query text, source regclass, keys text[])
RETURNS text LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    old      pgdw.rollups;
    r        pgdw.rollups;
    target   regclass := to_regclass(name);
    probe    text := 'pgdw_rollup_probe_' || pg_backend_pid();
    ncols    int;
    kcols    text[];
    vcols    text[];
    bad      text;
    same_shape boolean := false;
    groups   bigint;
    kind     "char" := (SELECT relkind FROM pg_class WHERE oid = source);
    part     oid;
    path     text := pgdw.rollup_search_path();
    checked  record;
BEGIN
    -- Filled from a snapshot taken after the capture is in place (see below): in READ
    -- COMMITTED, each statement's own.
    PERFORM pgdw.rollup_require_read_committed('rollup');
    -- The tables made here are not a source's partitions: the DDL event trigger stays out.
    PERFORM set_config('pgdw.rollup_ddl', 'on', true);
    IF query IS NULL THEN
        RAISE EXCEPTION 'pgdw.rollup: % needs a query', name;
    END IF;
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RAISE EXCEPTION 'pgdw.rollup: % needs at least one key: the query''s first columns, as expressions over one row of the source', name
            USING HINT = 'For one row over the whole source, make the key a constant and leave GROUP BY out: '
                      || 'SELECT true AS whole, count(*) AS n FROM ... with keys => ARRAY[''true''] (kept on an empty source too)';
    END IF;
    IF query !~* '^\s*((/\*.*?\*/|--[^\n]*\n)\s*)*(\(|select\M|with\M|values\M|table\M)' THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % must be a SELECT (it begins %)', name, left(btrim(query), 40);
    END IF;
    IF kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'pgdw.rollup: % is not a table (a %), so its changes cannot be captured', source,
            CASE kind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'relation of kind ' || kind::text END
            USING HINT = 'Roll up a local table: copy a foreign table with pgdw.sync or replication first';
    END IF;
    IF target IS NOT NULL THEN
        SELECT * INTO old FROM pgdw.rollups x WHERE x.name = target;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pgdw.rollup: % exists and is not a rollup', target
                USING HINT = 'pgdw.rollup creates its table; choose another name or drop it';
        END IF;
        IF old.query = rollup.query AND old.source = rollup.source AND old.keys = rollup.keys
           AND old.search_path IS NOT DISTINCT FROM path THEN
            PERFORM set_config('pgdw.rollup_ddl', 'off', true);
            RETURN format('%s is kept from %s already', target, source);
        END IF;
    END IF;

    -- The query's columns and types, and the keys' over a source row, from tables made
    -- WITH NO DATA (dropped at the end of this function).
    BEGIN
        EXECUTE format('CREATE TEMP TABLE %I AS SELECT * FROM (%s) q WITH NO DATA', probe, query);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % does not run: %', name, SQLERRM;
    END;
    SELECT array_agg(attname::text ORDER BY attnum) INTO kcols
      FROM pg_attribute WHERE attrelid = probe::regclass AND attnum > 0 AND attnum <= cardinality(keys);
    SELECT array_agg(attname::text ORDER BY attnum) INTO vcols
      FROM pg_attribute WHERE attrelid = probe::regclass AND attnum > cardinality(keys) AND NOT attisdropped;
    ncols := (SELECT count(*) FROM pg_attribute WHERE attrelid = probe::regclass AND attnum > 0 AND NOT attisdropped);
    IF ncols < cardinality(keys) THEN
        EXECUTE format('DROP TABLE %I', probe);
        RAISE EXCEPTION 'pgdw.rollup: % has % keys but its query only % columns', name, cardinality(keys), ncols;
    END IF;
    SELECT string_agg(c, ', ') INTO bad FROM unnest(kcols || coalesce(vcols, '{}')) c
     WHERE c LIKE 'pgdw\_%' OR c = '?column?';
    IF bad IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I', probe);
        RAISE EXCEPTION 'pgdw.rollup: name the query''s columns of % (AS ...); these cannot be columns: %', name, bad;
    END IF;
    BEGIN
        EXECUTE format('CREATE TEMP TABLE %I AS SELECT %s FROM %s WITH NO DATA', probe || '_k',
                       (SELECT string_agg(format('%s AS %I', k, 'k' || i), ', ') FROM unnest(keys) WITH ORDINALITY u (k, i)),
                       source);
    EXCEPTION WHEN others THEN
        EXECUTE format('DROP TABLE %I', probe);
        RAISE EXCEPTION 'pgdw.rollup: the keys of % are not expressions over a row of %: %', name, source, SQLERRM;
    END;
    SELECT string_agg(format('%s is %s over %s but the query''s %s is %s', keys[q.attnum], format_type(k.atttypid, k.atttypmod),
                             source, q.attname, format_type(q.atttypid, q.atttypmod)), '; ') INTO bad
      FROM pg_attribute q JOIN pg_attribute k ON k.attrelid = (probe || '_k')::regclass AND k.attnum = q.attnum
     WHERE q.attrelid = probe::regclass AND q.attnum > 0 AND q.attnum <= cardinality(keys) AND k.atttypid <> q.atttypid;
    IF bad IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I, %I', probe, probe || '_k');
        RAISE EXCEPTION 'pgdw.rollup: the keys of % do not match its query''s first columns: %', name, bad
            USING HINT = 'keys are the query''s first columns, in order, written over one row of the source';
    END IF;
    SELECT string_agg(format('%s (%s)', q.attname, format_type(q.atttypid, q.atttypmod)), ', ') INTO bad
      FROM pg_attribute q WHERE q.attrelid = probe::regclass AND q.attnum > 0 AND q.attnum <= cardinality(keys)
       AND q.atttypid IN ('json'::regtype, 'xml'::regtype);
    IF bad IS NOT NULL THEN
        EXECUTE format('DROP TABLE %I, %I', probe, probe || '_k');
        RAISE EXCEPTION 'pgdw.rollup: a key of % cannot be compared, so cannot name a group: %', name, bad
            USING HINT = 'Cast it (in the query and the keys alike) to jsonb or text';
    END IF;
    -- A refusal there rolls the probe tables back with everything else.
    checked := pgdw.rollup_check_query(name, query, source, keys);
    IF cardinality(checked.also_reads) > 0 THEN
        RAISE WARNING 'pgdw.rollup: the query of % also reads %: their changes are not captured, so its groups go stale when those change until their source rows do',
            name, array_to_string(checked.also_reads, ', ')
            USING HINT = 'Keep what it reads there as a materialized column of the source (pgdw.materialize), or make that table the source of a rollup of its own';
    END IF;

    -- Checked: (re)install. Everything below is one transaction with the caller's.
    IF old.id IS NOT NULL THEN
        same_shape := old.key_columns = kcols AND old.value_columns = coalesce(vcols, '{}')
            AND NOT EXISTS (SELECT 1 FROM pg_attribute q JOIN pg_attribute t ON t.attrelid = old.name AND t.attname = q.attname
                             WHERE q.attrelid = probe::regclass AND q.attnum > 0 AND NOT q.attisdropped AND t.atttypid <> q.atttypid);
        PERFORM pgdw.rollup_uninstall(old);
        IF NOT same_shape THEN
            BEGIN
                EXECUTE format('DROP TABLE %s', old.name);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                EXECUTE format('DROP TABLE %I, %I', probe, probe || '_k');
                RAISE EXCEPTION 'pgdw.rollup: the new query of % has other columns, and objects depend on the table: %', old.name, SQLERRM
                    USING HINT = 'Drop them first (and create them again after), or keep the columns';
            END;
            target := NULL;
        END IF;
    END IF;
    EXECUTE format('DROP TABLE %I, %I', probe, probe || '_k');
    IF target IS NULL THEN
        EXECUTE format('CREATE TABLE %s AS SELECT * FROM (%s) q WITH NO DATA', name, query);
        target := to_regclass(name);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %s (%s) NULLS NOT DISTINCT',
                       left((SELECT relname FROM pg_class WHERE oid = target), 50) || '_keys', target,
                       pgdw.idents(kcols));
    END IF;
    INSERT INTO pgdw.rollups (name, query, source, keys, key_columns, value_columns, partitions, search_path, also_reads)
    VALUES (target, query, source, keys, kcols, coalesce(vcols, '{}'), '{}', path, checked.also_reads)
    RETURNING * INTO r;
    DELETE FROM pgdw.rollups_lost l WHERE l.name = pgdw.rollup_qualified(target);

    -- Capture first: the triggers lock the source against writers until this transaction
    -- commits, so every change is either in the fill below or captured.
    PERFORM pgdw.rollup_install_capture(r);
    PERFORM pgdw.rollup_statement_triggers(r, source);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgdw.%I()',
                   'pgdw_rollup_' || r.id || '_row', source, 'rollup_capture_row_' || r.id);
    EXECUTE format('ALTER TABLE %s ENABLE REPLICA TRIGGER %I', source, 'pgdw_rollup_' || r.id || '_row');
    FOREACH part IN ARRAY pgdw.rollup_source_partitions(source) LOOP
        PERFORM pgdw.rollup_statement_triggers(r, part::regclass);
    END LOOP;
    UPDATE pgdw.rollups x SET partitions = pgdw.rollup_source_partitions(source) WHERE x.id = r.id;

    SET LOCAL jit = off;
    PERFORM pgdw.rollup_recompute(r, 0, true);
    EXECUTE format('SELECT count(*) FROM %s', target) INTO groups;

    -- Keys that are not the query's first columns would recompute the wrong rows: every group
    -- the query made must be a value of the keys over some source row (but the one row of an
    -- aggregate over the whole source, there on an empty one too).
    EXECUTE format('SELECT row(%s)::text FROM (SELECT %s FROM %s EXCEPT SELECT %s FROM %s) x LIMIT 1',
                   pgdw.idents(kcols),
                   pgdw.idents(kcols), target,
                   array_to_string(keys, ', '), source)
      INTO bad;
    IF bad IS NOT NULL AND NOT checked.whole_source THEN
        RAISE EXCEPTION 'pgdw.rollup: the query of % makes the group %, which the keys never give over a row of %', target, bad, source
            USING HINT = 'keys are the query''s first columns, in order, written over one row of the source';
    END IF;
    UPDATE pgdw.rollups SET applied_at = now() WHERE id = r.id;
    PERFORM set_config('pgdw.rollup_ddl', 'off', true);
    RETURN format('%s keeps %s groups of %s by (%s)%s', target, groups, source, array_to_string(kcols, ', '),
                  CASE WHEN old.id IS NOT NULL THEN ' (rebuilt: the query changed)' ELSE '' END);
END $$;
COMMENT ON FUNCTION pgdw.rollup(text, text, regclass, text[]) IS
    'Create and keep a rollup table: the query''s groups recomputed by key from the source''s changes';

-- What workers still have to compute: materialized rows pending and rollup groups dirty (a
-- rollup to recompute whole counts one). 0: every derived table is up to date with what has
-- committed. Materialized columns first: a row they compute captures its rollups' keys in the
-- same transaction, so a later count sees those. The rollups' changes tables are locked first
-- and then counted together, with one snapshot taken after the locks (see pgdw.rollup_lag):
-- a run's keys for the rollups downstream of it are then seen with its own result.
CREATE OR REPLACE FUNCTION pgdw.derived_backlog() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pending bigint;
    groups  bigint;
    counts  text;
BEGIN
    SELECT coalesce(sum(pgdw.materialize_pending(t)), 0) INTO pending
      FROM (SELECT DISTINCT tbl FROM pgdw.materializations) m (t);
    IF NOT EXISTS (SELECT 1 FROM pgdw.rollups) THEN
        RETURN pending;
    END IF;
    EXECUTE (SELECT 'LOCK TABLE ' || string_agg(pgdw.rollup_changes(id), ', ') || ' IN ACCESS SHARE MODE' FROM pgdw.rollups);
    SELECT string_agg(format('(SELECT count(*) FROM (SELECT DISTINCT %s FROM %s) d) + (SELECT (full_since IS NOT NULL)::int FROM pgdw.rollups WHERE id = %s)',
                             pgdw.idents(pgdw.rollup_change_columns(cardinality(keys))),
                             pgdw.rollup_changes(id), id), ' + ')
      INTO counts FROM pgdw.rollups;
    EXECUTE 'SELECT ' || counts INTO groups;
    RETURN pending + groups;
END $$;
COMMENT ON FUNCTION pgdw.derived_backlog() IS
    'Materialized rows and rollup groups pgdw worker has still to compute (0: caught up)';

-- Groups where rollup `name` differs from a full run of its query, both ways (0: exact). A
-- full scan of the source: for checks and tests, not for schedules. Floating-point aggregates
-- may differ in their last digits, summed in another order.
CREATE OR REPLACE FUNCTION pgdw.rollup_verify(name regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r   pgdw.rollups;
    n   bigint;
    was text;
BEGIN
    SELECT * INTO r FROM pgdw.rollups x WHERE x.name = rollup_verify.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgdw.rollup_verify: % is not a rollup (pgdw.rollup creates one)', name;
    END IF;
    was := pgdw.rollup_enter(r);
    -- EXCEPT ALL: a group the query gives twice is a difference too.
    EXECUTE format('SELECT (SELECT count(*) FROM (SELECT %1$s FROM %2$s t EXCEPT ALL SELECT %3$s FROM (%4$s) q) a)
                         + (SELECT count(*) FROM (SELECT %3$s FROM (%4$s) q EXCEPT ALL SELECT %1$s FROM %2$s t) b)',
                   pgdw.rollup_comparable(r.name, r.key_columns || r.value_columns, 't'),
                   r.name,
                   pgdw.rollup_comparable(r.name, r.key_columns || r.value_columns, 'q'),
                   r.query)
      INTO n;
    PERFORM pgdw.rollup_leave(was);
    RETURN n;
END $$;
COMMENT ON FUNCTION pgdw.rollup_verify(regclass) IS
    'Groups where a rollup differs from its query run whole (0: exact); reads the whole source';

-- Registrations made by an earlier runtime get today's capture functions (the keys under their
-- pinned search_path, a writer's stale snapshot still recorded).
DO $$
DECLARE
    r pgdw.rollups;
BEGIN
    PERFORM set_config('pgdw.rollup_ddl', 'on', true);
    FOR r IN SELECT * FROM pgdw.rollups LOOP
        PERFORM pgdw.rollup_install_capture(r);
    END LOOP;
    PERFORM set_config('pgdw.rollup_ddl', 'off', true);
END $$;
