"""IDX files -> Datum LMDBs (gencaffe.data.idx, mnist.make_idx_lmdbs and
tools/make_mnist_lmdb.py --idx-dir): every malformed input is refused with a
message naming the file, before anything is written; the output is what
upstream's convert_mnist_data writes from the same files; a second run is a
no-op. The IDX files are made here (a few tiny images), nothing is downloaded."""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import BUILD, REPO, lmdb_items  # noqa: E402
from gencaffe.data import datum_io  # noqa: E402
from gencaffe.data import idx
from gencaffe.data import mnist as mnist_data

TOOL = os.path.join(REPO, "tools", "make_mnist_lmdb.py")


def idx_bytes(array, type_code=0x08):
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(">%di" % array.ndim, *array.shape)
    dtype = {0x08: ">u1", 0x0D: ">f4"}[type_code]
    return header + array.astype(dtype).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def make_set(folder, train=7, test=5, rows=28, cols=28, classes=10, seed=0, gz=True,
             names=("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
    """A tiny data set under MNIST's file names; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, count, image_name, label_name in (("train", train, names[0], names[1]),
                                                 ("test", test, names[2], names[3])):
        images = rng.integers(0, 256, size=(count, rows, cols), dtype=np.uint8)
        labels = (np.arange(count) % classes).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write(folder / (image_name + suffix), idx_bytes(images), gz)
        write(folder / (label_name + suffix), idx_bytes(labels), gz)
        arrays[split] = (images, labels)
    return arrays


def _caffe_pb2_or_skip():
    try:
        from caffe.proto import caffe_pb2
    except Exception as err:
        pytest.skip("pycaffe (caffe.proto.caffe_pb2) not importable: %s" % err)
    return caffe_pb2


# ------------------------------------------------------------ reading and checks

def test_gzipped_and_plain_files_read_the_same(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = write(tmp_path / "a", idx_bytes(images))
    gz = write(tmp_path / "b.whatever", idx_bytes(images), gz=True)  # gzip by magic, not name
    np.testing.assert_array_equal(idx.read_idx(plain, "images"), images)
    np.testing.assert_array_equal(idx.read_idx(gz, "images"), images)
    np.testing.assert_array_equal(idx.read_idx(write(tmp_path / "l", idx_bytes([3, 1])), "labels"),
                                  [3, 1])


@pytest.mark.parametrize("data, kind, message", [
    (b"\x00\x00", "images", r"too short for an IDX header"),
    (b"PK\x03\x04" + bytes(20), "images", r"not an IDX file: magic number 0x504b0304"),
    (bytes([0, 0, 0x42, 3]) + bytes(12), "images", r"unknown IDX value type 0x42"),
    (idx_bytes(np.zeros((2, 2, 2)), type_code=0x0D), "images",
     r"holds float values \(magic 0x00000d03\); MNIST-format images are unsigned bytes"),
    (idx_bytes(np.zeros(4, np.uint8)), "images",
     r"has 1 dimensions 4 \(magic 0x00000801\) \(an IDX labels file: are the images and labels "
     r"swapped\?\)"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8)), "labels", r"images and labels swapped"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8))[:-5], "images",
     r"is truncated: its header says 3x2x2 \(12 bytes of values\), the file has 7 "
     r"\(1 complete images\)"),
    (idx_bytes(np.zeros((3, 2, 2), np.uint8)) + b"xx", "images", r"has 2 bytes after the"),
    (bytes([0, 0, 8, 3]) + struct.pack(">i", 5), "images", r"truncated header"),
    (idx_bytes(np.zeros((0, 2, 2), np.uint8)), "images", r"every one must be positive"),
])
def test_malformed_files_are_refused_naming_the_file(tmp_path, data, kind, message):
    path = write(tmp_path / "some-file-idx", data)
    with pytest.raises(idx.IdxError, match=message) as caught:
        idx.read_idx(path, kind)
    assert path in str(caught.value)


def test_truncated_gzip_is_refused(tmp_path):
    whole = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = write(tmp_path / "cut.gz", whole[:len(whole) // 2])
    with pytest.raises(idx.IdxError, match=r"cut.gz is a gzip file that does not decompress"):
        idx.read_idx(path, "images")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(idx.IdxError, match=r"cannot read .*nothing-here: No such file"):
        idx.read_idx(str(tmp_path / "nothing-here"), "images")


def test_images_and_labels_are_checked_against_each_other(tmp_path):
    images = write(tmp_path / "img", idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    three = write(tmp_path / "lab3", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(idx.IdxError, match=r"img has 4 images but .*lab3 has 3 labels"):
        idx.read_pair(images, three, 10)
    high = write(tmp_path / "lab", idx_bytes(np.array([0, 9, 12, 3], np.uint8)))
    with pytest.raises(idx.IdxError, match=r"lab: label 12 at index 2 \(labels go up to 12\) is "
                                           r"outside the 10 classes 0..9 of the net; give "
                                           r"--num-classes 13"):
        idx.read_pair(images, high, 10)
    assert idx.read_pair(images, high, 13)[1].tolist() == [0, 9, 12, 3]


def test_train_and_test_images_must_have_one_size(tmp_path):
    make_set(tmp_path / "a", rows=28)
    make_set(tmp_path / "b", rows=32)
    files = {"train": (str(tmp_path / "a" / "train-images-idx3-ubyte.gz"),
                       str(tmp_path / "a" / "train-labels-idx1-ubyte.gz")),
             "test": (str(tmp_path / "b" / "t10k-images-idx3-ubyte.gz"),
                      str(tmp_path / "b" / "t10k-labels-idx1-ubyte.gz"))}
    with pytest.raises(idx.IdxError, match=r"train images \(.*\) are 28x28 but test images "
                                           r"\(.*b/t10k-images-idx3-ubyte.gz\) are 32x28"):
        idx.read_splits(files, 10)


def test_standard_names_are_found_with_or_without_gz(tmp_path):
    make_set(tmp_path / "gz", gz=True)
    make_set(tmp_path / "plain", gz=False, names=("train-images.idx3-ubyte",
                                                   "train-labels.idx1-ubyte",
                                                   "t10k-images.idx3-ubyte",
                                                   "t10k-labels.idx1-ubyte"))
    assert idx.find_standard_file(str(tmp_path / "gz"), "test", "labels").endswith(
        "t10k-labels-idx1-ubyte.gz")
    assert idx.find_standard_file(str(tmp_path / "plain"), "train", "images").endswith(
        "train-images.idx3-ubyte")
    with pytest.raises(idx.IdxError, match=r"no test images in .*: looked for "
                                           r"t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz, "
                                           r".*; name the file with --test-images"):
        idx.find_standard_file(str(tmp_path), "test", "images")


# ------------------------------------------------------------ conversion

def idx_files(folder):
    return {"train": (str(folder / "train-images-idx3-ubyte.gz"),
                      str(folder / "train-labels-idx1-ubyte.gz")),
            "test": (str(folder / "t10k-images-idx3-ubyte.gz"),
                     str(folder / "t10k-labels-idx1-ubyte.gz"))}


def test_conversion_writes_the_datums_then_a_second_run_is_a_no_op(tmp_path):
    _caffe_pb2_or_skip()
    arrays = make_set(tmp_path / "src", train=9, test=4)
    out = tmp_path / "out"
    messages = []
    assert mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out),
                                     log=messages.append) is True
    assert sorted(os.listdir(out)) == sorted([mnist_data.STAMP_NAME,
                                              *mnist_data.DB_NAMES.values()])
    for split, (images, labels) in arrays.items():
        records = list(mnist_data.read_datum_lmdb(str(out / mnist_data.DB_NAMES[split])))
        assert [r[0] for r in records] == ["%08d" % i for i in range(len(images))]
        for (_, channels, height, width, pixels, label), image, want in zip(records, images, labels):
            assert (channels, height, width) == (1, 28, 28) and label == want
            np.testing.assert_array_equal(pixels.reshape(28, 28), image)
    stamp = mnist_data.read_stamp(str(out))
    assert stamp["counts"] == {"train": 9, "test": 4} and stamp["shape"] == [1, 28, 28]
    assert stamp["identity"]["num_classes"] == 10
    assert any("train: 9 images of 1x28x28, labels 0..8" in m for m in messages)
    assert any("class(es) 9 of 0..9 have no training image" in m for m in messages)

    mtime = os.path.getmtime(out / "mnist_train_lmdb" / "data.mdb")
    assert mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out),
                                     log=messages.append) is False
    assert os.path.getmtime(out / "mnist_train_lmdb" / "data.mdb") == mtime

    # other files (or another class count) are another conversion
    make_set(tmp_path / "src", train=9, test=4, seed=1)
    assert mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out),
                                     log=messages.append) is True
    assert mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out), num_classes=12,
                                     log=messages.append) is True


def test_bad_input_writes_nothing_and_keeps_older_outputs(tmp_path):
    _caffe_pb2_or_skip()
    make_set(tmp_path / "src")
    out = tmp_path / "out"
    mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out), log=lambda m: None)
    before = sorted(os.listdir(out))
    labels = tmp_path / "src" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 2, 3, 10], np.uint8))))
    with pytest.raises(mnist_data.MnistDataError, match=r"t10k-labels-idx1-ubyte.gz: label 10"):
        mnist_data.make_idx_lmdbs(idx_files(tmp_path / "src"), str(out), log=lambda m: None)
    assert sorted(os.listdir(out)) == before   # the stamp and DBs of the earlier run stay
    assert datum_io.lmdb_count(str(out / "mnist_test_lmdb")) == 5


def test_records_match_upstream_convert_mnist_data_on_the_same_files(tmp_path):
    """The IDX route's LMDB equals what Caffe's own converter writes from the same
    (unzipped) files, key for key and byte for byte, at a size other than 28x28."""
    _caffe_pb2_or_skip()
    converter = os.path.join(BUILD, "caffe", "examples", "mnist", "convert_mnist_data")
    if not os.access(converter, os.X_OK):
        pytest.skip("upstream convert_mnist_data not built at %s" % converter)
    make_set(tmp_path / "src", train=6, test=3, rows=20, cols=24, gz=False)
    src = tmp_path / "src"
    subprocess.run([converter, str(src / "train-images-idx3-ubyte"),
                    str(src / "train-labels-idx1-ubyte"), str(tmp_path / "upstream"),
                    "--backend=lmdb"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    files = {"train": (str(src / "train-images-idx3-ubyte"), str(src / "train-labels-idx1-ubyte")),
             "test": (str(src / "t10k-images-idx3-ubyte"), str(src / "t10k-labels-idx1-ubyte"))}
    mnist_data.make_idx_lmdbs(files, str(tmp_path / "ours"), log=lambda m: None)

    upstream = lmdb_items(str(tmp_path / "upstream"))
    assert len(upstream) == 6
    assert lmdb_items(str(tmp_path / "ours" / "mnist_train_lmdb")) == upstream


# ------------------------------------------------------------ the tool

def run_tool(*args, cwd=None):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_tool_converts_an_idx_folder_from_another_directory(tmp_path):
    _caffe_pb2_or_skip()
    make_set(tmp_path / "fashion")
    proc = run_tool("--idx-dir", "fashion", "--out-dir", "lmdbs", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert datum_io.lmdb_count(str(tmp_path / "lmdbs" / "mnist_train_lmdb")) == 7
    proc = run_tool("--idx-dir", "fashion", "--out-dir", "lmdbs", cwd=str(tmp_path))
    assert proc.returncode == 0 and "nothing to do" in proc.stdout


def test_tool_refuses_idx_input_without_out_dir_and_names_bad_files(tmp_path):
    make_set(tmp_path / "src")
    proc = run_tool("--idx-dir", str(tmp_path / "src"))
    assert proc.returncode == 2 and "IDX input needs --out-dir" in proc.stderr
    _caffe_pb2_or_skip()
    (tmp_path / "src" / "train-images-idx3-ubyte.gz").write_bytes(b"\x00\x00\x08\x03")
    proc = run_tool("--idx-dir", str(tmp_path / "src"), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "train-images-idx3-ubyte.gz: truncated header" in proc.stderr
    assert not (tmp_path / "out").exists()
    make_set(tmp_path / "src")
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    proc = run_tool("--idx-dir", str(tmp_path / "src"), "--out-dir", str(tmp_path / "blocker"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: cannot write the LMDBs into %s: " % (tmp_path / "blocker") in proc.stderr
    proc = run_tool("--train-images", str(tmp_path / "src" / "t10k-images-idx3-ubyte.gz"),
                    "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "no train labels file: give --train-labels FILE or --idx-dir DIR" in proc.stderr
