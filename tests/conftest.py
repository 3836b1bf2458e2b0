"""Shared pytest set-up: make our Python package and the built pycaffe importable.

`make test` sets PYTHONPATH already; this lets a plain `pytest tests/` work after
`make` too. CAFFE_BUILD_DIR picks another build (default build/cpu).
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CAFFE_BUILD_DIR", os.path.join(REPO, "build", "cpu"))

for path in (os.path.join(BUILD, "caffe-src", "python"), os.path.join(REPO, "python")):
    if os.path.isdir(path) and path not in sys.path:
        sys.path.insert(0, path)
# last, for tests that load a tool by its path: a tool's first import is tools/repo_paths.py
sys.path.append(os.path.join(REPO, "tools"))

os.environ.setdefault("GLOG_minloglevel", "2")  # keep Caffe's INFO logs out of test output


def gpu_available():
    """True when the build under test has CUDA and a GPU is visible."""
    import subprocess
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            if "CPU_ONLY:BOOL=OFF" not in f.read():
                return False
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def lmdb_items(path):
    """Every (key, value) of an LMDB as bytes, in key order: for comparing
    databases byte for byte."""
    import lmdb
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
    env.close()
    return items
