"""Make the built pycaffe importable from the repo's tools without PYTHONPATH."""
import os
import sys


def add_build_pycaffe(repo):
    """Put <build>/caffe-src/python on sys.path (build = $CAFFE_BUILD_DIR or
    <repo>/build/cpu, as in tests/conftest.py); return that path or None."""
    build = os.environ.get("CAFFE_BUILD_DIR", os.path.join(repo, "build", "cpu"))
    path = os.path.join(build, "caffe-src", "python")
    if not os.path.isdir(path):
        return None
    if path not in sys.path:
        sys.path.insert(0, path)
    # before pycaffe loads OpenBLAS: its best kernels on a CPU it does not know
    # (blas_core), for this process and the caffe processes it starts
    from . import blas_core
    blas_core.choose(os.path.join(build, "caffe", "tools", "caffe"))
    return path


def require_caffe_pb2():
    """Import caffe_pb2 or exit with a message that says what to do."""
    try:
        from caffe.proto import caffe_pb2
    except ImportError as err:
        sys.exit("error: cannot import caffe.proto.caffe_pb2 (%s); build Caffe first or set "
                 "CAFFE_BUILD_DIR / PYTHONPATH to a built pycaffe" % err)
    return caffe_pb2
