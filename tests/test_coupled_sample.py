"""The reverse-model sampler (python/gencaffe/coupled/, python/coupled_sample.py):
the chain logic without Caffe, then the CLI and the sampling math on a tiny
coupled net whose probabilities NumPy recomputes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gencaffe.coupled import sampling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(REPO, "python", "coupled_sample.py")


# ------------------------------------------------------------------ plain functions

def test_plan_stages_ends_each_stage_at_a_sigmoid():
    layers = [("label", "Input", ["label"]), ("rev_ip3", "Embed", ["rev_ip3"]),
              ("rev_ip3_sig", "Sigmoid", ["rev_ip3"]), ("rev_ip2", "InnerProduct", ["rev_ip2"]),
              ("rev_ip2_sig", "Sigmoid", ["rev_ip2"]), ("rev_ip1", "InnerProduct", ["rev_ip1"]),
              ("pixel_prob", "Sigmoid", ["pixel_prob"])]
    assert sampling.plan_stages(layers) == [
        sampling.Stage("rev_ip3", "rev_ip3_sig", "rev_ip3"),
        sampling.Stage("rev_ip2", "rev_ip2_sig", "rev_ip2"),
        sampling.Stage("rev_ip1", "pixel_prob", "pixel_prob")]
    with pytest.raises(sampling.SamplingError, match="end in no Sigmoid"):
        sampling.plan_stages(layers[:-1])
    with pytest.raises(sampling.SamplingError, match="at least one hidden layer"):
        sampling.plan_stages(layers[:1] + layers[5:])


def _fake_chain(n_stages, width=50000):
    """run_stage for a chain whose stage i outputs 0.3 + 0.1 i, recording what it was fed."""
    fed = {}

    def run_stage(i, replacement):
        fed[i] = None if replacement is None else replacement.copy()
        return np.full(width, 0.3 + 0.1 * i, dtype=np.float32)
    return run_stage, fed


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_run_chain_samples_the_top_layers_and_passes_probabilities_below(depth):
    run_stage, fed = _fake_chain(4)
    rng = np.random.default_rng(0)
    image, pixels, units = sampling.run_chain(run_stage, 4, depth, rng, image="mean")
    assert len(units) == 3 and np.all(image == pixels) and np.allclose(pixels, 0.6)
    for i, u in enumerate(units):
        if i < depth:       # sampled: binary, mean ~ its probability, handed to stage i+1
            assert set(np.unique(u)) == {0.0, 1.0}
            assert abs(u.mean() - (0.3 + 0.1 * i)) < 5 * np.sqrt(0.25 / u.size)
            np.testing.assert_array_equal(fed[i + 1], u)
        else:               # mean field: the probabilities stay in the net
            assert np.allclose(u, 0.3 + 0.1 * i) and fed[i + 1] is None
    image, pixels, _ = sampling.run_chain(run_stage, 4, depth, rng, image="sample")
    assert set(np.unique(image)) == {0.0, 1.0} and abs(image.mean() - 0.6) < 0.01


def test_depth_for_modes_and_errors():
    assert sampling.depth_for("recursive", 7) == 7
    assert sampling.depth_for("one_layer", 7) == 1
    assert sampling.depth_for("one_layer", 7, sample_layers=0) == 0
    with pytest.raises(sampling.SamplingError, match="0..2"):
        sampling.depth_for("recursive", 2, sample_layers=3)
    with pytest.raises(sampling.SamplingError, match="mode must be"):
        sampling.depth_for("gibbs", 2)


def test_bernoulli_is_exact_at_0_and_1_and_unbiased():
    rng = np.random.default_rng(1)
    prob = np.repeat(np.array([0.0, 1.0, 0.2, 0.7], dtype=np.float32), 40000).reshape(4, -1)
    sample = sampling.bernoulli(prob, rng)
    assert sample.dtype == np.float32
    assert sample[0].max() == 0 and sample[1].min() == 1
    for row, p in ((2, 0.2), (3, 0.7)):
        assert abs(sample[row].mean() - p) < 5 * np.sqrt(p * (1 - p) / prob.shape[1])


def test_caption_and_classes():
    assert sampling.caption(3, 0.98765) == "3 0.99"
    assert sampling.caption(1, 0.5, ["zero", "one"]) == "one 0.50"
    assert sampling.parse_classes("0-2,7", 10) == [0, 1, 2, 7]
    with pytest.raises(sampling.SamplingError, match="0..9"):
        sampling.parse_classes("3,10", 10)
    with pytest.raises(sampling.SamplingError, match="look like"):
        sampling.parse_classes("a-b", 10)


def test_render_lays_out_rows_with_caption_bands():
    from gencaffe.coupled import grids
    images = np.zeros((6, 1, 4, 4))
    images[:, :, 1:3, 1:3] = 1.0
    picture = grids.render(images, ["%d 0.50" % i for i in range(6)], n_cols=3, upscale=2)
    width, height, positions = grids.tile_layout(2, 3, 8)
    assert picture.shape == (height, width) and len(positions) == 6
    x, y = positions[4]
    assert picture[y + 3, x + 3] == 0 and picture[y, x] == 255   # ink dark, paper white
    with pytest.raises(ValueError, match="5 captions for 6 images"):
        grids.render(images, ["x"] * 5, n_cols=3)
    # row labels: a column at the left, written in it, the tiles shifted right
    labelled = grids.render(images, ["%d 0.50" % i for i in range(6)], n_cols=3, upscale=2,
                            row_labels=["class 0", "class 1"])
    width, height, shifted = grids.tile_layout(2, 3, 8, label_px=grids.ROW_LABEL_PX)
    assert labelled.shape == (height, width) and shifted[0][0] == positions[0][0] + 56
    assert (labelled[:, :grids.ROW_LABEL_PX] < 128).any()          # the labels' ink
    with pytest.raises(ValueError, match="1 row labels for 2 rows"):
        grids.render(images, ["x"] * 6, n_cols=3, row_labels=["class 0"])


# ------------------------------------------------------------------ a tiny net, in Caffe

caffe_pb2 = pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built")

from gencaffe.nets import coupled  # noqa: E402

TINY = coupled.CoupledArchitecture(
    key="tiny", name="Tiny", layers=(coupled.Dense(6), coupled.Dense(5), coupled.Dense(3)),
    input_shape=(1, 4, 4), data=coupled.DataSpec("unused", "unused", 2, 2, scale=1 / 255.0),
    about="a tiny coupled net for tests")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Deploy nets of TINY and a caffemodel with random weights (the eq21 train
    net, Data layers replaced by an Input, saved)."""
    import caffe
    from google.protobuf import text_format
    caffe.set_mode_cpu()
    folder = tmp_path_factory.mktemp("tiny")
    paths = {}
    for variant in ("deploy_forward", "deploy_reverse"):
        paths[variant] = str(folder / ("%s.prototxt" % variant))
        with open(paths[variant], "w") as handle:
            handle.write(coupled.prototxt(TINY, variant))
    def train_net(variant):
        train = coupled.build(TINY, variant)
        layers = [l for l in train.layer if l.type != "Data"]
        feed = caffe_pb2.LayerParameter(name="feed", type="Input", top=["data", "label"])
        feed.input_param.shape.add().dim.extend([2, 1, 4, 4])
        feed.input_param.shape.add().dim.extend([2])
        del train.layer[:]
        train.layer.extend([feed] + layers)
        path = str(folder / ("train_%s.prototxt" % variant))
        with open(path, "w") as handle:
            handle.write(text_format.MessageToString(train))
        return caffe.Net(path, caffe.TRAIN)
    net = train_net("eq21")
    rng = np.random.default_rng(7)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 1.5, blob.data.shape)
    paths["weights"] = str(folder / "tiny.caffemodel")
    net.save(paths["weights"])
    paths["params"] = {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}
    eq22 = train_net("eq22")    # no Embed layer: its blobs are ip3's weights, ip2's bias
    copy_from_net(net, eq22)
    paths["eq22_weights"] = str(folder / "tiny_eq22.caffemodel")
    eq22.save(paths["eq22_weights"])
    forward = caffe.Net(paths["deploy_forward"], caffe.TEST)   # forward layers only: "disc"
    copy_from_net(net, forward)
    paths["disc_weights"] = str(folder / "tiny_disc.caffemodel")
    forward.save(paths["disc_weights"])
    return paths


def copy_from_net(source, target):
    for name, blobs in target.params.items():
        for a, b in zip(source.params[name], blobs):
            b.data[...] = a.data


def test_one_layer_mode_is_a_sample_then_mean_field(tiny):
    sampler = sampling.CoupledSampler(tiny["deploy_forward"], tiny["deploy_reverse"],
                                      tiny["weights"])
    assert sampler.hidden_layers == 2 and sampler.num_classes == 3
    p = tiny["params"]
    labels = np.array([0, 1, 2, 2, 1])
    images, pixels, fed = sampler.draw(labels, 1, np.random.default_rng(3), image="mean")
    top = fed[0]
    assert set(np.unique(top)) <= {0.0, 1.0}
    x1 = sigmoid(top @ p["ip2"][0] + p["ip1"][1])              # W_2^T x^2 + b_1
    expected = sigmoid(x1 @ p["ip1"][0] + p["rev_ip1"][1])     # W_1^T x^1 + a_0
    np.testing.assert_allclose(fed[1], x1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pixels.reshape(5, -1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(images, pixels)


def test_an_eq22_model_gets_the_class_embedding_from_the_forward_blobs(tiny):
    """The Eq. 22 net has no Embed layer; the deploy reverse net's Embed takes
    W_d and b_{d-1} by their param names (ip3_w, ip2_b): with no layer
    sampled, x^{d-1} = sigmoid(W_3[y] + b_2)."""
    sampler = sampling.CoupledSampler(tiny["deploy_forward"], tiny["deploy_reverse"],
                                      tiny["eq22_weights"])
    p = tiny["params"]
    _, _, fed = sampler.draw([0, 1, 2], 0, np.random.default_rng(0))
    np.testing.assert_allclose(fed[0], sigmoid(p["ip3"][0] + p["ip2"][1]), rtol=1e-5, atol=1e-6)
    assert "rev_ip3" not in sampling.trained_blobs(tiny["eq22_weights"])[0]


def test_top_layer_samples_follow_q_of_the_class(tiny):
    """x^{d-1} ~ q(x^{d-1} | y) = Bernoulli(sigmoid(W_3[y] + b_2)): the sample
    means of 4000 draws per class within 5 standard errors; recursive mode
    samples every layer and the image."""
    sampler = sampling.CoupledSampler(tiny["deploy_forward"], tiny["deploy_reverse"],
                                      tiny["weights"])
    p = tiny["params"]
    rng = np.random.default_rng(4)
    n = 4000
    for c in range(3):
        images, _, fed = sampler.draw([c] * n, 2, rng, image="sample")
        prob = sigmoid(p["ip3"][0][c] + p["ip2"][1])
        tolerance = 5 * np.sqrt(prob * (1 - prob) / n) + 1e-6
        assert np.all(np.abs(fed[0].mean(axis=0) - prob) <= tolerance), c
        for units in fed + [images]:
            assert set(np.unique(units)) <= {0.0, 1.0}


def test_cli_writes_grids_arrays_and_summary(tiny, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, CLI, "--forward-model", tiny["deploy_forward"], "--reverse-model",
         tiny["deploy_reverse"], "--weights", tiny["weights"], "--per-class", "4", "--classes",
         "0,2", "--out-dir", str(out), "--no-progress", "--upscale", "2"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["modes"]) == {"recursive", "one_layer"}
    assert summary["modes"]["recursive"]["sampled_hidden_layers"] == 2
    assert summary["modes"]["one_layer"]["image"] == "mean"
    from PIL import Image
    for mode in ("recursive", "one_layer"):
        arrays = np.load(out / ("samples_%s.npz" % mode))
        assert arrays["images"].shape == (8, 1, 4, 4)
        assert list(arrays["labels"]) == [0] * 4 + [2] * 4
        # the captions' numbers: the forward model on the shown images
        p = tiny["params"]
        x = arrays["images"].reshape(8, -1)
        h1 = sigmoid(x @ p["ip1"][0].T + p["ip1"][1])
        h2 = sigmoid(h1 @ p["ip2"][0].T + p["ip2"][1])
        scores = h2 @ p["ip3"][0].T + p["ip3"][1]
        prob = np.exp(scores - scores.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        np.testing.assert_array_equal(arrays["predicted"], prob.argmax(1))
        np.testing.assert_allclose(arrays["probability"], prob.max(1), rtol=1e-4)
        agreement = float(np.mean(prob.argmax(1) == arrays["labels"]))
        assert summary["modes"][mode]["agreement"] == pytest.approx(agreement)
        width, height = Image.open(out / ("samples_%s.png" % mode)).size
        from gencaffe.coupled import grids
        expected_w, expected_h, _ = grids.tile_layout(2, 4, 8, title_px=18,
                                                       label_px=grids.ROW_LABEL_PX)
        assert (width, height) == (expected_w, expected_h)
    assert "agrees with the drawn class" in result.stdout


def test_cli_names_what_is_wrong(tiny, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, CLI, "--out-dir", str(tmp_path / "o"),
                               "--no-progress", *args], capture_output=True, text=True)
    result = run("--arch", "coupled_dense", "--weights", str(tmp_path / "missing.caffemodel"))
    assert result.returncode != 0 and "missing.caffemodel does not exist" in result.stderr
    result = run("--forward-model", tiny["deploy_forward"], "--reverse-model",
                 tiny["deploy_reverse"], "--weights", tiny["weights"], "--classes", "5")
    assert result.returncode != 0 and "each must be in 0..2" in result.stderr
    result = run("--forward-model", tiny["deploy_forward"], "--reverse-model",
                 tiny["deploy_reverse"], "--weights", tiny["weights"], "--sample-layers", "3")
    assert result.returncode != 0 and "--sample-layers must be 0..2" in result.stderr
    result = run("--weights", tiny["weights"])
    assert result.returncode != 0 and "give --arch" in result.stderr
    result = run("--forward-model", tiny["deploy_forward"], "--reverse-model",
                 tiny["deploy_reverse"], "--weights", tiny["disc_weights"])
    assert result.returncode != 0 and "has no weights for rev_ip1 (pixel_b)" in \
        result.stderr and "a discriminative (disc) model has no trained reverse net" in \
        result.stderr
    assert not (tmp_path / "o").exists()
