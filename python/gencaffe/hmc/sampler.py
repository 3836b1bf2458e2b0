"""Hamiltonian Monte Carlo for generative visualization (journal Sec. 4.6, Eq. 20-22).

No Caffe: everything here works on arrays whose axis 0 stacks independent
chains, and on a *score callback* ``score_and_grad(x) -> (f, df/dx)`` with ``f``
of shape (chains,) and ``df/dx`` shaped like ``x``. Tests drive it with analytic
scores; the CLI drives it with a pycaffe net. The chains' arrays (x, momenta,
gradients) are NumPy or CuPy arrays, and the arithmetic follows them
(blob_arrays.array_module); what the Metropolis step and the caller read (the
energies, the StepInfo) is always on the host: one value per chain crosses
per trajectory, not per leapfrog step. Momenta are drawn by the host's
generator either way, so a seed gives the same draws on both.

The target is p(x) ∝ exp(-U(x)) with

    U(x) = (-f(x) + |x|^2 / (2 sigma^2)) / T,     K(phi) = |phi|^2 / (2 m),

sampled by: draw phi ~ N(0, m I); L leapfrog steps of size eps; Metropolis
accept/reject on H = U + K. The extras (step-size adaptation, divergence
detection) are off unless asked for, so the paper's sampler is the default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from .blob_arrays import array_module, to_host

ScoreFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]
PotentialFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]

# Energies are summed in float64 even when x is float32: with T = 0.001 (AlexNet)
# U is ~1e5 and float32 would round away the O(1) energy differences MH needs.
_ENERGY_DTYPE = np.float64


def _per_chain_sum_of_squares(a: np.ndarray) -> np.ndarray:
    """|a_i|^2 per chain, accumulated in float64 (the energies' dtype), in
    ``a``'s array module.

    On the host einsum, not np.vecdot or matmul: on NumPy 2.4 those took ~1 s
    for 64 AlexNet chains (64 x 154,587 float64) against einsum's ~10 ms here,
    and einsum casts float32 input as it goes instead of copying it first.
    """
    flat = a.reshape(a.shape[0], -1)
    xp = array_module(a)
    if xp is np:
        return np.einsum("ij,ij->i", flat, flat, dtype=_ENERGY_DTYPE)
    wide = flat.astype(_ENERGY_DTYPE)
    return (wide * wide).sum(axis=1)


def _as_chain_column(values, like: np.ndarray) -> np.ndarray:
    """Scalar or per-chain (chains,) values, shaped to broadcast against ``like``."""
    v = array_module(like).asarray(values, dtype=like.dtype)
    if v.ndim == 0:
        return v
    return v.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def potential(f: np.ndarray, x: np.ndarray, sigma: float, temperature: float) -> np.ndarray:
    """U(x) = (-f(x) + |x|^2/(2 sigma^2)) / T, one value per chain."""
    return (_per_chain_sum_of_squares(x) / (2.0 * sigma ** 2)
            - array_module(x).asarray(f, dtype=_ENERGY_DTYPE)) / temperature


def potential_gradient(df_dx: np.ndarray, x: np.ndarray, sigma: float,
                       temperature: float) -> np.ndarray:
    """dU/dx = (-df/dx + x / sigma^2) / T."""
    return (x / sigma ** 2 - df_dx) / temperature


def kinetic(phi: np.ndarray, mass: float) -> np.ndarray:
    """K(phi) = |phi|^2 / (2 m), one value per chain."""
    return _per_chain_sum_of_squares(phi) / (2.0 * mass)


def make_potential(score_and_grad: ScoreFn, sigma: float, temperature: float) -> PotentialFn:
    """Turn a score callback f, df/dx into the potential callback U, dU/dx."""
    inv_var, inv_t = 1.0 / sigma ** 2, 1.0 / temperature

    def potential_and_grad(x):
        f, df_dx = score_and_grad(x)
        # potential_gradient(), written in place: this runs once per leapfrog step
        grad = array_module(x).multiply(x, inv_var)
        grad -= df_dx
        if inv_t != 1.0:
            grad *= inv_t
        return potential(f, x, sigma, temperature), grad
    return potential_and_grad


def leapfrog(x: np.ndarray, phi: np.ndarray, grad_u: np.ndarray,
             potential_and_grad: PotentialFn, step_size, n_steps: int, mass: float):
    """``n_steps`` leapfrog steps (Eq. 20-22) from (x, phi).

    ``grad_u`` is dU/dx at the starting x (the caller caches it, so a trajectory
    of L steps costs L gradient evaluations, not L+1). ``step_size`` is a scalar
    or one value per chain. Returns (x, phi, U(x), dU/dx(x)) at the end.
    """
    xp = array_module(x)
    eps = _as_chain_column(step_size, x)
    half_eps = eps / 2
    eps_over_mass = eps / mass
    u = None
    # In place on private copies, with one scratch array: each step makes
    # three passes over the chains' arrays instead of six with temporaries
    # (for 64 AlexNet chains, 9.9 M values, the host work is what bounds HMC
    # on a GPU: results/gpu_bench.md).
    x = x.copy()
    phi = phi.copy()
    scratch = xp.empty_like(phi)
    for _ in range(n_steps):
        phi -= xp.multiply(half_eps, grad_u, out=scratch)       # Eq. 20
        x += xp.multiply(eps_over_mass, phi, out=scratch)       # Eq. 21
        u, grad_u = potential_and_grad(x)
        phi -= xp.multiply(half_eps, grad_u, out=scratch)       # Eq. 22
    if u is None:
        u, grad_u = potential_and_grad(x)
    return x, phi, u, grad_u


def metropolis_accept(h_old: np.ndarray, h_new: np.ndarray, rng: np.random.Generator):
    """Accept each chain with probability min(1, exp(H_old - H_new)).

    Returns (accepted bool array, acceptance probability). A non-finite proposal
    energy is always rejected (its probability is reported as 0).
    """
    log_ratio = h_old - h_new
    finite = np.isfinite(h_new)
    with np.errstate(over="ignore", invalid="ignore"):
        prob = np.where(finite, np.minimum(1.0, np.exp(np.minimum(log_ratio, 0.0))), 0.0)
    log_u = np.log(rng.uniform(size=h_old.shape))
    accepted = finite & (log_u < log_ratio)
    return accepted, prob


@dataclass
class ChainState:
    """Current position of every chain, with its cached potential and gradient
    (x and grad_u where the chains live; u always on the host)."""
    x: np.ndarray
    u: np.ndarray
    grad_u: np.ndarray


@dataclass
class StepInfo:
    """Per-chain outcome of one HMC iteration (arrays of shape (chains,))."""
    accepted: np.ndarray
    accept_prob: np.ndarray
    energy: np.ndarray          # H = U + K at the start of the trajectory
    energy_error: np.ndarray    # H_new - H_old of the proposal
    diverged: np.ndarray
    step_size: np.ndarray


def init_state(x0: np.ndarray, potential_and_grad: PotentialFn) -> ChainState:
    u, grad_u = potential_and_grad(x0)
    return ChainState(x0, to_host(u), grad_u)


def hmc_step(state: ChainState, potential_and_grad: PotentialFn, step_size,
             n_leapfrog: int, mass: float, rng: np.random.Generator,
             divergence_threshold: Optional[float] = None):
    """One HMC iteration for all chains: momentum draw, leapfrog, Metropolis.

    With ``divergence_threshold`` set, a proposal whose energy error exceeds it
    (or is non-finite) is rejected and flagged as diverged.
    Returns (new ChainState, StepInfo).
    """
    x = state.x
    xp = array_module(x)
    phi = rng.standard_normal(x.shape).astype(x.dtype, copy=False) * math.sqrt(mass)
    phi = xp.asarray(phi)
    h_old = state.u + to_host(kinetic(phi, mass))
    x_new, phi_new, u_new, grad_new = leapfrog(x, phi, state.grad_u, potential_and_grad,
                                               step_size, n_leapfrog, mass)
    u_new = to_host(u_new)
    h_new = u_new + to_host(kinetic(phi_new, mass))
    accepted, prob = metropolis_accept(h_old, h_new, rng)
    energy_error = h_new - h_old
    if divergence_threshold is None:
        diverged = np.zeros_like(accepted)
    else:
        with np.errstate(invalid="ignore"):
            diverged = ~np.isfinite(energy_error) | (energy_error > divergence_threshold)
        accepted &= ~diverged
    keep = _as_chain_column(accepted, x).astype(bool)
    new_state = ChainState(xp.where(keep, x_new, x),
                           np.where(accepted, u_new, state.u),
                           xp.where(keep, grad_new, state.grad_u))
    steps = np.broadcast_to(np.asarray(step_size, dtype=float), accepted.shape).copy()
    return new_state, StepInfo(accepted, prob, h_old, energy_error, diverged, steps)


@dataclass
class DualAveraging:
    """Step-size adaptation toward a target acceptance rate (Hoffman & Gelman 2014,
    Alg. 5; the scheme Stan and NumPyro use during warm-up), one step size per chain.

    Constants are Stan's defaults: gamma 0.05, t0 10, kappa 0.75, mu = log(10 eps0).
    """
    initial_step_size: np.ndarray
    target_accept: float = 0.8
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75
    log_step: np.ndarray = field(init=False)
    log_step_avg: np.ndarray = field(init=False)
    error_avg: np.ndarray = field(init=False)
    mu: np.ndarray = field(init=False)
    count: int = field(init=False, default=0)

    def __post_init__(self):
        eps0 = np.asarray(self.initial_step_size, dtype=float)
        self.log_step = np.log(eps0)
        self.log_step_avg = np.zeros_like(self.log_step)
        self.error_avg = np.zeros_like(self.log_step)
        self.mu = np.log(10.0 * eps0)

    @property
    def step_size(self) -> np.ndarray:
        """Step size to use for the next warm-up iteration."""
        return np.exp(self.log_step)

    @property
    def final_step_size(self) -> np.ndarray:
        """Averaged step size to sample with after warm-up."""
        return np.exp(self.log_step_avg) if self.count else np.exp(self.log_step)

    def update(self, accept_prob: np.ndarray) -> None:
        self.count += 1
        m = self.count
        w = 1.0 / (m + self.t0)
        self.error_avg = (1 - w) * self.error_avg + w * (self.target_accept - accept_prob)
        self.log_step = self.mu - math.sqrt(m) / self.gamma * self.error_avg
        eta = m ** -self.kappa
        self.log_step_avg = eta * self.log_step + (1 - eta) * self.log_step_avg


@dataclass
class HMCSettings:
    step_size: float
    n_leapfrog: int
    mass: float
    n_iterations: int
    n_warmup: int = 0                 # > 0 turns dual-averaging adaptation on
    target_accept: float = 0.8
    divergence_threshold: Optional[float] = None   # e.g. 1000 (Stan's value)


def sample(x0: np.ndarray, potential_and_grad: PotentialFn, settings: HMCSettings,
           rng: np.random.Generator) -> Iterator["tuple[int, bool, ChainState, StepInfo]"]:
    """Run warm-up (if any) then ``n_iterations`` HMC iterations on all chains.

    Yields (iteration index, is_warmup, state after the iteration, StepInfo)
    so callers can record trajectories, statistics and progress as they go.
    """
    state = init_state(x0, potential_and_grad)
    n_chains = x0.shape[0]
    step = np.full(n_chains, float(settings.step_size))
    adapter = None
    if settings.n_warmup > 0:
        adapter = DualAveraging(step.copy(), target_accept=settings.target_accept)
    total = settings.n_warmup + settings.n_iterations
    for it in range(total):
        warm = it < settings.n_warmup
        if adapter is not None:
            step = adapter.step_size if warm else adapter.final_step_size
        state, info = hmc_step(state, potential_and_grad, step, settings.n_leapfrog,
                               settings.mass, rng, settings.divergence_threshold)
        if warm:
            adapter.update(info.accept_prob)
        yield it, warm, state, info


def run_hmc(x0: np.ndarray, potential_and_grad: PotentialFn, settings: HMCSettings,
            rng: np.random.Generator) -> ChainState:
    """Convenience: run :func:`sample` to the end and return the final state."""
    state = None
    for _, _, state, _ in sample(x0, potential_and_grad, settings, rng):
        pass
    return state if state is not None else init_state(x0, potential_and_grad)
