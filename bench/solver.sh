#!/usr/bin/env bash
# Measures the solver's own cost (no real work: a fake worker) on a graph of
# 6 platforms x 2,000 steps over a shared chain of 2,000 steps, 14,013
# vertices: the time to execute everything and to solve it again fully
# cached, in a release build.
#
#   bench/solver.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p polyarch-solver --release --locked -- --ignored --nocapture scheduler_overhead_on_a_large_graph
