"""scripts/check_engines.py's comparison rule and its report of where a GPU run
first leaves the CPU's (the GPU run itself needs a GPU: scripts/gpu_checks.sh)."""
import os
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
pytest.importorskip("caffe", reason="check_engines imports pycaffe")
import check_engines  # noqa: E402


def test_relative_error_is_scaled_by_the_reference_maximum():
    reference = np.array([0.0, 2.0, -4.0])
    assert check_engines.relative_error(reference, reference) == 0
    assert check_engines.relative_error(reference + [0, 0, 0.04], reference) == pytest.approx(0.01)


def test_first_divergence_names_the_layer():
    ones = np.ones(3)
    reference = {"data": (ones, ones), "conv1": (ones, ones), "pool1": (ones, ones),
                 "fc8": (ones, ones)}
    gpu = dict(reference)
    gpu["pool1"] = (ones, ones * 1.5)        # forward fine, backward off from pool1 down
    gpu["conv1"] = (ones, ones * 1.5)
    gpu["data"] = (ones, ones * 1.5)
    assert check_engines.first_divergence(gpu, reference, 1e-3) == \
        "forward first off at none; backward first off at pool1"
    gpu["conv1"] = (ones * 2, ones * 1.5)
    assert check_engines.first_divergence(gpu, reference, 1e-3).startswith(
        "forward first off at conv1")


TWO_UNIT_NET = """
force_backward: true
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "hidden" type: "InnerProduct" bottom: "data" top: "hidden"
        inner_product_param { num_output: 2 bias_term: false } }
layer { name: "relu" type: "ReLU" bottom: "hidden" top: "hidden" }
layer { name: "score" type: "InnerProduct" bottom: "hidden" top: "score"
        inner_product_param { num_output: 1 bias_term: false } }
layer { name: "prob" type: "Sigmoid" bottom: "score" top: "prob" }
"""


def test_pinned_forward_gives_every_layer_the_reference_gates(tmp_path):
    """Two inputs 2e-3 apart on either side of a ReLU's kink: run freely
    their input gradients differ (the gate flips); the second run pinned to
    the first's per-layer inputs reproduces the first's gradient exactly."""
    import caffe
    caffe.set_mode_cpu()
    model = tmp_path / "net.prototxt"
    model.write_text(TWO_UNIT_NET)
    net = caffe.Net(str(model), caffe.TEST)
    net.params["hidden"][0].data[...] = [[1, 0], [0, 1]]
    net.params["score"][0].data[...] = [[2, 3]]
    weights = str(tmp_path / "net.caffemodel")
    net.save(weights)
    above = check_engines.run_net(caffe, str(model), weights, [[1e-3, 1]], "score", 0)
    below = check_engines.run_net(caffe, str(model), weights, [[-1e-3, 1]], "score", 0)
    np.testing.assert_array_equal(above["grad"], [[2, 3]])
    np.testing.assert_array_equal(below["grad"], [[0, 3]])
    assert check_engines.relu_gates_flipped(below["relu_tops"], below["blobs"],
                                            above["blobs"]) == 1
    pinned = check_engines.run_net(caffe, str(model), weights, [[-1e-3, 1]], "score", 0,
                                   pinned=above["record"])
    np.testing.assert_array_equal(pinned["grad"], above["grad"])
    assert set(pinned["layer_errors"]) == {"data", "hidden", "relu", "score", "prob"}
    assert max(pinned["layer_errors"].values()) == 0


def test_an_engine_that_agrees_passes_and_the_report_says_so(tmp_path):
    """The whole comparison on the CPU against itself (gpu=None): LeNet
    agrees exactly, and the report row says 'yes'."""
    rows = check_engines.check("lenet", None, 2, 1e-3, str(tmp_path),
                               np.random.default_rng(1), perturb=1e-3)
    assert [(r["engine"], r["ok"], r["prob"], r["grad"], r["pinned_grad"], r["flips"])
            for r in rows[:1]] == [("CPU CAFFE", True, 0.0, 0.0, 0.0, 0)]
    lines = check_engines.report(rows, 1e-3).splitlines()
    assert lines[2].startswith("| lenet | CPU CAFFE |") and lines[2].endswith("| yes |")
    # The calibration row: a changed input, pinned back to the reference's.
    calibration = rows[1]
    assert calibration["ok"] is None and calibration["engine"].startswith("CPU, input x (1 + 0.001")
    assert 0 < calibration["prob"] < 1e-2 and calibration["pinned_grad"] == 0
    assert lines[3].endswith("| -: calibration: the gradient's own jumps |")


def test_compare_tells_a_flipped_gate_from_a_wrong_kernel():
    ones = np.ones(3)
    reference = {"prob": ones, "grad": ones, "blobs": {"conv1": (ones, ones)}}
    flipped = {"prob": ones, "grad": ones * 1.5, "relu_tops": ["conv1"],
               "blobs": {"conv1": (np.array([1, 1, -1.0]), ones)},
               "pinned": {"grad": ones, "layer_errors": {"conv1": 1e-7}}}
    row = check_engines.compare(flipped, reference, 1e-3)
    assert row["ok"] and row["flips"] == 1 and "1 flipped ReLU gates" in row["where"]
    flipped["pinned"]["grad"] = ones * 1.5                 # wrong even when pinned
    row = check_engines.compare(flipped, reference, 1e-3)
    assert not row["ok"] and row["where"].startswith("forward first off at conv1")
