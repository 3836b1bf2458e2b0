"""Table 1 and learning curves from the finished MNIST runs' logs.

Nothing here trains: it reads runs_dir (see mnist_runs) and reports only runs
that are complete; others are listed as pending.
"""
import datetime
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import List, Optional

from . import mnist_runs
from .plots import plain_tick_labels, save_png
from .. import solver_config
from ..data import datum_check

PAPER_ERROR_PERCENT = {"dg": 1.03, "gg": 0.85, "gg_dg": 0.78}
APPROACH_TITLES = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG (switch at 16)",
                   "gg_dg_auto": "GG+DG auto (ESS switch)"}


def approach_title(approach, settings=None):
    if approach == "gg_dg" and settings is not None:
        return "GG+DG (switch at %d)" % settings.stage1_epochs()
    return APPROACH_TITLES.get(approach, approach)


@dataclass
class CurvePoint:
    epoch: float
    error_percent: float
    loss: Optional[float]   # the stage's own objective (softmax or generative loss)
    ess: Optional[float]
    objective: str          # "DG" or "GG"


@dataclass
class SeedResult:
    approach: str
    seed: int
    complete: bool
    final_error_percent: Optional[float] = None
    switch_epoch: Optional[int] = None
    libcaffe_sha256: List[str] = field(default_factory=list)  # builds that trained its stages
    test_curve: List[CurvePoint] = field(default_factory=list)
    train_curve: List[tuple] = field(default_factory=list)   # (epoch, loss, objective, ess)


def _stages(settings, approach, seed):
    """[(TrainingRun, objective, last epoch to take from it)] or None if undecided."""
    if approach == "dg":
        return [(mnist_runs.dg_run(settings, seed), "DG", None)]
    if approach == "gg":
        return [(mnist_runs.gg_run(settings, seed), "GG", None)]
    if approach == "gg_dg":
        stage1, stage2 = mnist_runs.gg_dg_runs(settings, seed)
        return [(stage1, "GG", None), (stage2, "DG", None)]
    if approach == "gg_dg_auto":
        # The switch epoch follows from the GG log and the current threshold (the
        # driver's switch.json only records the decision it made).
        gg = mnist_runs.gg_run(settings, seed)
        if not gg.is_complete(settings):
            return None
        switch = mnist_runs.auto_switch_epoch(settings, gg)
        if switch is None:
            return [(gg, "GG", None)]
        return [(gg, "GG", switch),
                (mnist_runs.gg_dg_auto_stage2(settings, seed, switch), "DG", None)]
    raise ValueError(approach)


def collect_seed(settings, approach, seed):
    stages = _stages(settings, approach, seed)
    result = SeedResult(approach, seed, complete=False)
    if stages is None or not all(run.is_complete(settings) for run, _, _ in stages):
        return result
    per_epoch = settings.iterations_per_epoch
    for index, (run, objective, last_epoch) in enumerate(stages):
        parsed = run.parsed_log(settings)
        result.libcaffe_sha256.append(_recorded_libcaffe(settings, run))
        for test in parsed.tests():
            epoch = run.epoch_offset + test.iteration / per_epoch
            if index > 0 and test.iteration == 0:
                continue  # same weights as the previous stage's last point
            if last_epoch is not None and epoch > last_epoch:
                continue
            result.test_curve.append(CurvePoint(epoch, test.error_percent, test.outputs.get("loss"),
                                                test.outputs.get("ess"), objective))
        for display in parsed.train_displays:
            epoch = run.epoch_offset + display.iteration / per_epoch
            if last_epoch is not None and epoch > last_epoch:
                continue
            result.train_curve.append((epoch, display.smoothed_loss, objective,
                                       display.outputs.get("ess")))
    if approach == "gg_dg_auto":
        result.switch_epoch = stages[-1][0].epoch_offset if len(stages) > 1 else None
    last = result.test_curve[-1] if result.test_curve else None
    if last is None or abs(last.epoch - settings.total_epochs) > 1e-9:
        return result  # log does not end at the full schedule: treat as pending
    result.complete = True
    result.final_error_percent = last.error_percent
    return result


def _recorded_libcaffe(settings, run):
    try:
        with open(os.path.join(settings.repo, run.run_dir, mnist_runs.DONE_NAME)) as handle:
            return (json.load(handle).get("caffe_build") or {}).get("libcaffe.so") or "unknown"
    except (OSError, ValueError):
        return "unknown"


def collect(settings, approaches, seeds):
    return {approach: [collect_seed(settings, approach, seed) for seed in seeds]
            for approach in approaches}


def mean_sd(values):
    if not values:
        return None, None
    sd = statistics.stdev(values) if len(values) > 1 else None
    return statistics.mean(values), sd


def _cell(result):
    if not result.complete:
        return "pending"
    text = "%.2f" % result.final_error_percent
    if result.approach == "gg_dg_auto":
        text += " (switch %s)" % ("e%d" % result.switch_epoch if result.switch_epoch else "none")
    return text


def data_lines(settings):
    """What the runs trained on and for how long, for the table's header."""
    summaries = {split: settings.data_summary(split) for split in ("train", "test")}
    train, test = summaries["train"], summaries["test"]
    per_epoch = settings.iterations_per_epoch
    low, high = train.label_range
    name = "MNIST (tools/make_mnist_lmdb.py, the pinned records)" if settings.is_mnist() \
        else "not MNIST"
    lines = [
        "Data: %s. Train `%s`: %d images of %s, labels %d..%d; test `%s`: %d images"
        % (name, settings.lmdb("train"), train.entries, datum_check.fmt_shape(train.shape), low,
           high, settings.lmdb("test"), test.entries),
        "(records sha256 %s / %s). LeNet with %d classes."
        % (train.records_sha256[:12], test.records_sha256[:12], settings.num_classes),
    ]
    if settings.smoke:
        epoch = ("Epoch = %d iterations (**smoke run: --epoch-iterations %d instead of a pass "
                 "over the train LMDB, ceil(%d / %d) = %d; not comparable to the paper**)"
                 % (per_epoch, per_epoch, train.entries, _train_batch(),
                    settings.data_iterations_per_epoch))
    else:
        epoch = ("Epoch = one pass over the train LMDB = ceil(%d / %d) = %d iterations"
                 % (train.entries, _train_batch(), per_epoch))
    covered = settings.test_iterations * _test_batch()
    lines += [
        "Schedule: %d epochs; GG+DG: GG for %d epochs, then DG (base_lr 0.003) for %d."
        % (settings.total_epochs, settings.stage1_epochs(),
           settings.total_epochs - settings.stage1_epochs()),
        epoch + "; a test pass after each epoch reads %d test images%s." % (
            covered, "" if covered == test.entries else
            " (%d batches of %d: the last %d are read twice)" % (
                settings.test_iterations, _test_batch(), covered - test.entries)),
    ]
    return lines


def _train_batch():
    from ..nets import lenet
    return lenet.ARCH.data.train_batch


def _test_batch():
    from ..nets import lenet
    return lenet.ARCH.data.test_batch


def table_markdown(results, seeds, settings, command=None):
    paper = settings.is_paper_setup()
    lines = [
        "# %s / LeNet: test error (%%) after %d epochs"
        % ("MNIST" if settings.is_mnist() else "Your data", settings.total_epochs),
        "",
        "The protocol of Table 1 of Dai, Lu & Wu (Statistics and Its Interface 2016,",
        "Sec. 5.1). Error = 100 x (1 - accuracy) on the test LMDB at the last test",
        "pass. Settings: solvers/lenet_*.prototxt (batch 64, base_lr 0.01, momentum",
        "0.9, weight decay 0.0005, inv lr policy; GG+DG stage 2 base_lr 0.003), %s,"
        % ("CPU" if settings.gpu is None else "GPU"),
        "one run per seed (Caffe random_seed).",
        "",
    ] + data_lines(settings) + [""]
    if "gg_dg_auto" in results:
        lines += [
            "GG+DG auto (experimental, beyond the paper; results/mnist_switch.md): DG tuning",
            "starts after the %s (rule `%s`); the switch epoch is given per seed."
            % (settings.switch_criterion().describe(), settings.switch_criterion().rule())]
    if not paper:
        lines += ["The paper column is given only for its own setup (MNIST, 25 epochs, "
                  "switch at 16, whole epochs)."]
    lines += [
        "",
        "| approach | " + " | ".join("seed %d" % s for s in seeds) + " | mean ± sd (n) | paper |",
        "|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for approach, seed_results in results.items():
        finals = [r.final_error_percent for r in seed_results if r.complete]
        mean, sd = mean_sd(finals)
        if mean is None:
            summary = "-"
        else:
            summary = "%.2f ± %s (%d)" % (mean, "%.2f" % sd if sd is not None else "n/a", len(finals))
        paper_error = PAPER_ERROR_PERCENT.get(approach) if paper else None
        lines.append("| %s | %s | %s | %s |" % (
            approach_title(approach, settings), " | ".join(_cell(r) for r in seed_results),
            summary, "%.2f" % paper_error if paper_error is not None else "-"))
    builds = sorted({sha[:12] for rs in results.values() for r in rs if r.complete
                     for sha in r.libcaffe_sha256})
    lines += ["", "libcaffe.so builds (sha256 prefix) that trained the finished runs: %s."
              % (", ".join(builds) or "-")]
    lines += ["", "Generated %s by `%s`." % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command or "tools/reproduce_mnist.py --report-only"), ""]
    return "\n".join(lines)


def _mean_curve(curves, value):
    """Mean over seeds of value(point) at each epoch present in every curve."""
    by_epoch = {}
    for curve in curves:
        for point in curve:
            v = value(point)
            if v is not None and not math.isnan(v):
                by_epoch.setdefault(round(point.epoch, 6), []).append(v)
    epochs = sorted(e for e, vs in by_epoch.items() if len(vs) == len(curves))
    return epochs, [statistics.mean(by_epoch[e]) for e in epochs]


def plot_curves(results, path, settings):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = [grid[0][0], grid[0][1], grid[1][0], grid[1][1]]  # error, DG loss, GG loss, ESS
    colors = {"dg": "tab:blue", "gg": "tab:red", "gg_dg": "tab:green", "gg_dg_auto": "tab:purple"}
    train_ess_drawn = False
    for approach, seed_results in results.items():
        done = [r for r in seed_results if r.complete]
        if not done:
            continue
        color = colors.get(approach)
        label = "%s (%d seeds)" % (approach_title(approach, settings), len(done))
        curves = [r.test_curve for r in done]
        for curve in curves:  # thin per-seed lines under the mean
            axes[0].plot([p.epoch for p in curve if p.epoch >= 1],
                         [p.error_percent for p in curve if p.epoch >= 1],
                         color=color, alpha=0.15, linewidth=0.8)
        epochs, errors = _mean_curve(curves, lambda p: p.error_percent if p.epoch >= 1 else None)
        axes[0].plot(epochs, errors, color=color, label=label, marker=".")
        for axis, objective in ((axes[1], "DG"), (axes[2], "GG")):
            epochs, losses = _mean_curve(
                curves, lambda p: p.loss if p.epoch >= 1 and p.objective == objective else None)
            if epochs:
                axis.plot(epochs, losses, color=color, label=label, marker=".")
        epochs, ess = _mean_curve(curves, lambda p: p.ess if p.objective == "GG" else None)
        if epochs:
            axes[3].plot(epochs, ess, color=color, label=label + ", test", marker=".")
        if epochs and not train_ess_drawn:  # GG stages all start alike: one train trace
            train_ess_drawn = True
            train_ess = [(e, v) for e, _, objective, v in done[0].train_curve
                         if objective == "GG" and v is not None]
            axes[3].plot([e for e, _ in train_ess], [v for _, v in train_ess], color=color,
                         alpha=0.4, linewidth=0.7, label="%s, train batches (seed %d)"
                         % (approach_title(approach, settings), done[0].seed))
    axes[0].set(xlabel="epoch", ylabel="test error (%)", yscale="log",
                title="%s test error (mean over seeds)"
                % ("MNIST" if settings.is_mnist() else os.path.basename(settings.lmdb("test"))))
    axes[1].set(xlabel="epoch", ylabel="test loss", yscale="log",
                title="test softmax loss (DG training and DG stages)")
    axes[2].set(xlabel="epoch", ylabel="test loss",
                title="test generative loss (GG training and GG stages)")
    axes[3].set(xlabel="epoch", ylabel="ESS / N", title="test ESS fraction during GG training")
    if axes[3].lines:  # log scale only with data (an empty log axis warns)
        axes[3].set_yscale("log")
        criterion = settings.switch_criterion()
        if (criterion.output, criterion.kind) == ("ess", "below"):
            axes[3].axhline(criterion.threshold, color="gray", linestyle="--", linewidth=0.8,
                            label="auto-switch threshold %g" % criterion.threshold)
    for axis in axes:
        plain_tick_labels(axis)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    if settings.smoke:
        figure.suptitle("SMOKE RUN: an 'epoch' of %d iterations" % settings.iterations_per_epoch)
    figure.tight_layout()
    save_png(figure, path, dpi=110)


def write_report(settings, approaches, seeds, table_path, curves_path, command=None):
    results = collect(settings, approaches, seeds)
    solver_config.write_text_atomic(table_path, table_markdown(results, seeds, settings, command))
    plot_curves(results, curves_path, settings)
    return results
