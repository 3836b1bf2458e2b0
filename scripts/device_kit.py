#!/usr/bin/env python3
"""Pack a CUDA build of Caffe, with pycaffe, so that a GPU machine that has the
CUDA toolkit and a Python but none of Caffe's libraries can run the project.

GPU machines without Caffe's libraries (docs/gpu.md) have nvcc, cuBLAS, cuRAND,
cuDNN 9 and a Python 3.12 with numpy 2, protobuf, scikit-image, but none of
Caffe's libraries (glog, protobuf C++, Boost, HDF5, OpenBLAS, ...); nothing can
be installed there and what travels is limited to 64 MiB. So the CUDA build is
made here (`make device-kit`: cuDNN on; no OpenCV, LevelDB or NCCL, whose
library closures are large) and this tool packs, into one .tar.xz:

  bin/caffe, bin/test.testbin,       the tools, with their RUNPATH
  bin/compute_image_mean
  lib/                               libcaffe and every shared library the
                                     binaries and pycaffe load, except the C
                                     library family and the CUDA toolkit's own
                                     (cuDNN included: the machine has those, in
                                     the same major version)
  python/caffe/                      pycaffe, its _caffe.so compiled here for
                                     the machine's Python (--python; Boost.Python
                                     for it built by scripts/build_boost_python.sh)
  wheels/                            Python wheels the machine lacks (--wheel)
  payload/                           extra files to carry (--add NAME=PATH)
  src/                               the test data upstream's tests read, at
                                     paths relative to the source tree
  manifest.json                      the absolute source path the tests were
                                     compiled with, CUDA version, Python, sizes

scripts/gpu_checks.sh unpacks it there and runs the checks.
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
                          "(make device-kit)") from None
    m = re.search(r'#define SOURCE_FOLDER "([^"]+)"', text)
    if not m:
        raise BundleError(f"no SOURCE_FOLDER in {config}")
    return m.group(1)


def check_cuda_build(build):
    cache = os.path.join(build, "CMakeCache.txt")
    try:
        text = open(cache).read()
    except OSError:
        raise BundleError(f"{cache} is missing: run `make device-kit`") from None
    if re.search(r"^CPU_ONLY:BOOL=ON", text, re.M):
        raise BundleError(f"{build} is a CPU-only build; the bundle needs a CUDA build")


def cuda_version(nvcc):
    if not os.path.isfile(nvcc):
        return "unknown"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


# The C++ runtime goes in a folder of its own: the bundled programs use it, but
# a Python importing pycaffe keeps its machine's own (newer) one, which its
# numpy and scipy were built against.
CXX_RUNTIME_PREFIXES = ("libstdc++.so", "libgcc_s.so")
PROGRAMS = {"caffe": "tools/caffe", "test.testbin": "test/test.testbin",
            "compute_image_mean": "tools/compute_image_mean"}
REQUIRED_PROGRAMS = ("caffe", "test.testbin")


def make_vars(path):
    """NAME = value lines of a CMake-generated flags.make."""
    values = {}
    with open(path) as handle:
        for line in handle:
            if " = " in line and not line.startswith("#"):
                name, value = line.split(" = ", 1)
                values[name.strip()] = value.strip()
    return values


def link_libraries(build):
    """What caffe.bin links (libcaffe, libcaffeproto.a and their dependencies),
    from CMake's own link line, with relative paths made absolute."""
    link = os.path.join(build, "caffe", "tools", "CMakeFiles", "caffe.bin.dir", "link.txt")
    with open(link) as handle:
        words = handle.read().split()
    words = words[words.index("caffe") + 1:]          # after "-o caffe"
    lib_dir = os.path.join(build, "caffe", "lib")
    return [w.replace("../lib/", lib_dir + "/") for w in words if not w.startswith("-Wl,-rpath")]


def python_paths(python):
    code = ("import sys, sysconfig, numpy; print('%d%d' % sys.version_info[:2]); "
            "print(sysconfig.get_paths()['include']); print(numpy.get_include()); "
            "print(sys.version.split()[0]); print(numpy.__version__)")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise BundleError(f"cannot ask {python} for its headers and numpy ({err}); the kit's "
                          "Python needs numpy installed (pip install numpy)") from None
    tag, include, numpy_include, version, numpy_version = out.stdout.split()
    return tag, include, numpy_include, version, numpy_version


def build_pycaffe(build, python, out_dir):
    """Compile pycaffe's _caffe.so for `python` against the build's libcaffe;
    returns (path of _caffe.so, directory of its Boost.Python, Python version).

    CMake's pycaffe target builds for the Python CMake found, with Debian's
    Boost.Python for it; the kit's Python may have neither, so _caffe.cpp is
    compiled here with the library target's own flags (flags.make) plus the
    Python and numpy headers, and linked as caffe.bin is (link.txt), without
    libpython (an extension module takes its symbols from the interpreter).
    """
    tag, include, numpy_include, version, numpy_version = python_paths(python)
    # kept in the build directory: a later kit reuses it (the script's stamp)
    boost_dir = os.path.join(build, "boost-python-" + tag)
    run = subprocess.run(["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "build_boost_python.sh"), python, boost_dir],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise BundleError("building Boost.Python for %s failed:\n%s" % (python, run.stderr[-2000:]))
    flags = make_vars(os.path.join(build, "caffe", "src", "caffe", "CMakeFiles", "caffe.dir",
                                   "flags.make"))
    source = os.path.join(source_root_of(build), "python", "caffe", "_caffe.cpp")
    obj = os.path.join(out_dir, "_caffe.o")
    target = os.path.join(out_dir, "_caffe.so")
    compile_cmd = (["c++"] + flags.get("CXX_FLAGS", "").split() + flags["CXX_DEFINES"].split()
                   + ["-DBOOST_PYTHON_DYN_LINK", "-DBOOST_ALLOW_DEPRECATED_HEADERS"]
                   + flags["CXX_INCLUDES"].split() + ["-I" + include, "-I" + numpy_include,
                                                      "-c", source, "-o", obj])
    os.makedirs(out_dir, exist_ok=True)
    # RUNPATH: the kit's lib/ beside python/ first, then this build's folders
    rpath = ":".join(["$ORIGIN/../../lib", os.path.abspath(os.path.join(build, "caffe", "lib")),
                      os.path.abspath(boost_dir)])
    link_cmd = (["c++", "-shared", "-Wl,-soname,_caffe.so", "-Wl,-rpath," + rpath, "-o", target,
                 obj]
                + link_libraries(build) + ["-L" + boost_dir, "-lboost_python" + tag])
    for cmd in (compile_cmd, link_cmd):
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise BundleError("building pycaffe failed:\n$ %s\n%s" % (" ".join(cmd),
                                                                    run.stderr[-3000:]))
    return target, boost_dir, version, numpy_version


def build_bundle(build, out_dir, cuda_root, require_cuda=True, xz_preset=6,
                 size_limit=CARRY_LIMIT, python=None, wheels=(), extra=None,
                 archive_name="kit.tar.xz"):
    """Write OUT_DIR/<archive_name>; returns (path, manifest, size in bytes).

    python: also build and pack pycaffe for this interpreter. wheels: .whl
    files to carry. extra: {name: path} files or folders to carry under
    payload/. require_cuda=False packs a CPU build too (the tests do, to check
    the packing on real binaries where no CUDA build exists). An archive over
    size_limit (None: no limit) is refused and not kept.
    """
    if require_cuda:
        check_cuda_build(build)
    binaries = {name: os.path.join(build, "caffe", rel) for name, rel in PROGRAMS.items()}
    for name in REQUIRED_PROGRAMS:
        if not os.path.isfile(binaries[name]):
            raise BundleError(f"{binaries[name]} is missing: build the targets caffe.bin and "
                              "test.testbin first (make device-kit does)")
    binaries = {name: path for name, path in binaries.items() if os.path.isfile(path)}
    extra = extra or {}
    for name, path in extra.items():
        if not os.path.exists(path):
            raise BundleError(f"--add {name}={path}: {path} does not exist")
    for wheel in wheels:
        if not wheel.endswith(".whl") or not os.path.isfile(wheel):
            raise BundleError(f"--wheel {wheel}: not a .whl file")
    src_root = source_root_of(build)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage.", dir=out_dir) as stage:
        pycaffe = None
        env = dict(os.environ)
        if python:
            pycaffe = build_pycaffe(build, python, os.path.join(stage, "pybuild"))
            env["LD_LIBRARY_PATH"] = pycaffe[1] + os.pathsep + env.get("LD_LIBRARY_PATH", "")
        loaded = list(binaries.values()) + ([pycaffe[0]] if pycaffe else [])
        ldd = [subprocess.run(["ldd", p], capture_output=True, text=True, check=True,
                              env=env).stdout for p in loaded]
        libs = libraries_to_bundle(ldd, cuda_root)
        for sub in ("bin", "lib", "lib/cxx-runtime", "src"):
            os.makedirs(os.path.join(stage, "kit", sub))
        kit = os.path.join(stage, "kit")
        for name, path in binaries.items():
            shutil.copy2(path, os.path.join(kit, "bin", name))
        for soname, path in libs.items():
            sub = "lib/cxx-runtime" if soname.startswith(CXX_RUNTIME_PREFIXES) else "lib"
            shutil.copy2(path, os.path.join(kit, sub, soname))   # follows links
        for rel in TEST_DATA_DIRS:
            src = os.path.join(src_root, rel)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(kit, "src", rel))
        if pycaffe:
            package = os.path.join(kit, "python", "caffe")
            shutil.copytree(os.path.join(src_root, "python", "caffe"), package,
                            ignore=shutil.ignore_patterns("_caffe.so", "test", "__pycache__",
                                                          "*.pyc", "caffe_pb2.py"))
            shutil.copy2(pycaffe[0], os.path.join(package, "_caffe.so"))
            # caffe.proto: what pycaffe's CMake target makes in the source tree
            os.makedirs(os.path.join(package, "proto"), exist_ok=True)
            open(os.path.join(package, "proto", "__init__.py"), "a").close()
            shutil.copy2(os.path.join(build, "caffe", "include", "caffe", "proto",
                                      "caffe_pb2.py"),
                         os.path.join(package, "proto", "caffe_pb2.py"))
        for wheel in wheels:
            os.makedirs(os.path.join(kit, "wheels"), exist_ok=True)
            shutil.copy2(wheel, os.path.join(kit, "wheels"))
        for name, path in extra.items():
            dest = os.path.join(kit, "payload", name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            (shutil.copytree if os.path.isdir(path) else shutil.copy2)(path, dest)
        unpacked = sum(os.path.getsize(os.path.join(d, f))
                       for d, _, files in os.walk(kit) for f in files)
        manifest = {
            "source_root": src_root,
            "cuda_version": cuda_version(os.path.join(cuda_root, "bin", "nvcc")),
            "cuda_libraries_needed": cuda_libraries(ldd, cuda_root),
            "bundled_libraries": sorted(libs),
            "programs": sorted(binaries),
            "python": pycaffe[2] if pycaffe else None,
            "numpy_built_against": pycaffe[3] if pycaffe else None,
            "wheels": sorted(os.path.basename(w) for w in wheels),
            "payload": sorted(extra),
            "unpacked_bytes": unpacked,
        }
        with open(os.path.join(kit, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        packed = os.path.join(stage, archive_name)
        with tarfile.open(packed, mode="w:xz", preset=xz_preset) as tar:
            for entry in sorted(os.listdir(kit)):
                tar.add(os.path.join(kit, entry), arcname=f"kit/{entry}")
        size = os.path.getsize(packed)
        if size_limit is not None and size > size_limit:
            raise BundleError(f"the kit is {size / 2**20:.1f} MiB, over the "
                              f"{size_limit / 2**20:.0f} MiB the device tool carries: "
                              "carry less (--add), or build with fewer optional libraries")
        archive = os.path.join(out_dir, archive_name)
        os.replace(packed, archive)     # same file system: the old kit stays until now
    return archive, manifest, size


def parse_add(values):
    extra = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or os.path.isabs(name) or ".." in name.split("/"):
            raise BundleError(f"--add {value}: expected NAME=PATH")
        extra[name] = path
    return extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build/cuda-kit",
                        help="CUDA build directory with caffe and test.testbin built "
                             "(default: build/cuda-kit, what `make device-kit` builds)")
    parser.add_argument("--out", default=".device-kit",
                        help="directory for kit.tar.xz; git ignores the default "
                             "(default: .device-kit)")
    parser.add_argument("--cuda-root", default=os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                        help="CUDA toolkit root; its libraries (cuDNN too) are left out of "
                             "the kit (default: $CUDA_HOME or /usr/local/cuda)")
    parser.add_argument("--python",
                        help="build pycaffe for this interpreter (the GPU machine's version, "
                             "e.g. python3.12; it needs its headers and numpy); without it the "
                             "kit has no pycaffe")
    parser.add_argument("--wheel", action="append", default=[], metavar="WHL",
                        help="a .whl to carry for the machine's Python (repeatable)")
    parser.add_argument("--add", action="append", default=[], metavar="NAME=PATH",
                        help="a file or folder to carry as payload/NAME (repeatable)")
    args = parser.parse_args(argv)
    try:
        archive, manifest, size = build_bundle(args.build, args.out, args.cuda_root,
                                               python=args.python, wheels=args.wheel,
                                               extra=parse_add(args.add))
    except BundleError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{archive}: {size / 2**20:.1f} MiB ({manifest['unpacked_bytes'] / 2**20:.1f} MiB "
          f"unpacked), {len(manifest['bundled_libraries'])} libraries, pycaffe for Python "
          f"{manifest['python'] or '-'}; needs CUDA {manifest['cuda_version']} there: "
          f"{', '.join(manifest['cuda_libraries_needed'])}")
    print(f"on the GPU machine: carry {args.out} and run `bash scripts/gpu_checks.sh {args.out}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
