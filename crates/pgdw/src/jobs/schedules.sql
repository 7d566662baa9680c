-- Schedules: pg_cron jobs made and kept by pgdw.schedule.

CREATE OR REPLACE FUNCTION pgdw.cron_schedule(every text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    secs numeric;
    n    integer;
BEGIN
    every := btrim(every);
    -- Already cron: five fields, or @hourly-style.
    IF every ~ '^@(yearly|annually|monthly|weekly|daily|hourly|reboot)$'
       OR every ~ '^\S+\s+\S+\s+\S+\s+\S+\s+\S+$' THEN
        RETURN every;
    END IF;
    BEGIN
        secs := extract(epoch FROM every::interval);
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'pgdw: "%" is neither cron syntax nor an interval', every
            USING HINT = 'write cron like ''*/5 * * * *'' or an interval like ''5 minutes'', ''1 hour'', ''1 day''';
    END;
    IF secs <= 0 THEN
        RAISE EXCEPTION 'pgdw: a schedule interval must be positive, not "%"', every;
    END IF;
    IF secs % 60 <> 0 THEN
        RAISE EXCEPTION 'pgdw: pg_cron 1.4 schedules by the minute; "%" cannot be run', every
            USING HINT = 'the shortest interval is ''1 minute''';
    END IF;
    IF secs < 3600 THEN
        n := secs / 60;
        IF 60 % n <> 0 THEN
            RAISE EXCEPTION 'pgdw: "%" does not divide an hour, so cron cannot repeat it evenly', every
                USING HINT = 'use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes, or cron syntax';
        END IF;
        RETURN CASE WHEN n = 1 THEN '* * * * *' ELSE format('*/%s * * * *', n) END;
    ELSIF secs < 86400 THEN
        IF secs % 3600 <> 0 OR 24 % (secs / 3600)::int <> 0 THEN
            RAISE EXCEPTION 'pgdw: "%" is not a whole number of hours dividing a day', every
                USING HINT = 'use 1, 2, 3, 4, 6, 8 or 12 hours, or cron syntax';
        END IF;
        n := secs / 3600;
        RETURN CASE WHEN n = 1 THEN '0 * * * *' ELSE format('0 */%s * * *', n) END;
    ELSIF secs = 86400 THEN
        RETURN '0 0 * * *';
    ELSIF secs = 604800 THEN
        RETURN '0 0 * * 0';
    END IF;
    RAISE EXCEPTION 'pgdw: "%" is longer than a day and not a week', every
        USING HINT = 'use cron syntax, e.g. ''0 3 */2 * *'' for every other day at 03:00';
END $$;
COMMENT ON FUNCTION pgdw.cron_schedule(text) IS
    'Cron syntax for an interval such as ''5 minutes'' (pg_cron 1.4 takes only cron); cron passes through';

CREATE TABLE IF NOT EXISTS pgdw.schedules (
    job    text PRIMARY KEY,
    every  text NOT NULL,
    period interval,
    scheduled_at timestamptz NOT NULL DEFAULT now()  -- when first scheduled: a job that never ran is judged stale from then
);
COMMENT ON TABLE pgdw.schedules IS
    'How often each job scheduled through pgdw.schedule runs (period: NULL for cron syntax)';

CREATE OR REPLACE FUNCTION pgdw.schedule(job_name text, every text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cron_text text := pgdw.cron_schedule(every);
    period    interval;
BEGIN
    IF cron_text IS DISTINCT FROM btrim(every) THEN
        period := every::interval;
    END IF;
    INSERT INTO pgdw.schedules VALUES (job_name, every, period)
    ON CONFLICT (job) DO UPDATE SET every = EXCLUDED.every, period = EXCLUDED.period;
    -- pg_cron updates a job of the same name and user: scheduling twice is harmless.
    RETURN cron.schedule(job_name, cron_text, command);
END $$;
COMMENT ON FUNCTION pgdw.schedule(text, text, text) IS
    'Schedule (or reschedule) a pg_cron job by name, accepting intervals as well as cron';
