-- Rollups registered by roles that are not the warehouse's owner (dbt's transformation role,
-- docs/dbt.md), through `dw.rollup` (run again at every `pgdw up`; after bi.sql, which makes
-- schema dw).
--
-- pgdw's workers recompute a rollup's groups with their own rights, and the capture triggers
-- are installed on its source: a role that may only read the source and create tables in its
-- own schema must not get either by registering a query. So dw.rollup runs as the owner
-- after checking, for the session's user (a session can always RESET ROLE to it, never more):
-- * it may create in the rollup's schema, and read the source and every table the query reads;
-- * every function and operator the query and its keys call is owned by a superuser (the
--   built-ins, extensions'): a function of the role's own would run as the workers;
-- * a rollup of that name is one it registered, or none.
-- The rollup table stays the owner's (a trigger of its owner would fire as the workers that
-- write it); the role reads it and rebuilds it through dw.rollup.

CREATE TABLE IF NOT EXISTS pgdw.rollup_registrants (
    rollup regclass PRIMARY KEY,
    role   name NOT NULL
);
COMMENT ON TABLE pgdw.rollup_registrants IS 'Who registered each rollup made through dw.rollup';

-- Refuse `query` (with keys over `source`) for role `who` unless it may read everything it
-- reads and calls only what superusers own. What it depends on is read from a temporary view
-- of it: PostgreSQL records a view's dependencies on every relation, function and operator.
CREATE OR REPLACE FUNCTION pgdw.rollup_check_caller(name text, query text, source regclass, keys text[], who name)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v   text := 'pgdw_rollup_caller_' || pg_backend_pid();
    bad text;
BEGIN
    BEGIN
        EXECUTE format('CREATE TEMP VIEW %I AS SELECT * FROM (%s) q', v, query);
        EXECUTE format('CREATE TEMP VIEW %I AS SELECT %s FROM %s', v || '_k',
                       (SELECT string_agg(format('%s AS %I', k, 'k' || i), ', ') FROM unnest(keys) WITH ORDINALITY u (k, i)),
                       source);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'dw.rollup: the query or keys of % do not run: %', name, SQLERRM;
    END;
    WITH deps AS (
        SELECT d.refclassid, d.refobjid FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
         WHERE d.classid = 'pg_rewrite'::regclass AND w.ev_class IN (v::regclass, (v || '_k')::regclass)
    )
    SELECT string_agg(DISTINCT what, ', ') INTO bad FROM (
        SELECT format('%s (no SELECT)', c.oid::regclass) AS what
          FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid
         WHERE c.oid NOT IN (v::regclass, (v || '_k')::regclass)
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND NOT has_table_privilege(who, c.oid, 'SELECT')
        UNION ALL
        SELECT format('function %s (owned by %s)', p.oid::regprocedure, pg_get_userbyid(p.proowner))
          FROM deps JOIN pg_proc p ON deps.refclassid = 'pg_proc'::regclass AND p.oid = deps.refobjid
         WHERE NOT (SELECT rolsuper FROM pg_roles WHERE oid = p.proowner)
        UNION ALL
        SELECT format('operator %s (owned by %s)', o.oid::regoperator, pg_get_userbyid(o.oprowner))
          FROM deps JOIN pg_operator o ON deps.refclassid = 'pg_operator'::regclass AND o.oid = deps.refobjid
         WHERE NOT (SELECT rolsuper FROM pg_roles WHERE oid = o.oprowner)
    ) x;
    EXECUTE format('DROP VIEW %I, %I', v, v || '_k');
    IF NOT has_table_privilege(who, source, 'SELECT') THEN
        bad := concat_ws(', ', format('%s (no SELECT)', source), bad);
    END IF;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'dw.rollup: % may not register % this way: %', who, name, bad
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'pgdw''s workers run a rollup''s query with their own rights: it may read what its registrant may read and call only functions a superuser owns';
    END IF;
END $$;

-- pgdw.rollup for roles that are not the owner: the same arguments, checked as above, and
-- `rebuild` to drop and make it again (dbt's --full-refresh). Returns what pgdw.rollup says.
CREATE OR REPLACE FUNCTION dw.rollup(name text, query text, source regclass, keys text[], rebuild boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
-- No SET search_path: the caller's resolves its query and keys, and pgdw.rollup records it.
-- The built-ins called here are safe with it: pg_catalog is searched first when a path leaves
-- it out, and pg_temp never for functions or operators.
#variable_conflict use_variable
DECLARE
    who    name := session_user;
    target regclass := to_regclass(name);
    parts  text[] := parse_ident(name);
    nsp    text;
    did    text;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = who) THEN
        nsp := CASE WHEN target IS NOT NULL
                    THEN (SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target)
                    WHEN cardinality(parts) >= 2 THEN parts[cardinality(parts) - 1]
                    ELSE pg_catalog.current_schema() END;
        IF nsp IS NULL OR NOT has_schema_privilege(who, nsp, 'CREATE') THEN
            RAISE EXCEPTION 'dw.rollup: % may not create tables in schema %', who, coalesce(nsp, '(none)')
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF target IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pgdw.rollup_registrants g WHERE g.rollup = target AND g.role = who) THEN
            RAISE EXCEPTION 'dw.rollup: % exists and is not a rollup % registered', target, who
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'choose another name, or have its owner drop it';
        END IF;
        PERFORM pgdw.rollup_check_caller(name, query, source, keys, who);
    END IF;
    -- Rollups dropped since (their tables' oids may name other tables one day).
    DELETE FROM pgdw.rollup_registrants g WHERE NOT EXISTS (SELECT 1 FROM pgdw.rollups r WHERE r.name = g.rollup);
    IF rebuild AND target IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', target);
    END IF;
    did := pgdw.rollup(name, query, source, keys);
    target := to_regclass(name);
    EXECUTE format('GRANT SELECT ON %s TO %I', target, who);
    INSERT INTO pgdw.rollup_registrants (rollup, role) VALUES (target, who)
    ON CONFLICT ON CONSTRAINT rollup_registrants_pkey DO UPDATE SET role = EXCLUDED.role;
    RETURN did;
END $$;
COMMENT ON FUNCTION dw.rollup(text, text, regclass, text[], boolean) IS
    'pgdw.rollup for roles that are not the warehouse''s owner (dbt): checked, then kept by pgdw''s workers';

-- Whether pgdw keeps `tbl` as a rollup (dbt's pgdw_rollup asks before replacing a relation).
CREATE OR REPLACE FUNCTION dw.is_rollup(tbl text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pgdw.rollups r WHERE r.name = to_regclass(tbl));
$$;
