"""Drive a running Superset through its REST API as a new user following docs/bi-tools.md
would through its UI, and compare every number with psql. Used by scripts/check-superset.sh.

    superset_check.py SUPERSET_URL WAREHOUSE_URI PGDW_BINARY
"""
import json
import subprocess
import sys

import requests

BASE, URI, PGDW = sys.argv[1], sys.argv[2], sys.argv[3]

DATASETS = [("public", t) for t in ("ingested_clusters", "instances_by_state",
                                     "most_active_customers_by_events", "signups_per_week",
                                     "instance_metrics_hourly", "organizations")] + \
           [("dw", t) for t in ("runs", "job_freshness", "alert_events", "alert_state",
                                "replication", "replication_tables")]

# The seeds' three questions, as the demo asks them.
QUESTIONS = {
    "How many Postgres instances have we deployed? (by state)":
        "SELECT state, instances FROM instances_by_state ORDER BY instances DESC, state",
    "Who is our most active customer? (control-plane events, top 5)":
        "SELECT name, events FROM most_active_customers_by_events ORDER BY events DESC, name LIMIT 5",
    "How many sign-ups per week? (last 8 weeks)":
        "SELECT to_char(week, 'YYYY-MM-DD') AS week, signups, in_an_organization FROM signups_per_week "
        "ORDER BY week DESC LIMIT 8",
}

session = requests.Session()
failures = []


def api(method, path, **kw):
    r = session.request(method, BASE + path, timeout=120, **kw)
    if r.status_code >= 400:
        raise SystemExit(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
    return r.json()


def psql(sql):
    out = subprocess.run([PGDW, "psql", "-XAtq", "-F", "\t", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def same(title, superset_rows, psql_rows):
    norm = lambda rows: [[str(v) for v in r] for r in rows]
    a, b = norm(superset_rows), norm(psql_rows)
    print(f"  {title}: {len(a)} rows from Superset, {len(b)} from psql: "
          f"{'identical' if a == b else 'DIFFERENT'}")
    for row in a[:8]:
        print("    " + " | ".join(row))
    if a != b:
        failures.append(title)
        print(f"    psql: {b}")


token = api("POST", "/api/v1/security/login",
            json={"username": "admin", "password": "admin", "provider": "db", "refresh": True})
session.headers["Authorization"] = f"Bearer {token['access_token']}"

db = api("POST", "/api/v1/database/", json={
    "database_name": "pgdw warehouse", "sqlalchemy_uri": URI, "expose_in_sqllab": True})
db_id = db["id"]
print(f"database connection {db_id}: {URI.split('@')[0].split(':')[0]}://superset:***@{URI.split('@')[1]}")
schemas = api("GET", f"/api/v1/database/{db_id}/schemas/")["result"]
print(f"  schemas Superset lists: {', '.join(schemas)}")

ids = {}
for schema, table in DATASETS:
    ids[(schema, table)] = api("POST", "/api/v1/dataset/", json={
        "database": db_id, "schema": schema, "table_name": table})["id"]
print(f"datasets created: {len(ids)} ({', '.join(f'{s}.{t}' for s, t in ids)})")

print("SQL Lab:")
for title, sql in QUESTIONS.items():
    # SQL Lab replaces a query's own LIMIT with its row-limit setting (Superset 6.1 sends
    # LIMIT <queryLimit>, 1000 by default, seen here): set it as a user sets the dropdown.
    limit = int(sql.rsplit("LIMIT", 1)[1]) if "LIMIT" in sql else 1000
    res = api("POST", "/api/v1/sqllab/execute/", json={
        "database_id": db_id, "sql": sql, "schema": "public", "runAsync": False,
        "queryLimit": limit})
    cols = [c["column_name"] for c in res["columns"]]
    rows = [[row[c] for c in cols] for row in res["data"]]
    same(title, rows, psql(sql))

print("chart (instances by state, a bar chart's query on the dataset):")
chart = api("POST", "/api/v1/chart/data", json={
    "datasource": {"id": ids[("public", "instances_by_state")], "type": "table"},
    "queries": [{"columns": ["state"],
                 "metrics": [{"expressionType": "SIMPLE", "label": "instances",
                              "column": {"column_name": "instances"}, "aggregate": "SUM"}],
                 "orderby": [["state", True]], "row_limit": 100}],
    "result_format": "json", "result_type": "full"})
data = chart["result"][0]["data"]
same("chart: instances by state", [[d["state"], d["instances"]] for d in data],
     psql("SELECT state, sum(instances) FROM instances_by_state GROUP BY state ORDER BY state"))

if failures:
    raise SystemExit(f"different from psql: {', '.join(failures)}")
print("\nevery number Superset showed matches psql")
