"""results/mnist_semi.md and its plots from the finished runs of
gencaffe.experiments.semi_runs (nothing here trains; the diagnostics of
semi_diagnostics are computed once per finished semi_gg run and cached in its
run directory).
"""
import datetime
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .. import solver_config
from .plots import plain_tick_labels, save_png
from . import semi_diagnostics, semi_runs
from .caffe_runs import DONE_NAME, file_sha256

# Published test errors (%) for MNIST with k labels, each checked in its
# source; a number that could not be checked is not quoted (see UNCHECKED).
# Each entry: (method, source, where in the source, {k: error %}).
PUBLISHED: List[Tuple[str, str, str, Dict[int, float]]] = []
# What the table would have cited but could not be checked with the tools at
# hand (the reference is named, the numbers are not quoted).
UNCHECKED = [
    "Kingma, Rezende, Mohamed & Welling 2014 (Semi-supervised learning with deep generative "
    "models), Table 1: the supervised CNN and M1+M2 rows",
    "Lee 2013 (Pseudo-Label), its MNIST table: the Pseudo-Label rows",
    "Rasmus, Berglund, Honkala, Valpola & Raiko 2015 (Ladder networks), the MNIST table",
]
COLOURS = {"dg": "tab:blue", "semi_gg": "tab:orange", "semi_gg_dg": "tab:green",
           "bayes": "tab:red"}
BAYES_TITLE = "semi-supervised GG, Bayes rule with Z_y (beyond the paper)"


@dataclass
class ReportPaths:
    table: str
    errors_png: str
    diagnostics_png: str

    @classmethod
    def under(cls, folder):
        return cls(os.path.join(folder, "mnist_semi.md"), os.path.join(folder, "mnist_semi.png"),
                   os.path.join(folder, "mnist_semi_diagnostics.png"))


@dataclass
class RunResult:
    k: int
    seed: int
    approach: str
    complete: bool = False
    error: Optional[float] = None                  # % at the final iteration
    test_curve: List[tuple] = field(default_factory=list)    # (iteration, error %)
    train_curve: List[dict] = field(default_factory=list)    # semi_gg: iteration, loss, ess, ...
    seconds: float = 0.0
    libcaffe: List[str] = field(default_factory=list)
    diagnostics: Optional[dict] = None
    stale: bool = False     # finished, but for settings or code other than today's
    bayes_error: Optional[float] = None   # semi_gg: % of the Bayes rule with Z_y (diagnostics)


def finished(settings, run) -> bool:
    """Trained to the end (done.json, a finished log, the final snapshot),
    whatever the spec it was trained for: the report shows finished runs even
    when the net generator has changed since (marking them), while the runner
    retrains only what does not match today's spec."""
    return bool(run.read_done(settings)) and \
        os.path.exists(settings.path(run.final_snapshot(settings))) and \
        run.parsed_log(settings).finished


def _done(settings, run):
    try:
        with open(settings.path(os.path.join(run.run_dir, DONE_NAME))) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def collect_one(settings, k, seed, approach) -> RunResult:
    result = RunResult(k, seed, approach)
    try:
        runs = semi_runs.approach_runs(settings, k, seed, approach)
    except semi_runs.SemiError:
        return result
    if semi_runs.read_split(settings, k, seed) is None or \
            not all(finished(settings, r) for r in runs):
        return result
    try:
        result.stale = not all(r.is_complete(settings) for r in runs)
    except Exception:  # e.g. the generator changed so much that the spec cannot be made
        result.stale = True
    stage1_end = runs[1].iteration_offset if len(runs) > 1 else None
    for index, run in enumerate(runs):
        parsed = run.parsed_log(settings)
        for test in parsed.tests():
            if index > 0 and test.iteration == 0:
                continue  # the previous stage's weights again
            if stage1_end is not None and index == 0 and test.iteration > stage1_end:
                continue  # semi_gg beyond the switch belongs to the semi_gg approach
            result.test_curve.append((test.iteration + run.iteration_offset, test.error_percent))
        if run.role == "semi_gg":
            for display in parsed.train_displays:
                if stage1_end is not None and display.iteration > stage1_end:
                    continue
                result.train_curve.append(dict(display.outputs, iteration=display.iteration,
                                               loss=display.smoothed_loss))
        done = _done(settings, run)
        if index == len(runs) - 1 or approach == "semi_gg":
            result.seconds += done.get("seconds", 0.0)
        elif approach == "semi_gg_dg":   # stage 1's share of the semi_gg run it reuses
            result.seconds += done.get("seconds", 0.0) * stage1_end / run.iterations
        result.libcaffe.append((done.get("caffe_build") or {}).get("libcaffe.so") or "unknown")
    last = runs[-1]
    final = last.parsed_log(settings).final_test()
    if final is None or final.iteration != last.iterations or final.error_percent is None:
        return result
    result.complete = True
    result.error = final.error_percent
    return result


def ensure_diagnostics(settings, k, seed, batches) -> Optional[dict]:
    """The cached diagnostics of the (finished) semi_gg run of k, seed; computed if missing or
    made for other weights."""
    run = semi_runs.semi_gg_run(settings, k, seed)
    if batches <= 0 or not finished(settings, run):
        return None
    path = settings.path(os.path.join(run.run_dir, semi_diagnostics.DIAGNOSTICS_NAME))
    final = settings.path(run.final_snapshot(settings))
    weights = file_sha256(final)
    found = semi_diagnostics.cached(path, weights, batches)
    if found:
        return found
    every = run.snapshot or run.iterations
    snapshots = {}
    for iteration in list(range(every, run.iterations + 1, every)) + [run.iterations]:
        candidate = settings.path(run.snapshot_path(iteration))
        if os.path.exists(candidate):
            snapshots[iteration] = candidate
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(settings.path(os.path.join(run.run_dir, semi_runs.NET_NAME))) as handle:
        text_format.Merge(handle.read(), net)
    manifest = semi_runs.read_split(settings, k, seed)
    settings.log("[k%d seed%d] diagnostics of %d semi_gg snapshots" % (k, seed, len(snapshots)))
    result = semi_diagnostics.analyse(run.run_dir, snapshots,
                                      settings.path(semi_runs.split_dir(settings, k, seed)),
                                      manifest, net, batches,
                                      test_lmdb=settings.path(semi_runs.eval_source(settings, k,
                                                                                    seed)))
    return semi_diagnostics.save(path, result, weights, batches)


def collect(settings, ks, seeds, approaches, diagnostic_batches=20):
    results = {}
    for k in ks:
        for seed in seeds:
            for approach in approaches:
                result = collect_one(settings, k, seed, approach)
                if approach == "semi_gg" and result.complete:
                    result.diagnostics = ensure_diagnostics(settings, k, seed,
                                                            diagnostic_batches)
                    final = (result.diagnostics or {}).get("final")
                    if final:
                        result.bayes_error = 100 * (1 - final["generative_test_accuracy"])
                results[(k, seed, approach)] = result
    return results


def mean_sd(values):
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean, sd, n=None):
    if mean is None:
        return "pending"
    text = "%.2f ± %s" % (mean, "%.2f" % sd if sd is not None else "n/a")
    return text + (" (%d)" % n if n is not None else "")


def _budget_lines(settings):
    stage1, stage2 = semi_runs.stage_split(settings.repo, settings.iterations)
    paper = solver_config.load_solver(settings.path(semi_runs.SOLVERS["dg"])).max_iter
    share = settings.labelled_share
    from ..nets import catalog, variants
    arch = catalog.architecture("lenet")
    data = variants.semi_data(arch.semi_data, share if share is not None
                              else variants.DEFAULT_LABELLED_SHARE)
    lam = settings.unlabeled_weight if settings.unlabeled_weight is not None \
        else variants.DEFAULT_UNLABELED_WEIGHT
    return [
        "* Budget: **%d iterations of a 64-image batch for every approach** (semi-supervised GG "
        "+ DG tuning: %d + %d, the paper's 16 : 9 split of its MNIST GG+DG), i.e. %.1f passes' "
        "worth of 60,000 images; the paper's MNIST budget is 25 epochs = %d iterations, %.1fx "
        "longer. Chosen to fit 2 shared CPU cores (measured cost below)."
        % (settings.iterations, stage1, stage2, settings.iterations * 64 / 60000.0, paper,
           paper / float(settings.iterations)),
        "* Semi-supervised batches: %d labelled + %d unlabelled images (labelled share %.3g), "
        "lambda %.3g, class prior rho = the labelled subset's class frequencies%s."
        % (data.train_batch, data.unlabelled_batch,
           data.train_batch / float(data.train_batch + data.unlabelled_batch), lam,
           " (uniform: --uniform-prior)" if settings.uniform_prior else
           " (uniform for a balanced subset)" if settings.balanced else ""),
    ]


def timing_line(results, settings) -> Optional[str]:
    """Measured cost per iteration of the finished runs (their done.json seconds,
    test passes included)."""
    per_iteration = [r.seconds / settings.iterations for r in results.values()
                     if r.complete and r.seconds and r.approach in ("dg", "semi_gg")]
    if not per_iteration:
        return None
    return ("* Measured cost: %.0f-%.0f ms per iteration (median %.0f ms; test passes included) "
            "over %d finished DG and semi GG runs, %s, i.e. %.1f-%.1f min per %d-iteration run."
            % (1000 * min(per_iteration), 1000 * max(per_iteration),
               1000 * statistics.median(per_iteration), len(per_iteration),
               "CPU, one BLAS thread per caffe, the runs %s at a time on 2 cores shared with "
               "other work" % getattr(settings, "jobs", "two")
               if settings.gpu is None else "GPU",
               min(per_iteration) * settings.iterations / 60,
               max(per_iteration) * settings.iterations / 60, settings.iterations))


def table_markdown(results, settings, ks, seeds, approaches, command, timing=None) -> str:
    evaluated = ("the 10,000 MNIST test images" if settings.evaluate_on == "test" else
                 "the held-out train images after the first {:,} (validation, not the test "
                 "set)".format(settings.pool or 0))
    lines = [
        "# Semi-supervised MNIST / LeNet: %s error (%%) with k labelled images"
        % ("test" if settings.evaluate_on == "test" else "held-out"),
        "",
        "Generated by `%s`. Error = 100 x (1 - accuracy) on %s at the last iteration "
        "(`caffe train`'s final test pass)." % (command, evaluated),
        "",
        "* Protocol: the first %s train images (%s) split by `tools/make_semi_split.py`: k "
        "labelled (%s; the seed picks the subset and is Caffe's random_seed), the rest "
        "unlabelled (label -1)."
        % ("{:,}".format(settings.pool or 60000),
           "MNIST's classic train part; the other 10,000 are %s"
           % ("left out" if settings.evaluate_on == "test" else "the held-out set")
           if settings.pool == 50000 else "of the 60,000",
           "class-balanced, k/10 per digit" if settings.balanced else "uniformly at random"),
        "* Approaches: **DG** = SoftmaxWithLoss on the k labelled images alone "
        "(`solvers/lenet_semi_dg.prototxt`); **semi GG** = GenerativeLoss in semi-supervised "
        "mode (journal Eq. 19) on mixed batches (`solvers/lenet_semi_gg.prototxt`); **semi "
        "GG + DG** = semi GG, then DG on the labelled images from its weights with `-weights`, "
        "base_lr 0.003 (`solvers/lenet_semi_dg_tune.prototxt`). LeNet, batch 64, base_lr "
        "0.01, momentum 0.9, weight decay 0.0005, inv policy (the paper's MNIST settings), %s."
        % ("CPU" if settings.gpu is None else "GPU"),
    ] + _budget_lines(settings)
    timing = timing or timing_line(results, settings)
    lines += [timing] if timing else []
    lines += ["", "## Test error, mean ± sd over seeds (n)", ""]
    bayes = any(r.bayes_error is not None for r in results.values())
    header = "| k | " + " | ".join(semi_runs.TITLES[a] for a in approaches) + \
        (" | %s |" % BAYES_TITLE if bayes else " |")
    lines += [header, "|---:|" + "---|" * (len(approaches) + bayes)]
    for k in ks:
        cells = []
        for approach in approaches:
            errors = [results[(k, s, approach)].error for s in seeds
                      if results[(k, s, approach)].complete]
            mean, sd = mean_sd(errors)
            cells.append(_fmt(mean, sd, len(errors)) if errors else "pending")
        if bayes:
            errors = bayes_errors(results, k, seeds)
            mean, sd = mean_sd(errors)
            cells.append(_fmt(mean, sd, len(errors)) if errors else "pending")
        lines.append("| %d | %s |" % (k, " | ".join(cells)))
    if bayes:
        lines += ["", "The last column reads the finished semi GG nets with the generative "
                  "model's own Bayes rule argmax_y [f_y(x) - log Z_y + log rho_y] instead of "
                  "Caffe's arg-max of f_y (see the diagnostics below); log Z_y is estimated on "
                  "the first 10,000 unlabelled train images of the split, no label is used "
                  "beyond the k. It is not the paper's protocol, which tunes with DG instead."]
    lines += ["", "Each seed (test error %):", "",
              "| k | approach | " + " | ".join("seed %d" % s for s in seeds) + " |",
              "|---:|---|" + "---:|" * len(seeds)]
    for k in ks:
        for approach in approaches:
            cells = [("%.2f" % results[(k, s, approach)].error +
                      (" (stale)" if results[(k, s, approach)].stale else ""))
                     if results[(k, s, approach)].complete else "pending" for s in seeds]
            lines.append("| %d | %s | %s |" % (k, semi_runs.TITLES[approach], " | ".join(cells)))
        if bayes:
            cells = ["%.2f" % results[(k, s, "semi_gg")].bayes_error
                     if results.get((k, s, "semi_gg")) and
                     results[(k, s, "semi_gg")].bayes_error is not None else "pending"
                     for s in seeds]
            lines.append("| %d | %s | %s |" % (k, BAYES_TITLE, " | ".join(cells)))
    if any(r.stale for r in results.values() if r.complete):
        lines += ["", "(stale): trained with settings or a net generator other than today's; "
                  "`tools/reproduce_semi.py` with these settings would train it again."]
    lines += ["", "## Published numbers for this protocol", ""]
    if PUBLISHED:
        lines += ["| method | source | " + " | ".join("k = %d" % k for k in ks) + " |",
                  "|---|---|" + "---:|" * len(ks)]
        for method, source, where, values in PUBLISHED:
            lines.append("| %s | %s, %s | %s |" % (method, source, where, " | ".join(
                "%.2f" % values[k] if k in values else "-" for k in ks)))
    lines += ["Not quoted, because the numbers could not be checked in their sources with the "
              "search tools available here (only the papers' abstracts and first pages were "
              "reachable):", ""] + ["* %s" % text for text in UNCHECKED]
    lines += [""] + diagnostics_markdown(results, settings, ks, seeds)
    builds = sorted({sha[:12] for r in results.values() if r.complete for sha in r.libcaffe})
    seconds = [r.seconds for r in results.values() if r.complete and r.seconds]
    lines += ["", "libcaffe.so builds (sha256 prefix) that trained the finished runs: %s. "
              "Training time per approach and seed: %s."
              % (", ".join(builds) or "-",
                 "%.1f-%.1f min" % (min(seconds) / 60, max(seconds) / 60) if seconds else "-"),
              "", "Written %s." % datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%d %H:%M UTC"), ""]
    return "\n".join(lines)


def bayes_errors(results, k, seeds):
    return [results[(k, s, "semi_gg")].bayes_error for s in seeds
            if (k, s, "semi_gg") in results and results[(k, s, "semi_gg")].bayes_error
            is not None]


def _at(diagnostics, iteration):
    rows = [row for row in diagnostics["snapshots"] if row["iteration"] == iteration]
    return rows[0] if rows else None


def diagnostics_markdown(results, settings, ks, seeds) -> List[str]:
    stage1, _ = semi_runs.stage_split(settings.repo, settings.iterations)
    lines = ["## The unlabelled term over semi-supervised GG training", "",
             "From `semi_gg`'s snapshots (gencaffe.experiments.semi_diagnostics): the first "
             "mixed batches of the run's own data, scored by the snapshot; for the unlabelled "
             "images, the class that Eq. 19's max picks (argmax_y log p_y(x) + log rho_y, with "
             "the batch's normaliser) against their true labels (**pseudo acc.**), the net's own "
             "prediction argmax_y f_y(x) (**classifier acc.**), the largest share of the "
             "unlabelled images given to one class (0.1 = even), the layer's ESS top, and the "
             "mean terms of Eq. 19: log p_y(x) of the labelled images at their label and "
             "log p_y(x) + log rho_y of the unlabelled ones at the arg-max, with the batch "
             "estimate log p_y(x_j) = F[j, y] - log sum_k exp F[k, y] + log n (0: x_j weighs "
             "1/n of column y, its share of an even spread; log n = %.2f: x_j takes all of it); "
             "mean over seeds at the iteration named." % math.log(64), "",
             "| k | iteration | pseudo acc. | classifier acc. | agreement | largest class share "
             "| ESS | labelled log p | unlabelled log p + log rho | seeds |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ks:
        found = [results[(k, s, "semi_gg")].diagnostics for s in seeds
                 if (k, s, "semi_gg") in results and results[(k, s, "semi_gg")].diagnostics]
        if not found:
            continue
        iterations = sorted({row["iteration"] for d in found for row in d["snapshots"]})
        first = iterations[0]
        for iteration in sorted({first, stage1, iterations[-1]}):
            rows = [_at(d, iteration) for d in found]
            rows = [r for r in rows if r]
            if not rows:
                continue
            mean = lambda name: statistics.mean(r[name] for r in rows)  # noqa: E731
            lines.append("| %d | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f | %d |" % (
                k, iteration, mean("pseudo_accuracy"), mean("classifier_accuracy"),
                mean("agreement"), mean("largest_class_share"), mean("ess"),
                mean("labelled_term"), mean("unlabelled_term"), len(rows)))
    lines += ["", "Test error (%) of the final semi GG nets read two ways: the net's arg-max "
              "argmax_y f_y(x) (the table above), and the generative model's Bayes rule "
              "argmax_y [f_y(x) - log Z_y + log rho_y], log Z_y = log mean exp f_y over the "
              "first 10,000 unlabelled train images of the split. GG's loss and gradient are "
              "the same when a constant is added to one class's scores, so GG does not learn "
              "the per-class offsets the first rule depends on; the second does not depend on "
              "them.", "",
              "| k | argmax f_y | Bayes rule with Z_y | seeds |", "|---:|---:|---:|---:|"]
    for k in ks:
        finals = [results[(k, s, "semi_gg")].diagnostics.get("final") for s in seeds
                  if (k, s, "semi_gg") in results and results[(k, s, "semi_gg")].diagnostics]
        finals = [f for f in finals if f]
        if finals:
            plain, _ = mean_sd([100 * (1 - f["classifier_test_accuracy"]) for f in finals])
            bayes, sd = mean_sd([100 * (1 - f["generative_test_accuracy"]) for f in finals])
            lines.append("| %d | %.2f | %s | %d |" % (k, plain, _fmt(bayes, sd), len(finals)))
    return lines


# ------------------------------------------------------------------ plots

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_errors(results, settings, ks, seeds, approaches, path):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7.5, 5))
    for approach in approaches:
        xs, means, sds = [], [], []
        for k in ks:
            errors = [results[(k, s, approach)].error for s in seeds
                      if results[(k, s, approach)].complete]
            if errors:
                mean, sd = mean_sd(errors)
                xs.append(k)
                means.append(mean)
                sds.append(sd or 0.0)
                ax.scatter([k] * len(errors), errors, color=COLOURS[approach], s=8, alpha=0.4)
        if xs:
            ax.errorbar(xs, means, yerr=sds, color=COLOURS[approach], marker="o", capsize=3,
                        label=semi_runs.TITLES[approach])
    xs, means, sds = [], [], []
    for k in ks:
        errors = bayes_errors(results, k, seeds)
        if errors:
            mean, sd = mean_sd(errors)
            xs.append(k)
            means.append(mean)
            sds.append(sd or 0.0)
            ax.scatter([k] * len(errors), errors, color=COLOURS["bayes"], s=8, alpha=0.4)
    if xs:
        ax.errorbar(xs, means, yerr=sds, color=COLOURS["bayes"], marker="s", capsize=3, ls="--",
                    label=BAYES_TITLE)
    for method, source, where, values in PUBLISHED:
        pts = sorted((k, v) for k, v in values.items() if k in ks)
        if pts:
            ax.plot(*zip(*pts), ls="--", marker="x", lw=1, label="%s (%s)" % (method, source))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    plain_tick_labels(ax)
    ax.set_xlabel("labelled images k (class-balanced)")
    ax.set_ylabel("test error % (mean ± sd over seeds; dots: seeds)")
    ax.set_title("Semi-supervised MNIST, LeNet, %d iterations per approach" % settings.iterations)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    figure.tight_layout()
    save_png(figure, path, dpi=100)


def _mean_by_iteration(series):
    """[(iteration, value)] lists -> iterations present in all, and the mean values."""
    by = {}
    for points in series:
        for iteration, value in points:
            if value is not None and not math.isnan(value):
                by.setdefault(iteration, []).append(value)
    xs = sorted(i for i, values in by.items() if len(values) == len(series))
    return xs, [statistics.mean(by[i]) for i in xs]


def plot_diagnostics(results, settings, ks, seeds, path):
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    (ax_pseudo, ax_share), (ax_ess, ax_test) = axes
    cmap = plt.get_cmap("viridis")
    stage1, _ = semi_runs.stage_split(settings.repo, settings.iterations)
    for index, k in enumerate(ks):
        colour = cmap(index / max(1, len(ks) - 1))
        runs = [results[(k, s, "semi_gg")] for s in seeds if (k, s, "semi_gg") in results
                and results[(k, s, "semi_gg")].complete]
        diags = [r.diagnostics for r in runs if r.diagnostics]
        if diags:
            for name, style in (("pseudo_accuracy", "-"), ("classifier_accuracy", ":")):
                xs, ys = _mean_by_iteration([[(row["iteration"], row[name])
                                              for row in d["snapshots"]] for d in diags])
                ax_pseudo.plot(xs, ys, ls=style, color=colour, marker=".",
                               label="k=%d %s" % (k, "Eq. 19 arg-max" if style == "-"
                                                  else "classifier"))
            xs, ys = _mean_by_iteration([[(row["iteration"], row["largest_class_share"])
                                          for row in d["snapshots"]] for d in diags])
            ax_share.plot(xs, ys, color=colour, marker=".", label="k=%d largest share" % k)
            xs, ys = _mean_by_iteration([[(row["iteration"], row["class_entropy"])
                                          for row in d["snapshots"]] for d in diags])
            ax_share.plot(xs, ys, color=colour, ls=":", label="k=%d entropy / ln 10" % k)
        if runs:
            for name, style in (("ess", "-"), ("ess_within", "--")):
                xs, ys = _mean_by_iteration([[(p["iteration"], p.get(name))
                                              for p in r.train_curve] for r in runs])
                if xs:
                    ax_ess.plot(xs, ys, color=colour, ls=style, lw=1,
                                label="k=%d %s" % (k, name))
        for approach, style in (("semi_gg", "-"), ("dg", ":"), ("semi_gg_dg", "--")):
            curves = [results[(k, s, approach)].test_curve for s in seeds
                      if (k, s, approach) in results and results[(k, s, approach)].complete]
            if curves:
                xs, ys = _mean_by_iteration(curves)
                ax_test.plot(xs, ys, color=colour, ls=style, marker=".",
                             label="k=%d %s" % (k, approach))
    for ax in axes.ravel():
        ax.axvline(stage1, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("iteration (dotted line: semi GG + DG switches to DG)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    ax_pseudo.set_title("unlabelled images: accuracy of the Eq. 19 arg-max class and of the "
                        "classifier")
    ax_share.set_title("arg-max classes of the unlabelled images: largest share, entropy")
    ax_ess.set_title("train ESS top (mean ESS_c / n) and within-class ESS (logged)")
    ax_test.set_title("test error %")
    ax_test.set_yscale("log")
    figure.suptitle("Semi-supervised GG on MNIST: what the unlabelled term does (mean over seeds)")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    save_png(figure, path, dpi=90)


def write_report(settings, ks: Sequence[int], seeds: Sequence[int],
                 approaches: Sequence[str], paths: ReportPaths, command: str,
                 diagnostic_batches: int = 20, timing: Optional[str] = None):
    results = collect(settings, ks, seeds, approaches, diagnostic_batches)
    solver_config.write_text_atomic(paths.table, table_markdown(results, settings, ks, seeds,
                                                                approaches, command, timing))
    plot_errors(results, settings, ks, seeds, approaches, paths.errors_png)
    if "semi_gg" in approaches:
        plot_diagnostics(results, settings, ks, seeds, paths.diagnostics_png)
    return results
