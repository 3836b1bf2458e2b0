#!/usr/bin/env python3
"""Pack a CUDA build so that a GPU machine with only the CUDA toolkit can run it.

The lent GPU machines (see README, "On a GPU machine") have nvcc, cuBLAS and
cuRAND but none of Caffe's other libraries (glog, protobuf, Boost, HDF5,
OpenBLAS, ...), nothing can be installed there, and what travels is limited to
64 MiB. So the CUDA build is made here (`make device-bundle`, a build without
OpenCV, LevelDB, NCCL or pycaffe) and this tool packs, into one .tar.xz:

  bin/caffe, bin/test.testbin        the tools, with their RUNPATH
  lib/                               libcaffe and every shared library the two
                                     binaries load, except the C library family
                                     and the CUDA toolkit's own (the machine has
                                     those, in the same major version)
  src/                               the test data upstream's tests read, at
                                     paths relative to the source tree
  manifest.json                      the absolute source path the tests were
                                     compiled with, CUDA version, sizes

tools/gpu_checks.sh unpacks it there and runs the checks.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

CARRY_LIMIT = 64 * 2**20
# Libraries every Linux machine has in a compatible (newer or equal) version:
# bundling them would break the dynamic loader there.
SYSTEM_LIB_PREFIXES = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libdl.so",
                       "libpthread.so", "librt.so", "libresolv.so", "libutil.so",
                       "libcuda.so", "libnvidia-")
# Source-tree paths the upstream tests read (relative to the source root).
TEST_DATA_DIRS = ("src/caffe/test/test_data", "examples/images")

LDD_LINE = re.compile(r"^\s*(\S+)\s*(?:=>\s*(\S+|not found))?\s*(?:\(0x[0-9a-f]+\))?\s*$")


class BundleError(Exception):
    """A problem the user must fix before a bundle can be made."""


def parse_ldd(text):
    """[(soname, resolved path or None)] from `ldd` output; None = not found.

    Lines without '=>' are the vdso or the loader (no file to copy) and come
    back with their own name as the path when it is absolute.
    """
    libs = []
    for line in text.splitlines():
        m = LDD_LINE.match(line)
        if not m:
            continue
        name, target = m.group(1), m.group(2)
        if target is None:
            libs.append((os.path.basename(name), name if name.startswith("/") else None))
        elif target == "not found":
            libs.append((name, None))
        else:
            libs.append((name, target))
    return libs


def is_system_lib(soname):
    return soname.startswith(SYSTEM_LIB_PREFIXES)


def is_cuda_toolkit_lib(path, cuda_root):
    real = os.path.realpath(path)
    return real.startswith(os.path.realpath(cuda_root) + os.sep)


def libraries_to_bundle(ldd_outputs, cuda_root):
    """Shared libraries to copy: {soname: path}; raises on an unresolved one."""
    chosen, missing = {}, []
    for text in ldd_outputs:
        for soname, path in parse_ldd(text):
            if is_system_lib(soname):
                continue
            if path is None:
                missing.append(soname)
                continue
            if is_cuda_toolkit_lib(path, cuda_root):
                continue
            chosen.setdefault(soname, path)
    if missing:
        raise BundleError("ldd cannot resolve " + ", ".join(sorted(set(missing)))
                          + ": is the build complete and the library path set?")
    return chosen


def cuda_libraries(ldd_outputs, cuda_root):
    """Sonames the binaries take from the CUDA toolkit (the machine must have them)."""
    names = set()
    for text in ldd_outputs:
        for soname, path in parse_ldd(text):
            if path and not is_system_lib(soname) and is_cuda_toolkit_lib(path, cuda_root):
                names.add(soname)
    return sorted(names)


def source_root_of(build):
    """The source tree the build was compiled from (the tests hold this path)."""
    config = os.path.join(build, "caffe", "caffe_config.h")
    try:
        text = open(config).read()
    except OSError:
        raise BundleError(f"{config} is missing: configure and build first "
                          "(make device-bundle)") from None
    m = re.search(r'#define SOURCE_FOLDER "([^"]+)"', text)
    if not m:
        raise BundleError(f"no SOURCE_FOLDER in {config}")
    return m.group(1)


def check_cuda_build(build):
    cache = os.path.join(build, "CMakeCache.txt")
    try:
        text = open(cache).read()
    except OSError:
        raise BundleError(f"{cache} is missing: run `make device-bundle`") from None
    if re.search(r"^CPU_ONLY:BOOL=ON", text, re.M):
        raise BundleError(f"{build} is a CPU-only build; the bundle needs a CUDA build")


def cuda_version(nvcc):
    if not os.path.isfile(nvcc):
        return "unknown"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def build_bundle(build, out_dir, cuda_root, require_cuda=True, xz_preset=6,
                 size_limit=CARRY_LIMIT):
    """Write OUT_DIR/bundle.tar.xz; returns (path, manifest, size in bytes).

    require_cuda=False packs a CPU build too (the tests do, to check the packing
    on real binaries where no CUDA build exists). An archive over size_limit
    (None: no limit) is refused and not kept.
    """
    if require_cuda:
        check_cuda_build(build)
    binaries = {"caffe": os.path.join(build, "caffe", "tools", "caffe"),
                "test.testbin": os.path.join(build, "caffe", "test", "test.testbin")}
    for name, path in binaries.items():
        if not os.path.isfile(path):
            raise BundleError(f"{path} is missing: build the targets caffe.bin and "
                              "test.testbin first (make device-bundle does)")
    ldd = [subprocess.run(["ldd", p], capture_output=True, text=True, check=True).stdout
           for p in binaries.values()]
    libs = libraries_to_bundle(ldd, cuda_root)
    src_root = source_root_of(build)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage.", dir=out_dir) as stage:
        for sub in ("bin", "lib", "src"):
            os.makedirs(os.path.join(stage, sub))
        for name, path in binaries.items():
            shutil.copy2(path, os.path.join(stage, "bin", name))
        for soname, path in libs.items():
            shutil.copy2(path, os.path.join(stage, "lib", soname))   # follows links
        for rel in TEST_DATA_DIRS:
            src = os.path.join(src_root, rel)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(stage, "src", rel))
        unpacked = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, files in os.walk(stage) for f in files)
        manifest = {
            "source_root": src_root,
            "cuda_version": cuda_version(os.path.join(cuda_root, "bin", "nvcc")),
            "cuda_libraries_needed": cuda_libraries(ldd, cuda_root),
            "bundled_libraries": sorted(libs),
            "unpacked_bytes": unpacked,
        }
        with open(os.path.join(stage, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        packed = os.path.join(stage, "bundle.tar.xz")
        with tarfile.open(packed, mode="w:xz", preset=xz_preset) as tar:
            for entry in sorted(os.listdir(stage)):
                if entry != "bundle.tar.xz":
                    tar.add(os.path.join(stage, entry), arcname=f"bundle/{entry}")
        size = os.path.getsize(packed)
        if size_limit is not None and size > size_limit:
            raise BundleError(f"the bundle is {size / 2**20:.1f} MiB, over the "
                              f"{size_limit / 2**20:.0f} MiB the device tool carries: "
                              "build with fewer optional libraries (make device-bundle)")
        archive = os.path.join(out_dir, "bundle.tar.xz")
        os.replace(packed, archive)     # same file system: the old bundle stays until now
    return archive, manifest, size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build/cuda-device",
                        help="CUDA build directory with caffe and test.testbin built "
                             "(default: build/cuda-device, what `make device-bundle` builds)")
    parser.add_argument("--out", default=".device-bundle",
                        help="directory for bundle.tar.xz; git ignores the default "
                             "(default: .device-bundle)")
    parser.add_argument("--cuda-root", default=os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                        help="CUDA toolkit root; its libraries are left out of the bundle "
                             "(default: $CUDA_HOME or /usr/local/cuda)")
    args = parser.parse_args(argv)
    try:
        archive, manifest, size = build_bundle(args.build, args.out, args.cuda_root)
    except BundleError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{archive}: {size / 2**20:.1f} MiB ({manifest['unpacked_bytes'] / 2**20:.1f} MiB "
          f"unpacked), {len(manifest['bundled_libraries'])} libraries; needs CUDA "
          f"{manifest['cuda_version']} there: {', '.join(manifest['cuda_libraries_needed'])}")
    print(f"on the GPU machine: carry {args.out} and run `bash tools/gpu_checks.sh {args.out}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
