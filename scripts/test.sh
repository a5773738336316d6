#!/usr/bin/env bash
# Runs every test: unit tests, golden files, and the integration tests that
# start a real registry (../shared/fixtures or $POLYARCH_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --locked --all-targets
# Foreign platforms' RUN steps and `polyarch run` need QEMU's binfmt handlers;
# polyarch registers them itself (mounting binfmt_misc when needed), with P
# so that argv[0] survives, keeping right ones (Debian's) and replacing wrong
# ones (--reset). Tests that change handlers use private binfmt_misc
# instances, so these stay as they are for the whole run.
if [ "$(id -u)" = 0 ]; then
  "${CARGO_TARGET_DIR:-target}/debug/polyarch" binfmt install --reset arm64,arm,ppc64le,s390x,riscv64,mips64le
fi
cargo test --workspace --locked --no-fail-fast "$@"
