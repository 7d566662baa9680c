#!/usr/bin/env bash
# Set up everything pgdw needs on Debian 12, idempotently: a second run takes seconds.
#   - Debian packages (PostgreSQL 15 with pg_cron, pg_partman, hll and tdigest, Prometheus, build tools,
#     chromium for the browser test of the dashboards, chromium-driver for the Superset check)
#   - cargo-pgrx 0.16.1, only when that exact version is missing
#   - `cargo pgrx init` against the system PostgreSQL 15
#   - prometheus_fdw and clerk_fdw built and installed into the system PostgreSQL 15
#   - the pgdw binary (target/release/pgdw), with the demo built in
#   - target/bi-venv: SQLAlchemy 1.4 (the version Superset pins) with psycopg2, for the test
#     that reflects the warehouse as BI tools do
#   - target/dbt-venv: dbt-core and dbt-postgres 1.11, for the test of integrations/dbt
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.16.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-partman
          postgresql-15-hll postgresql-15-tdigest
          postgresql-contrib prometheus libclang-dev clang pkg-config libssl-dev sudo ca-certificates
          build-essential curl openssl chromium chromium-driver fonts-liberation python3-venv)

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts a default cluster and a Prometheus service on install; pgdw runs its own.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
  step "installing cargo-pgrx $PGRX_VERSION (about 6 minutes, once)"
  cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -q "^pg15 *= *\"$PG_CONFIG\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
  step "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

# Install the extensions when their sources changed since the last install.
stamp_dir=target/setup-stamps
mkdir -p "$stamp_dir"
sources_hash() {
  # Everything an extension is built from: its crate and the crates it links.
  local dirs=()
  for d in crates/fdw-core crates/fdw-api crates/wrappers "extensions/$1"; do [ -d "$d" ] && dirs+=("$d"); done
  find Cargo.lock "${dirs[@]}" -type f \
       \( -name '*.rs' -o -name '*.toml' -o -name '*.control' -o -name '*.sql' -o -name Cargo.lock \) \
       | sort | xargs cat | sha256sum | cut -d' ' -f1
}
for ext in prometheus_fdw clerk_fdw pgdw_test_fdw; do
  want=$(sources_hash "$ext")
  installed="/usr/share/postgresql/15/extension/$ext.control"
  if [ ! -f "$installed" ] || [ "$(cat "$stamp_dir/$ext" 2>/dev/null)" != "$want" ]; then
    step "building and installing $ext into PostgreSQL 15"
    (cd "extensions/$ext" && as_root env "PATH=$PATH" "HOME=$HOME" cargo pgrx install --release --pg-config "$PG_CONFIG")
    echo "$want" > "$stamp_dir/$ext"
  fi
done

step "building pgdw"
cargo build --release -p pgdw --features demo --quiet

BI_VENV=target/bi-venv
SQLALCHEMY=1.4.54
if ! "$BI_VENV/bin/python" -c "import sqlalchemy, psycopg2, sys; sys.exit(sqlalchemy.__version__ != '$SQLALCHEMY')" 2>/dev/null; then
  step "creating $BI_VENV (SQLAlchemy $SQLALCHEMY, psycopg2-binary) for the BI-tool test"
  rm -rf "$BI_VENV"
  python3 -m venv "$BI_VENV"
  "$BI_VENV/bin/pip" install -q --disable-pip-version-check "sqlalchemy==$SQLALCHEMY" "psycopg2-binary==2.9.10"
fi
DBT_VENV=target/dbt-venv
DBT=1.11
if ! "$DBT_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(not (m.version('dbt-core').startswith('$DBT.') and m.version('dbt-postgres').startswith('$DBT.')))" 2>/dev/null; then
  step "creating $DBT_VENV (dbt-core and dbt-postgres $DBT) for the dbt test"
  rm -rf "$DBT_VENV"
  python3 -m venv "$DBT_VENV"
  "$DBT_VENV/bin/pip" install -q --disable-pip-version-check "dbt-core~=$DBT.0" "dbt-postgres~=$DBT.0"
fi
echo "setup complete: target/release/pgdw"
