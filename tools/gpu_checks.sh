#!/usr/bin/env bash
# The CUDA checks that CI cannot run, for a machine with an NVIDIA GPU and the
# CUDA toolkit but none of Caffe's other libraries (the lent GPU machines).
#
#   here:   make device-bundle                  -> .device-bundle/bundle.tar.xz
#   there:  bash tools/gpu_checks.sh [BUNDLE_DIR] [--all]
#
# 1. the GenerativeLoss gtests on the GPU types (forward against the definition,
#    GradientChecker for every mode), then with --all the whole upstream suite,
#    CPU and GPU types (it checks our CUDA 13 patches too);
# 2. `caffe time -gpu 0` of GenerativeLoss vs SoftmaxWithLoss
#    (tools/bench_generative_loss.py --caffe-time-only --gpu).
# Results (gtest XML, logs, the benchmark table) go to $OUT (the device tool's
# folder) or ./gpu-checks-out.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle_dir=.device-bundle
run_all=0
for arg in "$@"; do
  case $arg in
    --all) run_all=1 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_checks: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) bundle_dir=$arg ;;
  esac
done
out=${OUT:-$PWD/gpu-checks-out}
mkdir -p "$out"
archive=$bundle_dir/bundle.tar.xz
[ -f "$archive" ] || { echo "gpu_checks: $archive not found: run 'make device-bundle' on the build machine and carry $bundle_dir" >&2; exit 2; }

work=$(mktemp -d /tmp/gencaffe-gpu.XXXXXX)
made_link=""
cleanup() { [ -n "$made_link" ] && rm -f "$made_link"; rm -rf "$work"; }
trap cleanup EXIT
tar -xJf "$archive" -C "$work"
bundle=$work/bundle
manifest_get() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$bundle/manifest.json" "$1"
}

# The tests open their data under the source path they were compiled with.
src_root=$(manifest_get source_root)
if [ ! -e "$src_root" ]; then
  mkdir -p "$(dirname "$src_root")"
  ln -s "$bundle/src" "$src_root"
  made_link=$src_root
fi

# cuBLAS / cuRAND / cudart come from this machine's toolkit (same major version).
# The library path is set for the bundled programs only: the bundle's older
# libstdc++ must not reach this machine's python3 or nvidia-smi.
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && cuda_dirs="$cuda_dirs:$d"
done
bundle_ld="$bundle/lib$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for prog in caffe test.testbin; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$bundle_ld" "$bundle/bin/$prog" \
    > "$work/$prog"
  chmod +x "$work/$prog"
done
if LD_LIBRARY_PATH="$bundle_ld" ldd "$bundle/bin/test.testbin" | grep -q 'not found'; then
  echo "gpu_checks: libraries missing on this machine (bundle built for CUDA $(manifest_get cuda_version)):" >&2
  LD_LIBRARY_PATH="$bundle_ld" ldd "$bundle/bin/test.testbin" | grep 'not found' >&2
  exit 1
fi

nvidia-smi -L | tee "$out/gpu.txt"
echo "bundle built with CUDA $(manifest_get cuda_version); nvcc here: $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')" | tee -a "$out/gpu.txt"

status=0
cd "$src_root"   # some upstream tests use paths relative to the source root
echo "== GenerativeLoss gtests (CPU and GPU types)"
"$work/test.testbin" --gtest_filter='*GenerativeLoss*' \
  --gtest_output="xml:$out/gtest_generative_loss.xml" 2>&1 | tee "$out/gtest_generative_loss.log" \
  | grep -E '^\[  (PASSED|FAILED) |^\[  FAILED  \]|tests? ran' || true
grep -q '^\[  PASSED  \]' "$out/gtest_generative_loss.log" && \
  ! grep -q '^\[  FAILED  \]' "$out/gtest_generative_loss.log" || status=1

if [ "$run_all" = 1 ]; then
  echo "== the whole upstream + GenerativeLoss suite"
  "$work/test.testbin" --gtest_output="xml:$out/gtest_all.xml" \
    > "$out/gtest_all.log" 2>&1 || status=1
  grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$out/gtest_all.log" | head -40
fi
cd "$repo"

echo "== GenerativeLoss vs SoftmaxWithLoss, caffe time on the GPU"
python3 tools/bench_generative_loss.py --caffe-time-only --gpu \
  --caffe "$work/caffe" --output "$out/bench_generative_loss_gpu.md" || status=1

echo "gpu_checks: results in $out (status $status)"
exit $status
