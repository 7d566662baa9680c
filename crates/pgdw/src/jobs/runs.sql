-- The run log: one row per run of a job, written by pgdw.run and by the metric loads.

CREATE TABLE IF NOT EXISTS pgdw.runs (
    id            bigserial PRIMARY KEY,
    job           text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    rows_inserted bigint,
    rows_updated  bigint,
    rows_deleted  bigint,
    error         text,
    waited        interval    -- how long the run waited for another run of the same job (NULL: it did not)
);
CREATE INDEX IF NOT EXISTS runs_job_started_idx ON pgdw.runs (job, started_at DESC);
COMMENT ON TABLE pgdw.runs IS 'One row per refresh run: when, how it ended, rows changed, the error';

CREATE TABLE IF NOT EXISTS pgdw.watermarks (
    job        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgdw.watermarks IS 'How far each incremental sync has read its source';
