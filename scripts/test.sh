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
# Outside CI, tests whose prerequisites are missing are skipped; each notes
# why in a file, and the run ends with the totals of every test binary and
# how many were skipped.
skipped=$(mktemp)
log=$(mktemp)
trap 'rm -f "$skipped" "$log"' EXIT
set +e
POLYARCH_SKIPPED=$skipped cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
n=$(wc -l < "$skipped")
if [ "$n" -gt 0 ]; then
  echo "SKIPPED: $n missing prerequisite(s); the tests that need them returned early and are counted as passed:"
  sort "$skipped" | uniq -c | sed 's/^/  /'
else
  echo "no test skipped"
fi
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$rc"
