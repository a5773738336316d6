#!/usr/bin/env bash
# Peak memory (maximum resident set size, from /usr/bin/time -v) of the same
# builds with polyarch and buildah, in one run, as a Markdown table with the
# ratio polyarch / buildah.
#
#   bench/memory.sh                          (all cases)
#   CASES="from copy" bench/memory.sh        (a selection)
#   POLYARCH=path/to/polyarch bench/memory.sh   (a prebuilt binary, no cargo build)
#
# Cases (each polyarch build starts from an empty store; buildah's storage
# is emptied the same way):
#   base   building a 400 MiB base: busybox plus one COPY of 400 random
#          1 MiB context files; polyarch pushes it to the registry fixture
#          as bench/big:latest, which `from` uses.
#   from   FROM that 400 MiB base (pulled), a COPY of a small file and a RUN.
#   copy   FROM busybox and a COPY of one 1 GiB file of the context.
#   bomb   COPY --from an image whose layer holds a 2 GiB run of zeros (a
#          few MiB compressed): bench/zeros:latest, built and pushed first
#          with a sparse file made by RUN.
# Needs: buildah, runc, docker-registry, python3, GNU time (/usr/bin/time),
# ../shared/fixtures, root, ~8 GiB free in /tmp.
set -euo pipefail
CASES=${CASES:-base from copy bomb six}
SIX=linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x,linux/riscv64
here=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${POLYARCH_FIXTURES:-$here/../shared/fixtures}
work=$(mktemp -d /tmp/polyarch-bench-memory.XXXXXX)
PORT=${PORT:-5312}
bh() { local d=$1; shift; buildah --root "$d/root" --runroot "$d/run" --storage-driver overlay "$@"; }
unmount_below() { awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
  while read -r m; do umount -l "$m" 2>/dev/null || true; done; }
fresh() { # empties the stores DIR...
  for d in "$@"; do
    if [ -d "$d/root" ]; then bh "$d" rm --all >/dev/null 2>&1 || true; bh "$d" rmi --all --force >/dev/null 2>&1 || true; fi
    unmount_below "$d"; rm -rf "$d"
  done; }
cleanup() {
  fresh "$work/pa" "$work/bh" "$work/seed"
  unmount_below "$work"
  "$fixtures/registry.sh" stop --port "$PORT" --dir "$work/reg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
has() { [[ " $CASES " == *" $1 "* ]]; }

if [ -n "${POLYARCH:-}" ]; then PA=$(realpath "$POLYARCH")
else cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p polyarch; PA="$here/target/release/polyarch"; fi
eval "$("$fixtures/registry.sh" start --port "$PORT" --dir "$work/reg")"
python3 "$fixtures/base-images.py" "$REGISTRY" >/dev/null 2>&1
BUSYBOX=$REGISTRY/library/busybox:latest

declare -A RSS
peak() { # KEY CMD...: runs CMD under GNU time, keeps its peak RSS in KiB
  local key=$1; shift
  echo "bench: $key: $*" >&2
  if ! /usr/bin/time -v -o "$work/time" "$@" >"$work/log" 2>&1; then
    echo "bench: $key failed:" >&2; tail -20 "$work/log" >&2; exit 1; fi
  RSS[$key]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time"); }
# The commands measured, as programs (GNU time runs no shell function).
pa() { local root=$1; shift; echo env "POLYARCH_ROOT=$root" "$PA" build --progress quiet "$@"; }
bb() { local root=$1; shift
  echo buildah --root "$root/root" --runroot "$root/run" --storage-driver overlay \
    bud --layers --quiet --runtime runc --tls-verify=false --format oci "$@"; }

# Contexts.
mkdir -p "$work/base/files" "$work/from" "$work/copy" "$work/zeros" "$work/bomb"
python3 - "$work/base/files" <<'PY'
import os, sys
for i in range(400):
    with open(os.path.join(sys.argv[1], f"f{i:03d}.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
printf 'FROM %s\nCOPY files/ /data/\n' "$BUSYBOX" > "$work/base/Dockerfile"
echo small > "$work/from/small.txt"
printf 'FROM %s/bench/big:latest\nCOPY small.txt /\nRUN wc -c /small.txt > /count && ls /data | wc -l >> /count\n' \
  "$REGISTRY" > "$work/from/Dockerfile"
if has copy; then head -c 1G /dev/urandom > "$work/copy/big.bin"; fi
printf 'FROM %s\nCOPY big.bin /\n' "$BUSYBOX" > "$work/copy/Dockerfile"
printf 'FROM %s\nRUN truncate -s 2G /zeros\n' "$BUSYBOX" > "$work/zeros/Dockerfile"
printf 'FROM %s\nCOPY --from=%s/bench/zeros:latest /zeros /z\n' "$BUSYBOX" "$REGISTRY" > "$work/bomb/Dockerfile"

# The images the cases start from.
if has base || has from; then
  $(pa "$work/seed" -t "$REGISTRY/bench/big:latest" --push "$work/base") >/dev/null; fresh "$work/seed"; fi
if has bomb; then $(pa "$work/seed" -t "$REGISTRY/bench/zeros:latest" --push "$work/zeros") >/dev/null; fresh "$work/seed"; fi

if has base; then
  fresh "$work/pa" "$work/bh"
  peak base-pa $(pa "$work/pa" -t bench/base:latest "$work/base")
  peak base-bh $(bb "$work/bh" -t bench/base:latest "$work/base")
fi
if has from; then
  fresh "$work/pa" "$work/bh"
  peak from-pa $(pa "$work/pa" -t bench/from:latest "$work/from")
  peak from-bh $(bb "$work/bh" -t bench/from:latest "$work/from")
fi
if has copy; then
  fresh "$work/pa" "$work/bh"
  peak copy-pa $(pa "$work/pa" -t bench/copy:latest "$work/copy")
  peak copy-bh $(bb "$work/bh" -t bench/copy:latest "$work/copy")
fi
if has bomb; then
  fresh "$work/pa" "$work/bh"
  peak bomb-pa $(pa "$work/pa" -t bench/bomb:latest "$work/bomb")
  peak bomb-bh $(bb "$work/bh" -t bench/bomb:latest "$work/bomb")
fi
if has six; then
  fresh "$work/pa" "$work/bh"
  peak six-pa $(pa "$work/pa" --platform "$SIX" -t bench/six:latest "$work/base")
  peak six-bh $(bb "$work/bh" --platform "$SIX" --manifest bench/six:latest "$work/base")
fi
fresh "$work/pa" "$work/bh"

row() { [ -n "${RSS[$2]:-}" ] || return 0; local p=${RSS[$2]} b=${RSS[$3]}
  printf '| %s | %.1f MiB | %.1f MiB | %.2f |\n' "$1" "$(awk -v k="$p" 'BEGIN{print k/1024}')" \
    "$(awk -v k="$b" 'BEGIN{print k/1024}')" "$(awk -v a="$p" -v b="$b" 'BEGIN{print a/b}')"; }
echo "polyarch $("$PA" --version | awk '{print $2}'), $(buildah --version), $(runc --version | head -1); peak RSS (GNU time); $(nproc) cores"
echo
echo "| build | polyarch | buildah | polyarch / buildah |"
echo "|---|---|---|---|"
row "400 MiB base from the context (busybox + COPY of 400 x 1 MiB)" base-pa base-bh
row "FROM the 400 MiB base + COPY + RUN" from-pa from-bh
row "COPY of a 1 GiB context file" copy-pa copy-bh
row "COPY --from an image holding 2 GiB of zeros" bomb-pa bomb-bh
row "400 MiB base for 6 platforms into one index" six-pa six-bh
