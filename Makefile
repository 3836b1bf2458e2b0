# Generative Caffe: Caffe-style entry points.
#
#   make deps     Debian + Python packages (idempotent)
#   make          CPU build: libcaffe, tools (caffe, ...), pycaffe   -> build/cpu
#   make test     build, then all upstream Caffe CPU gtests + ours, then pytest tests/
#   make cuda     CUDA build (sm_90 + PTX 90; no cuDNN)             -> build/cuda
#   make test-gpu the same suite against build/cuda (GPU tests run where a GPU is)
#   make device-bundle  a lean CUDA build packed for a GPU machine without
#                 Caffe's libraries (tools/device_bundle.py, tools/gpu_checks.sh)
#   make demo     MNIST: data, GG pre-training + DG tuning, test error, HMC samples
#   make install  puts `caffe` on PATH and makes `import caffe` work (PREFIX=~/.local)
#   make bench    benchmarks (results/ files)
#
# Upstream Caffe is fetched, checksum-verified and patched into
# <build dir>/caffe-src by tools/prepare_source.sh; nothing of it is committed.

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
DEVICE_BUILD ?= build/cuda-device
DEVICE_BUNDLE ?= .device-bundle
CUDA_ARCH_BIN ?= 90
CUDA_ARCH_PTX ?= 90
CCACHE := $(shell command -v ccache 2>/dev/null)

COMMON_CMAKE_FLAGS = -DCMAKE_BUILD_TYPE=Release -DBLAS=Open \
  -DBUILD_python=ON -Dpython_version=3 -DBUILD_docs=OFF -DBUILD_matlab=OFF \
  -DPYTHON_EXECUTABLE=$(PY) -DPYTHON_INCLUDE_DIR=$(PY_INCLUDE) -DPYTHON_LIBRARY=$(PY_LIBRARY) \
  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE))
CPU_CMAKE_FLAGS = -DCPU_ONLY=ON
# cuDNN 9 no longer has cudnnGetConvolution*Algorithm, which upstream's cuDNN
# layers call; the CUDA build uses Caffe's own CUDA convolution instead.
CUDA_CMAKE_FLAGS = -DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DUSE_NCCL=ON \
  -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$(CUDA_ARCH_BIN)" "-DCUDA_ARCH_PTX=$(CUDA_ARCH_PTX)"

# the GPU-machine bundle: a CUDA build with only the libraries the tests need
# (no OpenCV, LevelDB, NCCL or pycaffe), so that it and its shared-library
# closure fit the device tool's 64 MiB carry limit
DEVICE_CMAKE_FLAGS = -DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DUSE_NCCL=OFF \
  -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DBUILD_python=OFF -DBUILD_python_layer=OFF \
  -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$(CUDA_ARCH_BIN)" "-DCUDA_ARCH_PTX=$(CUDA_ARCH_PTX)"

BUILD_TARGETS = all

.PHONY: all cpu deps test cuda test-gpu device-bundle demo install bench clean distclean

all: cpu

deps:
	tools/install_deps.sh $(PY)

# configure once; later builds re-run CMake by themselves when patches or the
# overlay file list change (see CMakeLists.txt)
$(CPU_BUILD)/CMakeCache.txt:
	cmake -S . -B $(CPU_BUILD) $(COMMON_CMAKE_FLAGS) $(CPU_CMAKE_FLAGS)

$(CUDA_BUILD)/CMakeCache.txt:
	cmake -S . -B $(CUDA_BUILD) $(COMMON_CMAKE_FLAGS) $(CUDA_CMAKE_FLAGS)

$(DEVICE_BUILD)/CMakeCache.txt:
	cmake -S . -B $(DEVICE_BUILD) $(COMMON_CMAKE_FLAGS) $(DEVICE_CMAKE_FLAGS)

cpu: $(CPU_BUILD)/CMakeCache.txt
	tools/prepare_source.sh $(CPU_BUILD)/caffe-src
	cmake --build $(CPU_BUILD) -j $(JOBS) --target $(BUILD_TARGETS)

test: deps
	$(MAKE) cpu
	cmake --build $(CPU_BUILD) -j $(JOBS) --target test.testbin
	$(PY) tools/run_tests.py --build $(CPU_BUILD)

cuda: deps $(CUDA_BUILD)/CMakeCache.txt
	tools/prepare_source.sh $(CUDA_BUILD)/caffe-src
	cmake --build $(CUDA_BUILD) -j $(JOBS) --target $(BUILD_TARGETS)

test-gpu: cuda
	cmake --build $(CUDA_BUILD) -j $(JOBS) --target test.testbin
	$(PY) tools/run_tests.py --build $(CUDA_BUILD)

device-bundle: deps $(DEVICE_BUILD)/CMakeCache.txt
	tools/prepare_source.sh $(DEVICE_BUILD)/caffe-src
	cmake --build $(DEVICE_BUILD) -j $(JOBS) --target caffe.bin test.testbin
	$(PY) tools/device_bundle.py --build $(DEVICE_BUILD) --out $(DEVICE_BUNDLE)

demo: deps
	$(MAKE) cpu
	$(PY) tools/demo.py --build $(CPU_BUILD)

# ImageNet pipeline at smoke size on the CPU (README, "ImageNet"): the stand-in
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
	$(PY) tools/install_env.py --build $(CPU_BUILD) --prefix $(PREFIX)

bench: cpu
	$(PY) tools/bench_generative_loss.py --build $(CPU_BUILD)

clean:
	rm -rf build

distclean: clean
	rm -rf data runs demo
