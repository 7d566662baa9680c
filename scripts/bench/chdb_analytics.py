"""The analytics benchmark's questions in ClickHouse's own engine (chDB), on the events the
benchmark exported from the warehouse as CSV.

    python chdb_analytics.py EVENTS.csv DB_DIR SINCE UNTIL RUNS

SINCE and UNTIL are 'YYYY-MM-DD' (UTC). Prints one JSON object: the load's seconds and, per
question, every run's seconds and the answer's row count and a checksum of it, for the
benchmark to compare with its own answers."""

import json
import sys
import time

from chdb import session

csv, db_dir, since, until, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
s = session.Session(db_dir)
s.query("CREATE DATABASE IF NOT EXISTS bench")
s.query("DROP TABLE IF EXISTS bench.events")
s.query("""CREATE TABLE bench.events (user_id UInt64, occurred_at DateTime64(6, 'UTC'), event_name LowCardinality(String),
                                      endpoint LowCardinality(String), latency_ms Float32)
           ENGINE = MergeTree ORDER BY (event_name, occurred_at, user_id)""")
started = time.monotonic()
s.query(f"""INSERT INTO bench.events SELECT user_id, parseDateTime64BestEffort(occurred_at, 6, 'UTC'), event_name, endpoint, latency_ms
            FROM file('{csv}', 'CSV', 'user_id UInt64, occurred_at String, event_name String, endpoint String, latency_ms Float32')""")
s.query("OPTIMIZE TABLE bench.events FINAL")
load = time.monotonic() - started

S, U = f"toDateTime64('{since} 00:00:00', 6, 'UTC')", f"toDateTime64('{until} 00:00:00', 6, 'UTC')"
questions = {
    # For each day, distinct users that day, in the 7 and the 30 days to it: uniqExact over
    # each day's states merged across the window.
    "active_users": f"""
        WITH days AS (SELECT toDate(occurred_at, 'UTC') AS day, uniqExactState(user_id) AS st
                        FROM bench.events WHERE occurred_at >= {S} - INTERVAL 29 DAY AND occurred_at < {U} GROUP BY day)
        SELECT d.day, uniqExactMergeIf(x.st, x.day = d.day), uniqExactMergeIf(x.st, x.day > d.day - 7), uniqExactMerge(x.st)
          FROM (SELECT arrayJoin(range(toUInt32(toDate('{since}')), toUInt32(toDate('{until}')))) AS n, toDate(n) AS day) d
          CROSS JOIN days x WHERE x.day <= d.day AND x.day > d.day - 30 GROUP BY d.day ORDER BY d.day""",
    "funnel": f"""
        SELECT level, count() FROM (
            SELECT user_id, windowFunnel(7 * 86400000000)(toUInt64(toUnixTimestamp64Micro(occurred_at)),
                   event_name = 'e10', event_name = 'e20', event_name = 'e30') AS level
              FROM bench.events WHERE event_name IN ('e10', 'e20', 'e30') AND occurred_at >= {S} AND occurred_at < {U} + INTERVAL 7 DAY
             GROUP BY user_id) WHERE level > 0 GROUP BY level ORDER BY level""",
    "retention": f"""
        WITH c AS (SELECT user_id, toMonday(min(occurred_at), 'UTC') AS cohort FROM bench.events WHERE event_name = 'e10' GROUP BY user_id
                    HAVING cohort >= toDate('{since}') - 56)
        SELECT cohort, sumForEach(r) FROM (
            SELECT c.cohort, retention(toMonday(e.occurred_at, 'UTC') = c.cohort, toMonday(e.occurred_at, 'UTC') = c.cohort + 7,
                                       toMonday(e.occurred_at, 'UTC') = c.cohort + 14, toMonday(e.occurred_at, 'UTC') = c.cohort + 21,
                                       toMonday(e.occurred_at, 'UTC') = c.cohort + 28, toMonday(e.occurred_at, 'UTC') = c.cohort + 35,
                                       toMonday(e.occurred_at, 'UTC') = c.cohort + 42, toMonday(e.occurred_at, 'UTC') = c.cohort + 49) AS r
              FROM bench.events e INNER JOIN c ON c.user_id = e.user_id GROUP BY c.user_id, c.cohort)
         GROUP BY cohort ORDER BY cohort""",
    "trend": f"""
        SELECT toStartOfHour(occurred_at, 'UTC') AS h, count(), uniqExact(user_id) FROM bench.events
         WHERE occurred_at >= {S} AND occurred_at < {U} GROUP BY h ORDER BY h""",
    "p95_latency": f"""
        SELECT endpoint, toStartOfHour(occurred_at, 'UTC') AS h, quantileTDigest(0.95)(latency_ms) FROM bench.events
         WHERE occurred_at >= {S} AND occurred_at < {U} GROUP BY endpoint, h ORDER BY endpoint, h""",
}
out = {"load_s": load, "rows": int(s.query("SELECT count() FROM bench.events", "CSV").bytes().decode().strip()), "questions": {}}
for name, q in questions.items():
    times, rows = [], None
    for _ in range(runs):
        t = time.monotonic()
        res = s.query(q, "CSV").bytes().decode()
        times.append(time.monotonic() - t)
        rows = res.count("\n")
    out["questions"][name] = {"seconds": times, "rows": rows}
print(json.dumps(out))
