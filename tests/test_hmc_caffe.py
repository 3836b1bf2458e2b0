"""HMC visualization through pycaffe (journal Sec. 4.6, Eq. 20-22): gradients, node selection, net
cutting, weight checks, and the CLI end to end, on small random-weight nets."""
import hashlib
import json
import os

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gencaffe.hmc import net_surgery, node_geometry, node_net, node_spec, target as ct  # noqa: E402
from gencaffe.hmc.errors import NetSetupError  # noqa: E402

# conv(pad 1, stride 2) -> ReLU -> max pool (ceil mode) -> conv -> ReLU -> Dropout
# (not in place) -> InnerProduct -> Dropout (in place) -> InnerProduct -> Softmax.
SMALL_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 2 dim: 17 dim: 15 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1
          weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 5 kernel_h: 2 kernel_w: 3
          weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "drop2" type: "Dropout" bottom: "conv2" top: "conv2d" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc1" type: "InnerProduct" bottom: "conv2d" top: "fc1"
        inner_product_param { num_output: 8
          weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu3" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "drop3" type: "Dropout" bottom: "fc1" top: "fc1" }
layer { name: "score" type: "InnerProduct" bottom: "fc1" top: "score"
        inner_product_param { num_output: 3
          weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }
"""


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    """(prototxt path, caffemodel path) of SMALL_NET with seeded random filler weights."""
    folder = tmp_path_factory.mktemp("small")
    proto = folder / "deploy.prototxt"
    proto.write_text(SMALL_NET)
    caffe.set_mode_cpu()
    caffe.set_random_seed(1234)
    net = caffe.Net(str(proto), caffe.TEST)
    weights = folder / "small.caffemodel"
    net.save(str(weights))
    return str(proto), str(weights)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("node", ["score", "relu2", "conv1"])
def test_gradient_matches_finite_differences(small_net, node):
    # relu2 is an in-place node (its backward overwrites the top diff), conv1 a
    # spatial node on a cut net; score the class scores of the last layer.
    proto, weights = small_net
    channels = [0, 1, 2, 1]
    target = ct.build_node_target(proto, weights, node, channels)
    rng = np.random.default_rng(0)
    x = rng.normal(size=target.cut.input_shape)
    f, grad = target.score(x)
    assert f.shape == (4,) and grad.shape == x.shape
    # Central differences along random directions. Caffe computes in float32: with
    # h = 1e-3 rounding gives ~1e-7 |f| / h < 2e-3 of error, and the step is small
    # enough not to cross a ReLU/max-pool kink for this seed. Tolerance 1% of
    # |grad . v| + 5e-3 absolute; a wrong gradient misses by far more (next test).
    h = 1e-3
    for _ in range(5):
        v = rng.normal(size=x.shape)
        f_plus, _ = target.score(x + h * v)
        f_minus, _ = target.score(x - h * v)
        fd = (f_plus - f_minus) / (2 * h)
        analytic = (grad * v).reshape(len(channels), -1).sum(axis=1)
        np.testing.assert_allclose(analytic, fd, rtol=1e-2, atol=5e-3)


def test_finite_difference_check_catches_a_wrong_gradient(small_net):
    # The same criterion must reject a gradient that is off (here: one layer's
    # derivative ignored, i.e. the gradient of a different function).
    proto, weights = small_net
    target = ct.build_node_target(proto, weights, "score", [0, 1, 2, 1])
    x = np.random.default_rng(0).normal(size=target.cut.input_shape)
    _, grad = target.score(x)
    wrong = grad * (x > 0)          # as if an extra ReLU sat on the input
    v = np.random.default_rng(1).normal(size=x.shape)
    h = 1e-3
    fd = (target.score(x + h * v)[0] - target.score(x - h * v)[0]) / (2 * h)
    analytic = (wrong * v).reshape(4, -1).sum(axis=1)
    assert not np.allclose(analytic, fd, rtol=1e-2, atol=5e-3)


def test_repeated_calls_match_fresh_nets_for_an_in_place_node(small_net):
    # relu2 runs in place: its backward overwrites the node's top diff, so the
    # one-hot must be restored on every call. Compare a reused target with a
    # fresh net per input while units switch on and off between inputs.
    proto, weights = small_net
    channels = [0, 1, 2, 3, 4]
    reused = ct.build_node_target(proto, weights, "relu2", channels)
    rng = np.random.default_rng(11)
    switched = 0
    previous = None
    for i in range(6):
        # small inputs leave some units on (biases), larger ones turn them off
        x = rng.normal(size=reused.cut.input_shape) * (0.01 if i % 2 else 1.0)
        f, grad = reused.score(x)
        f_new, grad_new = ct.build_node_target(proto, weights, "relu2", channels).score(x)
        np.testing.assert_array_equal(f, f_new)
        np.testing.assert_allclose(grad, grad_new, rtol=1e-6, atol=1e-7)
        if previous is not None:
            switched += int(np.sum((f > 0) != (previous > 0)))
        previous = f
    assert switched > 0          # the sequence did exercise on/off switches


def test_chains_in_a_batch_are_independent(small_net):
    proto, weights = small_net
    x = np.random.default_rng(3).normal(size=(3, 2, 17, 15))
    batch = ct.build_node_target(proto, weights, "score", [2, 0, 1])
    f_b, g_b = batch.score(x)
    for i, ch in enumerate([2, 0, 1]):
        single = ct.build_node_target(proto, weights, "score", [ch])
        f_s, g_s = single.score(x[i:i + 1])
        np.testing.assert_allclose(f_b[i], f_s[0], rtol=1e-5)
        np.testing.assert_allclose(g_b[i], g_s[0], rtol=1e-4, atol=1e-6)


def test_score_equals_the_original_net_output(small_net):
    # Cutting, dropping Dropout and feeding x through a Parameter layer must not
    # change f: compare with the untouched deploy net in TEST phase.
    proto, weights = small_net
    x = np.random.default_rng(4).normal(size=(2, 2, 17, 15)).astype(np.float32)
    ref = caffe.Net(proto, weights=weights, phase=caffe.TEST)
    ref.blobs["data"].data[...] = x
    ref.forward()
    target = ct.build_node_target(proto, weights, "score", [0, 2])
    f, _ = target.score(x)
    np.testing.assert_allclose(f, [ref.blobs["score"].data[0, 0], ref.blobs["score"].data[1, 2]],
                               rtol=1e-5)


def test_backward_skips_weight_gradients(small_net):
    # lr_mult 0 on every parameter: only the input gradient is computed.
    proto, weights = small_net
    target = ct.build_node_target(proto, weights, "score", [0])
    target.score(np.ones(target.cut.input_shape))
    for name, blobs in target.net.params.items():
        if name != net_surgery.INPUT_LAYER_NAME:
            assert all(not np.any(b.diff) for b in blobs), name


# ---------------------------------------------------------------- cutting

def test_intermediate_node_gets_a_1x1_response(small_net):
    proto, weights = small_net
    for layer, n_channels in (("conv1", 4), ("pool1", 4), ("conv2", 5), ("relu2", 5)):
        target = ct.build_node_target(proto, weights, layer, [0, 1])
        blob = target.net.blobs[target.cut.node_blob].data
        assert blob.shape == (2, n_channels, 1, 1), layer
        assert target.n_channels == n_channels
        assert target.net.layers[-1].type == {"relu2": "ReLU", "pool1": "Pooling"}.get(
            layer, "Convolution")


def _parse(text):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    return text_format.Merge(text, caffe_pb2.NetParameter())


def _caffe_shape(proto_dir, text, hw, blob):
    """The shape of ``blob`` when pycaffe builds ``text`` at input ``hw``, in this
    process (only for sizes Caffe accepts)."""
    path = os.path.join(proto_dir, f"net_{hw[0]}x{hw[1]}.prototxt")
    with open(path, "w") as fh:
        fh.write(text.replace("dim: 17 dim: 15", f"dim: {hw[0]} dim: {hw[1]}"))
    return caffe.Net(path, caffe.TEST).blobs[blob].data.shape


def test_input_size_covers_the_nodes_whole_field_with_a_1x1_response(small_net):
    proto, weights = small_net
    cut = node_net.cut_net(_parse(SMALL_NET), "conv2", 1)
    # By hand: conv2 (kernel 2x3) needs pool1 2x3; pool1 (k3 s2) with complete
    # windows needs conv1 5x7; conv1 (k3 s2 p1) gives 5x7 from 9..10 x 13..14, and
    # at 10x14 its last windows end on the last input row and column.
    assert cut.input_shape[2:] == (10, 14)
    assert cut.geometry.node_shape == (1, 5, 1, 1)
    assert _caffe_shape(os.path.dirname(proto), SMALL_NET, (10, 14), "conv2")[2:] == (1, 1)
    # every input pixel moves the node
    target = ct.build_node_target(proto, weights, "conv2", [0, 1, 2, 3, 4, 0, 1, 2])
    _, grad = target.score(np.random.default_rng(0).normal(size=target.cut.input_shape))
    assert np.all(np.abs(grad).sum(axis=(0, 1)) > 0)
    # One more row or column gives 2 positions (pool1's ceil mode adds a partial
    # window); Caffe still gives 1x1 down to 7x11 (partial pooling windows), which
    # the search does not pick.
    for hw in ((11, 14), (10, 15)):
        with pytest.raises(NetSetupError, match="not 1x1"):
            node_geometry.resolve_geometry(_parse(SMALL_NET), "conv2", hw)
    assert node_geometry.resolve_geometry(_parse(SMALL_NET), "conv2", (7, 11)).node_shape == (1, 5, 1, 1)
    with pytest.raises(NetSetupError, match="Caffe rejects|not 1x1"):
        node_geometry.resolve_geometry(_parse(SMALL_NET), "conv2", (6, 11))


def test_reshaped_probe_shapes_agree_with_fresh_nets(small_net):
    # The search reshapes one net; the sampler builds a fresh one. Both must agree,
    # for several sizes (ceil pooling, padding, non-square kernels).
    from gencaffe.hmc.shape_probe import ShapeProbe
    proto, _ = small_net
    cut = net_surgery._cut_layers(_parse(SMALL_NET), "conv2", "small")
    with ShapeProbe("data", "conv2") as probe:
        probe.build(net_surgery._probe_text(cut, (17, 15)))
        for hw in ((17, 15), (9, 12), (24, 31), (7, 11), (8, 12)):
            fresh = _caffe_shape(os.path.dirname(proto), SMALL_NET, hw, "conv2")
            assert probe.reshape((1, 2) + hw)[1:] == tuple(fresh)[1:], hw


def test_class_score_node_keeps_the_native_input_and_drops_dropout(small_net):
    proto, weights = small_net
    before = _sha(proto)
    target = ct.build_node_target(proto, weights, "score", [0, 1, 2])
    assert target.cut.input_shape == (3, 2, 17, 15)
    types = [l.type for l in target.net.layers]
    assert "Dropout" not in types and "Softmax" not in types
    assert target.net.blobs["score"].data.shape == (3, 3)
    assert _sha(proto) == before            # the user's prototxt is never modified


def test_forward_is_deterministic_without_dropout(small_net):
    proto, weights = small_net
    target = ct.build_node_target(proto, weights, "score", [0])
    x = np.random.default_rng(5).normal(size=target.cut.input_shape)
    a = target.score(x)
    b = target.score(x)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_explicit_input_size_must_give_1x1(small_net):
    proto, weights = small_net
    cut = node_net.cut_net(_parse(SMALL_NET), "conv2", 1, input_hw=(8, 12))   # also 1x1
    assert cut.input_shape[2:] == (8, 12)
    with pytest.raises(NetSetupError, match="gives a 3x2 response at 'conv2', not 1x1"):
        node_net.cut_net(_parse(SMALL_NET), "conv2", 1, input_hw=(17, 15))


def test_a_size_caffe_rejects_gets_caffes_reason_and_this_process_survives(small_net):
    # Caffe aborts the process on a size it rejects (a glog CHECK); the probe runs
    # in a helper, and the message names the layer and quotes Caffe's check.
    with pytest.raises(NetSetupError) as info:
        node_net.cut_net(_parse(SMALL_NET), "conv2", 1, input_hw=(3, 3))
    message = str(info.value)
    assert "input size 3x3" in message and "layer 'conv2' (Convolution)" in message
    assert "Check failed" in message and ".cpp:" in message
    # still alive, and Caffe still works here
    assert node_net.cut_net(_parse(SMALL_NET), "conv2", 1).input_shape[2:] == (10, 14)


# ---------------------------------------------------------------- errors

def test_node_spec_parsing():
    assert node_spec.parse_node_spec("fc8") == node_spec.NodeSpec("fc8", None)
    assert node_spec.parse_node_spec("fc8:3") == node_spec.NodeSpec("fc8", (3,))
    assert node_spec.parse_node_spec("conv5:0-2,7") == node_spec.NodeSpec("conv5", (0, 1, 2, 7))
    for bad in ("fc8:x", "fc8:3-1", ":3"):
        with pytest.raises(NetSetupError):
            node_spec.parse_node_spec(bad)


def test_unknown_node_name_lists_the_layers(small_net):
    proto, weights = small_net
    with pytest.raises(NetSetupError, match="unknown node 'conv9'.*conv1.*score"):
        ct.build_node_target(proto, weights, "conv9", [0])


def test_channel_out_of_range(small_net):
    proto, weights = small_net
    with pytest.raises(NetSetupError, match="3 channels.*\\[3\\]"):
        ct.build_node_target(proto, weights, "score", [3])


def test_dropout_node_is_refused(small_net):
    proto, weights = small_net
    with pytest.raises(NetSetupError, match="Dropout"):
        ct.build_node_target(proto, weights, "drop2", [0])


def test_mismatched_weights_give_a_clear_error(small_net, tmp_path):
    proto, _ = small_net
    other = tmp_path / "other.prototxt"
    other.write_text(SMALL_NET.replace("num_output: 8", "num_output: 6"))
    net = caffe.Net(str(other), caffe.TEST)
    wrong = tmp_path / "other.caffemodel"
    net.save(str(wrong))
    with pytest.raises(NetSetupError, match="fc1.*shape"):
        ct.build_node_target(proto, str(wrong), "score", [0])
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(SMALL_NET.replace('name: "fc1"', 'name: "fcX"'))
    net = caffe.Net(str(renamed), caffe.TEST)
    missing = tmp_path / "missing.caffemodel"
    net.save(str(missing))
    with pytest.raises(NetSetupError, match="fc1.*no weights"):
        ct.build_node_target(proto, str(missing), "score", [0])
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff\xfe not a protobuf \x00" * 10)
    with pytest.raises(NetSetupError):
        ct.build_node_target(proto, str(junk), "score", [0])


def test_non_image_inputs_are_refused(tmp_path):
    flat = SMALL_NET.replace("dim: 2 dim: 2 dim: 17 dim: 15", "dim: 2 dim: 30")
    with pytest.raises(NetSetupError, match="4-D"):
        node_net.cut_net(_parse(flat), "score", 1)
    train = ('layer { name: "mnist" type: "Data" top: "data" top: "label" '
             'data_param { source: "x" batch_size: 1 } }\n'
             + SMALL_NET.split("\n", 4)[4])
    with pytest.raises(NetSetupError, match="data layer"):
        node_net.cut_net(_parse(train), "score", 1)
    two = SMALL_NET.replace('top: "data"\n', 'top: "data" top: "extra"\n', 1)
    with pytest.raises(NetSetupError, match="several inputs"):
        node_net.cut_net(_parse(two), "score", 1)


# ---------------------------------------------------------------- CLI

def test_cli_writes_all_outputs(small_net, tmp_path):
    import hmc_visualize
    proto, weights = small_net
    before = _sha(proto)
    out = tmp_path / "out"
    rc = hmc_visualize.main([
        "--model", proto, "--weights", weights, "--nodes", "score:0-1", "conv2:4",
        "--chains", "3", "--iterations", "4", "-L", "5", "--step-size", "0.01",
        "--mass", "1", "--input-scale", "1", "--out-dir", str(out), "--no-progress",
        "--trajectory-frames", "3", "--warmup", "2", "--detect-divergences"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(n["layer"], n["channel"]) for n in summary["nodes"]] == [
        ("score", 0), ("score", 1), ("conv2", 4)]
    for node in summary["nodes"]:
        for f in node["files"].values():
            assert os.path.isfile(f), f
    samples = np.load(out / "conv2_4_samples.npy")
    assert samples.shape == (3, 2, 10, 14)
    assert np.load(out / "score_0_samples.npy").shape == (3, 2, 17, 15)
    rows = (out / "score_1_stats.csv").read_text().strip().splitlines()
    assert rows[0].startswith("iteration,warmup,accept_rate")
    assert len(rows) == 1 + 2 + 4                     # header, warm-up, sampling
    assert (out / "score_overview.png").is_file()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert _sha(proto) == before


def test_cli_is_reproducible_with_a_seed(small_net, tmp_path):
    import hmc_visualize
    proto, weights = small_net
    args = ["--model", proto, "--weights", weights, "--nodes", "score:2", "--chains", "2",
            "--iterations", "3", "-L", "4", "--step-size", "0.01", "--mass", "1",
            "--seed", "5", "--no-progress"]
    hmc_visualize.main(args + ["--out-dir", str(tmp_path / "a")])
    hmc_visualize.main(args + ["--out-dir", str(tmp_path / "b")])
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "score_2_samples.npy"),
                                  np.load(tmp_path / "b" / "score_2_samples.npy"))


def test_progress_bar_into_a_log_is_not_redrawn_every_iteration(small_net, tmp_path, capsys):
    # stderr captured = not a terminal, as when the demo's output goes to a log
    import hmc_visualize
    proto, weights = small_net
    rc = hmc_visualize.main([
        "--model", proto, "--weights", weights, "--nodes", "score:0", "--chains", "2",
        "--iterations", "30", "-L", "2", "--step-size", "0.01", "--mass", "1",
        "--out-dir", str(tmp_path / "out")])
    assert rc == 0
    err = capsys.readouterr().err
    redraws = err.count("HMC:")
    assert 1 <= redraws <= 3, f"{redraws} redraws for 30 iterations"
    assert "30/30" in err                    # the final state is still shown


def test_cli_reports_bad_nodes_without_a_traceback(small_net, tmp_path, capsys):
    import hmc_visualize
    proto, weights = small_net
    with pytest.raises(SystemExit, match="unknown node 'nope'"):
        hmc_visualize.main(["--model", proto, "--weights", weights, "--nodes", "nope",
                            "--out-dir", str(tmp_path), "--no-progress"])
    with pytest.raises(SystemExit, match="channel"):
        hmc_visualize.main(["--model", proto, "--weights", weights, "--nodes", "score:7",
                            "--out-dir", str(tmp_path), "--no-progress"])


def test_cli_help_explains_every_flag(capsys):
    import hmc_visualize
    with pytest.raises(SystemExit) as exit_info:
        hmc_visualize.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = hmc_visualize.build_parser()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
    for word in ("sigma", "leapfrog", "mass", "preset", "alexnet", "trajectory", "summary.json"):
        assert word in text


def test_worker_processes_give_the_same_chains(small_net):
    # Groups run in spawned processes must reproduce the in-process result exactly
    # (each group carries its own seed).
    from gencaffe.hmc import visualize
    proto, weights = small_net
    cfg = visualize.RunConfig(model=proto, weights=weights, nodes=[], out_dir="unused",
                              step_size=0.01, n_leapfrog=3, mass=1.0, sigma=2.0)
    tasks = [("score", [0, 1], 3, "noise", (0, 0, 0)), ("score", [2, 2], 3, "noise", (0, 0, 1))]
    sequential = visualize._run_tasks(cfg, tasks, lambda acc: None)
    cfg.workers = 2
    ticks = []
    parallel = visualize._run_tasks(cfg, tasks, ticks.append)
    assert len(ticks) == 6                         # 3 iterations x 2 groups reached the bar
    for seq, par in zip(sequential, parallel):
        for a, b in zip(seq, par):
            np.testing.assert_array_equal(a.samples, b.samples)


def test_presets_give_the_paper_settings(small_net):
    import hmc_visualize
    from gencaffe.hmc import visualize
    proto, weights = small_net
    base = ["--model", proto, "--weights", weights, "--nodes", "score:1", "conv2:0"]
    lenet = hmc_visualize.config_from_args(hmc_visualize.build_parser().parse_args(base))
    assert (lenet.iterations, lenet.step_size, lenet.n_leapfrog, lenet.sigma, lenet.mass,
            lenet.temperature, lenet.init) == (300, 1e-4, 100, 10.0, 0.01, 1.0, "noise")
    assert lenet.warmup == 0 and lenet.divergence_threshold is None   # extras off
    alex = hmc_visualize.config_from_args(
        hmc_visualize.build_parser().parse_args(base + ["--preset", "alexnet"]))
    assert (alex.step_size, alex.n_leapfrog, alex.sigma, alex.mass, alex.temperature) == (
        3e-6, 50, 10.0, 1e-5, 0.001)
    # fc node: 500 iterations from the zero image; conv node: 100 from noise
    plans = {node.layer: (it, init) for node, _, it, init, _ in visualize.plan_nodes(alex)}
    assert plans == {"score": (500, "zero"), "conv2": (100, "noise")}
    # zf: the paper samples LeNet and AlexNet only; ZF gets AlexNet's settings
    zf = hmc_visualize.config_from_args(
        hmc_visualize.build_parser().parse_args(base + ["--preset", "zf"]))
    assert (zf.step_size, zf.n_leapfrog, zf.sigma, zf.mass, zf.temperature, zf.iterations,
            zf.init) == (3e-6, 50, 10.0, 1e-5, 0.001, None, None)
    np.testing.assert_array_equal(zf.transform.mean, [104, 117, 123])
    # explicit flags override the preset
    mixed = hmc_visualize.config_from_args(hmc_visualize.build_parser().parse_args(
        base + ["--preset", "alexnet", "--iterations", "7", "--init", "noise", "-L", "3"]))
    assert (mixed.iterations, mixed.init, mixed.n_leapfrog, mixed.mass) == (7, "noise", 3, 1e-5)


# ---------------------------------------------------------------- input space

def test_input_transform_round_trip_and_bgr():
    from gencaffe.input_space import InputTransform
    t = InputTransform(scale=0.5, mean=np.array([104.0, 117.0, 123.0]), bgr=True)
    rgb = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 4, 5))
    net_in = t.to_net(rgb)
    # BGR: net channel 0 is the blue channel minus the blue mean (104), times scale
    np.testing.assert_allclose(net_in[:, 0], (rgb[:, 2] - 104.0) * 0.5)
    np.testing.assert_allclose(t.to_pixels(net_in), rgb)


def test_transform_read_from_a_train_prototxt(tmp_path):
    from gencaffe.input_space import transform_from_prototxt
    proto = tmp_path / "train.prototxt"
    proto.write_text(
        'layer { name: "d" type: "Data" top: "data" include { phase: TRAIN } '
        'transform_param { scale: 0.25 } }\n'
        'layer { name: "d" type: "Data" top: "data" include { phase: TEST } '
        'transform_param { scale: 0.00390625 mean_value: 10 mean_value: 20 mean_value: 30 } }\n')
    t = transform_from_prototxt(str(proto))
    assert t.scale == 0.00390625
    np.testing.assert_array_equal(t.mean, [10, 20, 30])


def test_image_init_and_display(tmp_path):
    from PIL import Image
    from gencaffe import imaging
    from gencaffe.hmc import visualize
    from gencaffe.input_space import InputTransform
    img = np.zeros((10, 10), np.uint8)
    img[2:8, 4:6] = 255
    path = tmp_path / "one.png"
    Image.fromarray(img).save(path)
    t = InputTransform(scale=1 / 256)
    x = visualize.initial_positions(f"image:{path}", 3, (1, 10, 10), 10.0,
                                    np.random.default_rng(0), t)
    assert x.shape == (3, 1, 10, 10)
    np.testing.assert_allclose(x[0, 0], img / 256)
    shown = imaging.to_display(x, t, "clip")
    np.testing.assert_allclose(shown[0, ..., 0], img / 255, atol=1e-12)
    auto = imaging.to_display(x * 7 - 3, t, "auto")
    assert auto.min() == 0.0 and auto.max() == 1.0
    grid = imaging.make_grid(auto, n_cols=2, pad=1, upscale=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 21 + 1, 2 * 21 + 1, 1)


# ---------------------------------------------------------------- labels and per-node figures

def test_class_names_files(tmp_path):
    from gencaffe.hmc.labels import read_class_names
    plain = tmp_path / "classes.txt"
    plain.write_text("zero\nsea star\n\n")                     # trailing blank lines are fine
    assert read_class_names(str(plain)) == ["zero", "sea star"]
    words = tmp_path / "synset_words.txt"
    words.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
                     "n09999999\n")
    assert read_class_names(str(words)) == ["tench", "goldfish", "n09999999"]
    gap = tmp_path / "gap.txt"
    gap.write_text("a\n\nb\n")
    with pytest.raises(NetSetupError, match="line 2 is empty"):
        read_class_names(str(gap))
    with pytest.raises(NetSetupError, match="cannot read class names file"):
        read_class_names(str(tmp_path / "missing.txt"))


def test_overview_rows_are_labelled_and_nodes_csv_has_the_per_node_figures(small_net, tmp_path):
    import csv
    from PIL import Image
    import hmc_visualize
    proto, weights = small_net
    names = tmp_path / "names.txt"
    names.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\nn01484850 great white shark\n")
    out = tmp_path / "out"
    assert hmc_visualize.main([
        "--model", proto, "--weights", weights, "--nodes", "score", "conv2:0-1",
        "--class-names", str(names), "--chains", "4", "--iterations", "3", "-L", "3",
        "--step-size", "0.01", "--mass", "1", "--input-scale", "1", "--warmup", "2",
        "--out-dir", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [n["label"] for n in summary["nodes"]] == [
        "score:0 tench", "score:1 goldfish", "score:2 great white shark", "conv2:0", "conv2:1"]
    with open(out / "nodes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["layer"], r["channel"], r["class_name"]) for r in rows] == [
        ("score", "0", "tench"), ("score", "1", "goldfish"), ("score", "2", "great white shark"),
        ("conv2", "0", ""), ("conv2", "1", "")]
    for row, node in zip(rows, summary["nodes"]):
        for key in ("acceptance_rate", "step_size", "mean_energy_error", "mean_abs_energy_error"):
            assert float(row[key]) == pytest.approx(node[key]), key
        assert node["warmup"] == 2 and node["iterations"] == 3
        stats = list(csv.DictReader(open(node["files"]["stats_csv"])))
        sampling = [float(r["mean_abs_energy_error"]) for r in stats if r["warmup"] == "0"]
        assert node["mean_abs_energy_error"] == pytest.approx(np.mean(sampling))
        assert node["mean_abs_energy_error"] >= abs(node["mean_energy_error"])
    # The overview: a white label column left of the tiles, with ink beside every row.
    image = np.asarray(Image.open(out / "score_overview.png"))
    upscale = 96 // 17                                   # imaging.default_upscale
    tile_h, tile_w = 17 * upscale, 15 * upscale
    grid_w = 4 * (tile_w + 2) + 2
    label_w = image.shape[1] - grid_w
    assert label_w > 60 and image.shape[0] == 3 * (tile_h + 2) + 2
    for i in range(3):
        band = image[2 + i * (tile_h + 2): 2 + i * (tile_h + 2) + tile_h, :label_w]
        assert (band < 128).sum() > 50, f"row {i} has no label"
    assert (image[:, :label_w] > 128).mean() > 0.8        # mostly white: text, not tiles


def test_class_names_must_fit_a_requested_node(small_net, tmp_path):
    import hmc_visualize
    proto, weights = small_net
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\n")
    with pytest.raises(SystemExit, match="lists 4 names but no requested node has that many "
                                         "channels \\(score: 3\\)"):
        hmc_visualize.main(["--model", proto, "--weights", weights, "--nodes", "score",
                            "--class-names", str(names), "--out-dir", str(tmp_path / "o"),
                            "--no-progress"])


def test_label_column_on_colour_rows():
    from gencaffe.hmc.labels import label_rows
    grid = np.zeros((2 * 40 + 6, 100, 3), np.uint8)               # two black RGB rows
    out = label_rows(grid, [2, 44], 40, [["fc8:327", "starfish, sea star"], ["fc8:1"]])
    assert out.shape[0] == grid.shape[0] and out.shape[2] == 3 and out.shape[1] > 100
    label_w = out.shape[1] - 100
    np.testing.assert_array_equal(out[:, label_w:], grid)            # tiles untouched
    for top in (2, 44):
        assert (out[top:top + 40, :label_w] < 128).any()              # ink beside each row
