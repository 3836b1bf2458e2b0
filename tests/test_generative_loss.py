"""GenerativeLoss through pycaffe against the independent NumPy reference.

Property-based (hypothesis) over shapes, labels, ignore/unlabelled examples,
normalization modes and loss weights. Tolerances: the layer computes in
float32, the reference in float64, so loss and gradients must agree to
rtol 2e-4 plus atol 2e-5 (scaled by the values' magnitude); ESS to 1e-4.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import caffe
from caffe import layers as L

from conftest import gpu_available
from generative_loss_reference import generative_loss

NORMALIZATIONS = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def build_net(tmp_path, n, c, loss_weight=1.0, ignore_label=None, normalization="VALID",
              semi_supervised=False, unlabeled_label=-1, unlabeled_weight=0.1,
              class_prior=None, name="net"):
    """A net of two inputs and the loss layer, written by NetSpec."""
    spec = caffe.NetSpec()
    spec.scores = L.Input(shape=dict(dim=[n, c]))
    spec.label = L.Input(shape=dict(dim=[n]))
    loss_param = dict(normalization=getattr(caffe.params.Loss, normalization))
    if ignore_label is not None:
        loss_param["ignore_label"] = ignore_label
    gen_param = dict(semi_supervised=semi_supervised, unlabeled_label=unlabeled_label,
                     unlabeled_weight=unlabeled_weight)
    if class_prior is not None:
        gen_param["class_prior"] = list(class_prior)
    spec.loss, spec.ess = L.GenerativeLoss(spec.scores, spec.label, ntop=2,
                                           loss_weight=[loss_weight, 0],
                                           loss_param=loss_param,
                                           generative_loss_param=gen_param)
    proto = spec.to_proto()
    proto.force_backward = True
    path = tmp_path / f"{name}.prototxt"
    path.write_text(str(proto))
    return caffe.Net(str(path), caffe.TRAIN)


def run_layer(net, scores, labels):
    net.blobs["scores"].data[...] = scores
    net.blobs["label"].data[...] = labels
    out = net.forward()
    net.backward()
    return float(out["loss"]), net.blobs["scores"].diff.copy(), float(out["ess"])


def assert_matches(loss, grad, ess, ref, ess_rtol=1e-4):
    ref_loss, ref_grad, ref_ess, _ = ref
    assert loss == pytest.approx(ref_loss, rel=2e-4, abs=2e-5 * max(1, abs(ref_loss)))
    scale = max(1.0, np.abs(ref_grad).max())
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=2e-5 * scale)
    assert ess == pytest.approx(ref_ess, rel=ess_rtol, abs=1e-6)


@st.composite
def batches(draw, semi=False):
    n = draw(st.integers(1, 24))
    c = draw(st.integers(1, 12))
    spread = draw(st.sampled_from([0.1, 1.0, 5.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scores = (spread * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    ignore_label = draw(st.sampled_from([None, -3]))
    if ignore_label is not None:
        labels[rng.random(n) < 0.2] = ignore_label
    if semi:
        labels[rng.random(n) < 0.4] = -1
    return scores, labels.astype(np.float32), ignore_label


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches(), normalization=st.sampled_from(NORMALIZATIONS),
       loss_weight=st.sampled_from([1.0, 0.5, 3.0]))
def test_supervised_matches_reference(tmp_path, batch, normalization, loss_weight):
    scores, labels, ignore_label = batch
    n, c = scores.shape
    net = build_net(tmp_path, n, c, loss_weight, ignore_label, normalization)
    got = run_layer(net, scores, labels)
    ref = generative_loss(scores.astype(np.float64), labels, ignore_label,
                          normalization=normalization, loss_weight=loss_weight)
    assert_matches(*got, ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches(semi=True), weight=st.sampled_from([0.1, 1.0]), prior_seed=st.integers(0, 9))
def test_semi_supervised_matches_reference(tmp_path, batch, weight, prior_seed):
    scores, labels, ignore_label = batch
    n, c = scores.shape
    prior = np.random.default_rng(prior_seed).uniform(0.5, 2.0, size=c)
    ref = generative_loss(scores.astype(np.float64), labels, ignore_label, semi_supervised=True,
                          unlabeled_weight=weight, class_prior=prior)
    assume(ref[3] > 1e-3)  # float32 and float64 may break a near-tie differently
    net = build_net(tmp_path, n, c, ignore_label=ignore_label, semi_supervised=True,
                    unlabeled_weight=weight, class_prior=prior)
    assert_matches(*run_layer(net, scores, labels), ref)


def test_extreme_scores_are_finite(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.choice([-1e4, 1e4], size=(16, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=16).astype(np.float32)
    net = build_net(tmp_path, 16, 10)
    loss, grad, ess = run_layer(net, scores, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all() and np.isfinite(ess)
    ref = generative_loss(scores.astype(np.float64), labels)
    # at |F| = 1e4 one float32 ulp is ~1e-3, so W (and ESS) carry ~1e-3 relative error
    assert_matches(loss, grad, ess, ref, ess_rtol=3e-3)


def test_gradient_is_batch_softmax_not_class_softmax(tmp_path):
    """The generative gradient differs from SoftmaxWithLoss's on the same blobs:
    columns of dF sum to zero (softmax down the batch), rows do not."""
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((8, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3], np.float32)
    _, grad, _ = run_layer(build_net(tmp_path, 8, 4), scores, labels)
    np.testing.assert_allclose(grad.sum(axis=0), 0, atol=1e-6)
    assert np.abs(grad.sum(axis=1)).max() > 1e-3


BAD_INPUTS = {
    "label_too_large": ("labels[2] = 4", "example 2 has label 4, outside the classes [0, 4)"),
    "label_negative": ("labels[0] = -1", "has label -1, outside the classes"),
    "label_not_integer": ("labels[1] = 0.5", "labels must be integers"),
    "nan_score": ("scores[3, 1] = np.nan", "class column 1 has a non-finite score"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_with_message(tmp_path, case):
    """A CHECK failure aborts the process, so each case runs in a child."""
    mutation, message = BAD_INPUTS[case]
    script = textwrap.dedent(f"""
        import numpy as np, pathlib, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import conftest
        from test_generative_loss import build_net
        net = build_net(pathlib.Path({str(tmp_path)!r}), 6, 4)
        scores = np.zeros((6, 4), np.float32)
        labels = np.array([0, 1, 2, 3, 0, 1], np.float32)
        {mutation}
        net.blobs["scores"].data[...] = scores
        net.blobs["label"].data[...] = labels
        net.forward()
    """)
    env = dict(os.environ, GLOG_minloglevel="0")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]


def test_mismatched_batch_sizes_rejected_at_setup(tmp_path):
    proto = textwrap.dedent("""
        layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 5 dim: 3 } } }
        layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 4 } } }
        layer { name: "loss" type: "GenerativeLoss" bottom: "s" bottom: "y" top: "loss" }
    """)
    path = tmp_path / "bad.prototxt"
    path.write_text(proto)
    script = f"import caffe; caffe.Net({str(path)!r}, caffe.TRAIN)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, GLOG_minloglevel="0"), timeout=120)
    assert proc.returncode != 0
    assert "same first dimension" in proc.stderr


@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA build (CAFFE_BUILD_DIR) and a GPU")
@pytest.mark.parametrize("semi", [False, True])
def test_gpu_equals_cpu(tmp_path, semi):
    rng = np.random.default_rng(7)
    n, c = 256, 1000
    scores = (3 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.float32)
    if semi:
        labels[::3] = -1
    results = []
    for mode in (caffe.set_mode_cpu, caffe.set_mode_gpu):
        mode()
        net = build_net(tmp_path, n, c, ignore_label=-5, semi_supervised=semi,
                        name=f"net_{mode.__name__}")
        results.append(run_layer(net, scores, labels))
    caffe.set_mode_cpu()
    (loss_cpu, grad_cpu, ess_cpu), (loss_gpu, grad_gpu, ess_gpu) = results
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-5)
    np.testing.assert_allclose(grad_gpu, grad_cpu, rtol=1e-4, atol=1e-7)
    assert ess_gpu == pytest.approx(ess_cpu, rel=1e-5)
