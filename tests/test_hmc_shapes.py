"""Shapes from Caffe itself (issue 17): the input-size search on its own (no Caffe),
the shape probe that survives Caffe's aborts, and nets of layer types the old
tool refused (Slice, Tile, Crop, Im2col, SPP, Reduction, Python, beside Concat,
Eltwise PROD and Deconvolution) visualized end to end."""
import json
import os

import numpy as np
import pytest

from gencaffe.hmc import geometry
from gencaffe.hmc.errors import NetSetupError, SizeRejected

# ---------------------------------------------------------------- the search, no Caffe


def step_probe(thresholds, reject_below, calls=None):
    """A stand-in for Caffe: along each axis the response has one position per
    threshold <= the input size (a non-decreasing step function), and sizes below
    ``reject_below`` are rejected. Axes are independent."""
    def probe(hw):
        if calls is not None:
            calls.append(tuple(hw))
        out = []
        for axis in (0, 1):
            if hw[axis] < reject_below[axis]:
                raise SizeRejected(f"size {hw[axis]} below {reject_below[axis]}", "fake")
            out.append(sum(1 for t in thresholds[axis] if t <= hw[axis]))
        return (1, 7, out[0], out[1])
    return probe


@pytest.mark.parametrize("seed", range(6))
def test_search_finds_the_first_size_with_a_1x1_response(seed):
    rng = np.random.default_rng(seed)
    thresholds, rejects = [], []
    for _ in (0, 1):
        first = int(rng.integers(1, 150))
        rest = sorted(first + rng.integers(1, 60, size=int(rng.integers(1, 6))))
        thresholds.append([first] + [int(t) for t in rest])
        rejects.append(int(rng.integers(1, first + 1)))
    native = (int(thresholds[0][-1] + 5), int(thresholds[1][-1] + 3))
    calls = []
    hw = geometry.unit_input_size(step_probe(thresholds, rejects, calls), native, "node")
    assert hw == (thresholds[0][0], thresholds[1][0])      # brute force: the first step
    assert len(set(calls)) <= 4 * (int(np.log2(max(native))) + 2) + 2     # bisections


def test_search_takes_the_widest_size_whose_every_row_and_column_is_used():
    # One position from 4 to 12 along both axes (as Caffe gives when windows run
    # past the edge); the node uses rows < 9 and columns < 7 only.
    def support(hw):
        return [r < 9 for r in range(hw[0])], [c < 7 for c in range(hw[1])]
    calls = []

    def counted(hw):
        calls.append(hw)
        return support(hw)
    probe = step_probe([[4, 13, 20], [4, 13, 20]], [2, 2])
    assert geometry.unit_input_size(probe, (30, 30), "n", counted) == (9, 7)
    assert len(calls) <= 4                              # both axes bisected together
    assert geometry.unit_input_size(probe, (30, 30), "n") == (4, 4)   # no support: s_1
    # a node using everything up to its last one-position size
    assert geometry.unit_input_size(probe, (30, 30), "n",
                                    lambda hw: ([True] * hw[0], [True] * hw[1])) == (12, 12)


def test_search_grows_when_the_nets_own_size_gives_an_empty_response():
    hw = geometry.unit_input_size(step_probe([[300, 400], [9]], [1, 1]), (100, 50), "n")
    assert hw == (300, 9)


def test_search_reports_a_node_that_never_has_exactly_one_position():
    # the response jumps from nothing to 2 positions (as a Deconvolution does)
    with pytest.raises(NetSetupError, match="no input height gives a 1x1 response at 'up'"
                                            ".*already gives 2"):
        geometry.unit_input_size(step_probe([[8, 8, 20], [3]], [1, 1]), (30, 30), "up")


def test_search_checks_the_pair_it_found():
    # axes that are not independent: 1x1 per axis, but 2 positions for the pair
    def probe(hw):
        h, w = hw
        if h < 4 or w < 4:
            raise SizeRejected("too small")
        return (1, 3, 1 + (h >= 9) + (w <= 4 and h <= 4), 1 + (w >= 9))
    with pytest.raises(NetSetupError, match="4x4, give a 2x1 response"):
        geometry.unit_input_size(probe, (20, 20), "n")


def test_search_needs_a_4d_response_and_an_accepted_own_size():
    with pytest.raises(NetSetupError, match="only a 4-D"):
        geometry.unit_input_size(lambda hw: (1, 4, 3), (10, 10), "n")

    def rejecting(hw):
        raise SizeRejected("Check failed: x", "conv1")
    with pytest.raises(NetSetupError, match="own input size 10x10 at layer 'conv1'"):
        geometry.unit_input_size(rejecting, (10, 10), "n")


def test_failure_text_names_the_layer_and_quotes_the_check():
    from gencaffe.hmc.shape_probe import explain_failure
    log = ("I1 net.cpp:84] Creating Layer conv1\nI1 net.cpp:94] Setting up conv1\n"
           "I1 net.cpp:84] Creating Layer conv2\n"
           "F20261126 06:25:21.069706 19306 blob.cpp:32] Check failed: shape[i] >= 0 (-1 vs. 0)\n"
           "*** Check failure stack trace: ***\n"
           "    @     0x7f  caffe::BaseConvolutionLayer<>::Reshape()\n")
    assert explain_failure(log, 6) == ("Check failed: shape[i] >= 0 (-1 vs. 0) (blob.cpp:32)",
                                       "conv2")
    # after set-up (a backward pass): no layer from the set-up log, the stack frame instead
    after = ("I1 net.cpp:84] Creating Layer am\nI1 net.cpp:257] Network initialization done.\n"
             "F1126 06:25:21.0 1 argmax_layer.cpp:90] Not Implemented Yet\n"
             "*** Check failure stack trace: ***\n"
             "    @     0x7f  caffe::ArgMaxLayer<>::Backward_cpu()\n"     # innermost first
             "    @     0x7f  caffe::Layer<>::Backward()\n")
    assert explain_failure(after, 6) == (
        "Not Implemented Yet (argmax_layer.cpp:90) in ArgMaxLayer::Backward_cpu", None)
    # no glog message at all: the signal (9 = killed, e.g. by the OOM killer)
    assert explain_failure("", 9) == ("Caffe ended with signal 9 (out of memory?)", None)


# ---------------------------------------------------------------- with Caffe

caffe = pytest.importorskip("caffe")
from gencaffe.hmc import net_surgery, node_geometry, target as ct  # noqa: E402

FILL = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 }'
# Between the input and the nodes: every layer type with a spatial output that the
# old per-type geometry refused (Slice, Tile, Crop, Im2col, SPP, Reduction; the
# Python layer is in its own test), with Concat, Eltwise PROD and Deconvolution.
ZOO_NET = f"""
name: "zoo"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: 20 dim: 18 }} }} }}
layer {{ name: "conv0" type: "Convolution" bottom: "data" top: "conv0"
        convolution_param {{ num_output: 4 kernel_size: 3 {FILL} }} }}
layer {{ name: "slice" type: "Slice" bottom: "conv0" top: "s1" top: "s2"
        slice_param {{ axis: 1 slice_point: 2 }} }}
layer {{ name: "tile" type: "Tile" bottom: "s1" top: "tiled" tile_param {{ axis: 1 tiles: 2 }} }}
layer {{ name: "concat" type: "Concat" bottom: "tiled" bottom: "s2" top: "cat" }}
layer {{ name: "pool" type: "Pooling" bottom: "cat" top: "pooled"
        pooling_param {{ pool: AVE kernel_size: 2 stride: 2 }} }}
layer {{ name: "crop" type: "Crop" bottom: "cat" bottom: "pooled" top: "cropped"
        crop_param {{ axis: 2 offset: 1 }} }}
layer {{ name: "prod" type: "Eltwise" bottom: "cropped" bottom: "pooled" top: "prod"
        eltwise_param {{ operation: PROD }} }}
layer {{ name: "im2col" type: "Im2col" bottom: "prod" top: "cols" convolution_param {{ kernel_size: 2 }} }}
layer {{ name: "deconv" type: "Deconvolution" bottom: "cols" top: "up"
        convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {FILL} }} }}
layer {{ name: "conv_out" type: "Convolution" bottom: "up" top: "conv_out"
        convolution_param {{ num_output: 5 kernel_h: 3 kernel_w: 2 stride: 2 {FILL} }} }}
layer {{ name: "spp" type: "SPP" bottom: "conv_out" top: "spp" spp_param {{ pyramid_height: 2 }} }}
layer {{ name: "reduce" type: "Reduction" bottom: "conv_out" top: "reduced"
        reduction_param {{ axis: 2 operation: SUMSQ }} }}
layer {{ name: "flat_cat" type: "Concat" bottom: "spp" bottom: "reduced" top: "flat_cat" }}
layer {{ name: "score" type: "InnerProduct" bottom: "flat_cat" top: "score"
        inner_product_param {{ num_output: 3 {FILL} }} }}
layer {{ name: "prob" type: "Softmax" bottom: "score" top: "prob" }}
"""
# The old tool's lists (SAME_SIZE_TYPES, FLATTENING_TYPES, its conv/pool formulas)
OLD_TOOL_TYPES = {"ReLU", "Sigmoid", "TanH", "LRN", "BatchNorm", "Scale", "Bias", "Dropout",
                  "Power", "AbsVal", "BNLL", "ELU", "PReLU", "Eltwise", "Split", "Softmax",
                  "MVN", "Exp", "Log", "Threshold", "Clip", "Swish", "Concat", "Silence",
                  "InnerProduct", "Flatten", "Reshape", "ArgMax", "Convolution",
                  "Deconvolution", "Pooling", "Input"}


def _save(folder, name, text, seed=7):
    proto = os.path.join(folder, name + ".prototxt")
    with open(proto, "w") as fh:
        fh.write(text)
    caffe.set_mode_cpu()
    caffe.set_random_seed(seed)
    weights = os.path.join(folder, name + ".caffemodel")
    caffe.Net(proto, caffe.TEST).save(weights)
    return proto, weights


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return _save(str(tmp_path_factory.mktemp("zoo")), "zoo", ZOO_NET)


def _fd_check(target, seed=0, h=1e-3):
    """Analytic df/dx against central differences along random directions (as in
    test_hmc_caffe: float32 Caffe, 1% + 5e-3 tolerance)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=target.cut.input_shape)
    _, grad = target.score(x)
    n = x.shape[0]
    for _ in range(3):
        v = rng.normal(size=x.shape)
        fd = (target.score(x + h * v)[0] - target.score(x - h * v)[0]) / (2 * h)
        np.testing.assert_allclose((grad * v).reshape(n, -1).sum(axis=1), fd,
                                   rtol=1e-2, atol=5e-3)


def test_zoo_uses_layer_types_outside_the_old_lists(zoo):
    types = {l.type for l in net_surgery.load_net_param(zoo[0]).layer}
    assert types - OLD_TOOL_TYPES == {"Slice", "Tile", "Crop", "Im2col", "SPP", "Reduction"}


def _used_rows_and_columns(target, n=4):
    """Input rows / columns with a non-zero gradient for some of n random inputs."""
    rng = np.random.default_rng(5)
    total = 0
    for _ in range(n):
        total = total + np.abs(target.score(rng.normal(size=target.cut.input_shape))[1])
    used = total.sum(axis=(0, 1)) > 0
    return used.any(axis=1), used.any(axis=0)


def test_spatial_node_through_refused_types_covers_its_field(zoo):
    proto, weights = zoo
    target = ct.build_node_target(proto, weights, "conv_out", [0, 3, 4])
    h, w = target.cut.input_shape[2:]
    assert target.net.blobs["conv_out"].data.shape == (3, 5, 1, 1)
    assert (h, w) != (20, 18)
    rows, cols = _used_rows_and_columns(target)
    assert rows.all() and cols.all()                 # every input pixel moves the node
    # One more row (column): no longer 1x1, or a row (column) the node ignores.
    for axis, bigger in ((0, (h + 1, w)), (1, (h, w + 1))):
        try:
            wider = ct.build_node_target(proto, weights, "conv_out", [0, 3, 4], bigger)
        except NetSetupError as err:
            assert "not 1x1" in str(err) or "Caffe rejects" in str(err), err
        else:
            assert not _used_rows_and_columns(wider)[axis].all(), bigger
    _fd_check(target)


def test_flat_node_through_refused_types_and_explicit_input_size(zoo):
    proto, weights = zoo
    target = ct.build_node_target(proto, weights, "score", [0, 1, 2])
    assert target.cut.input_shape == (3, 3, 20, 18)              # the net's own size
    assert target.cut.geometry.flat
    _fd_check(target, seed=1)
    # SPP and Reduction make the score flat at any size: --input-size is honoured
    bigger = ct.build_node_target(proto, weights, "score", [2], input_hw=(31, 26))
    assert bigger.cut.input_shape == (1, 3, 31, 26)
    _fd_check(bigger, seed=2)


def test_zoo_through_the_cli(zoo, tmp_path):
    import hmc_visualize
    proto, weights = zoo
    out = tmp_path / "out"
    # --input-size applies to every node of a run; conv_out is 1x1 only at its
    # searched size, so the flat nodes run at 24x24 and the spatial one alone.
    common = ["--model", proto, "--weights", weights, "--chains", "2", "--iterations", "3",
              "-L", "3", "--step-size", "0.05", "--mass", "1", "--sigma", "1",
              "--input-scale", "1", "--no-progress"]
    assert hmc_visualize.main(common + ["--nodes", "score:0,2", "reduce:4", "--input-size",
                                        "24x24", "--out-dir", str(out / "flat")]) == 0
    assert hmc_visualize.main(common + ["--nodes", "conv_out:1",
                                        "--out-dir", str(out / "conv")]) == 0
    flat = json.loads((out / "flat" / "summary.json").read_text())
    assert [(n["layer"], n["channel"], n["input_shape"]) for n in flat["nodes"]] == [
        ("score", 0, [3, 24, 24]), ("score", 2, [3, 24, 24]), ("reduce", 4, [3, 24, 24])]
    conv = json.loads((out / "conv" / "summary.json").read_text())
    h, w = ct.resolve_node(proto, "conv_out").input_hw
    assert conv["nodes"][0]["input_shape"] == [3, h, w]
    assert np.load(out / "conv" / "conv_out_1_samples.npy").shape == (2, 3, h, w)
    # the same --input-size on the spatial node: Caffe's answer, not 1x1
    with pytest.raises(SystemExit, match="input size 24x24 gives a .* response at "
                                         "'conv_out', not 1x1"):
        hmc_visualize.main(common + ["--nodes", "conv_out:1", "--input-size", "24x24",
                                     "--out-dir", str(out / "bad")])


def test_a_net_caffe_rejects_at_its_own_size_gets_caffes_reason(tmp_path, capsys):
    import hmc_visualize
    text = ZOO_NET.replace("dim: 20 dim: 18", "dim: 4 dim: 18")      # conv_out cannot fit
    proto = tmp_path / "small_input.prototxt"
    proto.write_text(text)
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")                  # never read: the net is refused before
    with pytest.raises(SystemExit) as info:
        hmc_visualize.main(["--model", str(proto), "--weights", str(weights), "--nodes",
                            "conv_out", "--out-dir", str(tmp_path / "o"), "--no-progress"])
    message = str(info.value)
    assert "Caffe rejects" in message and "own input size 3x4x18" in message
    assert "Check failed" in message and "--input-size" in message
    # a size Caffe accepts, given by the user, is used
    geo = node_geometry.resolve_geometry(net_surgery.load_net_param(str(proto)), "conv_out", (9, 5))
    assert geo.input_hw == (9, 5) and geo.node_shape == (1, 5, 1, 1)


def test_a_node_caffe_cannot_differentiate_is_refused_with_caffes_reason(tmp_path):
    text = ZOO_NET.replace(
        'layer { name: "score"',
        'layer { name: "argmax" type: "ArgMax" bottom: "flat_cat" top: "am" '
        'argmax_param { axis: 1 } }\nlayer { name: "score"').replace(
        'bottom: "flat_cat" top: "score"', 'bottom: "am" top: "score"')
    proto = tmp_path / "argmax.prototxt"
    proto.write_text(text)
    with pytest.raises(NetSetupError) as info:
        ct.resolve_node(str(proto), "score")
    assert "cannot compute the gradient of 'score'" in str(info.value)
    assert "ArgMaxLayer::Backward_cpu" in str(info.value)


PY_LAYER = '''
import caffe


class Double(caffe.Layer):
    """y = 2 x, a Python layer Caffe runs like any other."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
'''


def test_python_layer_between_input_and_node(tmp_path, monkeypatch):
    (tmp_path / "hmc_test_pylayer.py").write_text(PY_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = ZOO_NET.replace(
        'bottom: "data" top: "conv0"', 'bottom: "doubled" top: "conv0"').replace(
        'layer { name: "conv0"',
        'layer { name: "double" type: "Python" bottom: "data" top: "doubled" '
        'python_param { module: "hmc_test_pylayer" layer: "Double" } }\nlayer { name: "conv0"')
    proto, weights = _save(str(tmp_path), "py", text)
    target = ct.build_node_target(proto, weights, "conv_out", [1])
    plain = ct.build_node_target(*zoo_from(tmp_path, weights), "conv_out", [1])
    assert target.cut.input_shape == plain.cut.input_shape
    x = np.random.default_rng(3).normal(size=target.cut.input_shape)
    f2, g2 = target.score(x)
    f1, g1 = plain.score(2 * x)
    np.testing.assert_allclose(f2, f1, rtol=1e-5)
    np.testing.assert_allclose(g2, 2 * g1, rtol=1e-4, atol=1e-6)


def zoo_from(folder, weights):
    """The zoo net without the Python layer, same weights (same layer names)."""
    proto = os.path.join(str(folder), "plain.prototxt")
    with open(proto, "w") as fh:
        fh.write(ZOO_NET)
    return proto, weights


def test_a_helper_that_cannot_start_is_reported(tmp_path, monkeypatch):
    from gencaffe.hmc import shape_probe
    monkeypatch.setattr(shape_probe, "find_caffe_extension",
                        lambda: (str(tmp_path / "no" / "_caffe.so"), False))
    monkeypatch.setattr(node_geometry, "_GEOMETRY_CACHE", {})  # ask the helper, not the cache
    proto = tmp_path / "other.prototxt"
    proto.write_text(ZOO_NET)
    with pytest.raises(NetSetupError, match="shape probe process ended unexpectedly "
                                            "\\(exit code 1\\).*_caffe.so"):
        ct.resolve_node(str(proto), "conv_out")
