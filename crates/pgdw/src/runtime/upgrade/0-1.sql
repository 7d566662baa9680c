-- Runtime 0 (every warehouse set up before the runtime recorded its version) to 1, before the
-- current definitions are installed: the objects whose shape changed brought to today's, so
-- that the parts' CREATE OR REPLACE and CREATE ... IF NOT EXISTS can run. Idempotent: a
-- version-0 warehouse may be of any earlier release.

-- Signatures that were replaced (left in place they would make calls ambiguous).
DROP FUNCTION IF EXISTS pgdw.sync(regclass, regclass, text[], text, boolean);
DROP FUNCTION IF EXISTS pgdw.materialize_statement(regclass, int, boolean);
DROP FUNCTION IF EXISTS pgdw.materialize_statement(regclass, int, boolean, boolean);
DROP FUNCTION IF EXISTS pgdw.materialize_batch(regclass, int);
DROP FUNCTION IF EXISTS pgdw.worker_seen(text, text, int, int, boolean);

-- Columns added since the tables were first made (last, as in today's definitions).
DO $$
BEGIN
    IF to_regclass('pgdw.runs') IS NOT NULL THEN
        ALTER TABLE pgdw.runs ADD COLUMN IF NOT EXISTS waited interval;
    END IF;
    IF to_regclass('pgdw.schedules') IS NOT NULL THEN
        ALTER TABLE pgdw.schedules ADD COLUMN IF NOT EXISTS scheduled_at timestamptz NOT NULL DEFAULT now();
    END IF;
    IF to_regclass('pgdw.workers') IS NOT NULL THEN
        ALTER TABLE pgdw.workers ADD COLUMN IF NOT EXISTS heartbeat interval NOT NULL DEFAULT '20 seconds';
    END IF;
    IF to_regclass('pgdw.rollups') IS NOT NULL THEN
        -- Registrations made before the search_path was pinned were resolved with the
        -- caller's, most likely the one pgdw up runs with.
        ALTER TABLE pgdw.rollups ADD COLUMN IF NOT EXISTS search_path text;
        ALTER TABLE pgdw.rollups ADD COLUMN IF NOT EXISTS also_reads text[] NOT NULL DEFAULT '{}';
        ALTER TABLE pgdw.rollups ADD COLUMN IF NOT EXISTS frozen_key text;
        ALTER TABLE pgdw.rollups ADD COLUMN IF NOT EXISTS frozen_before text;
    END IF;
END $$;
