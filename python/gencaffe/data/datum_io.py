"""Read what Caffe's image tools write: Datum LMDBs (raw or encoded) and mean.binaryproto.

For checks and tests; training and evaluation read the LMDBs through Caffe's
own Data layer. Encoded Datums are decoded here with Pillow and returned in
Caffe's channel order (BGR, as cv::imdecode gives), shape (C, H, W) uint8.
"""
from __future__ import annotations

import contextlib
import io
from typing import Iterator, List, Tuple

import numpy as np


def _caffe_pb2():
    from caffe.proto import caffe_pb2  # late: needs the built pycaffe
    return caffe_pb2


@contextlib.contextmanager
def open_readonly(db_path: str, readahead: bool = True):
    """The LMDB environment of a folder, read-only and without a lock file (so
    that a database being read by Caffe, or on a read-only disk, can be read),
    closed on exit. The one place this project opens an LMDB for reading."""
    import lmdb
    env = lmdb.open(db_path, readonly=True, lock=False, readahead=readahead, subdir=True)
    try:
        yield env
    finally:
        env.close()


def lmdb_count(db_path: str) -> int:
    """The number of records in an LMDB."""
    with open_readonly(db_path) as env:
        return int(env.stat()["entries"])


def iter_datums(db_path: str, limit: int = None) -> Iterator[Tuple[str, object]]:
    """(key, caffe_pb2.Datum) in key order (the order Caffe's Data layer reads)."""
    caffe_pb2 = _caffe_pb2()
    with open_readonly(db_path) as env, env.begin() as txn:
        for count, (key, value) in enumerate(txn.cursor()):
            if limit is not None and count >= limit:
                break
            datum = caffe_pb2.Datum()
            datum.ParseFromString(value)
            yield key.decode("utf-8", "replace"), datum


def datum_to_array(datum) -> np.ndarray:
    """(C, H, W) uint8 pixels of a Datum, raw or encoded (decoded to BGR / gray)."""
    if datum.encoded:
        from PIL import Image
        with Image.open(io.BytesIO(datum.data)) as image:
            if image.mode in ("L", "I;16", "1"):
                return np.asarray(image.convert("L"))[None]
            rgb = np.asarray(image.convert("RGB"))
        return np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))
    if datum.data:
        pixels = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        pixels = np.asarray(datum.float_data, dtype=np.float32)
    return pixels.reshape(datum.channels, datum.height, datum.width)


def datum_shape(datum) -> Tuple[int, int, int]:
    """(C, H, W) without decoding raw Datums (encoded ones are decoded)."""
    if datum.encoded:
        return datum_to_array(datum).shape
    return datum.channels, datum.height, datum.width


def read_labels(db_path: str) -> List[int]:
    return [datum.label for _, datum in iter_datums(db_path)]


def read_mean(path: str) -> np.ndarray:
    """mean.binaryproto -> (C, H, W) float32 (a BlobProto of shape 1 x C x H x W)."""
    caffe_pb2 = _caffe_pb2()
    blob = caffe_pb2.BlobProto()
    with open(path, "rb") as handle:
        blob.ParseFromString(handle.read())
    if blob.HasField("shape") and len(blob.shape.dim) > 0:
        dims = list(blob.shape.dim)
    else:
        dims = [blob.num, blob.channels, blob.height, blob.width]
    values = np.asarray(blob.data, dtype=np.float32)
    if values.size != int(np.prod(dims)):
        raise ValueError("%s: %d values for shape %s" % (path, values.size, dims))
    if len(dims) == 4:
        if dims[0] != 1:
            raise ValueError("%s: mean blob has num=%d, expected 1" % (path, dims[0]))
        dims = dims[1:]
    if len(dims) != 3:
        raise ValueError("%s: mean blob has shape %s, expected 1 x C x H x W" % (path, dims))
    return values.reshape(dims)


def write_mean(path: str, mean: np.ndarray) -> None:
    """(C, H, W) -> mean.binaryproto as compute_image_mean writes it (for tests)."""
    from ..atomic_io import atomic_write
    caffe_pb2 = _caffe_pb2()
    blob = caffe_pb2.BlobProto()
    blob.num = 1
    blob.channels, blob.height, blob.width = mean.shape
    blob.data.extend(np.asarray(mean, dtype=np.float32).ravel().tolist())
    with atomic_write(path, "wb") as handle:
        handle.write(blob.SerializeToString())
