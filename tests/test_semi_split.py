"""The labelled-subset tool (tools/make_semi_split.py, gencaffe.data.splits):
counts, labels and bytes of every output record, seeded choice (uniform and
class-balanced), pool/holdout, raw and encoded Datums, the class prior, the
no-op rerun, nothing half-written when stopped, and a clear message for every
bad request; plus the nets it feeds (tools/make_nets.py --split)."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built")
lmdb = pytest.importorskip("lmdb")

from conftest import BUILD, REPO, lmdb_items  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from gencaffe.data import splits  # noqa: E402

CLI = os.path.join(REPO, "tools", "make_semi_split.py")


def datum_bytes(label, index, encoded=False, with_label=True):
    datum = caffe_pb2.Datum()
    pixels = (np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4) + index) % 251
    if encoded:
        from PIL import Image
        buffer = io.BytesIO()
        Image.fromarray(pixels.transpose(1, 2, 0)).save(buffer, format="PNG")
        datum.data = buffer.getvalue()
        datum.encoded = True
    else:
        datum.channels, datum.height, datum.width = pixels.shape
        datum.data = pixels.tobytes()
    if with_label:
        datum.label = int(label)
    return datum.SerializeToString()


def write_lmdb(path, labels, encoded=False, values=None):
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for index, label in enumerate(labels):
            value = values[index] if values is not None else datum_bytes(label, index, encoded)
            txn.put(("%08d" % index).encode(), value)
    env.close()
    return str(path)


def label_of(value):
    datum = caffe_pb2.Datum()
    datum.ParseFromString(value)
    return datum.label


LABELS = [i % 10 for i in range(200)]   # 20 of each of 10 classes


@pytest.fixture
def source(tmp_path):
    return write_lmdb(tmp_path / "train_lmdb", LABELS)


def test_uniform_split_copies_records_and_marks_the_rest_unlabelled(source, tmp_path):
    out = str(tmp_path / "split")
    manifest = splits.make_split(source, out, splits.SplitRequest(labelled=30, seed=3),
                                 log=lambda m: None)
    original = dict(lmdb_items(source))
    labelled = lmdb_items(os.path.join(out, "labelled_lmdb"))
    unlabelled = lmdb_items(os.path.join(out, "unlabelled_lmdb"))
    assert (len(labelled), len(unlabelled)) == (30, 170)
    assert manifest["counts"] == {"labelled": 30, "unlabelled": 170}
    # labelled: byte-identical records; unlabelled: only the label differs
    assert all(original[key] == value for key, value in labelled)
    for key, value in unlabelled:
        assert label_of(value) == -1
        datum, before = caffe_pb2.Datum(), caffe_pb2.Datum()
        datum.ParseFromString(value)
        before.ParseFromString(original[key])
        datum.label = before.label
        assert datum == before
    keys = [k for k, _ in labelled] + [k for k, _ in unlabelled]
    assert sorted(keys) == sorted(original) and len(set(keys)) == 200
    assert [k for k, _ in labelled] == sorted(k for k, _ in labelled)   # the source's order
    with open(os.path.join(out, "labelled_keys.txt")) as handle:
        assert handle.read().split() == [k.decode() for k, _ in labelled]
    counts = np.bincount([label_of(v) for _, v in labelled], minlength=10)
    assert manifest["class_counts"]["labelled"] == counts.tolist()
    assert manifest["class_prior"] == pytest.approx((counts / 30.0).tolist())
    assert manifest["class_counts"]["pool"] == [20] * 10
    with open(os.path.join(out, "split.json")) as handle:
        assert json.load(handle) == manifest


def test_the_seed_decides_the_subset():
    labels = np.array(LABELS)
    first = splits.choose(labels, 30, seed=3)
    assert np.array_equal(first, splits.choose(labels, 30, seed=3))
    assert not np.array_equal(first, splits.choose(labels, 30, seed=4))
    assert len(set(first)) == 30 and first.max() < 200


def test_balanced_split_takes_k_over_c_per_class_and_spreads_the_remainder():
    labels = np.array(LABELS)
    chosen = splits.choose(labels, 25, seed=1, balanced=True)
    counts = np.bincount(labels[chosen], minlength=10)
    assert counts.sum() == 25 and set(counts) == {2, 3} and (counts == 3).sum() == 5
    assert np.bincount(labels[splits.choose(labels, 100, 2, balanced=True)]).tolist() == [10] * 10


def test_class_prior_is_the_labelled_frequencies_smoothed_only_when_a_class_is_missing():
    assert splits.class_prior([1, 3]) == ([0.25, 0.75], None)
    prior, smoothing = splits.class_prior([0, 2, 2])
    assert smoothing == "add-one" and prior == pytest.approx([1 / 7., 3 / 7., 3 / 7.])


def test_pool_and_holdout(source, tmp_path):
    out = str(tmp_path / "split")
    manifest = splits.make_split(source, out, splits.SplitRequest(labelled=20, seed=1,
                                                                  balanced=True, pool=150,
                                                                  holdout=True),
                                 log=lambda m: None)
    assert manifest["counts"] == {"labelled": 20, "unlabelled": 130, "holdout": 50}
    holdout = lmdb_items(os.path.join(out, "holdout_lmdb"))
    original = lmdb_items(source)
    assert holdout == original[150:]                    # byte for byte, labels kept
    pooled = {k for k, _ in lmdb_items(os.path.join(out, "labelled_lmdb"))} | \
        {k for k, _ in lmdb_items(os.path.join(out, "unlabelled_lmdb"))}
    assert pooled == {k for k, _ in original[:150]}


def test_encoded_datums_are_copied_too(tmp_path):
    source = write_lmdb(tmp_path / "enc_lmdb", LABELS[:40], encoded=True)
    out = str(tmp_path / "split")
    manifest = splits.make_split(source, out, splits.SplitRequest(labelled=10, seed=1),
                                 log=lambda m: None)
    assert manifest["source"]["encoded_records"] == 40
    original = dict(lmdb_items(source))
    assert all(original[k] == v for k, v in lmdb_items(os.path.join(out, "labelled_lmdb")))
    from gencaffe.data import datum_io
    for key, datum in datum_io.iter_datums(os.path.join(out, "unlabelled_lmdb")):
        assert datum.encoded and datum.label == -1 and datum_io.datum_to_array(datum).shape == \
            (3, 4, 4)


def test_a_second_run_is_a_no_op_and_another_request_rebuilds(source, tmp_path):
    out = str(tmp_path / "split")
    request = splits.SplitRequest(labelled=30, seed=3)
    splits.make_split(source, out, request, log=lambda m: None)
    stamp = os.stat(os.path.join(out, "labelled_lmdb", "data.mdb")).st_mtime_ns
    said = []
    splits.make_split(source, out, request, log=said.append)
    assert "nothing to do" in said[0]
    assert os.stat(os.path.join(out, "labelled_lmdb", "data.mdb")).st_mtime_ns == stamp
    manifest = splits.make_split(source, out, splits.SplitRequest(labelled=40, seed=3),
                                 log=lambda m: None)
    assert manifest["counts"]["labelled"] == 40
    assert len(lmdb_items(os.path.join(out, "labelled_lmdb"))) == 40
    assert sorted(os.listdir(out)) == ["labelled_keys.txt", "labelled_lmdb", "split.json",
                                       "unlabelled_lmdb"]


def test_a_stopped_run_leaves_nothing_half_written(source, tmp_path):
    out = str(tmp_path / "split")

    class Stop(Exception):
        pass

    class Bar:
        def __init__(self, total, description, unit):
            self.description, self.n = description, 0

        def update(self, count):
            self.n += count
            if self.description == "writing split" and self.n == 120:
                raise Stop()

        def close(self):
            pass

    with pytest.raises(Stop):
        splits.make_split(source, out, splits.SplitRequest(labelled=30), log=lambda m: None,
                          progress_factory=Bar)
    assert os.listdir(out) == []                        # no outputs, no manifest, no staging
    # a staging folder left by a killed process is removed by the next run
    os.makedirs(os.path.join(out, splits.STAGING_PREFIX + "killed", "labelled_lmdb"))
    splits.make_split(source, out, splits.SplitRequest(labelled=30), log=lambda m: None)
    assert not [n for n in os.listdir(out) if n.startswith(splits.STAGING_PREFIX)]
    assert splits.load(out)["state"] == "complete"


@pytest.mark.parametrize("request_, message", [
    (dict(labelled=200), "200 labelled examples requested, but the set has only 200 records"),
    (dict(labelled=500), "500 labelled examples requested, but the set has only 200 records"),
    (dict(labelled=0), "must be at least 1"),
    (dict(labelled=5, balanced=True), "at least one example of each of the 10 classes, but only "
                                      "5 labelled examples were requested"),
    (dict(labelled=30, balanced=True, num_classes=12), "class 10 has 0 records in the set"),
    (dict(labelled=10, pool=300), "pool of 300 records requested"),
    (dict(labelled=10, holdout=True), "--holdout needs --pool smaller"),
])
def test_bad_requests_are_refused_with_a_message(source, tmp_path, request_, message):
    out = tmp_path / "split"
    with pytest.raises(splits.SplitError) as err:
        splits.make_split(source, str(out), splits.SplitRequest(**request_), log=lambda m: None)
    assert message in str(err.value)
    assert not out.exists() or os.listdir(str(out)) == []


def test_bad_sources_are_refused_with_a_message(tmp_path):
    def refused(path):
        with pytest.raises(splits.SplitError) as err:
            splits.make_split(str(path), str(tmp_path / "out"), splits.SplitRequest(labelled=2),
                              log=lambda m: None)
        return str(err.value)

    unlabelled = write_lmdb(tmp_path / "nolabel_lmdb", [0] * 5,
                            values=[datum_bytes(0, i, with_label=False) for i in range(5)])
    assert "record '00000000' of %s has no label" % unlabelled in refused(unlabelled)
    junk = write_lmdb(tmp_path / "junk_lmdb", [0] * 5, values=[b"\xff\xfe not a datum"] * 5)
    assert "is not a Caffe Datum" in refused(junk)
    empty_image = caffe_pb2.Datum(label=1).SerializeToString()
    odd = write_lmdb(tmp_path / "odd_lmdb", [0] * 5, values=[empty_image] * 5)
    assert "is not a Caffe Datum with an image" in refused(odd)
    marked = write_lmdb(tmp_path / "marked_lmdb", [0, -1, 1, 0, 1])
    assert "has label -1: the source must be fully labelled" in refused(marked)
    os.makedirs(str(tmp_path / "plain"))
    assert "has no data.mdb: not an LMDB folder" in refused(tmp_path / "plain")
    assert "is not a folder" in refused(tmp_path / "missing")


def test_an_output_folder_of_someone_else_is_not_touched(source, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(splits.SplitError, match="was not written by this tool"):
        splits.make_split(source, str(out), splits.SplitRequest(labelled=5), log=lambda m: None)
    assert os.listdir(str(out)) == ["notes.txt"]


def run_cli(*args):
    return subprocess.run([sys.executable, CLI, *args], capture_output=True, text=True,
                          env=dict(os.environ, CAFFE_BUILD_DIR=BUILD))


def test_cli_writes_the_split_and_reports_bad_requests(source, tmp_path):
    out = str(tmp_path / "split")
    result = run_cli(source, "--labelled", "20", "--balanced", "--out-dir", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "20 labelled (class-balanced, seed 1), 180 unlabelled" in result.stdout
    assert "labelled per class: 2 2 2 2 2 2 2 2 2 2" in result.stdout
    result = run_cli(source, "--labelled", "5", "--balanced", "--out-dir", str(tmp_path / "b"))
    assert result.returncode == 1 and "error: a class-balanced subset needs" in result.stderr
    result = run_cli(source, "--labelled", "5", "--holdout", "--out-dir", str(tmp_path / "c"))
    assert result.returncode == 1 and "--holdout needs --pool" in result.stderr
    assert "--balanced" in run_cli("--help").stdout


def test_make_nets_split_writes_its_sources_and_class_prior(tmp_path):
    source = write_lmdb(tmp_path / "train_lmdb", [0] * 30 + [1] * 10 + [2] * 60)
    out = str(tmp_path / "split")
    splits.make_split(source, out, splits.SplitRequest(labelled=20, seed=2), log=lambda m: None)
    prior = splits.load(out)["class_prior"]
    from google.protobuf import text_format

    def make(variant, *extra):
        net_path = str(tmp_path / ("%s.prototxt" % variant))
        result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_nets.py"),
                                 "--arch", "lenet", "--variant", variant, "--split", out,
                                 "--num-classes", "3", "--out", net_path, *extra],
                                capture_output=True, text=True,
                                env=dict(os.environ, CAFFE_BUILD_DIR=BUILD))
        assert result.returncode == 0, result.stderr
        net = caffe_pb2.NetParameter()
        text_format.Merge(open(net_path).read(), net)
        return net

    semi = {layer.name: layer for layer in make("semi_gg", "--labelled-share", "0.5").layer}
    assert semi["data_labelled"].data_param.source == os.path.join(out, "labelled_lmdb")
    assert semi["data_unlabelled"].data_param.source == os.path.join(out, "unlabelled_lmdb")
    assert (semi["data_labelled"].data_param.batch_size,
            semi["data_unlabelled"].data_param.batch_size) == (32, 32)
    assert list(semi["loss"].generative_loss_param.class_prior) == pytest.approx(prior)
    uniform = make("semi_gg", "--uniform-prior").layer
    assert not [l for l in uniform if l.name == "loss"][0].generative_loss_param.class_prior
    dg = make("semi_dg").layer
    assert [l.type for l in dg if l.name == "loss"] == ["SoftmaxWithLoss"]
    train = [l for l in dg if l.type == "Data" and l.include[0].phase == caffe_pb2.TRAIN]
    assert [(l.data_param.source, l.data_param.batch_size) for l in train] == [
        (os.path.join(out, "labelled_lmdb"), 64)]
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_nets.py"),
                             "--arch", "lenet", "--variant", "semi_gg", "--split", out,
                             "--out", str(tmp_path / "x.prototxt")], capture_output=True,
                            text=True, env=dict(os.environ, CAFFE_BUILD_DIR=BUILD))
    assert result.returncode != 0 and "class prior has 3 values but the net scores 10" in \
        result.stderr


def test_threads_can_split_one_source_at_once(source, tmp_path):
    """py-lmdb refuses a second open of one environment in a process; a runner's
    worker threads split the same train LMDB for several k at once."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(splits.make_split, source, str(tmp_path / ("s%d" % k)),
                               splits.SplitRequest(labelled=k), lambda m: None)
                   for k in (10, 20, 30, 40)]
        assert [f.result()["counts"]["labelled"] for f in futures] == [10, 20, 30, 40]
