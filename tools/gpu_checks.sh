#!/usr/bin/env bash
# The CUDA checks that CI cannot run, for a machine with an NVIDIA GPU and the
# CUDA toolkit but none of Caffe's other libraries (the lent GPU machines).
#
#   here:   make device-bundle                  -> .device-bundle/bundle.tar.xz
#   there:  bash tools/gpu_checks.sh [BUNDLE_DIR] [--all] [--jobs N] [--suite-timeout S]
#                                     [--gtest-filter F] [--no-bench] [--bench-repeats N]
#
# 0. what the machine has (GPU, driver, CUDA, Python, libraries) -> environment.txt;
# 1. the GenerativeLoss gtests on the GPU types (forward against the definition,
#    GradientChecker for every mode, GPU = CPU on random problems), then with
#    --all the whole upstream suite, CPU and GPU types (it checks our CUDA 13
#    patches too), split into N gtest shards run side by side (--jobs, default 1;
#    each shard is its own process on the one GPU) and summed; a shard still
#    running after --suite-timeout seconds is stopped and counts as failed;
#    --gtest-filter limits the suite (e.g. '-*GPU*' for a CPU-only bundle);
# 2. `caffe time -gpu 0` of GenerativeLoss vs SoftmaxWithLoss
#    (tools/bench_generative_loss.py --caffe-time-only --gpu, --bench-repeats
#    alternating repetitions, default 15), unless --no-bench.
# Results (gtest XML, logs, the benchmark table) go to $OUT (the device tool's
# folder) or ./gpu-checks-out.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle_dir=.device-bundle
run_all=0
jobs=1
bench=1
bench_repeats=15
suite_timeout=0
gtest_filter='*'
while [ $# -gt 0 ]; do
  case $1 in
    --all) run_all=1 ;;
    --jobs) shift; jobs=${1:-}
      [[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_checks: --jobs needs a positive number" >&2; exit 2; } ;;
    --no-bench) bench=0 ;;
    --gtest-filter) shift; gtest_filter=${1:-} ;;
    --bench-repeats) shift; bench_repeats=${1:-}
      [[ "$bench_repeats" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_checks: --bench-repeats needs a positive number" >&2; exit 2; } ;;
    --suite-timeout) shift; suite_timeout=${1:-}
      [[ "$suite_timeout" =~ ^[0-9]+$ ]] || { echo "gpu_checks: --suite-timeout needs seconds" >&2; exit 2; } ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "gpu_checks: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) bundle_dir=$1 ;;
  esac
  shift
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
bash "$repo/tools/machine_report.sh" > "$out/environment.txt" 2>&1 || true

status=0
cd "$src_root"   # some upstream tests use paths relative to the source root
echo "== GenerativeLoss gtests (CPU and GPU types)"
"$work/test.testbin" --gtest_filter='*GenerativeLoss*' \
  --gtest_output="xml:$out/gtest_generative_loss.xml" 2>&1 | tee "$out/gtest_generative_loss.log" \
  | grep -E '^\[  (PASSED|FAILED) |^\[  FAILED  \]|tests? ran' || true
grep -q '^\[  PASSED  \]' "$out/gtest_generative_loss.log" && \
  ! grep -q '^\[  FAILED  \]' "$out/gtest_generative_loss.log" || status=1

if [ "$run_all" = 1 ]; then
  echo "== the whole upstream + GenerativeLoss suite ($jobs shards)"
  start=$(date +%s)
  pids=()
  for ((i = 0; i < jobs; i++)); do
    GTEST_TOTAL_SHARDS=$jobs GTEST_SHARD_INDEX=$i timeout "$suite_timeout" "$work/test.testbin" \
      --gtest_filter="$gtest_filter" --gtest_output="xml:$out/gtest_all_$i.xml" \
      > "$out/gtest_all_$i.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 0; i < jobs; i++)); do
    wait "${pids[$i]}" || { echo "shard $i failed (exit $?)"; status=1; }
  done
  echo "suite: $(( $(date +%s) - start )) s"
  cat "$out"/gtest_all_*.log > "$out/gtest_all.log"
  rm -f "$out"/gtest_all_*.log
  grep -E '^\[  FAILED  \] [A-Za-z]' "$out/gtest_all.log" | sort -u | head -40 || true
  shard_reports=()
  for ((i = 0; i < jobs; i++)); do shard_reports+=("$out/gtest_all_$i.xml"); done
  python3 "$repo/tools/run_tests.py" --sum-junit "${shard_reports[@]}" | tee "$out/gtest_all_summary.txt" \
    || status=1
fi
cd "$repo"

if [ "$bench" = 1 ]; then
  echo "== GenerativeLoss vs SoftmaxWithLoss, caffe time on the GPU"
  python3 tools/bench_generative_loss.py --caffe-time-only --gpu --repeats "$bench_repeats" \
    --caffe "$work/caffe" --output "$out/bench_generative_loss_gpu.md" || status=1
fi

echo "gpu_checks: results in $out (status $status)"
exit $status
