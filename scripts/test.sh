#!/usr/bin/env bash
# Runs every test: unit tests, golden files, and the integration tests that
# start a real registry (../shared/fixtures or $POLYARCH_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --locked --all-targets
cargo test --workspace --locked --no-fail-fast "$@"
