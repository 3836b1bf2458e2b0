"""The coupled forward/reverse nets (python/gencaffe/nets/coupled.py) in Caffe:
the reverse net really runs on the forward net's blobs, with the transposed
weights, and both objectives' gradients accumulate in the one blob."""
import os
import tempfile

import numpy as np
import pytest

caffe_pb2 = pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built")
from google.protobuf import text_format  # noqa: E402

from gencaffe.nets import catalog, coupled  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENSE = catalog.COUPLED_ARCHITECTURES["coupled_dense"]
CNN = catalog.COUPLED_ARCHITECTURES["coupled_cnn"]
BATCH = 4


def _caffe():
    import caffe
    caffe.set_mode_cpu()
    return caffe


def load(net_param, phase=None):
    caffe = _caffe()
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text_format.MessageToString(net_param))
    try:
        return caffe.Net(handle.name, caffe.TRAIN if phase is None else phase)
    finally:
        os.unlink(handle.name)


def input_net(arch, variant, loss_weights=None):
    """The train_val net with Input layers instead of the Data layers (so a test
    sets the batch), and optionally other loss weights {"loss": w, "rev_loss": w}."""
    net = coupled.build(arch, variant)
    layers = [l for l in net.layer if l.type != "Data"]
    feed = caffe_pb2.LayerParameter(name="feed", type="Input", top=["data", "label"])
    feed.input_param.shape.add().dim.extend([BATCH] + list(arch.input_shape))
    feed.input_param.shape.add().dim.extend([BATCH])
    del net.layer[:]
    net.layer.extend([feed] + layers)
    for layer in net.layer:
        if loss_weights and layer.name in loss_weights:
            del layer.loss_weight[:]
            layer.loss_weight.append(loss_weights[layer.name])
    return load(net)


def feed(net, seed=0):
    rng = np.random.default_rng(seed)
    net.blobs["data"].data[...] = rng.random(net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, 10, BATCH)


def copy_params(source, target):
    for name, blobs in source.params.items():
        for a, b in zip(blobs, target.params[name]):
            b.data[...] = a.data


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------ generator

def test_coupled_nets_are_committed_and_regenerated():
    paths = catalog.committed_nets(REPO)
    for arch in (DENSE, CNN):
        for variant in coupled.COUPLED_VARIANTS:
            path = catalog.committed_path(REPO, arch, variant)
            assert path in paths
            with open(path) as handle:
                assert handle.read() == paths[path], path


def test_unit_shapes_are_caffes():
    """The generator's map sizes (needed for the Reshape) are what Caffe computes,
    and every reverse layer gives its forward twin's input shape back."""
    for arch in (DENSE, CNN):
        shapes = coupled.unit_shapes(arch)
        net = input_net(arch, "eq21")
        names = coupled.layer_names(arch)
        assert net.blobs["image"].data.shape[1:] == shapes[0]
        for k, name in enumerate(names, start=1):
            assert net.blobs[name].data.shape[1:] == shapes[k], name
            reverse = "rev_%s" % name
            if k < arch.depth:
                top = reverse + "_map" if reverse + "_map" in net.blobs else reverse
                expected = shapes[k - 1]
                got = net.blobs[top].data.shape[1:]
                if coupled.flat_units(arch, k - 1):   # a vector of units (dense pixels too)
                    assert int(np.prod(got)) == int(np.prod(expected)), reverse
                else:
                    assert got == expected, reverse
    assert coupled.unit_shapes(CNN)[6] == (64, 4, 4)


def test_a_deconvolution_that_cannot_mirror_is_refused():
    arch = coupled.CoupledArchitecture(
        key="x", name="X", layers=(coupled.Conv(2, 2, 4), coupled.Dense(3)),
        input_shape=(1, 5, 5), data=DENSE.data, about="")
    with pytest.raises(ValueError, match="conv1: input size 5, window 2, stride 2"):
        coupled.unit_shapes(arch)


def test_binarize_threshold_and_unknown_variant():
    net = coupled.build(DENSE, "eq21", coupled.CoupledOptions(binarize="threshold"))
    layer = next(l for l in net.layer if l.name == "binarize")
    assert layer.type == "Threshold" and layer.threshold_param.threshold == 0.5
    with pytest.raises(ValueError, match="binarize must be one of"):
        coupled.build(DENSE, "eq21", coupled.CoupledOptions(binarize="round"))
    with pytest.raises(ValueError, match="unknown variant 'eq23'"):
        coupled.build(DENSE, "eq23")


def test_every_train_variant_has_the_same_forward_net_and_heads():
    def forward(net):
        return [l.SerializeToString() for l in net.layer
                if l.type in ("Convolution", "InnerProduct", "Sigmoid") and
                not l.name.startswith("rev_")]
    for arch in (DENSE, CNN):
        nets = {v: coupled.build(arch, v) for v in coupled.TRAIN_VARIANTS}
        assert all(forward(n) == forward(nets["disc"]) for n in nets.values())
        for variant, net in nets.items():
            layers = {l.name: l for l in net.layer}
            assert layers["loss"].type == "SoftmaxWithLoss"
            assert layers["binarize"].type == "BernoulliSample"
            if variant == "disc":
                assert not [l for l in net.layer if l.name.startswith("rev_")]
                continue
            rev = layers["rev_loss"]
            assert rev.type == "SigmoidCrossEntropyLoss" and list(rev.bottom)[1] == "image"
            assert rev.loss_param.normalization == caffe_pb2.LossParameter.VALID
            assert list(rev.loss_weight) == [784.0 if variant.endswith("_sum") else 1.0]
            top = "rev_%s" % coupled.layer_names(arch)[-1]
            if variant.startswith("eq21"):
                assert layers[top].type == "Embed" and list(layers[top].bottom) == ["label"]
            else:
                assert top not in layers
                sample = layers["sample_%s" % coupled.layer_names(arch)[-2]]
                assert sample.type == "BernoulliSample" and list(sample.propagate_down) == [False]


# ------------------------------------------------------------------ tying in Caffe

def test_the_reverse_layers_share_the_forward_blobs():
    """One blob in memory: writing a forward weight is seen by its reverse twin."""
    for arch in (DENSE, CNN):
        net = input_net(arch, "eq21")
        names = coupled.layer_names(arch)
        for k, name in enumerate(names, start=1):
            twin = "rev_%s" % name
            weight = net.params[name][0].data
            assert net.params[twin][0].data.shape == weight.shape
            weight.flat[0] += 1.5
            assert net.params[twin][0].data.flat[0] == weight.flat[0], twin
            if k >= 2:   # reverse layer k carries the bias of the units x^{k-1}
                holder = twin + "_bias" if twin + "_bias" in net.params else twin
                bias = net.params[names[k - 2]][1].data
                bias[0] -= 0.5
                assert net.params[holder][-1].data[0] == bias[0], holder


def test_a_forward_weight_change_changes_the_reverse_output():
    caffe = _caffe()
    for arch in (DENSE, CNN):
        net = input_net(arch, "eq21")
        feed(net)
        pixel = "rev_%s" % coupled.layer_names(arch)[0]
        caffe.set_random_seed(5)
        net.forward()
        before = net.blobs[pixel].data.copy()
        middle = coupled.layer_names(arch)[1]
        net.params[middle][0].data[...] *= 1.5     # a forward layer's weights only
        caffe.set_random_seed(5)
        net.forward()
        assert np.abs(net.blobs[pixel].data - before).max() > 1e-3, arch.key


def test_dense_reverse_is_the_transposed_forward():
    """Eq. 20 in numbers: x^2 = sigmoid(W_3[y] + b_2) (Embed = W_3^T onehot(y)),
    x^1 = sigmoid(W_2^T x^2 + b_1), pixel logits W_1^T x^1 + a_0."""
    caffe = _caffe()
    net = input_net(DENSE, "eq21")
    rng = np.random.default_rng(1)
    for name in ("ip1", "ip2", "ip3", "rev_ip1"):
        for blob in net.params[name]:
            blob.data[...] = rng.normal(0, 0.3, blob.data.shape)
    feed(net)
    caffe.set_random_seed(1)
    net.forward()
    p = {name: [b.data for b in net.params[name]] for name in ("ip1", "ip2", "ip3", "rev_ip1")}
    label = net.blobs["label"].data.astype(int)
    x2 = sigmoid(p["ip3"][0][label] + p["ip2"][1])
    x1 = sigmoid(x2 @ p["ip2"][0] + p["ip1"][1])
    logits = x1 @ p["ip1"][0] + p["rev_ip1"][1]
    np.testing.assert_allclose(net.blobs["rev_ip3"].data, x2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.blobs["rev_ip2"].data, x1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net.blobs["rev_ip1"].data, logits, rtol=1e-4, atol=1e-5)
    # the pixel bias is the reverse net's own: one per pixel, no forward twin
    assert p["rev_ip1"][1].shape == (784,)


def test_each_deconvolution_is_the_adjoint_of_its_convolution():
    """<conv_k(x) - b_k, y> = <x, rev_k(y) - b_{k-1}> for every layer of the CNN
    (the dense ip7 too, through its Reshape and Bias), on random x and y."""
    net = input_net(CNN, "eq21")
    rng = np.random.default_rng(2)
    for name, blobs in net.params.items():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.2, blob.data.shape)
    names = coupled.layer_names(CNN)
    for k in range(1, CNN.depth):
        name, twin = names[k - 1], "rev_%s" % names[k - 1]
        bottom = net.bottom_names[name][0]         # x^{k-1} (a Split's top for the image)
        x = rng.normal(size=net.blobs[bottom].data.shape)
        net.blobs[bottom].data[...] = x
        net.forward(start=name, end=name)          # W_k x + b_k (before the Sigmoid)
        forward = net.blobs[name].data.copy()
        forward -= net.params[name][1].data.reshape((1, -1) + (1,) * (forward.ndim - 2))
        source = net.bottom_names[twin][0]         # the reverse unit above: x^k
        y = rng.normal(size=net.blobs[source].data.shape)
        net.blobs[source].data[...] = y
        last = twin + "_bias" if twin + "_bias" in net.layer_dict else twin
        net.forward(start=twin, end=last)          # W_k^T y + b_{k-1}
        out = twin + "_map" if twin + "_map" in net.blobs else twin
        backward = net.blobs[out].data.copy()
        backward -= net.params[last][-1].data.reshape((1, -1) + (1,) * (backward.ndim - 2))
        lhs = float(np.sum(forward * y.reshape(forward.shape)))
        rhs = float(np.sum(x * backward.reshape(x.shape)))
        assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-3), name


def _gradients(net, seed):
    caffe = _caffe()
    feed(net)
    caffe.set_random_seed(seed)
    net.clear_param_diffs()
    net.forward()
    net.backward()
    return {name: [b.diff.copy() for b in blobs] for name, blobs in net.params.items()}


@pytest.mark.parametrize("arch,variant", [(DENSE, "eq21"), (CNN, "eq21"), (CNN, "eq22")])
def test_both_objectives_accumulate_in_the_shared_blob(arch, variant):
    """The full net's gradient of a shared blob is the forward objective's plus
    the reverse objective's (each from the same net with the other loss weight
    0, the same weights and the same Bernoulli samples), and both are non-zero
    where both nets use the blob."""
    full = input_net(arch, variant)
    forward_only = input_net(arch, variant, {"rev_loss": 0.0})
    reverse_only = input_net(arch, variant, {"loss": 0.0})
    for net in (forward_only, reverse_only):
        copy_params(full, net)
    g, gf, gr = (_gradients(net, seed=11) for net in (full, forward_only, reverse_only))
    names = coupled.layer_names(arch)
    shared_w = names[1]     # W_2: forward layer 2 and reverse layer 2
    for name in names:
        for i in range(2):
            np.testing.assert_allclose(g[name][i], gf[name][i] + gr[name][i], rtol=1e-3,
                                       atol=1e-6 * max(1.0, np.abs(g[name][i]).max()),
                                       err_msg="%s blob %d" % (name, i))
    assert np.abs(gf[shared_w][0]).max() > 0 and np.abs(gr[shared_w][0]).max() > 0
    top = names[-1]
    if variant == "eq21":
        # the class layer's W_d: the Embed's rows and the forward layer
        assert np.abs(gr[top][0]).max() > 0
    else:
        # Eq. 22: the sample carries no gradient; W_d is the forward net's alone
        assert np.abs(gr[top][0]).max() == 0


def test_eq22_sample_passes_no_gradient_to_the_forward_units():
    caffe = _caffe()
    full = input_net(CNN, "eq22")
    forward_only = input_net(CNN, "eq22", {"rev_loss": 0.0})
    copy_params(full, forward_only)
    diffs = []
    for net in (full, forward_only):
        feed(net)
        caffe.set_random_seed(3)
        net.forward()
        net.backward()
        diffs.append(net.blobs["ip7"].diff.copy())
        assert set(np.unique(net.blobs["sample_ip7"].data)) <= {0.0, 1.0}
    np.testing.assert_allclose(diffs[0], diffs[1], rtol=1e-5, atol=1e-8)


def test_eq21_gradient_of_a_shared_weight_matches_finite_differences():
    """Caffe's gradient of the whole Eq. 21 objective with respect to W_1 (used
    by ip1 and, transposed, by the pixel layer) against central differences of
    the objective (same data and pixel samples)."""
    caffe = _caffe()
    net = input_net(DENSE, "eq21")
    feed(net)

    def objective():
        caffe.set_random_seed(4)
        out = net.forward()
        return float(out["loss"]) + float(out["rev_loss"])
    caffe.set_random_seed(4)
    net.forward()
    net.clear_param_diffs()
    net.backward()
    weight = net.params["ip1"][0]
    rng = np.random.default_rng(5)
    # coordinates that an on pixel reaches (pixel column j of W_1 moves ip1 when x_j = 1)
    on = np.flatnonzero(net.blobs["image"].data.reshape(BATCH, -1).max(axis=0))
    checked = 0
    for _ in range(6):
        i, j = rng.integers(0, 512), rng.choice(on)
        analytic = float(weight.diff[i, j])
        original = float(weight.data[i, j])
        step = 1e-2
        weight.data[i, j] = original + step
        up = objective()
        weight.data[i, j] = original - step
        down = objective()
        weight.data[i, j] = original
        numeric = (up - down) / (2 * step)
        assert analytic == pytest.approx(numeric, rel=5e-2, abs=2e-5), (i, j)
        checked += 1
    assert checked == 6


def test_deploy_nets_load_a_trained_models_weights_by_name(tmp_path):
    """A caffemodel of the train_val net loads into both deploy nets (layer
    names match), and the deploy reverse net gives the train net's pixel
    probabilities for the same class."""
    caffe = _caffe()
    train = input_net(DENSE, "eq21")
    rng = np.random.default_rng(6)
    for blobs in train.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.2, blob.data.shape)
    weights = str(tmp_path / "w.caffemodel")
    train.save(weights)
    feed(train)
    caffe.set_random_seed(1)
    train.forward()
    reverse = caffe.Net(catalog.committed_path(REPO, DENSE, "deploy_reverse"), weights=weights,
                        phase=caffe.TEST)
    reverse.blobs["label"].reshape(BATCH)
    reverse.blobs["label"].data[...] = train.blobs["label"].data
    reverse.forward()
    np.testing.assert_allclose(reverse.blobs["pixel_prob"].data,
                               sigmoid(train.blobs["rev_ip1"].data), rtol=1e-5, atol=1e-6)
    forward = caffe.Net(catalog.committed_path(REPO, DENSE, "deploy_forward"), weights=weights,
                        phase=caffe.TEST)
    forward.blobs["image"].reshape(BATCH, 1, 28, 28)
    forward.blobs["image"].data[...] = train.blobs["image"].data
    forward.forward()
    scores = train.blobs["ip3"].data
    expected = np.exp(scores - scores.max(1, keepdims=True))
    np.testing.assert_allclose(forward.blobs["prob"].data,
                               expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
