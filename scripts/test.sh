#!/usr/bin/env bash
# Set up (idempotently) and run every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
# Every crate, the pgrx ones included (setup.sh ran `cargo pgrx init`).
cargo clippy --workspace --release --all-targets --locked --features pgdw/demo -- -D warnings
# The product binary, without the demo, builds and is clean too.
cargo clippy -p pgdw --release --all-targets --locked -- -D warnings
# default-members: every crate but the pgrx ones, whose behaviour is tested through SQL
# (crates/testkit/tests/architecture.rs holds that they carry no unit tests of their own).
cargo test --release --locked --features pgdw/demo
