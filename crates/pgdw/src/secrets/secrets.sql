-- Secrets: FDW options and user mappings set from bound parameters, never statement text.
-- A secret reaches the server only as a bound parameter of `SELECT pgdw.set_option($1, ...)`:
-- pg_stat_statements and the server log keep a statement's text (utility statements verbatim,
-- a failing one by default), so no statement pgdw sends ever holds a secret. The ALTER is built
-- here, inside the server, and never leaves it: not tracked (nested), not logged (nested), and
-- not in an error's CONTEXT (the error is re-raised from here, with the value masked).

CREATE OR REPLACE FUNCTION pgdw.hide_statements() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    setting text;
BEGIN
    -- For the rest of the caller's transaction, where a superuser can: no statement or
    -- parameter logging, no utility tracking (track = 'all' would see nested statements).
    FOREACH setting IN ARRAY ARRAY['log_statement=none', 'log_min_duration_statement=-1',
                                   'log_parameter_max_length=0', 'log_parameter_max_length_on_error=0',
                                   'pg_stat_statements.track_utility=off'] LOOP
        BEGIN
            PERFORM set_config(split_part(setting, '=', 1), split_part(setting, '=', 2), true);
        EXCEPTION WHEN others THEN
            NULL;  -- not a superuser: then none of these is on unless the server was set so
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION pgdw.hide_statements() IS
    'Best effort, for the current transaction: statements and parameters are neither logged nor tracked';

CREATE OR REPLACE FUNCTION pgdw.set_option(kind text, object_name text, option text, value text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    present boolean;
BEGIN
    IF kind = 'role password' THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', object_name, value);
        RETURN;
    ELSIF kind = 'server' THEN
        target := format('SERVER %I', object_name);
        -- The option's name compared exactly (a LIKE would take `_` for any character).
        present := EXISTS (SELECT 1 FROM pg_foreign_server s, unnest(s.srvoptions) o
                            WHERE s.srvname = object_name AND split_part(o, '=', 1) = option);
    ELSIF kind = 'user mapping' THEN
        EXECUTE format('CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER %I', object_name);
        target := format('USER MAPPING FOR CURRENT_USER SERVER %I', object_name);
        present := EXISTS (SELECT 1 FROM pg_user_mappings m, unnest(m.umoptions) o
                            WHERE m.srvname = object_name AND m.usename = current_user
                              AND split_part(o, '=', 1) = option);
    ELSE
        RAISE EXCEPTION 'pgdw.set_option: kind must be server, user mapping or role password, not %', kind;
    END IF;
    EXECUTE format('ALTER %s OPTIONS (%s %I %L)', target,
                   CASE WHEN present THEN 'SET' ELSE 'ADD' END, option, value);
EXCEPTION WHEN others THEN
    -- Re-raised from here: the generated statement is not this error's CONTEXT.
    RAISE EXCEPTION 'setting % on % % failed: %', option, kind, object_name,
          replace(SQLERRM, value, '********') USING ERRCODE = SQLSTATE;
END $$;
COMMENT ON FUNCTION pgdw.set_option(text, text, text, text) IS
    'Set a server option, a user-mapping option (creating the mapping) or a role password, with the value as a parameter';
