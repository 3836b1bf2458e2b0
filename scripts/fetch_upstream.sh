#!/usr/bin/env bash
# Download the pinned upstream Caffe (Debian's source package) into a cache,
# verifying every file's sha256 before it is used.
#
#   scripts/fetch_upstream.sh [CACHE_DIR]
#
# UPSTREAM_PIN=FILE fetches another pinned source package the same way (its
# pin file sets the same UPSTREAM_* names as upstream.env; see boost.env).
#
# The deb-src entry is derived from this machine's own apt sources (the first
# Debian archive URI that is not a security mirror), so no registry host name
# lives in this repository. Nothing outside CACHE_DIR and a temporary apt
# state directory is touched: the system's apt lists are left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pin=${UPSTREAM_PIN:-$here/upstream.env}
# shellcheck source=upstream.env
. "$pin"
cache=${1:-${CAFFE_UPSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/generative-caffe/upstream}}
mkdir -p "$cache"

die() { echo "fetch_upstream: ERROR: $*" >&2; exit 1; }

verify() {  # verify FILE SHA256 -> 0 if the file exists and matches
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

all_cached() {
  verify "$cache/$UPSTREAM_ORIG" "$UPSTREAM_ORIG_SHA256" &&
  verify "$cache/$UPSTREAM_DEBIAN" "$UPSTREAM_DEBIAN_SHA256" &&
  verify "$cache/$UPSTREAM_DSC" "$UPSTREAM_DSC_SHA256"
}

if all_cached; then
  echo "fetch_upstream: cached and verified in $cache"
  exit 0
fi

# --- derive the deb-src entry from the machine's apt configuration ----------
archive_uri() {
  local f uri
  # deb822 sources: take URIs of stanzas that are not security archives
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN{RS="";FS="\n"}
      { u=""; s="";
        for (i=1;i<=NF;i++) { if ($i ~ /^URIs:/) u=$i; if ($i ~ /^Suites:/) s=$i }
        if (u != "" && s !~ /security/) { sub(/^URIs:[ \t]*/, "", u); split(u, a, /[ \t]+/); print a[1]; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  # one-line sources
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 ~ /^deb(-src)?$/ && $0 !~ /security/ {
      for (i=2;i<=NF;i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
}

command -v apt-get >/dev/null || die "apt-get not found: this step needs a Debian-based machine (see README, 'make deps')."
command -v dpkg-source >/dev/null || die "dpkg-source not found: run 'make deps' (package dpkg-dev)."
uri=${CAFFE_UPSTREAM_MIRROR:-$(archive_uri)}
[ -n "$uri" ] || die "could not find a Debian archive URI in /etc/apt/sources*; set CAFFE_UPSTREAM_MIRROR=<archive URI>."
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring missing: install debian-archive-keyring."

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/dl"
echo "deb-src [signed-by=$keyring] $uri $UPSTREAM_SUITE main" > "$state/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/none"
          -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "APT::Sandbox::User=root")
echo "fetch_upstream: apt-get source $UPSTREAM_PACKAGE=$UPSTREAM_VERSION (suite $UPSTREAM_SUITE)"
# apt-get update exits 0 on fetch failures; a Sources index must exist after it.
if ! apt-get -q "${apt_opts[@]}" update >"$state/update.log" 2>&1 ||
   ! compgen -G "$state/lists/*Sources*" >/dev/null; then
  cat "$state/update.log" >&2
  die "apt-get update for the $UPSTREAM_SUITE deb-src entry failed (network down?). Retry when the archive is reachable, or copy the three files ($UPSTREAM_DSC, $UPSTREAM_ORIG, $UPSTREAM_DEBIAN) into $cache."
fi
(cd "$state/dl" && apt-get -q "${apt_opts[@]}" source --download-only "$UPSTREAM_PACKAGE=$UPSTREAM_VERSION") >"$state/source.log" 2>&1 ||
  { cat "$state/source.log" >&2; die "apt-get source $UPSTREAM_PACKAGE=$UPSTREAM_VERSION failed (see above)."; }

for pair in "$UPSTREAM_ORIG:$UPSTREAM_ORIG_SHA256" "$UPSTREAM_DEBIAN:$UPSTREAM_DEBIAN_SHA256" "$UPSTREAM_DSC:$UPSTREAM_DSC_SHA256"; do
  name=${pair%%:*}; want=${pair#*:}
  [ -f "$state/dl/$name" ] || die "download did not produce $name."
  got=$(sha256sum "$state/dl/$name" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "sha256 mismatch for $name: expected $want, got $got. The file was NOT used; check the mirror ($uri) or remove $cache and retry."
done
# only verified files enter the cache, each by an atomic rename
for name in "$UPSTREAM_ORIG" "$UPSTREAM_DEBIAN" "$UPSTREAM_DSC"; do
  cp "$state/dl/$name" "$cache/.$name.tmp" && mv -f "$cache/.$name.tmp" "$cache/$name"
done
echo "fetch_upstream: downloaded and verified into $cache"
