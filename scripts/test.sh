#!/usr/bin/env bash
# Set up (idempotently) and run every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo test --workspace --exclude prometheus_fdw --exclude clerk_fdw --exclude pgdw-fdw --release
