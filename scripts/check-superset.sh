#!/usr/bin/env bash
# Apache Superset as a real client of the demo's warehouse, following docs/bi-tools.md (not in
# CI: installing Superset takes minutes). It installs Superset 6.1.0 in target/superset-venv,
# starts `pgdw demo` and Superset, creates the documented read-only role, drives Superset's own
# pages with Selenium and chromium-driver as docs/bi-tools.md says a user clicks (log in,
# connect, a dataset, a chart whose numbers are read off the page; screenshots in
# target/screenshots/superset), then creates the database connection and the documented
# datasets through Superset's REST API, runs the seeds' three
# questions in SQL Lab and one chart, and compares every number with psql. Exits non-zero on
# any difference.
#
#     bash scripts/check-superset.sh          (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=target/superset-venv
WORK=$(mktemp -d)
PGDW="$ROOT/target/release/pgdw"
PORT_SUPERSET=${PORT_SUPERSET:-8088}

step() { printf '\n==> %s\n' "$*"; }
cleanup() {
  [ -n "${SUPERSET_PID:-}" ] && kill "$SUPERSET_PID" 2>/dev/null || true
  [ -n "${DEMO_PID:-}" ] && kill -INT "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c "import selenium" 2>/dev/null \
   || ! "$VENV/bin/python" -c "import superset, sys; sys.exit(superset.__version__ if False else 0)" 2>/dev/null \
   || [ "$("$VENV/bin/pip" show apache-superset 2>/dev/null | sed -n 's/^Version: //p')" != 6.1.0 ]; then
  step "installing Superset 6.1.0 in $VENV (a few minutes, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    apache-superset==6.1.0 psycopg2-binary rich cachetools flask-caching==2.3.1 selenium
fi

step "starting pgdw demo (its own warehouse in $WORK)"
export PGDW_DATA_DIR="$WORK/data"
unset DATABASE_URL
"$PGDW" demo --days 3 --tick 3600 --listen 127.0.0.1:0 > "$WORK/demo.log" 2>&1 &
DEMO_PID=$!
for _ in $(seq 600); do
  grep -q "serving the dashboards" "$WORK/demo.log" 2>/dev/null && break
  kill -0 "$DEMO_PID" 2>/dev/null || { cat "$WORK/demo.log"; exit 1; }
  sleep 0.5
done
grep -q "serving the dashboards" "$WORK/demo.log" || { cat "$WORK/demo.log"; exit 1; }
WH_PORT=$("$PGDW" psql -XAtq -c "SHOW port")

step "the read-only role of docs/bi-tools.md, step 1"
# The first sql block of section 1, as written.
awk '/^## 1\. A read-only login/{s=1} s&&/^```sql/{b=1;next} b&&/^```/{exit} b' docs/bi-tools.md > "$WORK/role.sql"
"$PGDW" psql -XAtq -v ON_ERROR_STOP=1 -f "$WORK/role.sql" >/dev/null

step "starting Superset on 127.0.0.1:$PORT_SUPERSET"
cat > "$WORK/superset_config.py" <<EOF
SECRET_KEY = "pgdw-check-superset-$(openssl rand -hex 16)"
SQLALCHEMY_DATABASE_URI = "sqlite:///$WORK/superset.db"
WTF_CSRF_ENABLED = False
EOF
export SUPERSET_CONFIG_PATH="$WORK/superset_config.py" FLASK_APP=superset
"$VENV/bin/superset" db upgrade > "$WORK/superset-setup.log" 2>&1
"$VENV/bin/superset" fab create-admin --username admin --firstname Admin --lastname User \
  --email admin@example.com --password admin >> "$WORK/superset-setup.log" 2>&1
"$VENV/bin/superset" init >> "$WORK/superset-setup.log" 2>&1
"$VENV/bin/superset" run -h 127.0.0.1 -p "$PORT_SUPERSET" --with-threads > "$WORK/superset.log" 2>&1 &
SUPERSET_PID=$!
for _ in $(seq 240); do
  curl -fsS "http://127.0.0.1:$PORT_SUPERSET/health" >/dev/null 2>&1 && break
  sleep 0.5
done

step "Superset's own pages with Selenium: log in, connect, a dataset, a chart, its numbers against psql"
"$VENV/bin/python" "$ROOT/scripts/bi/superset_ui.py" "http://127.0.0.1:$PORT_SUPERSET" \
  "postgresql://superset:choose-one@127.0.0.1:$WH_PORT/warehouse" "$PGDW" "$ROOT/target/screenshots/superset"

step "connection, datasets, SQL Lab and a chart through Superset's REST API, each compared with psql"
"$VENV/bin/python" "$ROOT/scripts/bi/superset_check.py" "http://127.0.0.1:$PORT_SUPERSET" \
  "postgresql://superset:choose-one@127.0.0.1:$WH_PORT/warehouse" "$PGDW"
