"""A pycaffe net from a NetParameter in memory: pycaffe's caffe.Net takes only a
file name, so the net is written to a temporary prototxt, loaded and the file
removed (written once here; the readers, probes and loss nets all call it)."""
import os
import tempfile


def net_from_param(param, phase=None, prefix="gencaffe_"):
    """caffe.Net of `param` (a caffe_pb2.NetParameter, a NetSpec's to_proto(),
    or prototxt text) in `phase` (default TEST)."""
    import caffe
    text = param if isinstance(param, str) else str(param)
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=".prototxt")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        return caffe.Net(path, caffe.TEST if phase is None else phase)
    finally:
        os.unlink(path)
