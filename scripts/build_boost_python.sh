#!/usr/bin/env bash
# Build Boost.Python for a given Python interpreter, from Debian's boost1.74
# source package (the version of this machine's Boost headers), for when Debian has
# no libboost_python for that Python (bookworm has 3.11 only; the lent GPU
# machines run 3.12). pycaffe links it.
#
#   scripts/build_boost_python.sh PYTHON OUT_DIR
#
# Writes OUT_DIR/libboost_pythonXY.so.1.74.0 (and the .so link); a second run
# with the same inputs is a no-op. The source is fetched as the Caffe sources
# are (scripts/fetch_upstream.sh with scripts/boost.env: apt-get source, sha256
# checked before use) and cached in ~/.cache/generative-caffe/boost
# ($BOOST_SOURCE_CACHE to move it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:?usage: build_boost_python.sh PYTHON OUT_DIR}
out=${2:?usage: build_boost_python.sh PYTHON OUT_DIR}
die() { echo "build_boost_python: ERROR: $*" >&2; exit 1; }

# shellcheck source=boost.env
. "$here/boost.env"
command -v "$python" >/dev/null || die "python '$python' not found"
read -r pyver pyinc < <("$python" -c 'import sys, sysconfig; print("%d%d" % sys.version_info[:2], sysconfig.get_paths()["include"])')
[ -f "$pyinc/Python.h" ] || die "$python has no Python.h under $pyinc (a Python without its headers cannot build extensions)"
[ -f /usr/include/boost/version.hpp ] || die "Boost headers not found (make deps installs libboost-python-dev)"
grep -q "define BOOST_LIB_VERSION \"${BOOST_LIB_VERSION}\"" /usr/include/boost/version.hpp \
  || die "the Boost headers are not version ${BOOST_LIB_VERSION}, the source this script builds"

lib=libboost_python${pyver}.so.${BOOST_SO_VERSION}
stamp="$out/.stamp"
want="$UPSTREAM_ORIG_SHA256 $UPSTREAM_DEBIAN_SHA256 $("$python" -c 'import sys; print(sys.version)' | head -1) $(sha256sum "$0" | cut -c1-16)"
if [ -f "$out/$lib" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "build_boost_python: $out/$lib is up to date"
  exit 0
fi

cache=${BOOST_SOURCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/generative-caffe/boost}
UPSTREAM_PIN="$here/boost.env" "$here/fetch_upstream.sh" "$cache"

work=$(mktemp -d "${TMPDIR:-/tmp}/boost-python.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build_boost_python: unpacking (Debian's patches applied) and compiling Boost.Python for Python ${pyver}"
dpkg-source --no-check -x "$cache/$UPSTREAM_DSC" "$work/boost" >/dev/null
src=$work/boost/libs/python/src
mkdir -p "$work/obj"
# the sources of libboost_python (libs/python/build/Jamfile), not boost_numpy
find "$src" -maxdepth 2 -name '*.cpp' -not -path "$src/numpy/*" | sort > "$work/sources"
[ -s "$work/sources" ] || die "no Boost.Python sources in $src"
xargs -P "$(nproc)" -I{} sh -c 'g++ -O2 -fPIC -std=c++14 -DNDEBUG -DBOOST_PYTHON_SOURCE -DBOOST_ALLOW_DEPRECATED_HEADERS \
  -DBOOST_PYTHON_DYN_LINK -I"$1" -c "$2" -o "$3/$(echo "$2" | md5sum | cut -c1-12).o"' \
  _ "$pyinc" {} "$work/obj" < "$work/sources"
mkdir -p "$out"
g++ -shared -Wl,-soname,"$lib" -o "$work/$lib" "$work"/obj/*.o
mv "$work/$lib" "$out/$lib"
ln -sf "$lib" "$out/libboost_python${pyver}.so"
echo "$want" > "$stamp"
echo "build_boost_python: $out/$lib"
