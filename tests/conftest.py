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

# OpenBLAS's kernels as the tools choose them (gencaffe.blas_core), before any
# test loads pycaffe: the tests' own nets and the tools they start agree
from gencaffe import blas_core  # noqa: E402
blas_core.choose(os.path.join(BUILD, "caffe", "tools", "caffe"))


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


def png_rgb(bgr_chw):
    import io
    import numpy as np
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgr_chw.transpose(1, 2, 0)[..., ::-1])).save(buffer, "PNG")
    return buffer.getvalue()


def write_lmdb(path, images, labels, encoded=False):
    """An LMDB of Caffe Datums, keys 00000000...: raw uint8 C x H x W (BGR), or
    with `encoded` PNG (lossless, so OpenCV gives back exactly `image`)."""
    import lmdb
    from caffe.proto import caffe_pb2
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(zip(images, labels)):
            datum = caffe_pb2.Datum()
            datum.label = int(label)
            if encoded:   # PNG is lossless: OpenCV must give back exactly `image` (BGR)
                datum.data, datum.encoded = png_rgb(image), True
            else:
                datum.channels, datum.height, datum.width = image.shape
                datum.data = image.tobytes()
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()
