#!/usr/bin/env bash
# Install what building and testing Generative Caffe needs (Debian 12):
# Debian packages (compilers' libraries, protobuf, BLAS, OpenCV, ...) and the
# Python packages of requirements.txt for the given interpreter.
# Idempotent: packages already present are not touched and apt-get update is
# skipped when nothing is missing.
#   scripts/install_deps.sh [PYTHON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${1:-python3}

debs=(build-essential cmake patch dpkg-dev ccache debian-archive-keyring
      libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
      libgoogle-glog-dev libgflags-dev libhdf5-dev liblmdb-dev libleveldb-dev libsnappy-dev
      libprotobuf-dev protobuf-compiler libopenblas-dev libopencv-dev
      graphviz bsdextrautils)  # graphviz: draw_net.py; bsdextrautils: column, for parse_log.sh

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "install_deps: ERROR: apt-get not found; install by hand: ${missing[*]}" >&2; exit 1; }
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install_deps: ERROR: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "install_deps: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install_deps: Debian packages present"
fi

# Debian's python3-numpy puts numpy 1.x headers where CMake may pick them up for
# a different interpreter; pycaffe then fails with "_ARRAY_API not found".
# We pass CMake the interpreter's own paths (Makefile), so it is not needed.
"$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$here/../requirements.txt"
echo "install_deps: Python packages present for $("$python" -c 'import sys; print(sys.executable)')"
