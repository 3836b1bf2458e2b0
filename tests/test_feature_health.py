"""Feature health (gencaffe.experiments.feature_health, tools/feature_health.py):
the three statistics on arrays whose answer is known, and the tool against the
same statistics of features computed by hand (each image centre-cropped and
mean-subtracted in numpy, then fed through pycaffe one at a time)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gencaffe.experiments import feature_health as fh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- math (no Caffe)

def test_dead_fraction_counts_units_never_positive():
    features = np.array([[0.0, 1.0, -2.0, 0.0], [0.0, 0.0, -1.0, 3.0]])
    assert fh.dead_fraction(features) == 0.5          # units 0 and 2


def test_input_dependence_is_zero_for_constant_features_and_one_when_centred():
    constant = np.tile([[2.0, -1.0, 5.0]], (6, 1))
    assert fh.input_dependence(constant) == 0.0
    assert fh.input_dependence(np.zeros((4, 3))) == 0.0
    centred = np.array([[1.0, -2.0], [-1.0, 2.0]])
    assert fh.input_dependence(centred) == pytest.approx(1.0)
    # unit 0 varies (+-1 around 0), unit 1 is a constant 3: 1 / (1 + 9)
    mixed = np.array([[1.0, 3.0], [-1.0, 3.0]])
    assert fh.input_dependence(mixed) == pytest.approx(0.1)


def test_effective_dimension_counts_equal_directions_of_variation():
    rng = np.random.default_rng(0)
    # variation along one direction of a 5-d space: dimension 1, whatever the scale
    line = rng.normal(size=(50, 1)) * np.array([[1.0, 2.0, 0.0, -1.0, 3.0]]) + 7.0
    assert fh.effective_dimension(line) == pytest.approx(1.0)
    # three orthogonal directions of equal spread (a balanced design): exactly 3
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    assert fh.effective_dimension(np.hstack([signs, np.zeros((8, 2))])) == pytest.approx(3.0)
    assert fh.effective_dimension(np.ones((5, 4))) == 0.0


def test_variation_directions_count_the_leading_directions_to_the_share():
    # orthogonal directions with variances 5 : 3 : 2 (a balanced design, scaled)
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    spread = np.hstack([signs * np.sqrt([5.0, 3.0, 2.0]), np.zeros((8, 4))])
    assert fh.variation_directions(spread, 0.5) == 1
    assert fh.variation_directions(spread, 0.8) == 2
    assert fh.variation_directions(spread, 0.9) == 3
    # one dominant direction and a tail: participation ratio near 1, yet 90 % needs the tail
    tail = np.hstack([signs * np.sqrt([80.0, 10.0, 10.0]), np.zeros((8, 1))])
    assert fh.effective_dimension(tail) < 1.6 and fh.variation_directions(tail, 0.9) == 2
    assert fh.variation_directions(np.ones((5, 4))) == 0


def test_markdown_has_a_row_per_weights_and_blob():
    stats = fh.statistics_of(np.array([[0.0, 1.0], [0.0, 2.0]]))
    assert stats["units"] == 2 and stats["dead_fraction"] == 0.5
    text = fh.markdown([("random", "fc7", stats), ("trained", "fc7", stats)])
    assert text.splitlines()[2] == "| random | fc7 | 2 | 0.500 | 0.100 | 1.0 | 1 |"
    assert len(text.splitlines()) == 4


# ---------------------------------------------------------------- through pycaffe

try:
    import caffe
    if not hasattr(caffe, "Net"):
        caffe = None
except ImportError:
    caffe = None

SIDE, CROP = 10, 8


def nets(root):
    """(train_val with a TEST Data layer, deploy) of conv -> ReLU -> ip."""
    from caffe import layers as L, params as P

    def body(spec, bottom):
        spec.conv = L.Convolution(bottom, num_output=3, kernel_size=3,
                                  weight_filler=dict(type="gaussian", std=0.05),
                                  bias_filler=dict(type="constant", value=0.1))
        spec.relu = L.ReLU(spec.conv, in_place=True)
        spec.ip = L.InnerProduct(spec.conv, num_output=4,
                                 weight_filler=dict(type="gaussian", std=0.1))
    train = caffe.NetSpec()
    train.data, train.label = L.Data(
        source=str(root / "lmdb"), backend=P.Data.LMDB, batch_size=3, ntop=2,
        transform_param=dict(crop_size=CROP, mean_file=str(root / "mean.binaryproto")),
        include=dict(phase=caffe.TEST))
    body(train, train.data)
    deploy = caffe.NetSpec()
    deploy.data = L.Input(shape=dict(dim=[3, 3, CROP, CROP]))
    body(deploy, deploy.data)
    paths = root / "train_val.prototxt", root / "deploy.prototxt"
    for path, spec in zip(paths, (train, deploy)):
        path.write_text(str(spec.to_proto()))
    return [str(p) for p in paths]


@pytest.mark.skipif(caffe is None, reason="pycaffe not built")
def test_tool_measures_the_test_layers_images_through_each_weights(tmp_path):
    from conftest import write_lmdb
    from gencaffe.data import datum_io
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (7, 3, SIDE, SIDE), dtype=np.uint8)
    mean = rng.uniform(100, 150, (3, SIDE, SIDE)).astype(np.float32)
    write_lmdb(tmp_path / "lmdb", images, np.zeros(7, int))
    datum_io.write_mean(str(tmp_path / "mean.binaryproto"), mean)
    train_val, deploy = nets(tmp_path)
    caffe.set_mode_cpu()
    caffe.set_random_seed(9)
    net = caffe.Net(deploy, caffe.TEST)
    net.save(str(tmp_path / "trained.caffemodel"))
    # a net whose ReLU passes nothing: every conv unit dead, ip constant
    net.params["conv"][0].data[...] = 0.0
    net.params["conv"][1].data[...] = -1.0
    net.save(str(tmp_path / "dead.caffemodel"))

    out = tmp_path / "health.md"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "feature_health.py"), "--no-progress",
         "--net", train_val, "--deploy", deploy, "--images", "5", "--out", str(out),
         "--weights", "trained=%s" % (tmp_path / "trained.caffemodel"),
         "--weights", "dead=%s" % (tmp_path / "dead.caffemodel"),
         "--weights", "fillers=random", "--blobs", "conv,ip"],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    rows = out.read_text().splitlines()[2:]
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| trained", "conv"], ["| trained", "ip"], ["| dead", "conv"], ["| dead", "ip"],
        ["| fillers", "conv"], ["| fillers", "ip"]]
    assert "5 images of %s" % (tmp_path / "lmdb") in result.stdout

    # the first 5 images, centre-cropped and mean-subtracted by hand, one at a time
    offset = (SIDE - CROP) // 2
    crops = (images[:5].astype(np.float32) - mean)[:, :, offset:offset + CROP,
                                                   offset:offset + CROP]
    trained = caffe.Net(deploy, caffe.TEST, weights=str(tmp_path / "trained.caffemodel"))
    by_hand = {"conv": [], "ip": []}
    for crop in crops:
        trained.blobs["data"].data[0] = crop
        trained.forward()
        for blob in by_hand:
            by_hand[blob].append(trained.blobs[blob].data[0].ravel().copy())
    expected = fh.markdown([("trained", blob, fh.statistics_of(np.array(values)))
                            for blob, values in by_hand.items()]).splitlines()[2:]
    assert rows[:2] == expected
    dead_conv = rows[2].split(" | ")
    assert dead_conv[3:] == ["1.000", "0.000", "0.0", "0 |"]  # dead, constant, no variation


@pytest.mark.skipif(caffe is None, reason="pycaffe not built")
def test_tool_names_what_is_wrong(tmp_path):
    tool = os.path.join(REPO, "tools", "feature_health.py")

    def run(*args):
        return subprocess.run([sys.executable, tool, "--no-progress"] + list(args),
                              capture_output=True, text=True, cwd=REPO)
    result = run("--net", str(tmp_path / "missing.prototxt"), "--deploy", "x",
                 "--weights", "a=random")
    assert result.returncode != 0 and "missing.prototxt not found" in result.stderr
    assert "expected NAME=PATH" in run("--net", "a", "--deploy", "b", "--weights", "x").stderr
    (tmp_path / "train.prototxt").write_text('layer { name: "d" type: "Input" top: "data" }')
    (tmp_path / "deploy.prototxt").write_text("")
    result = run("--net", str(tmp_path / "train.prototxt"), "--deploy",
                 str(tmp_path / "deploy.prototxt"), "--weights", "a=random")
    assert "has no Data layer for the TEST phase" in result.stderr
