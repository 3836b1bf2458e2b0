"""The sampler on curved targets, end to end through the CLI (issue 17).

test_hmc_math.py checks exactness on a linear score, whose target is Gaussian.
Here the score is built from ordinary Caffe layers and has curvature, and the
whole tool runs: python/hmc_visualize.py on a tiny prototxt, pycaffe's forward
and backward, the sampler, the .npy it writes. What the sampler targets
(sampler.py: U(x) = (-f(x) + |x|^2 / (2 sigma^2)) / T) is

    p(x)  ∝  exp(-U(x))  =  exp(f(x) / T) · N(x; 0, sigma^2 T I)   (up to a constant),

known here without sampling:

* kink_quartic, 1-D: f(x) = 1.5 relu(x) - 0.02 x^4 (ReLU, Eltwise PROD twice,
  Eltwise SUM with coefficients), T = 0.5: a skewed density with a kink at 0
  and lighter-than-Gaussian tails; mean, variance and P(x < 0) by numerical
  integration (trapezoid rule, step 1e-4 over ±15, on each side of the kink;
  halving the step changes nothing at 1e-9);
* log_sum_exp, 2-D: f(x) = log(exp(w1.x + b1) + exp(w2.x + b2)) (InnerProduct,
  Softmax, Log, Eltwise SUM: z - log softmax(z) = logsumexp(z) in every
  channel), T = 1: then exp(f) N(0, sigma^2 I) = sum_k exp(b_k + sigma^2 |w_k|^2 / 2)
  N(sigma^2 w_k, sigma^2 I), a two-component Gaussian mixture with closed-form
  mean, variances and P(x_0 > 0).

Statistics and tolerance: the CLI runs N independent chains (stacked on the
batch axis, each with its own momentum and accept/reject) and writes their
final states: N independent draws. So each statistic's Monte Carlo standard
error is the plain iid one, estimated from the draws: SE(mean) = s / sqrt(N),
SE(variance) = sqrt((m4 - s^4) / N) (m4 the sample 4th central moment), SE(P) =
sqrt(P (1 - P) / N). Every z = (estimate - truth) / SE must satisfy |z| < 4; for
a correct, converged sampler a false failure has probability below
5 x 6.3e-5 = 3.2e-4 per target (and the seeds are fixed). Convergence: 30-40
iterations at acceptance ~0.9, checked by hand against 60-80 iterations (same
z-scores within noise).

The check can fail: the same criterion, run through the same CLI, rejects the
sampler without its Metropolis step (discretisation bias: at these step sizes
the variance is inflated by z > 6; on the quartic some chains also run off to
infinity) and a score with its sign flipped (a different target). A gradient
error alone would not be caught by moments (Metropolis with the true energy
keeps any reversible, volume-preserving proposal exact; it only mixes worse):
the gradient itself is checked against the analytic one below and against
finite differences in test_hmc_caffe.py.
"""
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

from gencaffe.hmc import node_score, sampler as hmc, target as ct  # noqa: E402

Z_MAX = 4.0


@dataclass
class CurvedTarget:
    name: str
    prototxt: str
    node: str
    dim: int
    score: Callable[[np.ndarray], np.ndarray]       # f(x) for x of shape (n, dim)
    gradient: Callable[[np.ndarray], np.ndarray]    # df/dx
    sigma: float
    temperature: float
    cli: List[str]                                  # sampler settings for the CLI
    params: Dict[str, list] = field(default_factory=dict)


def _input(dim):
    return (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ dim: 1 dim: {dim} dim: 1 dim: 1 }} }} }}\n')


B_KINK, C_QUART = 1.5, 0.02
KINK_QUARTIC = CurvedTarget(
    name="kink_quartic",
    prototxt=_input(1) + f"""
layer {{ name: "relu" type: "ReLU" bottom: "data" top: "r" }}
layer {{ name: "square" type: "Eltwise" bottom: "data" bottom: "data" top: "x2"
        eltwise_param {{ operation: PROD }} }}
layer {{ name: "fourth" type: "Eltwise" bottom: "x2" bottom: "x2" top: "x4"
        eltwise_param {{ operation: PROD }} }}
layer {{ name: "f" type: "Eltwise" bottom: "r" bottom: "x4" top: "f"
        eltwise_param {{ operation: SUM coeff: {B_KINK} coeff: {-C_QUART} }} }}
""",
    node="f:0", dim=1,
    score=lambda x: B_KINK * np.maximum(x[:, 0], 0) - C_QUART * x[:, 0] ** 4,
    gradient=lambda x: (B_KINK * (x > 0) - 4 * C_QUART * x ** 3),
    sigma=1.5, temperature=0.5,
    # zero start: the quartic is stiff far out, where noise starts would put a few chains
    cli=["--chains", "4000", "--iterations", "30", "-L", "3", "--step-size", "0.6",
         "--mass", "1", "--init", "zero"])

W_LSE = np.array([[1.6, 0.4], [-1.2, -0.6]])
B_LSE = np.array([0.0, 0.8])


def _lse_score(x):
    z = x @ W_LSE.T + B_LSE
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


def _lse_gradient(x):
    z = x @ W_LSE.T + B_LSE
    soft = np.exp(z - z.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    return soft @ W_LSE


LOG_SUM_EXP = CurvedTarget(
    name="log_sum_exp",
    prototxt=_input(2) + """
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "z" inner_product_param { num_output: 2 } }
layer { name: "softmax" type: "Softmax" bottom: "z" top: "s" }
layer { name: "log" type: "Log" bottom: "s" top: "log_s" }
layer { name: "lse" type: "Eltwise" bottom: "z" bottom: "log_s" top: "lse"
        eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
""",
    node="lse:0", dim=2, score=_lse_score, gradient=_lse_gradient,
    sigma=1.0, temperature=1.0,
    cli=["--chains", "4000", "--iterations", "40", "-L", "2", "--step-size", "1.2",
         "--mass", "1", "--init", "noise"],
    params={"ip": [W_LSE, B_LSE]})

TARGETS = {t.name: t for t in (KINK_QUARTIC, LOG_SUM_EXP)}


# ---------------------------------------------------------------- truth

def kink_quartic_truth(step=1e-4, half_width=15.0):
    """Mean, variance and P(x < 0) of exp(f/T) N(0, sigma^2 T), by the trapezoid rule
    on each side of the kink (x = 0 is an end point of both grids)."""
    t = KINK_QUARTIC
    n = int(round(half_width / step))
    sides = [np.linspace(-half_width, 0.0, n + 1), np.linspace(0.0, half_width, n + 1)]

    def density(x):
        return np.exp((t.score(x[:, None]) - x ** 2 / (2 * t.sigma ** 2)) / t.temperature)

    def integral(g):
        return sum(np.trapezoid(g(x) * density(x), x) for x in sides)
    z = integral(lambda x: 1.0)
    mean = integral(lambda x: x) / z
    var = integral(lambda x: (x - mean) ** 2) / z
    left = np.trapezoid(density(sides[0]), sides[0]) / z
    return {"mean": np.array([mean]), "var": np.array([var]), "p_tail": left}


def log_sum_exp_truth():
    """Closed form of the mixture sum_k pi_k N(sigma^2 w_k, sigma^2 I) (T = 1)."""
    s2 = LOG_SUM_EXP.sigma ** 2
    log_w = B_LSE + s2 * (W_LSE ** 2).sum(axis=1) / 2
    pi = np.exp(log_w - log_w.max())
    pi /= pi.sum()
    mu = s2 * W_LSE
    mean = pi @ mu
    var = pi @ (s2 + mu ** 2) - mean ** 2
    phi = np.array([0.5 * (1 + math.erf(m / math.sqrt(2 * s2))) for m in mu[:, 0]])
    return {"mean": mean, "var": var, "p_tail": 1.0 - pi @ phi}   # P(x0 < 0)


TRUTH = {"kink_quartic": kink_quartic_truth, "log_sum_exp": log_sum_exp_truth}


def z_scores(samples, truth):
    """z of each statistic against the truth, with iid standard errors (module doc)."""
    n = len(samples)
    mean = samples.mean(axis=0)
    var = samples.var(axis=0, ddof=1)
    m4 = ((samples - mean) ** 4).mean(axis=0)
    tail = float((samples[:, 0] < 0).mean())
    p = truth["p_tail"]
    z = {f"mean[{d}]": (mean[d] - truth["mean"][d]) / math.sqrt(var[d] / n)
         for d in range(samples.shape[1])}
    z.update({f"var[{d}]": (var[d] - truth["var"][d]) / math.sqrt((m4[d] - var[d] ** 2) / n)
              for d in range(samples.shape[1])})
    z["P(x0<0)"] = (tail - p) / math.sqrt(p * (1 - p) / n)
    return z


def matches(samples, truth):
    """(passes, z-scores): all draws finite and every |z| < Z_MAX."""
    if not np.all(np.isfinite(samples)):
        return False, {"non-finite draws": int((~np.isfinite(samples)).sum())}
    z = z_scores(samples, truth)
    return all(abs(v) < Z_MAX for v in z.values()), z


# ---------------------------------------------------------------- nets and CLI

@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (prototxt, caffemodel) of each curved target."""
    folder = tmp_path_factory.mktemp("curved")
    caffe.set_mode_cpu()
    out = {}
    for t in TARGETS.values():
        proto = folder / f"{t.name}.prototxt"
        proto.write_text(f'name: "{t.name}"\n' + t.prototxt)
        net = caffe.Net(str(proto), caffe.TEST)
        for layer, values in t.params.items():
            for blob, value in zip(net.params[layer], values):
                blob.data[...] = value
        weights = folder / f"{t.name}.caffemodel"
        net.save(str(weights))
        out[t.name] = (str(proto), str(weights))
    return out


def run_cli(target, files, out_dir, seed):
    """Run python/hmc_visualize.py in this process; the final draws (chains, dim)."""
    import hmc_visualize
    proto, weights = files
    rc = hmc_visualize.main(
        ["--model", proto, "--weights", weights, "--nodes", target.node,
         "--sigma", str(target.sigma), "-T", str(target.temperature), "--input-scale", "1",
         "--batch-size", "4000", "--seed", str(seed), "--trajectory-frames", "2",
         "--out-dir", str(out_dir), "--no-progress"] + target.cli)
    assert rc == 0
    layer, channel = target.node.split(":")
    samples = np.load(out_dir / f"{layer}_{channel}_samples.npy")
    summary = json.loads((out_dir / "summary.json").read_text())["nodes"][0]
    return samples.reshape(len(samples), -1).astype(np.float64), summary


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_net_computes_the_stated_score_and_gradient(nets, name):
    # The truth above is for the analytic f: the Caffe net must compute exactly it.
    t = TARGETS[name]
    x = np.random.default_rng(0).normal(scale=2.0, size=(16, t.dim))
    target = ct.build_node_target(*nets[name], t.node.split(":")[0], [0] * len(x))
    f, grad = target.score(x.reshape(target.cut.input_shape))
    np.testing.assert_allclose(f, t.score(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad.reshape(x.shape), t.gradient(x), rtol=1e-4, atol=1e-5)


def test_truths_are_converged_integrals():
    # halving the step changes nothing the test could see (its standard errors are ~1e-2)
    fine, coarse = kink_quartic_truth(step=5e-5), kink_quartic_truth()
    for key in fine:
        np.testing.assert_allclose(fine[key], coarse[key], rtol=0, atol=1e-9)
    # the closed form of the mixture against a brute-force 2-D integral
    t = LOG_SUM_EXP
    g = np.arange(-9, 9, 0.03) + 0.015   # midpoint rule: no grid point on x0 = 0
    xx, yy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    log_p = t.score(pts) - (pts ** 2).sum(axis=1) / (2 * t.sigma ** 2)
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    truth = log_sum_exp_truth()
    mean = p @ pts
    np.testing.assert_allclose(mean, truth["mean"], atol=1e-6)
    np.testing.assert_allclose(p @ (pts - mean) ** 2, truth["var"], atol=1e-5)
    np.testing.assert_allclose(p @ (pts[:, 0] < 0), truth["p_tail"], atol=1e-4)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_cli_samples_match_the_curved_target(nets, name, tmp_path):
    t = TARGETS[name]
    samples, summary = run_cli(t, nets[name], tmp_path / "out", seed=1)
    ok, z = matches(samples, TRUTH[name]())
    assert ok, f"{name}: z-scores {z} (|z| must be < {Z_MAX})"
    assert 0.8 < summary["acceptance_rate"] < 1.0, summary      # Metropolis did reject
    assert np.isfinite(summary["mean_abs_energy_error"])


def _always_accept(h_old, h_new, rng):
    return np.ones(h_old.shape, bool), np.ones(h_old.shape)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_check_rejects_the_sampler_without_metropolis(nets, name, tmp_path, monkeypatch):
    monkeypatch.setattr(hmc, "metropolis_accept", _always_accept)
    with np.errstate(invalid="ignore", over="ignore"):      # chains may run off to inf
        samples, _ = run_cli(TARGETS[name], nets[name], tmp_path / "out", seed=1)
    ok, z = matches(samples, TRUTH[name]())
    assert not ok, f"{name}: a sampler without Metropolis passed with z-scores {z}"


def test_check_rejects_a_score_with_the_wrong_sign(nets, tmp_path, monkeypatch):
    # The sampler then targets exp(-f/T) N(0, sigma^2 T): another distribution.
    real_call = node_score.NodeScore.__call__

    def flipped(self, x):
        f, grad = real_call(self, x)
        return -f, -grad
    monkeypatch.setattr(node_score.NodeScore, "__call__", flipped)
    samples, _ = run_cli(LOG_SUM_EXP, nets["log_sum_exp"], tmp_path / "out", seed=1)
    ok, z = matches(samples, log_sum_exp_truth())
    assert not ok, f"a sign-flipped score passed with z-scores {z}"
