#!/usr/bin/env bash
# Times the same Dockerfile builds with polyarch and buildah, in one run, and
# prints a Markdown table of medians and ratios (polyarch / buildah).
#
#   bench/build.sh [RUNS]        (default 3)
#
# Cases:
#   copy   a multi-stage build without RUN: 2,000 small files and 4 files of
#          8 MiB copied through a stage, ENV/LABEL/WORKDIR/USER metadata.
# Columns: cold (empty store/storage: base image pulled, nothing cached) and
# warm (the same build again, nothing changed).
# Needs: buildah, docker-registry, python3, ../shared/fixtures.
set -euo pipefail
RUNS=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench-build.XXXXXX)
trap '"$fixtures/registry.sh" stop --port 5311 --dir "$work/reg" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch
PA="$here/target/release/polyarch"
eval "$("$fixtures/registry.sh" start --port 5311 --dir "$work/reg")"
python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1

# The context.
ctx=$work/ctx
mkdir -p "$ctx/small" "$ctx/big"
python3 - "$ctx" <<'PY'
import os, sys
ctx = sys.argv[1]
for i in range(2000):
    d = os.path.join(ctx, "small", f"d{i % 40:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04d}.txt"), "w") as f:
        f.write(f"file {i}\n" * (i % 50 + 1))
for i in range(4):
    with open(os.path.join(ctx, "big", f"blob{i}.bin"), "wb") as f:
        f.write(os.urandom(8 << 20))
PY
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $REGISTRY/library/busybox:latest AS assets
COPY small/ /assets/small/
COPY big/ /assets/big/
WORKDIR /assets

FROM $REGISTRY/library/busybox:latest
ENV APP_HOME=/srv/app
LABEL org.opencontainers.image.title=bench
WORKDIR /srv/app
COPY --from=assets /assets /srv/app/assets
USER nobody
CMD ["sh"]
DOCKERFILE

now() { date +%s.%N; }
declare -A T
measure() { local key=$1; shift; local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); T[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') "; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

pa_build() { POLYARCH_ROOT=$1 "$PA" build --progress quiet -t bench/copy:latest "$ctx"; }
bh_build() { buildah --root "$1/root" --runroot "$1/run" --storage-driver overlay bud --layers --quiet \
               --tls-verify=false --format oci -t bench/copy:latest "$ctx"; }

for i in $(seq 1 "$RUNS"); do
  rm -rf "$work/pa" "$work/bh"
  measure pa-cold pa_build "$work/pa"
  measure pa-warm pa_build "$work/pa"
  measure bh-cold bh_build "$work/bh"
  measure bh-warm bh_build "$work/bh"
  buildah --root "$work/bh/root" --runroot "$work/bh/run" --storage-driver overlay rm --all >/dev/null 2>&1 || true
done

row() { local p b; p=$(median <<<"${T[$2]}"); b=$(median <<<"${T[$3]}")
  printf '| %s | %.3f s | %.3f s | %.2f |\n' "$1" "$p" "$b" "$(awk -v a="$p" -v b="$b" 'BEGIN{print a/b}')"; }
echo "polyarch $("$PA" --version | awk '{print $2}'), $(buildah --version); $RUNS runs each, medians; $(nproc) cores"
echo
echo "| build | polyarch | buildah | polyarch / buildah |"
echo "|---|---|---|---|"
row "multi-stage COPY build, cold" pa-cold bh-cold
row "multi-stage COPY build, warm (nothing changed)" pa-warm bh-warm
umount -R "$work/bh" 2>/dev/null || true
