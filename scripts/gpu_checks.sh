#!/usr/bin/env bash
# The checks and measurements that only a GPU can make, for a machine with an
# NVIDIA GPU, the CUDA toolkit (cuDNN 9 included) and a Python 3.12 with numpy,
# but none of Caffe's other libraries (the lent GPU machines).
#
#   here:   make device-kit                      -> .device-kit/kit.tar.xz
#   there:  bash scripts/gpu_checks.sh [KIT_DIR] [--sections LIST] [--jobs N]
#               [--suite-timeout S] [--cpu-tests-only] [--gpu-tests-from TEST]
#               [--bench-repeats N]
#               [--mnist-seeds LIST] [--mnist-timeout S]
#
# Sections (--sections, comma-separated, run in the order given; default
# env,gen,suite,engines,bench,hmc):
#   env      what the machine has (GPU, driver, CUDA, cuDNN, Python) -> environment.txt
#   gen      our layers' gtests, CPU and GPU types: GenerativeLoss (forward
#            against the definition, GradientChecker for every mode, GPU = CPU
#            on random problems) and BernoulliSample
#   suite    the whole gtest suite (upstream's + ours, cuDNN layers included):
#            the GPU tests in one process (several processes on one GPU
#            time-slice it, and the gradient checks' many small synchronous
#            steps then crawl), the CPU tests split into --jobs shards beside it;
#            a part still running after --suite-timeout seconds is stopped and
#            counts as failed. --cpu-tests-only skips the GPU part;
#            --gpu-tests-from TEST runs the GPU part from TEST on (in the
#            binary's order: the rest of a run that stopped at TEST).
#   engines  scripts/check_engines.py: LeNet, AlexNet, ZF on the GPU with Caffe's
#            own CUDA layers and with cuDNN against the CPU (pycaffe)
#   bench    tools/bench_generative_loss.py (the loss layers, caffe time) and
#            tools/bench_nets.py --run on the kit's payload/bench_nets (GG vs DG
#            of whole nets; AlexNet training throughput, cuDNN on and off,
#            DummyData and an LMDB of random images made here)
#   hmc      tools/bench_hmc.py --gpu: LeNet ip2 and AlexNet fc8, batched chains,
#            on the device where the machine's Python has CuPy (else on the
#            host), and the host path beside them for the comparison
#   mnist    tools/reproduce_mnist.py --gpu on the kit's payload/mnist LMDBs
#            (--mnist-seeds, default 6; --mnist-timeout, default 0 = none)
# Results (gtest XML, logs, tables) go to $OUT (the device tool's folder) or
# ./gpu-checks-out. Exit status 1 if any section failed.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit_dir=.device-kit
sections=env,gen,suite,engines,bench,hmc
jobs=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
suite_timeout=0
cpu_only=0
gpu_from=""
bench_repeats=5
mnist_seeds=6
mnist_timeout=0
die() { echo "gpu_checks: $*" >&2; exit 2; }
number() { [[ "${2:-}" =~ ^[0-9]+$ ]] || die "$1 needs a number"; }
while [ $# -gt 0 ]; do
  case $1 in
    --sections) shift; sections=${1:-} ;;
    --jobs) shift; number --jobs "${1:-}"; jobs=$1; [ "$jobs" -ge 1 ] || die "--jobs must be >= 1" ;;
    --suite-timeout) shift; number --suite-timeout "${1:-}"; suite_timeout=$1 ;;
    --cpu-tests-only) cpu_only=1 ;;
    --gpu-tests-from) shift; gpu_from=${1:-}; [ -n "$gpu_from" ] || die "--gpu-tests-from needs a test name" ;;
    --bench-repeats) shift; number --bench-repeats "${1:-}"; bench_repeats=$1 ;;
    --mnist-seeds) shift; mnist_seeds=${1:-} ;;
    --mnist-timeout) shift; number --mnist-timeout "${1:-}"; mnist_timeout=$1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) kit_dir=$1 ;;
  esac
  shift
done
for s in ${sections//,/ }; do
  case $s in env|gen|suite|engines|bench|hmc|mnist) ;; *) die "unknown section '$s' (see --help)" ;; esac
done
out=${OUT:-$PWD/gpu-checks-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
archive=$kit_dir/kit.tar.xz
[ -f "$archive" ] || die "$archive not found: run 'make device-kit' on the build machine and carry $kit_dir"

work=$(mktemp -d /tmp/gencaffe-gpu.XXXXXX)
made_link=""
cleanup() { [ -n "$made_link" ] && rm -f "$made_link"; rm -rf "$work"; }
trap cleanup EXIT
started=$(date +%s)
tar -xJf "$archive" -C "$work" || die "cannot unpack $archive"
kit=$work/kit
manifest_get() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]))' \
    "$kit/manifest.json" "$1"
}
status=0
fail() { echo "gpu_checks: FAILED: $*" | tee -a "$out/failures.txt"; status=1; }
section() { printf '\n== %s (at %d s)\n' "$1" $(( $(date +%s) - started )); }

# The tests open their data under the source path they were compiled with.
src_root=$(manifest_get source_root)
if [ ! -e "$src_root" ]; then
  mkdir -p "$(dirname "$src_root")"
  ln -s "$kit/src" "$src_root"
  made_link=$src_root
fi

# cuBLAS, cuRAND, cudart and cuDNN come from this machine (same major versions).
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && cuda_dirs="$cuda_dirs:$d"
done
kit_ld="$kit/lib$cuda_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The kit's C++ runtime only where this machine's is older than the kit needs.
if LD_LIBRARY_PATH="$kit_ld" ldd "$kit/bin/caffe" 2>&1 | grep -q "GLIBCXX.*not found\|libstdc++.*not found"; then
  kit_ld="$kit_ld:$kit/lib/cxx-runtime"
fi
for prog in $(manifest_get programs | tr -d "[]',"); do
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$kit_ld" "$kit/bin/$prog" > "$work/$prog"
  chmod +x "$work/$prog"
done
if LD_LIBRARY_PATH="$kit_ld" ldd "$kit/bin/test.testbin" | grep -q 'not found'; then
  echo "gpu_checks: libraries missing on this machine (kit built for CUDA $(manifest_get cuda_version)):" >&2
  LD_LIBRARY_PATH="$kit_ld" ldd "$kit/bin/test.testbin" | grep 'not found' >&2
  exit 1
fi

# Python: this machine's, with the kit's pycaffe and wheels in front.
python=${PYTHON:-python3}
site=$work/site
if compgen -G "$kit/wheels/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$kit"/wheels/*.whl \
    || fail "installing the kit's wheels"
fi
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" PYTHONPATH="%s" GLOG_minloglevel=${GLOG_minloglevel:-2} exec "%s" "$@"\n' \
  "$kit_ld" "$kit/python:$repo/python:$site${PYTHONPATH:+:$PYTHONPATH}" "$(command -v "$python")" > "$work/py"
chmod +x "$work/py"
py() { "$work/py" "$@"; }
export CAFFE_BUILD_DIR=$work/no-build   # our tools must take pycaffe from the kit, not a build

nvidia-smi -L | tee "$out/gpu.txt"
echo "kit built with CUDA $(manifest_get cuda_version), pycaffe for Python $(manifest_get python); here: nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'), $("$python" --version 2>&1)" | tee -a "$out/gpu.txt"
pycaffe_ok=0
if [ "$(manifest_get python)" != None ] && py -c 'import caffe; caffe.set_mode_cpu()' 2> "$out/pycaffe_import.log"; then
  pycaffe_ok=1
else
  fail "import caffe (pycaffe): see pycaffe_import.log"
fi

section_env() {
  section env
  bash "$repo/scripts/machine_report.sh" > "$out/environment.txt" 2>&1
  echo "written: environment.txt"
}

section_gen() {
  section "our layers' gtests: GenerativeLoss, BernoulliSample (CPU and GPU types)"
  "$work/test.testbin" --gtest_filter='*GenerativeLoss*:*BernoulliSample*' \
    --gtest_output="xml:$out/gtest_generative_loss.xml" > "$out/gtest_generative_loss.log" 2>&1
  grep -E '^\[  (PASSED|FAILED)  \]' "$out/gtest_generative_loss.log"
  grep -q '^\[  PASSED  \]' "$out/gtest_generative_loss.log" && \
    ! grep -q '^\[  FAILED  \]' "$out/gtest_generative_loss.log" || fail "our layers' gtests (GenerativeLoss, BernoulliSample)"
}

section_suite() {
  gpu_filter=$(python3 "$repo/scripts/run_tests.py" --print-gpu-filter)   # the rest run on CPU
  cpu_filter="-$gpu_filter"
  if [ -n "$gpu_from" ]; then
    gpu_filter=$("$work/test.testbin" --gtest_list_tests --gtest_filter="$gpu_filter" 2>/dev/null \
      | python3 "$repo/scripts/run_tests.py" --tests-from "$gpu_from") \
      || { fail "--gpu-tests-from: $gpu_from is not a GPU test of this binary"; return; }
    echo "GPU part: $(tr ':' '\n' <<< "$gpu_filter" | wc -l) tests, from $gpu_from on"
  fi
  section "the whole gtest suite: GPU tests in 1 process$([ $cpu_only = 1 ] && echo ' (skipped)'), CPU tests in $jobs shards"
  t0=$(date +%s)
  pids=(); reports=()
  for ((i = 0; i < jobs; i++)); do
    GTEST_TOTAL_SHARDS=$jobs GTEST_SHARD_INDEX=$i timeout "$suite_timeout" "$work/test.testbin" \
      --gtest_filter="$cpu_filter" --gtest_output="xml:$out/gtest_cpu_$i.xml" \
      > "$out/gtest_cpu_$i.log" 2>&1 &
    pids+=($!); reports+=("$out/gtest_cpu_$i.xml")
  done
  if [ $cpu_only = 0 ]; then
    timeout "$suite_timeout" "$work/test.testbin" --gtest_filter="$gpu_filter" \
      --gtest_output="xml:$out/gtest_gpu.xml" > "$out/gtest_gpu.log" 2>&1 &
    pids+=($!); reports+=("$out/gtest_gpu.xml")
  fi
  for pid in "${pids[@]}"; do wait "$pid" || fail "a suite part exited with $? (124 = stopped at --suite-timeout)"; done
  echo "suite: $(( $(date +%s) - t0 )) s"
  cat "$out"/gtest_cpu_*.log > "$out/gtest_cpu.log" && rm -f "$out"/gtest_cpu_*.log
  grep -hE '^\[  FAILED  \] [A-Za-z]' "$out"/gtest_*.log | sort -u | head -40
  python3 "$repo/scripts/run_tests.py" --sum-junit "${reports[@]}" | tee "$out/gtest_suite_summary.txt" \
    || fail "gtest suite"
  if [ $cpu_only = 0 ] && [ ! -f "$out/gtest_gpu.xml" ]; then   # stopped: what its log shows
    echo "GPU part stopped before its report: $(grep -c '^\[       OK \]' "$out/gtest_gpu.log") tests OK," \
      "$(grep -c '^\[  FAILED  \] [A-Za-z]' "$out/gtest_gpu.log") failed, last started:" \
      "$(grep '^\[ RUN      \]' "$out/gtest_gpu.log" | tail -1)" | tee -a "$out/gtest_suite_summary.txt"
  fi
}

section_engines() {
  section "engines: CPU vs GPU Caffe vs GPU cuDNN"
  if [ $pycaffe_ok = 1 ]; then
    py scripts/check_engines.py --gpu 0 --out "$out/check_engines.md" || fail "check_engines"
  else
    fail "check_engines needs pycaffe"
  fi
}

section_bench() {
  section "bench: GenerativeLoss vs SoftmaxWithLoss (caffe time)"
  py tools/bench_generative_loss.py --caffe-time-only --gpu --repeats "$bench_repeats" \
    --caffe "$work/caffe" --output "$out/bench_generative_loss_gpu.md" || fail "bench_generative_loss"
  if [ -f "$kit/payload/bench_nets/plan.json" ]; then
    lmdb_source=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("lmdb_source") or "")' \
      "$kit/payload/bench_nets/plan.json")
    if [ -n "$lmdb_source" ]; then
      py scripts/make_random_lmdb.py "$lmdb_source" --count 1280 || fail "make_random_lmdb"
    fi
    section "bench: whole nets and training throughput (and PyTorch's, where it is installed)"
    torch_flag=""
    "$work/py" -c 'import torch' 2>/dev/null && torch_flag="--torch"
    py tools/bench_nets.py --run "$kit/payload/bench_nets" --caffe "$work/caffe" --gpu 0 \
      --repeats "$bench_repeats" $torch_flag --out "$out/bench_nets_gpu.md" || fail "bench_nets"
    [ -n "$lmdb_source" ] && rm -rf "$lmdb_source"
  else
    fail "the kit has no payload/bench_nets (make device-kit prepares it)"
  fi
}

section_hmc() {
  section "hmc: LeNet ip2 and AlexNet fc8 with batched chains"
  if [ $pycaffe_ok = 1 ]; then
    py tools/bench_hmc.py --preset lenet --gpu 0 --batches 1,16,64,256 --iterations 5 \
      --no-full-run --out "$out/bench_hmc_lenet_gpu.md" || fail "bench_hmc lenet"
    py tools/bench_hmc.py --preset alexnet --gpu 0 --batches 1,16,64 --iterations 2 \
      --out "$out/bench_hmc_alexnet_gpu.md" || fail "bench_hmc alexnet"
    # the chains in pycaffe's host arrays, as before, at the best batches above
    py tools/bench_hmc.py --preset lenet --gpu 0 --chains-on host --batches 256 --iterations 5 \
      --no-full-run --out "$out/bench_hmc_lenet_gpu_host.md" || fail "bench_hmc lenet host"
    py tools/bench_hmc.py --preset alexnet --gpu 0 --chains-on host --batches 64 --iterations 2 \
      --out "$out/bench_hmc_alexnet_gpu_host.md" || fail "bench_hmc alexnet host"
  else
    fail "bench_hmc needs pycaffe"
  fi
}

section_mnist() {
  section "mnist: Table 1 runs on the GPU (seeds $mnist_seeds)"
  if [ $pycaffe_ok = 1 ] && [ -d "$kit/payload/mnist" ]; then
    runs=$work/runs
    timeout "$mnist_timeout" "$work/py" tools/reproduce_mnist.py --gpu 0 --jobs 4 \
      --seeds "$mnist_seeds" --approaches dg,gg,gg_dg --runs-dir "$runs" \
      --data-dir "$kit/payload/mnist" --caffe "$work/caffe" --results-dir "$out" \
      > "$out/mnist.log" 2>&1 || fail "reproduce_mnist (see mnist.log)"
    tail -5 "$out/mnist.log"
    # logs, solvers, nets and done.json (the snapshots would not fit the way back)
    tar -czf "$out/mnist_runs.tar.gz" --exclude='*.caffemodel' --exclude='*.solverstate' \
      -C "$work" runs 2>/dev/null
  else
    fail "mnist needs pycaffe and the kit's payload/mnist"
  fi
}

for name in ${sections//,/ }; do
  case $name in
    gen|suite) cd "$src_root" || exit 1 ;;   # some upstream tests use paths relative to the source root
    *) cd "$repo" || exit 1 ;;
  esac
  "section_$name"
done
cd "$repo" || exit 1

echo "gpu_checks: results in $out after $(( $(date +%s) - started )) s (status $status)"
exit $status
