#!/usr/bin/env bash
# Set up (idempotently) and run every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
# default-members: every crate but the pgrx ones (their behaviour is tested through SQL)
cargo test --release
