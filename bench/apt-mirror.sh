#!/usr/bin/env bash
# Prepares a minimal Debian bookworm archive in DIR for the apt case of
# bench/buildkit.sh, to be served on loopback: the packages an
# `apt-get install --no-install-recommends PKG` needs on a stock
# debian:bookworm-slim (for hello: hello alone), for amd64, arm64 and armhf.
#
#   bench/apt-mirror.sh DIR                 (PKG = hello)
#   APT_PKGS="hello jq" bench/apt-mirror.sh DIR
#   REFRESH=1 bench/apt-mirror.sh DIR       (read the archive again)
#
# DIR afterwards (an apt client uses `deb [trusted=yes] http://HOST:PORT/ bookworm main`):
#   pool/main/*.deb
#   dists/bookworm/Release                  (Suite/Codename bookworm, SHA256 of the indexes)
#   dists/bookworm/main/binary-{amd64,arm64,armhf}/Packages{,.gz}
#   .apt/                                   (the private apt state that fetched them)
#
# The .debs come from the Debian archive the host's apt uses for bookworm main
# (DEBIAN_MIRROR overrides it), fetched with apt-get and a private
# configuration under DIR/.apt: its own sources list, lists, cache and empty
# dpkg status, and -o APT::Architecture=ARCH for each architecture, so the
# host's dpkg architectures and apt lists are not touched. That is a
# package download, done once, before and outside any timed benchmark.
#
# Which packages: PKG and its Depends/Pre-Depends (first alternatives),
# recursively, less those already in the image: the Priority: required
# packages, apt and what they depend on (mmdebstrap --variant=minbase, which
# the fixture's image is made with).
#
# Idempotent: when DIR holds an archive made for the same packages,
# architectures and source, it is reused as it is. apt-ftparchive (apt-utils)
# is installed with apt-get if missing. Needs root for that only.
set -euo pipefail
DIR=${1:?usage: bench/apt-mirror.sh DIR}
PKGS=${APT_PKGS:-hello}
ARCHES="amd64 arm64 armhf"
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
log() { echo "apt-mirror: $*" >&2; }

host_mirror() { # the URI of the host's bookworm main source
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    # deb822 stanzas: Types, URIs, Suites, Components
    awk -v suite="$SUITE" 'BEGIN {RS=""; FS="\n"}
      { t=u=s=c=""
        for (i = 1; i <= NF; i++) { if ($i ~ /^#/) continue
          split($i, kv, ":"); k=tolower(kv[1]); v=substr($i, length(kv[1]) + 2)
          if (k == "types") t=" " v " "; if (k == "uris") u=v
          if (k == "suites") s=" " v " "; if (k == "components") c=" " v " " }
        if (t ~ / deb / && s ~ " " suite " " && c ~ / main /) { split(u, a, " "); print a[1]; exit } }' "$f"
  done | head -1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -nE "s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+$SUITE[[:space:]].*\bmain\b.*/\2/p" |
    head -1 | grep . && return
  log "no '$SUITE main' source in /etc/apt; set DEBIAN_MIRROR"; exit 1; }

MIRROR=$(host_mirror)
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
S=$DIR/.apt
STAMP="packages=$PKGS arches=$ARCHES source=$MIRROR $SUITE main"
if [ -z "${REFRESH:-}" ] && [ -f "$DIR/dists/$SUITE/Release" ] && [ "$(cat "$S/prepared" 2>/dev/null)" = "$STAMP" ]; then
  log "reusing $DIR ($(cd "$DIR/pool/main" && echo *.deb))"; exit 0; fi

if ! command -v apt-ftparchive >/dev/null; then
  log "installing apt-utils (apt-ftparchive)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends apt-utils >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1 || log "apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends apt-utils >&2; }
fi

# The private apt: lists of all three architectures fetched at once; each
# query and download then sees one architecture as the native one.
mkdir -p "$S/lists/partial" "$S/cache/archives/partial" "$S/sources.list.d" "$S/preferences.d"
: >>"$S/status"
src="deb [arch=${ARCHES// /,} signed-by=$KEYRING] $MIRROR $SUITE main"
[ "$(cat "$S/sources.list" 2>/dev/null)" = "$src" ] || echo "$src" >"$S/sources.list"
common=(-o "Dir::Etc::SourceList=$S/sources.list" -o "Dir::Etc::SourceParts=$S/sources.list.d"
  -o "Dir::Etc::Preferences=$S/preferences" -o "Dir::Etc::PreferencesParts=$S/preferences.d"
  -o "Dir::State=$S" -o "Dir::State::Lists=$S/lists" -o "Dir::State::Status=$S/status"
  -o "Dir::Cache=$S/cache" -o "Dir::Cache::srcpkgcache=" -o "Acquire::Languages=none"
  -o "Acquire::GzipIndexes=true" -o "Acquire::Retries=3" -o "APT::Sandbox::User=root"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false")
apt_all() { "$1" -q "${common[@]}" -o "APT::Architecture=${ARCHES%% *}" -o "APT::Architectures=${ARCHES// /,}" \
  -o "Dir::Cache::pkgcache=pkgcache-all.bin" "${@:2}"; }
apt_one() { local a=$1 cmd=$2; shift 2  # ARCH apt-get|apt-cache ARGS...
  "$cmd" -q "${common[@]}" -o "APT::Architecture=$a" -o "APT::Architectures=$a" \
    -o "Dir::Cache::pkgcache=pkgcache-$a.bin" "$@"; }

fresh_lists() { local a f
  for a in $ARCHES; do
    f=$(find "$S/lists" -maxdepth 1 -name "*_dists_${SUITE}_main_binary-${a}_Packages*" -mmin -360 | head -1)
    [ -n "$f" ] || return 1; done; }
if [ -n "${REFRESH:-}" ] || ! fresh_lists; then
  log "apt-get update ($MIRROR $SUITE main; $ARCHES)"
  ok=0
  for try in 1 2 3; do
    if apt_all apt-get update >"$S/update.log" 2>&1 && fresh_lists; then ok=1; break; fi
    log "apt-get update failed (try $try/3):"; tail -3 "$S/update.log" >&2; sleep 5
  done
  [ "$ok" = 1 ] || { fresh_lists || [ -n "$(find "$S/lists" -name "*_Packages*" | head -1)" ]; } ||
    { log "no package lists"; exit 1; }
fi

closure() { # ARCH PKG...: the packages named and what they need, recursively, one a line
  local a=$1; shift
  apt_one "$a" apt-cache -o APT::Cache::ShowOnlyFirstOr=true depends --recurse --important "$@" |
    grep -v '^[[:space:]<]' | sort -u; }
base_set() { # ARCH: what mmdebstrap --variant=minbase installs, roughly: required + apt, closed
  local a=$1
  # shellcheck disable=SC2046
  closure "$a" apt $(apt_one "$a" apt-cache dumpavail |
    awk -v a="$a" 'BEGIN {RS=""; FS="\n"}
      /\nPriority: required(\n|$)/ && ($0 ~ "\nArchitecture: (" a "|all)(\n|$)") {
        sub(/^Package: /, "", $1); print $1 }' | sort -u); }

mkdir -p "$DIR/pool/main"
want=() # the .deb file names of all architectures
for a in $ARCHES; do
  # shellcheck disable=SC2086
  mapfile -t need < <(comm -23 <(closure "$a" $PKGS) <(base_set "$a"))
  [ "${#need[@]}" -gt 0 ] || { log "$a: nothing to fetch for $PKGS?"; exit 1; }
  log "$a: ${need[*]}"
  fetch=()
  while read -r _ file _; do # 'URI' NAME_VERSION_ARCH.deb SIZE HASH
    want+=("$file")
    [ -s "$DIR/pool/main/$file" ] || fetch+=("${file%%_*}")
  done < <(apt_one "$a" apt-get download --print-uris "${need[@]}")
  if [ "${#fetch[@]}" -gt 0 ]; then
    (cd "$DIR/pool/main" && apt_one "$a" apt-get download "${fetch[@]}" >&2)
  fi
done
# .debs of an earlier run that are no longer wanted (an older version) go.
for f in "$DIR/pool/main"/*.deb; do
  [[ " ${want[*]} " == *" ${f##*/} "* ]] || { log "removing ${f##*/}"; rm -f "$f"; }
done

# The indexes, written beside and renamed into place.
d=$DIR/dists/$SUITE
for a in $ARCHES; do
  mkdir -p "$d/main/binary-$a"
  (cd "$DIR" && apt-ftparchive --arch "$a" packages pool/main) >"$d/main/binary-$a/Packages.new" 2>"$S/ftparchive.log"
  grep -q '^Package: ' "$d/main/binary-$a/Packages.new" || { log "empty index for $a"; cat "$S/ftparchive.log" >&2; exit 1; }
  gzip -9n <"$d/main/binary-$a/Packages.new" >"$d/main/binary-$a/Packages.gz"
  mv "$d/main/binary-$a/Packages.new" "$d/main/binary-$a/Packages"
done
rm -f "$d/Release" "$d/InRelease" "$d/Release.gpg"
apt-ftparchive -o "APT::FTPArchive::Release::Origin=polyarch-bench" -o "APT::FTPArchive::Release::Label=polyarch-bench" \
  -o "APT::FTPArchive::Release::Suite=$SUITE" -o "APT::FTPArchive::Release::Codename=$SUITE" \
  -o "APT::FTPArchive::Release::Architectures=$ARCHES" -o "APT::FTPArchive::Release::Components=main" \
  -o "APT::FTPArchive::Release::Description=minimal $SUITE archive for bench/buildkit.sh (trusted=yes, unsigned)" \
  release "$d" >"$S/Release.new"
mv "$S/Release.new" "$d/Release"
rm -f "$S"/cache/pkgcache-*.bin # 70 MB each, remade from the lists when needed
echo "$STAMP" >"$S/prepared"
log "ready: $DIR ($(cd "$DIR/pool/main" && echo *.deb)); use: deb [trusted=yes] http://127.0.0.1:PORT/ $SUITE main"
