#!/usr/bin/env bash
# Prepare the Caffe source tree that CMake builds:
#   pinned upstream (verified) + Debian's patch series + caffe/patches/series
#   + our overlay (every file under caffe/ except patches/, linked in place).
#
#   scripts/prepare_source.sh DEST_DIR
#
# The patched tree is rebuilt only when the upstream checksums or our patches
# change; it is assembled in a temporary directory and renamed into place, so
# a failed or interrupted run never leaves a half-extracted tree at DEST_DIR.
# Overlay files are symbolic links, so editing caffe/src/... needs no re-run;
# adding or removing an overlay file does (the Makefile runs this every build).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/upstream.env"
dest=${1:?usage: prepare_source.sh DEST_DIR}
mkdir -p "$(dirname "$dest")"
dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
cache=${CAFFE_UPSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/generative-caffe/upstream}
die() { echo "prepare_source: ERROR: $*" >&2; exit 1; }

patch_dir=$repo/caffe/patches
series=$patch_dir/series
[ -f "$series" ] || die "$series is missing."
patches=$(grep -v -e '^#' -e '^[[:space:]]*$' "$series" || true)

# Everything that determines the patched tree's content goes into its stamp.
stamp=$( { cat "$here/upstream.env"; cat "$series";
           for p in $patches; do [ -f "$patch_dir/$p" ] || die "series names $p but $patch_dir/$p does not exist."; sha256sum "$patch_dir/$p"; done; } |
         sha256sum | cut -d' ' -f1)

if [ ! -f "$dest/.prepared-stamp" ] || [ "$(cat "$dest/.prepared-stamp")" != "$stamp" ]; then
  "$here/fetch_upstream.sh" "$cache"
  command -v dpkg-source >/dev/null || die "dpkg-source not found: run 'make deps' (package dpkg-dev)."
  command -v patch >/dev/null || die "patch not found: run 'make deps'."
  tmp=$(mktemp -d "$(dirname "$dest")/.prepare.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "prepare_source: unpacking $UPSTREAM_DSC (applies Debian's patch series)"
  # The three files were sha256-verified by fetch_upstream.sh just above.
  dpkg-source --no-check -x "$cache/$UPSTREAM_DSC" "$tmp/src" >"$tmp/unpack.log" 2>&1 ||
    { cat "$tmp/unpack.log" >&2; die "dpkg-source could not unpack $UPSTREAM_DSC; delete $cache and retry."; }
  for p in $patches; do
    echo "prepare_source: applying caffe/patches/$p"
    patch -d "$tmp/src" -p1 --forward --batch --no-backup-if-mismatch < "$patch_dir/$p" >"$tmp/patch.log" 2>&1 ||
      { cat "$tmp/patch.log" >&2; die "caffe/patches/$p does not apply to upstream $UPSTREAM_VERSION."; }
  done
  echo "$stamp" > "$tmp/src/.prepared-stamp"
  # Keep the old tree's build outputs out of the way: swap atomically.
  if [ -e "$dest" ]; then mv "$dest" "$tmp/old"; fi
  mv "$tmp/src" "$dest"
  rm -rf "$tmp"; trap - EXIT
fi

# --- overlay: link every file of caffe/ (but patches/) into the tree ------------
overlay=$repo/caffe
# drop links to overlay files that no longer exist
find "$dest" -type l -lname "$overlay/*" ! -exec test -e {} \; -delete
(cd "$overlay" && find . -path ./patches -prune -o -type f -print) | sed 's|^\./||' | sort |
while read -r rel; do
  target=$dest/$rel
  if [ -e "$target" ] && [ ! -L "$target" ]; then
    die "caffe/$rel would replace the upstream file $rel. Change upstream files through a patch in caffe/patches/ instead."
  fi
  mkdir -p "$(dirname "$target")"
  ln -sfn "$overlay/$rel" "$target"
done
# The overlay file list: CMake re-globs sources when it changes.
list=$( (cd "$overlay" && find . -path ./patches -prune -o -type f -print) | sort)
if [ ! -f "$dest/.overlay-files" ] || [ "$(cat "$dest/.overlay-files")" != "$list" ]; then
  printf '%s\n' "$list" > "$dest/.overlay-files"
fi
