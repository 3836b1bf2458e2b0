#!/usr/bin/env bash
# What a machine has that Caffe's GPU path depends on: GPU, driver, CUDA,
# cuDNN and NCCL (toolkit or Python wheels), C++ runtime, Python and its
# numpy/protobuf. Prints plain text; used by scripts/gpu_checks.sh (-> $OUT/environment.txt).
set -u
section() { printf '\n== %s\n' "$1"; }
section "machine"
uname -srm; nproc; free -g | sed -n 2p; df -h / /tmp 2>/dev/null | tail -n +2
section "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
nvidia-smi 2>&1 | sed -n 3p
section "CUDA toolkit"
command -v nvcc && nvcc --version | tail -n 2
ls -d /usr/local/cuda* 2>/dev/null
ls /usr/local/cuda/lib64 2>/dev/null | grep -E 'libcu(blas|rand|dart|dnn)|libnccl' | tr '\n' ' '; echo
section "cuDNN and NCCL anywhere"
for name in 'libcudnn.so*' 'libcudnn_cnn.so*' 'libnccl.so*'; do
  find / -xdev -name "$name" -not -path '/proc/*' 2>/dev/null | head -5
done
find / -xdev -name 'cudnn_version*.h' -not -path '/proc/*' 2>/dev/null | head -3 | while read -r h; do
  echo "$h: $(grep -E '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$h" | awk '{printf "%s ", $3}')"
done
section "C/C++ runtime"
ldd --version 2>&1 | head -1
for lib in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /lib/x86_64-linux-gnu/libstdc++.so.6; do
  [ -e "$lib" ] && { echo "$lib -> $(readlink -f "$lib")"; strings "$lib" 2>/dev/null | grep -E '^GLIBCXX_3\.4\.[0-9]+$' | sort -V | tail -1; break; }
done
command -v g++ && g++ --version | head -1
command -v cmake && cmake --version | head -1
section "Python"
for py in python3 /usr/bin/python3; do
  command -v "$py" >/dev/null || continue
  "$py" - <<'PY' 2>&1
import sys, sysconfig, os
print(sys.executable, sys.version.split()[0])
inc = sysconfig.get_paths()["include"]
print("Python.h:", os.path.exists(os.path.join(inc, "Python.h")), inc)
for name in ("numpy", "google.protobuf", "skimage", "scipy", "PIL", "matplotlib", "lmdb", "six", "tqdm", "pytest", "hypothesis", "cv2", "h5py"):
    try:
        module = __import__(name, fromlist=["__version__"])
        print(" ", name, getattr(module, "__version__", "?"), os.path.dirname(module.__file__))
    except Exception as err:
        print(" ", name, "MISSING", type(err).__name__)
PY
done
