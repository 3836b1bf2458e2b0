"""When to switch from GG to DG (issue 18): a sweep of the switch epoch on
MNIST, the GG runs' diagnostics, and switch criteria judged against the sweep.

Per seed, under settings.runs_dir:

    gg/seed<N>/                 GG for all epochs, a snapshot every epoch (mnist_runs)
    dg/seed<N>/                 DG for all epochs (the reference)
    switch/seed<N>/epoch<E>/    DG for the epochs after E, from GG's epoch-E snapshot

so GG+DG switched after E epochs = the GG run's first E epochs + switch/epoch<E>,
the same runs a GG process stopped at E and a `-weights` DG stage would have
made (the CPU training is deterministic per seed). "GG alone" is the GG run.

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
from typing import Dict, List, Optional, Sequence, Tuple

from . import mnist_runs

SWEEP_DIR = "switch"


def switch_run(settings, seed, epoch):
    return mnist_runs.dg_after_gg(settings, seed, epoch,
                                  os.path.join(settings.runs_dir, SWEEP_DIR, "seed%d" % seed,
                                               "epoch%d" % epoch),
                                  "switch after %d seed%d" % (epoch, seed))


def check_points(points, total_epochs):
    bad = [p for p in points if not 1 <= p < total_epochs]
    if bad:
        raise ValueError("switch points must lie in 1..%d (a switch at the last epoch leaves no "
                         "DG stage), got %s" % (total_epochs - 1, bad))


# ----------------------------------------------------------------- criteria

@dataclass(frozen=True)
class Criterion:
    """Switch after the first epoch whose test `output` is below `threshold`
    (kind "below"), or after the first epoch from which `output` has changed by
    less than `threshold` (absolute) over the previous `window` epochs (kind
    "plateau"). Never before epoch 1 nor at the last epoch."""
    name: str
    output: str
    kind: str
    threshold: float
    window: int = 2

    def choose(self, epochs: Sequence[Tuple[int, Dict[str, float]]], total_epochs: int):
        values = [(e, out.get(self.output)) for e, out in epochs if 1 <= e < total_epochs]
        if any(v is None for _, v in values):
            raise ValueError("the GG log has no '%s' test output" % self.output)
        for i, (epoch, value) in enumerate(values):
            if self.kind == "below" and value < self.threshold:
                return epoch
            if self.kind == "plateau" and i >= self.window and \
                    abs(value - values[i - self.window][1]) < self.threshold:
                return epoch
        return None

    def describe(self):
        if self.kind == "below":
            return "first epoch with test %s < %g" % (self.output, self.threshold)
        return ("first epoch at which test %s changed by < %g over the last %d epochs"
                % (self.output, self.threshold, self.window))


def parse_criterion(text):
    """'NAME=OUTPUT<THRESHOLD' or 'NAME=OUTPUT~THRESHOLD/WINDOW' (plateau)."""
    name, sep, rule = text.partition("=")
    if sep and "<" in rule:
        output, _, threshold = rule.partition("<")
        return Criterion(name, output, "below", float(threshold))
    if sep and "~" in rule:
        output, _, rest = rule.partition("~")
        threshold, _, window = rest.partition("/")
        return Criterion(name, output, "plateau", float(threshold), int(window or 2))
    raise ValueError("criterion %r: expected NAME=OUTPUT<THRESHOLD or "
                     "NAME=OUTPUT~CHANGE/WINDOW" % text)


# ------------------------------------------------------------------ results

def final_error(run, settings) -> Optional[float]:
    """Test error (%) of a complete run's last test pass, or None."""
    if not run.is_complete(settings):
        return None
    final = run.parsed_log(settings).final_test()
    return None if final is None else 100.0 * (1 - final.outputs["accuracy"])


@dataclass
class SeedSweep:
    seed: int
    dg: Optional[float]                       # DG alone, test error %
    gg: Optional[float]                       # GG alone
    switch: Dict[int, Optional[float]]        # switch epoch -> GG+DG test error
    gg_epochs: List[Tuple[int, Dict[str, float]]]   # GG's per-epoch test outputs


def collect(settings, seeds, points) -> List[SeedSweep]:
    results = []
    for seed in seeds:
        gg = mnist_runs.gg_run(settings, seed)
        epochs = []
        if gg.is_complete(settings):
            epochs = mnist_runs.epoch_tests(gg.parsed_log(settings), settings.iterations_per_epoch)
        switch = {}
        for epoch in sorted(set(points) | set(extra_points(settings, seed))):
            switch[epoch] = final_error(switch_run(settings, seed, epoch), settings)
        results.append(SeedSweep(seed, final_error(mnist_runs.dg_run(settings, seed), settings),
                                 final_error(gg, settings), switch, epochs))
    return results


def extra_points(settings, seed):
    """Switch epochs trained for a criterion beyond the sweep's points."""
    folder = os.path.join(settings.repo, settings.runs_dir, SWEEP_DIR, "seed%d" % seed)
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
    """Per criterion: [(seed, chosen epoch, error at it or None)]."""
    rows = {}
    for criterion in criteria:
        rows[criterion.name] = [
            (r.seed, criterion.choose(r.gg_epochs, total_epochs) if r.gg_epochs else None,
             None) for r in results]
        rows[criterion.name] = [(seed, epoch, next(r.switch.get(epoch) for r in results
                                                   if r.seed == seed) if epoch else None)
                                for seed, epoch, _ in rows[criterion.name]]
    return rows


def fmt(value, digits=2):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else "%.*f" % (digits, value)
