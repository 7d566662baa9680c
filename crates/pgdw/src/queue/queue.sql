-- pgdw's work queue, in the warehouse (run again at every `pgdw up`; its place in src/runtime/mod.rs).
--
-- A task's way: pgdw.enqueue puts it in pgdw.task_log (due now) or pgdw.task_delayed (later);
-- pgdw.dispatch moves a bounded batch into pgdw.task_ready; a worker claims tasks there with
-- FOR UPDATE SKIP LOCKED, taking a lease; pgdw.complete_tasks deletes them from the ready table
-- and records them in pgdw.task_history, or puts a failed one back, delayed by its backoff.
--
-- What hurts such queues in production, and how each is met:
-- * Dead tuples under churn, which VACUUM cannot remove while any transaction holds an old
--   snapshot, and which every SKIP LOCKED scan then walks (a plain queue table loses a third
--   of its throughput that way). The ready table is three partitions written in turn; one no
--   longer written and empty is TRUNCATEd (PgQ's rotation), which frees its pages whatever
--   the xmin horizon. Claims read from a position (each claimer's last sequence number), so
--   they do not walk what earlier claims left behind.
-- * The backlog can be millions of rows. It is read window by window (PgQ's ticks): a dispatch
--   takes the rows committed between two snapshots, in order, from a cursor, so a task whose
--   enqueuing transaction commits late is never skipped, and the index scan starts at the
--   older snapshot's xmin instead of at the dead rows of earlier dispatches.
-- * A worker that dies mid-task: a claim is a lease (leased_until), renewed while the task
--   runs; an expired lease is claimed again, and counts as an attempt.

CREATE SEQUENCE IF NOT EXISTS pgdw.task_id_seq;

CREATE TABLE IF NOT EXISTS pgdw.task_log (
    id           bigint PRIMARY KEY DEFAULT nextval('pgdw.task_id_seq'),
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    attempts     int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL DEFAULT 5,
    last_error   text,
    enqueued_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS task_log_xid_idx ON pgdw.task_log (xid, id);
COMMENT ON TABLE pgdw.task_log IS 'Tasks due, not yet handed to workers (pgdw.enqueue writes here)';

CREATE TABLE IF NOT EXISTS pgdw.task_delayed (
    id           bigint PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    run_at       timestamptz NOT NULL,
    attempts     int NOT NULL,
    max_attempts int NOT NULL,
    last_error   text,
    enqueued_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS task_delayed_run_at_idx ON pgdw.task_delayed (run_at, id);
COMMENT ON TABLE pgdw.task_delayed IS 'Tasks to run later: enqueued for a later time, or retrying after a failure';

CREATE SEQUENCE IF NOT EXISTS pgdw.task_ready_seq;
CREATE TABLE IF NOT EXISTS pgdw.task_ready (
    gen          smallint NOT NULL,
    seq          bigint NOT NULL,
    id           bigint NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    attempts     int NOT NULL,
    max_attempts int NOT NULL,
    last_error   text,
    enqueued_at  timestamptz NOT NULL,
    ready_at     timestamptz NOT NULL DEFAULT now(),
    worker       text,
    leased_until timestamptz
) PARTITION BY LIST (gen);
CREATE TABLE IF NOT EXISTS pgdw.task_ready_0 PARTITION OF pgdw.task_ready FOR VALUES IN (0);
CREATE TABLE IF NOT EXISTS pgdw.task_ready_1 PARTITION OF pgdw.task_ready FOR VALUES IN (1);
CREATE TABLE IF NOT EXISTS pgdw.task_ready_2 PARTITION OF pgdw.task_ready FOR VALUES IN (2);
CREATE INDEX IF NOT EXISTS task_ready_seq_idx ON pgdw.task_ready (seq);
COMMENT ON TABLE pgdw.task_ready IS 'The few tasks workers claim from (bounded, rotated and truncated)';

-- The dispatcher's position: the backlog window being moved (rows committed after
-- window_from, visible in window_to), the cursor inside it, and the ready partition written.
CREATE TABLE IF NOT EXISTS pgdw.queue_state (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    window_from pg_snapshot,
    window_to   pg_snapshot,
    cursor_xid  xid8 NOT NULL DEFAULT '0',
    cursor_id   bigint NOT NULL DEFAULT 0,
    gen         smallint NOT NULL DEFAULT 0,
    gen_rows    int NOT NULL DEFAULT 0
);
INSERT INTO pgdw.queue_state DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS pgdw.task_history (
    id          bigint NOT NULL,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    state       text NOT NULL CHECK (state IN ('succeeded', 'failed')),
    attempts    int NOT NULL,
    error       text,
    worker      text,
    enqueued_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS task_history_finished_idx ON pgdw.task_history (finished_at);
CREATE INDEX IF NOT EXISTS task_history_id_idx ON pgdw.task_history (id);
COMMENT ON TABLE pgdw.task_history IS 'Finished tasks: succeeded ones kept a day, failed ones 30 days';

CREATE TABLE IF NOT EXISTS pgdw.workers (
    id          text PRIMARY KEY,
    host        text NOT NULL,
    pid         int NOT NULL,
    concurrency int NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    stopped_at  timestamptz,
    heartbeat   interval NOT NULL DEFAULT '20 seconds'  -- how often it is seen (a third of its lease)
);
COMMENT ON TABLE pgdw.workers IS 'Each pgdw worker process, seen every heartbeat while it runs';

-- Enqueue ------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgdw.enqueue(kind text, payload jsonb DEFAULT '{}',
    run_at timestamptz DEFAULT now(), max_attempts int DEFAULT 5)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    task bigint;
BEGIN
    IF kind IS NULL OR kind = '' THEN
        RAISE EXCEPTION 'pgdw.enqueue: a task needs a kind (for example ''sql'')';
    END IF;
    IF max_attempts IS NULL OR max_attempts < 1 THEN
        RAISE EXCEPTION 'pgdw.enqueue: max_attempts must be at least 1, not %', max_attempts;
    END IF;
    IF run_at > now() THEN
        INSERT INTO pgdw.task_delayed (id, kind, payload, run_at, attempts, max_attempts, enqueued_at)
        VALUES (nextval('pgdw.task_id_seq'), kind, coalesce(payload, '{}'), run_at, 0, max_attempts, now())
        RETURNING id INTO task;
    ELSE
        INSERT INTO pgdw.task_log (kind, payload, max_attempts)
        VALUES (kind, coalesce(payload, '{}'), max_attempts)
        RETURNING id INTO task;
    END IF;
    RETURN task;
END $$;
COMMENT ON FUNCTION pgdw.enqueue(text, jsonb, timestamptz, int) IS
    'Queue a task for pgdw worker; returns its id';

-- Idle workers LISTEN; one notification per enqueuing statement, not per row.
CREATE OR REPLACE FUNCTION pgdw.notify_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgdw_tasks', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS task_log_notify ON pgdw.task_log;
CREATE TRIGGER task_log_notify AFTER INSERT ON pgdw.task_log
    FOR EACH STATEMENT EXECUTE FUNCTION pgdw.notify_tasks();

-- Dispatch -----------------------------------------------------------------------------------

-- Move up to max_rows due tasks into the ready table; returns how many. One dispatcher at a
-- time (the others return 0 at once and claim what it moved).
CREATE OR REPLACE FUNCTION pgdw.dispatch(max_rows int DEFAULT 1000, gen_size int DEFAULT 5000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    st     pgdw.queue_state;
    moved  int := 0;
    n      int;
    last   record;
    rounds int := 0;
    nxt    smallint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('pgdw.dispatch', 0)) THEN
        RETURN 0;
    END IF;
    SELECT * INTO st FROM pgdw.queue_state;

    -- Due delayed tasks: retries after their backoff, tasks enqueued for later.
    WITH due AS (
        DELETE FROM pgdw.task_delayed d
         WHERE d.id IN (SELECT id FROM pgdw.task_delayed WHERE run_at <= now()
                         ORDER BY run_at, id LIMIT max_rows)
        RETURNING d.*)
    INSERT INTO pgdw.task_ready (gen, seq, id, kind, payload, attempts, max_attempts, last_error, enqueued_at)
    SELECT st.gen, nextval('pgdw.task_ready_seq'), id, kind, payload, attempts, max_attempts, last_error, enqueued_at
      FROM due ORDER BY run_at, id;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := n;

    -- The backlog, window by window, from the cursor.
    WHILE moved < max_rows AND rounds < 2 LOOP
        rounds := rounds + 1;
        IF st.window_to IS NOT NULL THEN
            WITH picked AS (
                SELECT l.xid, l.id FROM pgdw.task_log l
                 WHERE l.xid >= coalesce(pg_snapshot_xmin(st.window_from), '0'::xid8)
                   AND (l.xid, l.id) > (st.cursor_xid, st.cursor_id)
                   AND pg_visible_in_snapshot(l.xid, st.window_to)
                   AND (st.window_from IS NULL OR NOT pg_visible_in_snapshot(l.xid, st.window_from))
                 ORDER BY l.xid, l.id
                 LIMIT max_rows - moved),
            gone AS (
                DELETE FROM pgdw.task_log l USING picked p WHERE l.id = p.id RETURNING l.*),
            ins AS (
                INSERT INTO pgdw.task_ready (gen, seq, id, kind, payload, attempts, max_attempts, last_error, enqueued_at)
                SELECT st.gen, nextval('pgdw.task_ready_seq'), id, kind, payload, attempts, max_attempts, last_error, enqueued_at
                  FROM gone ORDER BY xid, id
                RETURNING 1)
            SELECT (SELECT count(*) FROM ins) AS n,
                   (SELECT p.xid FROM picked p ORDER BY p.xid DESC, p.id DESC LIMIT 1) AS xid,
                   (SELECT p.id FROM picked p ORDER BY p.xid DESC, p.id DESC LIMIT 1) AS id
              INTO last;
            moved := moved + last.n;
            IF last.n > 0 THEN
                st.cursor_xid := last.xid;
                st.cursor_id := last.id;
            END IF;
            EXIT WHEN moved >= max_rows;
        END IF;
        -- This window is moved: the next one is what committed since.
        st.window_from := st.window_to;
        st.window_to := pg_current_snapshot();
        st.cursor_xid := coalesce(pg_snapshot_xmin(st.window_from), '0'::xid8);
        st.cursor_id := 0;
    END LOOP;

    -- Rotate the ready partitions: after gen_size rows, write the next one if it is empty.
    st.gen_rows := st.gen_rows + moved;
    IF st.gen_rows >= gen_size THEN
        nxt := (st.gen + 1) % 3;
        IF NOT EXISTS (SELECT 1 FROM pgdw.task_ready WHERE gen = nxt) THEN
            st.gen := nxt;
            st.gen_rows := 0;
        END IF;
    END IF;
    UPDATE pgdw.queue_state
       SET window_from = st.window_from, window_to = st.window_to, cursor_xid = st.cursor_xid,
           cursor_id = st.cursor_id, gen = st.gen, gen_rows = st.gen_rows;
    RETURN moved;
END $$;
COMMENT ON FUNCTION pgdw.dispatch(int, int) IS
    'Move due tasks (backlog, delayed) into the ready table; workers call it';

-- The queue's upkeep, which workers run every third of a lease (scans of small tables: not
-- per dispatch). Leases that expired (a worker died): claimable again, or failed when out of
-- attempts. History kept a day for successes, 30 days for failures; stopped workers a day.
-- Returns how many tasks became claimable again.
CREATE OR REPLACE FUNCTION pgdw.queue_upkeep() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n   int := 0;
    why text := 'worker %s stopped responding while running it (its lease expired)';
BEGIN
    IF EXISTS (SELECT 1 FROM pgdw.task_ready WHERE leased_until < now()) THEN
        WITH expired AS (
            DELETE FROM pgdw.task_ready r
             WHERE r.leased_until < now() AND r.attempts >= r.max_attempts
            RETURNING r.*)
        INSERT INTO pgdw.task_history (id, kind, payload, state, attempts, error, worker, enqueued_at)
        SELECT id, kind, payload, 'failed', attempts, format(why, worker), worker, enqueued_at
          FROM expired;
        -- A new sequence number: claimers read from their last one onwards.
        UPDATE pgdw.task_ready r
           SET seq = nextval('pgdw.task_ready_seq'), worker = NULL, leased_until = NULL,
               last_error = format(why, r.worker)
         WHERE r.leased_until < now();
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    DELETE FROM pgdw.task_history
     WHERE finished_at < now() - interval '1 day' AND (state = 'succeeded' OR finished_at < now() - interval '30 days');
    DELETE FROM pgdw.workers WHERE last_seen < now() - interval '1 day';
    RETURN n;
END $$;

-- Truncate the ready partitions no longer written and empty: their dead rows go whatever the
-- xmin horizon. Call outside other work: it waits at most lock_wait for in-flight claims.
CREATE OR REPLACE FUNCTION pgdw.queue_truncate(lock_wait interval DEFAULT '50 milliseconds')
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    cur   smallint;
    g     smallint;
    done  int := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('pgdw.dispatch', 0)) THEN
        RETURN 0;
    END IF;
    SELECT gen INTO cur FROM pgdw.queue_state;
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::int::text, true);
    FOR g IN SELECT x FROM generate_series(0, 2) x WHERE x <> cur LOOP
        IF pg_relation_size(format('pgdw.task_ready_%s', g)::regclass) > 0 THEN
            BEGIN
                EXECUTE format('LOCK TABLE pgdw.task_ready_%s IN ACCESS EXCLUSIVE MODE', g);
                IF NOT EXISTS (SELECT 1 FROM pgdw.task_ready WHERE gen = g) THEN
                    EXECUTE format('TRUNCATE pgdw.task_ready_%s', g);
                    done := done + 1;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                NULL;  -- busy: next time
            END;
        END IF;
    END LOOP;
    RETURN done;
END $$;

-- Claim -------------------------------------------------------------------------------------

-- Up to max_tasks ready tasks after the claimer's last sequence number, leased to worker.
CREATE OR REPLACE FUNCTION pgdw.claim_tasks(worker text, max_tasks int, after_seq bigint, lease interval)
RETURNS TABLE (seq bigint, id bigint, kind text, payload jsonb, attempts int, max_attempts int)
LANGUAGE sql AS $$
    UPDATE pgdw.task_ready r
       SET worker = claim_tasks.worker, leased_until = now() + lease, attempts = r.attempts + 1
      FROM (SELECT t.gen, t.seq FROM pgdw.task_ready t
             WHERE t.seq > after_seq AND t.leased_until IS NULL
             ORDER BY t.seq LIMIT max_tasks
             FOR UPDATE SKIP LOCKED) c
     WHERE r.gen = c.gen AND r.seq = c.seq
    RETURNING r.seq, r.id, r.kind, r.payload, r.attempts, r.max_attempts;
$$;

-- A running task's lease, renewed while it runs.
CREATE OR REPLACE FUNCTION pgdw.renew_leases(worker text, seqs bigint[], lease interval)
RETURNS void LANGUAGE sql AS $$
    UPDATE pgdw.task_ready SET leased_until = now() + lease
     WHERE seq = ANY (seqs) AND task_ready.worker = renew_leases.worker;
$$;

-- Complete ----------------------------------------------------------------------------------

-- The wait before attempt n + 1: 1 s, 2 s, 4 s ... at most an hour.
CREATE OR REPLACE FUNCTION pgdw.task_backoff(attempts int) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(interval '1 hour', interval '1 second' * power(2, greatest(attempts - 1, 0)));
$$;

-- Finish a worker's tasks: `done` succeeded; `failed` (with `errors`, and `permanent` when a
-- retry cannot help) go back delayed by their backoff, or to the history as failed when out
-- of attempts. Only the worker holding a task's lease can finish it.
CREATE OR REPLACE FUNCTION pgdw.complete_tasks(worker text, done bigint[],
    failed bigint[] DEFAULT '{}', errors text[] DEFAULT '{}', permanent boolean[] DEFAULT '{}')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(done) > 0 THEN
        WITH gone AS (
            DELETE FROM pgdw.task_ready r WHERE r.seq = ANY (done) AND r.worker = complete_tasks.worker
            RETURNING r.*)
        INSERT INTO pgdw.task_history (id, kind, payload, state, attempts, worker, enqueued_at)
        SELECT id, kind, payload, 'succeeded', attempts, gone.worker, enqueued_at FROM gone;
    END IF;
    IF cardinality(failed) > 0 THEN
        WITH f AS (
            SELECT * FROM unnest(failed, errors, permanent) AS f (seq, error, permanent)),
        gone AS (
            DELETE FROM pgdw.task_ready r USING f
             WHERE r.seq = f.seq AND r.worker = complete_tasks.worker
            RETURNING r.*, f.error AS why, coalesce(f.permanent, false) AS final),
        retry AS (
            INSERT INTO pgdw.task_delayed (id, kind, payload, run_at, attempts, max_attempts, last_error, enqueued_at)
            SELECT id, kind, payload, now() + pgdw.task_backoff(attempts), attempts, max_attempts, why, enqueued_at
              FROM gone WHERE NOT final AND attempts < max_attempts
            RETURNING 1)
        INSERT INTO pgdw.task_history (id, kind, payload, state, attempts, error, worker, enqueued_at)
        SELECT id, kind, payload, 'failed', attempts, why, gone.worker, enqueued_at
          FROM gone WHERE final OR attempts >= max_attempts;
    END IF;
END $$;

-- Workers ----------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgdw.worker_seen(id text, host text, pid int, concurrency int, stopping boolean DEFAULT false,
    heartbeat interval DEFAULT '20 seconds')
RETURNS void LANGUAGE sql AS $$
    INSERT INTO pgdw.workers (id, host, pid, concurrency, stopped_at, heartbeat)
    VALUES (id, host, pid, concurrency, CASE WHEN stopping THEN now() END, heartbeat)
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
       SET last_seen = now(), stopped_at = EXCLUDED.stopped_at, heartbeat = EXCLUDED.heartbeat;
$$;

-- The one definition of a live worker: not stopped, and seen within three of its own
-- heartbeats (so one late heartbeat, a busy server, does not make it look gone, and a long
-- lease's slower heartbeat is allowed for).
CREATE OR REPLACE FUNCTION pgdw.worker_alive(w pgdw.workers) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT w.stopped_at IS NULL AND w.last_seen > now() - 3 * w.heartbeat;
$$;

-- Whether any worker is alive (pgdw.worker_alive).
CREATE OR REPLACE FUNCTION pgdw.workers_running() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pgdw.workers w WHERE pgdw.worker_alive(w));
$$;

-- Views -------------------------------------------------------------------------------------

-- Every task not finished, and those finished in the last day.
CREATE OR REPLACE VIEW pgdw.tasks AS
SELECT id, kind, 'pending' AS state, payload, attempts, max_attempts, last_error AS error,
       enqueued_at, enqueued_at AS run_at, NULL::text AS worker, NULL::timestamptz AS finished_at
  FROM pgdw.task_log
UNION ALL
SELECT id, kind, CASE WHEN attempts > 0 THEN 'retrying' ELSE 'scheduled' END, payload, attempts,
       max_attempts, last_error, enqueued_at, run_at, NULL, NULL
  FROM pgdw.task_delayed
UNION ALL
SELECT id, kind, CASE WHEN leased_until IS NULL THEN 'ready' ELSE 'running' END, payload, attempts,
       max_attempts, last_error, enqueued_at, ready_at, worker, NULL
  FROM pgdw.task_ready
UNION ALL
SELECT id, kind, state, payload, attempts, NULL, error, enqueued_at, NULL, worker, finished_at
  FROM pgdw.task_history WHERE finished_at > now() - interval '1 day';
COMMENT ON VIEW pgdw.tasks IS
    'Tasks pending, scheduled, retrying, ready, running, and finished (succeeded, failed) in the last day';

-- The queue at a glance, for `pgdw status`, the built-in panel and alert rules.
CREATE OR REPLACE VIEW pgdw.queue AS
SELECT (SELECT count(*) FROM pgdw.task_log)
       + (SELECT count(*) FROM pgdw.task_delayed WHERE run_at <= now())
       + (SELECT count(*) FROM pgdw.task_ready WHERE leased_until IS NULL) AS due,
       (SELECT count(*) FROM pgdw.task_delayed WHERE run_at > now()) AS scheduled,
       (SELECT count(*) FROM pgdw.task_ready WHERE leased_until IS NOT NULL) AS running,
       now() - least((SELECT min(enqueued_at) FROM pgdw.task_log),
                     (SELECT min(run_at) FROM pgdw.task_delayed WHERE run_at <= now()),
                     (SELECT min(ready_at) FROM pgdw.task_ready WHERE leased_until IS NULL)) AS oldest_due_age,
       (SELECT count(*) FROM pgdw.task_history WHERE state = 'succeeded' AND finished_at > now() - interval '1 hour') AS succeeded_last_hour,
       (SELECT count(*) FROM pgdw.task_history WHERE state = 'failed' AND finished_at > now() - interval '1 day') AS failed_last_day,
       (SELECT count(*) FROM pgdw.workers w WHERE pgdw.worker_alive(w)) AS workers;
COMMENT ON VIEW pgdw.queue IS 'Tasks due, scheduled and running, the oldest due task''s wait, failures, live workers';
