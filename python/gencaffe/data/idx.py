"""IDX files, the format of MNIST's original distribution and of the data sets
that copy it (Fashion-MNIST, KMNIST, EMNIST, ...): read, check, pair.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian int32 per dimension, then the values in
row-major order. MNIST-format data use unsigned bytes: images are 3-D
(count, rows, cols), magic 0x00000803 (2051); labels are 1-D (count), magic
0x00000801 (2049). Files may be gzipped (recognised by gzip's own magic, not
by the name).

Every check names the file and says what was expected: magic numbers, the
value type, truncated or over-long files, images and labels of different
counts, train and test images of different shapes, labels outside the net's
class count. Caffe's own examples/mnist/convert_mnist_data reads the same
format (unzipped only) but stops at a failed CHECK without saying which file.
"""
import gzip
import math
import os
import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int",
             0x0D: "float", 0x0E: "double"}
UBYTE = 0x08
IMAGES_MAGIC = 0x00000803   # 2051: unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801   # 2049: unsigned byte, 1 dimension

# The names MNIST, Fashion-MNIST and KMNIST ship their files under (the second
# spelling is how some mirrors unpack them); each may end in .gz.
STANDARD_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


class IdxError(ValueError):
    """An IDX file, or a pair of them, is not what MNIST-format data must be."""


def read_bytes(path):
    """The file's bytes, gunzipped when it starts with gzip's magic."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise IdxError("cannot read %s: %s" % (path, err.strerror or err)) from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxError("%s is a gzip file that does not decompress (truncated or corrupt "
                           "download?): %s" % (path, err)) from None
    return data


def parse_header(data, path):
    """(type code, dims, header length) of IDX bytes."""
    if len(data) < 4:
        raise IdxError("%s: %d bytes, too short for an IDX header (4-byte magic number)"
                       % (path, len(data)))
    if data[0] != 0 or data[1] != 0:
        raise IdxError("%s is not an IDX file: magic number 0x%s should start with two zero "
                       "bytes" % (path, data[:4].hex()))
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise IdxError("%s: unknown IDX value type 0x%02x in magic number 0x%s"
                       % (path, type_code, data[:4].hex()))
    if ndim == 0:
        raise IdxError("%s: magic number 0x%s gives 0 dimensions" % (path, data[:4].hex()))
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError("%s: truncated header: %d dimensions need %d bytes, the file has %d"
                       % (path, ndim, header, len(data)))
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    return type_code, dims, header


def read_idx(path, kind):
    """The uint8 array of an MNIST-format IDX file; kind = "images" (count x rows
    x cols) or "labels" (count)."""
    want_ndim, want_magic = (3, IMAGES_MAGIC) if kind == "images" else (1, LABELS_MAGIC)
    data = read_bytes(path)
    type_code, dims, header = parse_header(data, path)
    magic = int.from_bytes(data[:4], "big")
    if type_code != UBYTE:
        raise IdxError("%s holds %s values (magic 0x%08x); MNIST-format %s are unsigned bytes "
                       "(magic 0x%08x), which is what Caffe's Datums store"
                       % (path, IDX_TYPES[type_code], magic, kind, want_magic))
    if len(dims) != want_ndim:
        other = {3: "images", 1: "labels"}.get(len(dims))
        hint = (" (an IDX %s file: are the images and labels swapped?)" % other
                if other and other != kind else "")
        raise IdxError("%s has %d dimensions %s (magic 0x%08x)%s; MNIST-format %s have %d "
                       "(magic 0x%08x)" % (path, len(dims), "x".join(map(str, dims)), magic, hint,
                                           kind, want_ndim, want_magic))
    if any(d <= 0 for d in dims):
        raise IdxError("%s: dimensions %s; every one must be positive"
                       % (path, "x".join(map(str, dims))))
    expected = math.prod(dims)
    actual = len(data) - header
    if actual != expected:
        item = math.prod(dims[1:])
        if actual < expected:
            raise IdxError("%s is truncated: its header says %s (%d bytes of values), the file "
                           "has %d (%d complete %s)" % (path, "x".join(map(str, dims)), expected,
                                                        actual, actual // item, kind))
        raise IdxError("%s has %d bytes after the %s values its header announces (%s): a "
                       "wrong header or two files joined" % (path, actual - expected,
                                                            "x".join(map(str, dims)), expected))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_pair(images_path, labels_path, num_classes):
    """(images uint8 N x rows x cols, labels uint8 N), checked against each other
    and against the class count: labels must lie in [0, num_classes)."""
    images = read_idx(images_path, "images")
    labels = read_idx(labels_path, "labels")
    if len(images) != len(labels):
        raise IdxError("%s has %d images but %s has %d labels; they must pair one to one"
                       % (images_path, len(images), labels_path, len(labels)))
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise IdxError("%s: label %d at index %d (labels go up to %d) is outside the %d classes "
                       "0..%d of the net; give --num-classes %d if the data set has that many"
                       % (labels_path, labels[bad[0]], bad[0], labels.max(), num_classes,
                          num_classes - 1, int(labels.max()) + 1))
    return images, labels


def read_splits(files, num_classes):
    """files = {"train": (images, labels), "test": (images, labels)} paths ->
    {"train": (images, labels), "test": ...}; train and test images must have
    the same shape."""
    splits = {name: read_pair(images, labels, num_classes)
              for name, (images, labels) in files.items()}
    shapes = {name: split[0].shape[1:] for name, split in splits.items()}
    if len(set(shapes.values())) > 1:
        raise IdxError("train images (%s) are %s but test images (%s) are %s; both splits "
                       "must have one image size" % (
                           files["train"][0], "x".join(map(str, shapes["train"])),
                           files["test"][0], "x".join(map(str, shapes["test"]))))
    return splits


def find_standard_file(directory, split, kind):
    """The path of a split's images/labels under its standard name in `directory`
    (optionally .gz), or raise IdxError listing the names tried."""
    tried = []
    for base in STANDARD_NAMES[(split, kind)]:
        for name in (base, base + ".gz"):
            tried.append(name)
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    raise IdxError("no %s %s in %s: looked for %s; name the file with --%s-%s"
                   % (split, kind, directory, ", ".join(tried), split, kind))


def missing_classes(labels, num_classes):
    """Classes in [0, num_classes) with no example in labels."""
    present = np.bincount(labels, minlength=num_classes)
    return [c for c in range(num_classes) if present[c] == 0]
