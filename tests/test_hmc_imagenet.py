"""AlexNet and ZF nodes (issue 17): conv5, fc6 and fc8 of the generator's deploy nets
(models/alexnet, models/zf) sampled through the CLI with the paper's settings
(--preset alexnet / zf) and seeded random weights, one chain and one leapfrog
step each so it stays small: ~0.2 s per AlexNet forward+backward on 2 cores,
~10 s per net, most of it writing and reading the 240 MB random caffemodel."""
import json
import os

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gencaffe.hmc import target as ct  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"alexnet": os.path.join(REPO, "models", "alexnet", "deploy.prototxt"),
          "zf": os.path.join(REPO, "models", "zf", "deploy.prototxt")}
# (input size of the conv5 node, of fc6/fc8 = the net's own input)
EXPECTED = {"alexnet": ((35, 35), (227, 227)), "zf": ((42, 42), (224, 224))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def imagenet_net(request, tmp_path_factory):
    name = request.param
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    weights = tmp_path_factory.mktemp(name) / "random.caffemodel"
    caffe.Net(MODELS[name], caffe.TEST).save(str(weights))
    yield name, MODELS[name], str(weights)
    os.unlink(weights)


def test_conv5_fc6_fc8_nodes_through_the_cli(imagenet_net, tmp_path):
    import hmc_visualize
    name, model, weights = imagenet_net
    out = tmp_path / "out"
    rc = hmc_visualize.main(["--model", model, "--weights", weights, "--preset", name,
                             "--nodes", "conv5:7", "fc6:100", "fc8:3", "--chains", "1",
                             "--iterations", "1", "-L", "1", "--out-dir", str(out),
                             "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    conv5_hw, full_hw = EXPECTED[name]
    got = {n["layer"]: n for n in summary["nodes"]}
    assert got["conv5"]["input_shape"] == [3, *conv5_hw]
    assert got["fc6"]["input_shape"] == got["fc8"]["input_shape"] == [3, *full_hw]
    # the preset's rule: conv nodes start from noise, fully connected ones from zero
    assert (got["conv5"]["init"], got["fc6"]["init"], got["fc8"]["init"]) == (
        "noise", "zero", "zero")
    assert summary["settings"]["step_size"] == 3e-6 and summary["settings"]["mass"] == 1e-5
    for node in summary["nodes"]:
        samples = np.load(node["files"]["samples_npy"])
        assert samples.shape == (1, 3, *node["input_shape"][1:])
        assert np.all(np.isfinite(samples))
        assert node["gradient_evaluations"] == 2          # start + one leapfrog step
        assert os.path.isfile(node["files"]["samples_png"])


def test_alexnet_conv_node_sizes_are_their_receptive_fields():
    # By hand (kernel k, stride s, pad p; pool windows must be complete):
    # conv1 k11 s4: 11. conv5: conv3-5 (k3 p1) and pool2 (k3 s2) keep 1 from 3 rows
    # of conv2 (k5 p2), from 3 of pool1 (k3 s2, complete windows: 7 rows of conv1),
    # from (7 - 1) * 4 + 11 = 35 input rows.
    for node, hw in (("conv1", (11, 11)), ("conv5", (35, 35))):
        assert ct.resolve_node(MODELS["alexnet"], node).input_hw == hw, node
    # Caffe also gives conv1 a 1x1 response at 8..14 (its integer division rounds
    # -0.x to 0 below 11): 12 adds a column conv1 ignores.
    assert ct.resolve_node(MODELS["alexnet"], "conv1", (8, 8)).node_shape[2:] == (1, 1)
    wider = ct.build_node_target(MODELS["alexnet"], None, "conv1", [0, 1, 2, 3],
                                 input_hw=(12, 12))
    _, grad = wider.score(np.random.default_rng(0).normal(size=wider.cut.input_shape))
    used = np.abs(grad).sum(axis=(0, 1)) > 0
    assert used[:11, :11].all() and not used[11].any() and not used[:, 11].any()
