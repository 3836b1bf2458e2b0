"""When to switch from GG to DG (issue 18): a sweep of the switch epoch on
MNIST, the GG runs' diagnostics, and switch criteria judged against the sweep.

Per seed, under settings.runs_dir:

    gg/seed<N>/                 GG for all epochs, a snapshot every epoch (mnist_runs)
    dg/seed<N>/                 DG for all epochs (the reference)
    switch/seed<N>/epoch<E>/    DG for the epochs after E, from GG's epoch-E snapshot
    switch_b<B>/seed<N>/epoch<E>/   the same with a budget of B < all epochs

so GG+DG switched after E epochs = the GG run's first E epochs + switch/epoch<E>,
the same runs a GG process stopped at E and a `-weights` DG stage would have
made (the CPU training is deterministic per seed). "GG alone" is the GG run.

A budget B shorter than the reference runs (--budget) reads DG alone and GG
alone at their test pass after epoch B: with a learning-rate policy that does
not look at max_iter (the LeNet solvers' "inv"), the first B epochs of a
longer seeded run are the B-epoch run, test passes included (checked by
tests/test_sweep_switch.py on Caffe itself), so the 25- or 12-epoch
references serve every shorter budget.

A criterion is a rule on the GG run's per-epoch test diagnostics (the
GenerativeLoss tops logged on every test pass: ess, ess_within,
ess_within_sd, cross_weight, and the accuracy): `Criterion.choose(epochs)`
gives the epoch it would switch after. Its result on a seed is the error of
that seed's switch run at that epoch, which the sweep trains if the epoch
is not one of its points.
"""
import math
import os
import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import mnist_runs, switch_criteria

SWEEP_DIR = "switch"


# lr policies whose rate at an iteration depends on max_iter: a shorter run
# is then not a prefix of a longer one
MAX_ITER_POLICIES = ("poly",)


def sweep_dir(settings, budget=None):
    """The switch runs' folder: switch/ at the full budget, switch_b<B>/ below it."""
    budget = budget or settings.total_epochs
    return os.path.join(settings.runs_dir, SWEEP_DIR if budget == settings.total_epochs
                        else "%s_b%d" % (SWEEP_DIR, budget))


def switch_run(settings, seed, epoch, budget=None):
    """DG for budget - epoch epochs from the GG run's epoch-`epoch` snapshot."""
    return mnist_runs.dg_after_gg(settings, seed, epoch,
                                  os.path.join(sweep_dir(settings, budget), "seed%d" % seed,
                                               "epoch%d" % epoch),
                                  "switch after %d seed%d" % (epoch, seed),
                                  total_epochs=budget)


def check_budget(settings, budget):
    """A budget of 2..all epochs whose references can be read off the longer runs."""
    if not 2 <= budget <= settings.total_epochs:
        raise ValueError("--budget must lie in 2..%d (the reference runs' epochs), got %d"
                         % (settings.total_epochs, budget))
    if budget < settings.total_epochs:
        from .. import solver_config
        for key in ("dg", "gg"):
            path = mnist_runs.SOLVERS[key]
            policy = solver_config.load_solver(os.path.join(settings.repo, path)).lr_policy
            if policy in MAX_ITER_POLICIES:
                raise ValueError("%s uses lr_policy %r, which depends on max_iter: a budget "
                                 "below the runs' length would not be their prefix"
                                 % (path, policy))


def check_points(points, total_epochs):
    bad = [p for p in points if not 1 <= p < total_epochs]
    if bad:
        raise ValueError("switch points must lie in 1..%d (a switch at the last epoch leaves no "
                         "DG stage), got %s" % (total_epochs - 1, bad))


# criteria (switch_criteria, re-exported for the sweep's callers)
Criterion = switch_criteria.Criterion
parse_criterion = switch_criteria.parse_criterion


# ------------------------------------------------------------------ results

def final_error(run, settings) -> Optional[float]:
    """Test error (%) of a complete run's last test pass, or None."""
    if not run.is_complete(settings):
        return None
    final = run.parsed_log(settings).final_test()
    return None if final is None else 100.0 * (1 - final.outputs["accuracy"])


def error_at_epoch(run, settings, epoch) -> Optional[float]:
    """Test error (%) of a complete run at its test pass after `epoch`, or None."""
    if not run.is_complete(settings):
        return None
    if epoch == run.epochs:
        return final_error(run, settings)
    for e, outputs in mnist_runs.epoch_tests(run.parsed_log(settings),
                                             settings.iterations_per_epoch):
        if e == epoch:
            return 100.0 * (1 - outputs["accuracy"])
    return None


@dataclass
class SeedSweep:
    seed: int
    dg: Optional[float]                       # DG alone, test error %
    gg: Optional[float]                       # GG alone
    switch: Dict[int, Optional[float]]        # switch epoch -> GG+DG test error
    gg_epochs: List[Tuple[int, Dict[str, float]]]   # GG's per-epoch test outputs


def collect(settings, seeds, points, budget=None) -> List[SeedSweep]:
    """Per seed, the sweep at `budget` epochs (default all): DG and GG alone at
    epoch `budget`, each switch point's run, the GG run's per-epoch tests."""
    budget = budget or settings.total_epochs
    results = []
    for seed in seeds:
        gg = mnist_runs.gg_run(settings, seed)
        epochs = []
        if gg.is_complete(settings):
            epochs = mnist_runs.epoch_tests(gg.parsed_log(settings), settings.iterations_per_epoch)
        switch = {}
        for epoch in sorted(set(points) | set(extra_points(settings, seed, budget))):
            switch[epoch] = final_error(switch_run(settings, seed, epoch, budget), settings)
        dg = mnist_runs.dg_run(settings, seed)
        results.append(SeedSweep(seed, error_at_epoch(dg, settings, budget),
                                 error_at_epoch(gg, settings, budget), switch, epochs))
    return results


def extra_points(settings, seed, budget=None):
    """Switch epochs trained for a criterion beyond the sweep's points."""
    folder = os.path.join(settings.repo, sweep_dir(settings, budget), "seed%d" % seed)
    if not os.path.isdir(folder):
        return []
    return [int(name[5:]) for name in os.listdir(folder)
            if name.startswith("epoch") and name[5:].isdigit()]


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def best_point(results, points):
    """The switch point with the lowest mean error over seeds (complete ones)."""
    means = {p: mean_sd([r.switch.get(p) for r in results])[0] for p in points}
    means = {p: m for p, m in means.items() if m is not None}
    return min(means, key=means.get) if means else None


def criterion_rows(results, criteria, total_epochs):
    """Per criterion: [(seed, chosen epoch or None, test error or None)]. A
    criterion that never fires does not switch: the result is GG alone, as
    the Table 1 runner's auto switch does."""
    rows = {}
    for criterion in criteria:
        rows[criterion.name] = []
        for r in results:
            epoch = criterion.choose(r.gg_epochs, total_epochs) if r.gg_epochs else None
            error = (r.switch.get(epoch) if epoch else r.gg) if r.gg_epochs else None
            rows[criterion.name].append((r.seed, epoch, error))
    return rows


def fmt(value, digits=2):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else "%.*f" % (digits, value)
