"""HMC math without Caffe (journal Sec. 4.6, Eq. 20-22): exactness on a Gaussian target, leapfrog
reversibility and O(eps^2) energy error, Metropolis, divergences, dual averaging.

Every statistical criterion is also applied to a deliberately broken sampler
(Metropolis removed, leapfrog wrong) and must reject it: a check that cannot
fail is not a check.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gencaffe.hmc import sampler as hmc

# ---------------------------------------------------------------- targets

DIM = 6
SIGMA, TEMPERATURE, MASS = 2.0, 0.5, 0.25


def linear_score(w):
    """f_y(x) = w . x: the target p_y is exactly N(sigma^2 w, sigma^2 T I) (journal Sec. 4.6, Eq. 20-22)."""
    def score_and_grad(x):
        return x @ w, np.broadcast_to(w, x.shape)
    return score_and_grad


def tanh_score(seed=3, dim=DIM, hidden=5):
    """A smooth non-linear score f(x) = a . tanh(W x) with its analytic gradient."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(hidden, dim))
    a = rng.normal(size=hidden) * 3

    def score_and_grad(x):
        h = np.tanh(x @ weights.T)
        return h @ a, ((1 - h ** 2) * a) @ weights
    return score_and_grad


def broken_leapfrog_stale_gradient(x, phi, grad_u, potential_and_grad, step_size, n_steps, mass):
    """Both half-kicks use the gradient at the *old* position: not volume preserving."""
    eps = hmc._as_chain_column(step_size, x)
    u = None
    for _ in range(n_steps):
        phi = phi - (eps / 2) * grad_u
        x = x + eps * phi / mass
        phi = phi - (eps / 2) * grad_u
        u, grad_u = potential_and_grad(x)
    return x, phi, u, grad_u


def broken_leapfrog_full_first_kick(x, phi, grad_u, potential_and_grad, step_size, n_steps, mass):
    """A full first momentum kick instead of a half one: not time reversible."""
    eps = hmc._as_chain_column(step_size, x)
    u = None
    for _ in range(n_steps):
        phi = phi - eps * grad_u
        x = x + eps * phi / mass
        u, grad_u = potential_and_grad(x)
        phi = phi - (eps / 2) * grad_u
    return x, phi, u, grad_u


def always_accept(h_old, h_new, rng):
    return np.ones(h_old.shape, bool), np.ones(h_old.shape)


# ---------------------------------------------------------------- exactness

N_CHAINS = 4000
# Z_MAX: each of the 2*DIM z-statistics below is ~N(0,1) under a correct sampler, so a
# false failure has probability <= 12 * P(|z| > 4) = 7.6e-4 (and the seeds are fixed).
Z_MAX = 4.0


def gaussian_z_scores(samples, mean, var):
    """z-statistics of the per-coordinate sample mean and variance of independent draws.

    SE(mean) = sqrt(var / n); SE(variance) = var * sqrt(2 / (n - 1)) for Gaussian draws.
    """
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mean) / np.sqrt(var / n)
    z_var = (samples.var(0, ddof=1) - var) / (var * np.sqrt(2.0 / (n - 1)))
    return z_mean, z_var


def matches_linear_target(step_times_omega=0.8, n_iterations=30, seed=1, **extra):
    """Run many chains on f = w . x from x0 = 0 and test the final draws against
    N(sigma^2 w, sigma^2 T I). Chains are independent, so final states are iid draws."""
    w = np.random.default_rng(0).normal(size=DIM)
    target_var = SIGMA ** 2 * TEMPERATURE
    omega = 1.0 / np.sqrt(target_var * MASS)          # oscillation frequency of the dynamics
    eps = step_times_omega / omega
    # Trajectory ~ 1.3/omega: fast mixing, and a step large enough (eps*omega = 0.8) that
    # the broken samplers below miss by z > 9 while the correct one stays under z ~ 2.
    n_leapfrog = max(1, int(round(1.3 / step_times_omega)))
    settings_ = hmc.HMCSettings(step_size=eps, n_leapfrog=n_leapfrog, mass=MASS,
                                n_iterations=n_iterations, **extra)
    potential = hmc.make_potential(linear_score(w), SIGMA, TEMPERATURE)
    final = hmc.run_hmc(np.zeros((N_CHAINS, DIM)), potential, settings_,
                        np.random.default_rng(seed))
    z_mean, z_var = gaussian_z_scores(final.x, SIGMA ** 2 * w, target_var)
    return bool(np.all(np.abs(z_mean) < Z_MAX) and np.all(np.abs(z_var) < Z_MAX)), (z_mean, z_var)


def test_linear_score_target_is_exact():
    ok, (z_mean, z_var) = matches_linear_target()
    assert ok, f"z(mean)={z_mean}, z(var)={z_var}"


def test_criterion_rejects_sampler_without_metropolis(monkeypatch):
    # At eps*omega = 0.8 unadjusted leapfrog inflates the variance by ~1/(1 - 0.8^2/4),
    # i.e. z(var) ~ 0.19 / sqrt(2/4000) ~ 8.5 > Z_MAX.
    monkeypatch.setattr(hmc, "metropolis_accept", always_accept)
    ok, _ = matches_linear_target()
    assert not ok


@pytest.mark.parametrize("broken", [broken_leapfrog_stale_gradient,
                                    broken_leapfrog_full_first_kick])
def test_criterion_rejects_wrong_leapfrog(monkeypatch, broken):
    monkeypatch.setattr(hmc, "leapfrog", broken)
    ok, _ = matches_linear_target()
    assert not ok


def test_exact_with_step_size_adaptation_and_divergence_detection():
    # The optional extras must not bias the sampler (adaptation only during warm-up).
    ok, (z_mean, z_var) = matches_linear_target(n_warmup=40, target_accept=0.8,
                                                divergence_threshold=1000.0)
    assert ok, f"z(mean)={z_mean}, z(var)={z_var}"


# ---------------------------------------------------------------- leapfrog

@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n_steps=st.integers(1, 40),
       eps=st.floats(0.005, 0.1))
def test_leapfrog_is_time_reversible(seed, n_steps, eps):
    rng = np.random.default_rng(seed)
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    x0 = rng.normal(size=(3, DIM))
    phi0 = rng.normal(size=(3, DIM)) * np.sqrt(MASS)
    _, g0 = potential(x0)
    x1, phi1, _, g1 = hmc.leapfrog(x0, phi0, g0, potential, eps, n_steps, MASS)
    x2, phi2, _, _ = hmc.leapfrog(x1, -phi1, g1, potential, eps, n_steps, MASS)
    np.testing.assert_allclose(x2, x0, atol=1e-9)
    np.testing.assert_allclose(-phi2, phi0, atol=1e-9)


def mean_energy_error(integrator, eps, total_time=0.6, n_chains=200, seed=5):
    """Mean |H(end) - H(start)| over chains after a fixed integration time."""
    rng = np.random.default_rng(seed)
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    x0 = rng.normal(size=(n_chains, DIM))
    phi0 = rng.normal(size=(n_chains, DIM)) * np.sqrt(MASS)
    u0, g0 = potential(x0)
    n_steps = int(round(total_time / eps))
    _, phi1, u1, _ = integrator(x0, phi0, g0, potential, eps, n_steps, MASS)
    return np.mean(np.abs(u1 + hmc.kinetic(phi1, MASS) - u0 - hmc.kinetic(phi0, MASS)))


def error_shrinks_quadratically(integrator):
    """Halving eps must divide the energy error by 4 (O(eps^2)); accepted band
    [3.4, 4.6] leaves room for the O(eps^4) term at these step sizes."""
    errors = [mean_energy_error(integrator, eps) for eps in (0.02, 0.01, 0.005)]
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    return all(3.4 < r < 4.6 for r in ratios), ratios


def test_leapfrog_energy_error_is_second_order():
    ok, ratios = error_shrinks_quadratically(hmc.leapfrog)
    assert ok, ratios


@pytest.mark.parametrize("broken", [broken_leapfrog_stale_gradient,
                                    broken_leapfrog_full_first_kick])
def test_energy_order_check_rejects_first_order_integrators(broken):
    ok, ratios = error_shrinks_quadratically(broken)
    assert not ok, ratios


def test_leapfrog_costs_one_gradient_per_step():
    calls = []
    base = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)

    def counting(x):
        calls.append(1)
        return base(x)
    x = np.zeros((2, DIM))
    _, g = base(x)
    hmc.leapfrog(x, np.ones_like(x), g, counting, 0.01, 7, MASS)
    assert len(calls) == 7


def test_per_chain_step_sizes_match_single_chain_runs():
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, DIM))
    phi = rng.normal(size=(2, DIM))
    _, g = potential(x)
    steps = np.array([0.01, 0.03])
    xb, phib, _, _ = hmc.leapfrog(x, phi, g, potential, steps, 5, MASS)
    for i in range(2):
        xi, phii, _, _ = hmc.leapfrog(x[i:i + 1], phi[i:i + 1], g[i:i + 1], potential,
                                      steps[i], 5, MASS)
        np.testing.assert_allclose(xb[i:i + 1], xi, rtol=1e-12)
        np.testing.assert_allclose(phib[i:i + 1], phii, rtol=1e-12)


# ---------------------------------------------------------------- energies

def test_potential_and_kinetic_follow_the_definitions():
    x = np.array([[3.0, 4.0]])
    f = np.array([2.0])
    # U = (-f + |x|^2 / (2 sigma^2)) / T = (-2 + 25/8) / 0.5
    assert hmc.potential(f, x, SIGMA, TEMPERATURE)[0] == pytest.approx((-2 + 25 / 8) / 0.5)
    assert hmc.kinetic(x, MASS)[0] == pytest.approx(25 / (2 * MASS))
    grad = hmc.potential_gradient(np.array([[1.0, -1.0]]), x, SIGMA, TEMPERATURE)
    np.testing.assert_allclose(grad, (x / SIGMA ** 2 - [[1.0, -1.0]]) / TEMPERATURE)


def test_momentum_is_drawn_with_variance_mass():
    # phi ~ N(0, m I): with a zero-length trajectory the proposal keeps phi; read it
    # back from the starting energy H = U + |phi|^2 / (2m). E|phi|^2 = m * d.
    potential = hmc.make_potential(linear_score(np.zeros(DIM)), SIGMA, TEMPERATURE)
    state = hmc.init_state(np.zeros((20000, DIM)), potential)
    _, info = hmc.hmc_step(state, potential, 0.1, 1, MASS, np.random.default_rng(0))
    phi_sq = (info.energy - state.u) * 2 * MASS
    # SE of the mean of |phi|^2 = m * sqrt(2 d / n); 5 SE tolerance.
    assert abs(phi_sq.mean() - MASS * DIM) < 5 * MASS * np.sqrt(2 * DIM / 20000)


# ---------------------------------------------------------------- Metropolis

def test_metropolis_acceptance_probability():
    rng = np.random.default_rng(0)
    h_old = np.zeros(200000)
    h_new = np.full(200000, np.log(4.0))        # accept with probability 1/4
    accepted, prob = hmc.metropolis_accept(h_old, h_new, rng)
    np.testing.assert_allclose(prob, 0.25)
    # SE of a proportion: sqrt(p (1-p) / n) ~ 1e-3; 5 SE tolerance.
    assert abs(accepted.mean() - 0.25) < 5e-3
    accepted, prob = hmc.metropolis_accept(h_old, h_old - 1.0, rng)
    assert accepted.all() and np.all(prob == 1.0)


def test_non_finite_proposals_are_always_rejected():
    def nan_score(x):
        f = np.where(x[:, 0] > 0.5, np.nan, 0.0)
        return f, np.zeros_like(x)
    potential = hmc.make_potential(nan_score, SIGMA, TEMPERATURE)
    state = hmc.init_state(np.zeros((50, 1)), potential)
    for _ in range(20):
        state, info = hmc.hmc_step(state, potential, 0.5, 3, 1.0, np.random.default_rng(1))
        assert np.all(state.x[:, 0] <= 0.5)
        assert np.all(np.isfinite(state.u))


def test_rejected_chains_keep_their_position_and_gradient():
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    state = hmc.init_state(np.random.default_rng(0).normal(size=(64, DIM)), potential)
    new, info = hmc.hmc_step(state, potential, 0.3, 5, MASS, np.random.default_rng(3))
    assert 0 < info.accepted.sum() < 64     # this seed gives both outcomes
    rej = ~info.accepted
    np.testing.assert_array_equal(new.x[rej], state.x[rej])
    np.testing.assert_array_equal(new.grad_u[rej], state.grad_u[rej])
    u_check, g_check = potential(new.x)
    np.testing.assert_allclose(new.u, u_check)
    np.testing.assert_allclose(new.grad_u, g_check)


# ---------------------------------------------------------------- divergences

def test_divergences_are_counted_only_when_enabled():
    potential = hmc.make_potential(linear_score(np.ones(DIM)), SIGMA, TEMPERATURE)
    state = hmc.init_state(np.zeros((100, DIM)), potential)
    eps = 5.0    # eps * omega = 10: leapfrog is unstable, the energy explodes
    _, off = hmc.hmc_step(state, potential, eps, 20, MASS, np.random.default_rng(0))
    _, on = hmc.hmc_step(state, potential, eps, 20, MASS, np.random.default_rng(0), 1000.0)
    assert not off.diverged.any()
    assert on.diverged.all() and not on.accepted.any()
    # A stable step size produces no divergences with detection on.
    _, calm = hmc.hmc_step(state, potential, 0.05, 20, MASS, np.random.default_rng(0), 1000.0)
    assert not calm.diverged.any()


# ---------------------------------------------------------------- adaptation

def test_dual_averaging_reaches_target_acceptance():
    w = np.random.default_rng(0).normal(size=DIM)
    potential = hmc.make_potential(linear_score(w), SIGMA, TEMPERATURE)
    # Start with a step size 20x too small: adaptation must grow it.
    settings_ = hmc.HMCSettings(step_size=0.01, n_leapfrog=10, mass=MASS, n_iterations=100,
                                n_warmup=150, target_accept=0.7)
    x0 = np.random.default_rng(1).normal(size=(200, DIM)) + SIGMA ** 2 * w
    probs, steps = [], []
    for _, warm, _, info in hmc.sample(x0, potential, settings_, np.random.default_rng(2)):
        if not warm:
            probs.append(info.accept_prob.mean())
            steps.append(info.step_size)
    # Mean acceptance over 100 x 200 chain-iterations; tolerance 0.07 covers the
    # dual-averaging bias of a 150-step warm-up (Stan's own runs land within ~0.05).
    assert abs(np.mean(probs) - 0.7) < 0.07, np.mean(probs)
    assert np.all(np.asarray(steps) > 0.05)
    # After warm-up the step size is frozen (detailed balance needs a fixed kernel).
    np.testing.assert_array_equal(steps[0], steps[-1])


def test_without_warmup_the_step_size_is_the_given_one():
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    settings_ = hmc.HMCSettings(step_size=0.02, n_leapfrog=3, mass=MASS, n_iterations=4)
    for _, warm, _, info in hmc.sample(np.zeros((3, DIM)), potential, settings_,
                                       np.random.default_rng(0)):
        assert not warm
        np.testing.assert_array_equal(info.step_size, 0.02)


def test_same_seed_same_chains():
    potential = hmc.make_potential(tanh_score(), SIGMA, TEMPERATURE)
    settings_ = hmc.HMCSettings(step_size=0.05, n_leapfrog=5, mass=MASS, n_iterations=5)
    a = hmc.run_hmc(np.zeros((4, DIM)), potential, settings_, np.random.default_rng(7))
    b = hmc.run_hmc(np.zeros((4, DIM)), potential, settings_, np.random.default_rng(7))
    np.testing.assert_array_equal(a.x, b.x)
