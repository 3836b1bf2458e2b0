# Generative Caffe: Caffe-style entry points.
#
#   make deps     Debian + Python packages (idempotent)
#   make          CPU build: libcaffe, tools (caffe, ...), pycaffe   -> build/cpu
#   make test     build, then all upstream Caffe CPU gtests + ours, then pytest tests/
#   make cuda     CUDA build (sm_90 + PTX 90; cuDNN 9, NCCL)         -> build/cuda
#                 (USE_CUDNN=OFF: Caffe's own CUDA layers instead of cuDNN)
#   make test-gpu the same suite against build/cuda (GPU tests run where a GPU is)
#   make device-kit  a lean CUDA build (cuDNN) with pycaffe for the GPU machine's
#                 Python, packed for a machine without Caffe's libraries
#                 (scripts/device_kit.py; run there: scripts/gpu_checks.sh)
#   make demo     MNIST: data, GG pre-training + DG tuning, test error, HMC samples
#   make install  puts `caffe` on PATH and makes `import caffe` work (PREFIX=~/.local)
#   make bench    benchmarks (results/ files)
#   make export-patch  GenerativeLoss as a patch series for another Caffe tree
#                 -> dist/generative-loss-patch/ (tools/export_patch.py)
#
# Upstream Caffe is fetched, checksum-verified and patched into
# <build dir>/caffe-src by scripts/prepare_source.sh; nothing of it is committed.

PYTHON ?= python3
PY := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
ifeq ($(PY),)
$(error $(PYTHON) not found: set PYTHON=/path/to/python3)
endif
PY_INCLUDE := $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_LIBRARY := $(shell $(PY) -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')
JOBS ?= $(shell nproc)
PREFIX ?= $(HOME)/.local
CPU_BUILD ?= build/cpu
CUDA_BUILD ?= build/cuda
KIT_BUILD ?= build/cuda-kit
KIT_OUT ?= .device-kit
# the GPU machines the kit is for run Python 3.12 (docs/gpu.md); pycaffe in
# the kit is compiled for it (the interpreter here needs its headers and numpy)
KIT_PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3; do \
  $$p -c 'import sys' 2>/dev/null && { $$p -c 'import sys; print(sys.executable)'; break; }; done)
# pycaffe is compiled against this numpy (no newer than the machine's: 2.5.2)
KIT_NUMPY ?= numpy==2.5.2
# Python packages the machine's Python lacks, carried as wheels
KIT_WHEELS ?= lmdb==3.0.0
CUDA_ARCH_BIN ?= 90
CUDA_ARCH_PTX ?= 90
CCACHE := $(shell command -v ccache 2>/dev/null)

COMMON_CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=Release -DBLAS=Open \
  -DBUILD_python=ON -Dpython_version=3 -DBUILD_docs=OFF -DBUILD_matlab=OFF \
  -DPYTHON_EXECUTABLE=$(PY) -DPYTHON_INCLUDE_DIR=$(PY_INCLUDE) -DPYTHON_LIBRARY=$(PY_LIBRARY) \
  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE))
CPU_CMAKE_FLAGS = -DCPU_ONLY=ON
# cuDNN (>= 8; upstream's cuDNN layers ported to cuDNN 9 by the cudnn patches
# in caffe/patches): ON by default, USE_CUDNN=OFF for Caffe's own CUDA layers.
USE_CUDNN ?= ON
CUDA_CMAKE_FLAGS = -DCPU_ONLY=OFF -DUSE_CUDNN=$(USE_CUDNN) -DUSE_NCCL=ON \
  -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$(CUDA_ARCH_BIN)" "-DCUDA_ARCH_PTX=$(CUDA_ARCH_PTX)"

# the GPU-machine kit: a CUDA build with only the libraries the tests need
# (no OpenCV, LevelDB or NCCL: their closures are large; pycaffe is compiled
# by scripts/device_kit.py for the kit's Python), so that it and its shared-
# library closure fit the device tool's 64 MiB carry limit
KIT_CMAKE_FLAGS = -DCPU_ONLY=OFF -DUSE_CUDNN=ON -DUSE_NCCL=OFF \
  -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DBUILD_python=OFF -DBUILD_python_layer=OFF \
  -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$(CUDA_ARCH_BIN)" "-DCUDA_ARCH_PTX=$(CUDA_ARCH_PTX)"

BUILD_TARGETS = all

.PHONY: all cpu deps test cuda test-gpu device-kit demo install bench clean distclean

all: cpu

deps:
	scripts/install_deps.sh $(PY)

# configure once; later builds re-run CMake by themselves when patches or the
# overlay file list change (see CMakeLists.txt)
$(CPU_BUILD)/CMakeCache.txt:
	cmake -S . -B $(CPU_BUILD) $(COMMON_CMAKE_FLAGS) $(CPU_CMAKE_FLAGS)

$(CUDA_BUILD)/CMakeCache.txt:
	cmake -S . -B $(CUDA_BUILD) $(COMMON_CMAKE_FLAGS) $(CUDA_CMAKE_FLAGS)

$(KIT_BUILD)/CMakeCache.txt:
	cmake -S . -B $(KIT_BUILD) $(COMMON_CMAKE_FLAGS) $(KIT_CMAKE_FLAGS)

cpu: $(CPU_BUILD)/CMakeCache.txt
	scripts/prepare_source.sh $(CPU_BUILD)/caffe-src
	cmake --build $(CPU_BUILD) -j $(JOBS) --target $(BUILD_TARGETS)

test: deps
	$(MAKE) cpu
	cmake --build $(CPU_BUILD) -j $(JOBS) --target test.testbin
	$(PY) scripts/run_tests.py --build $(CPU_BUILD)

cuda: deps $(CUDA_BUILD)/CMakeCache.txt
	@grep -qx 'USE_CUDNN:BOOL=$(USE_CUDNN)' $(CUDA_BUILD)/CMakeCache.txt || \
	  cmake -S . -B $(CUDA_BUILD) -DUSE_CUDNN=$(USE_CUDNN)
	scripts/prepare_source.sh $(CUDA_BUILD)/caffe-src
	cmake --build $(CUDA_BUILD) -j $(JOBS) --target $(BUILD_TARGETS)

test-gpu: cuda
	cmake --build $(CUDA_BUILD) -j $(JOBS) --target test.testbin
	$(PY) scripts/run_tests.py --build $(CUDA_BUILD)

device-kit: deps $(KIT_BUILD)/CMakeCache.txt
	@test -n "$(KIT_PYTHON)" || { echo "make device-kit: no Python 3.12 found; set KIT_PYTHON=/path/to/python3.12 (with its headers and numpy)"; exit 1; }
	scripts/prepare_source.sh $(KIT_BUILD)/caffe-src
	cmake --build $(KIT_BUILD) -j $(JOBS) --target caffe.bin compute_image_mean test.testbin
	$(KIT_PYTHON) -c 'import numpy' 2>/dev/null || $(KIT_PYTHON) -m pip install -q $(KIT_NUMPY)
	rm -rf $(KIT_BUILD)/wheels && $(PY) -m pip download -q --no-deps --only-binary=:all: \
	  --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d $(KIT_BUILD)/wheels $(KIT_WHEELS)
	# the benchmark nets come from the generator, which needs pycaffe: the CPU build's
	$(MAKE) cpu
	CAFFE_BUILD_DIR=$(CPU_BUILD) $(PY) tools/bench_nets.py --prepare $(KIT_BUILD)/bench_nets \
	  --lmdb-source /tmp/gencaffe-bench-lmdb
	$(PY) scripts/device_kit.py --build $(KIT_BUILD) --out $(KIT_OUT) --python $(KIT_PYTHON) \
	  $$(for w in $(KIT_BUILD)/wheels/*.whl; do echo --wheel $$w; done) \
	  --add bench_nets=$(KIT_BUILD)/bench_nets \
	  $(if $(wildcard data/mnist/mnist_train_lmdb),$(foreach s,train test,--add mnist/mnist_$(s)_lmdb=data/mnist/mnist_$(s)_lmdb)) $(KIT_ADD)

demo: deps
	$(MAKE) cpu
	$(PY) tools/demo.py --build $(CPU_BUILD)

# ImageNet pipeline at smoke size on the CPU (docs/imagenet.md): the stand-in
# data and its LMDBs only, or everything (data, AlexNet/ZF x DG/GG/GG+DG, 5-crop
# eval, results/imagenet_smoke.md + .png); resumable, re-run to continue
.PHONY: imagenet-standin imagenet-smoke
imagenet-standin: deps
	$(MAKE) cpu
	CAFFE_BUILD_DIR=$(CPU_BUILD) $(PY) tools/imagenet_smoke.py --data-only

imagenet-smoke: deps
	$(MAKE) cpu
	CAFFE_BUILD_DIR=$(CPU_BUILD) $(PY) tools/imagenet_smoke.py --caffe $(CPU_BUILD)/caffe/tools/caffe

install: cpu
	$(PY) scripts/install_env.py --build $(CPU_BUILD) --prefix $(PREFIX)

bench: cpu
	$(PY) tools/bench_generative_loss.py --build $(CPU_BUILD)

# GenerativeLoss as a git am / patch -p1 series for a BVLC-layout Caffe tree,
# generated from the committed layer files and caffe/patches (docs/export_patch.md);
# tested by tests/test_export_patch.py
EXPORT_OUT ?= dist/generative-loss-patch
.PHONY: export-patch
export-patch:
	$(PY) tools/export_patch.py --out $(EXPORT_OUT)

clean:
	rm -rf build

distclean: clean
	rm -rf data runs demo
