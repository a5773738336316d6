#!/usr/bin/env bash
# Runs every test: unit tests, golden files, and the integration tests that
# start a real registry (../shared/fixtures or $POLYARCH_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --locked --all-targets
# Foreign platforms' RUN steps and `polyarch run` need QEMU's binfmt handlers;
# polyarch registers them itself (mounting binfmt_misc when needed).
if [ "$(id -u)" = 0 ]; then
  ./target/debug/polyarch binfmt install arm64,arm,ppc64le,s390x,riscv64,mips64le
fi
cargo test --workspace --locked --no-fail-fast "$@"
