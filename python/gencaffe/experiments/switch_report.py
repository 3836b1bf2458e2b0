"""results/mnist_switch.md and its pictures: the switch-epoch sweep's table,
test error against switch epoch, the GG runs' diagnostics over training, and
the switch criteria judged against the sweep (sweep_switch)."""
import datetime
import statistics

from ..atomic_io import atomic_write
from .plots import save_png
from .sweep_switch import best_point, criterion_rows, fmt, mean_sd

DIAGNOSTICS = (("accuracy", "test accuracy"), ("ess", "batch ESS / N (ess)"),
               ("ess_within", "within-class ESS fraction (ess_within)"),
               ("ess_within_sd", "its sd across classes (ess_within_sd)"),
               ("cross_weight", "weight on other classes' examples (cross_weight)"))


def table_lines(results, points, total_epochs):
    seeds = [r.seed for r in results]
    head = "| switch after epoch | " + " | ".join("seed %d" % s for s in seeds) + \
        " | mean ± sd |"
    lines = [head, "|" + "---|" * (len(seeds) + 2)]

    def row(label, values):
        mean, sd = mean_sd(values)
        n = sum(v is not None for v in values)
        summary = "-" if mean is None else "%.2f ± %.2f" % (mean, sd) if n > 1 else \
            "%.2f (1 seed)" % mean
        return "| %s | %s | %s |" % (label, " | ".join(fmt(v) for v in values), summary)
    lines.append(row("0 (DG alone)", [r.dg for r in results]))
    for p in sorted(set(points) | {e for r in results for e in r.switch}):
        lines.append(row(str(p) if p in points else "%d (a criterion's)" % p,
                         [r.switch.get(p) for r in results]))
    lines.append(row("%d (GG alone)" % total_epochs, [r.gg for r in results]))
    return lines


def diagnostics_lines(results):
    epochs = sorted({e for r in results for e, _ in r.gg_epochs})
    if not epochs:
        return ["(no finished GG run yet)"]
    names = [name for name, _ in DIAGNOSTICS]
    lines = ["| epoch | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for e in epochs:
        cells = []
        for name in names:
            values = [out.get(name) for r in results for ee, out in r.gg_epochs if ee == e]
            values = [v for v in values if v is not None]
            cells.append(fmt(statistics.mean(values), 4) if values else "-")
        lines.append("| %d | %s |" % (e, " | ".join(cells)))
    return lines


def plot(results, points, total_epochs, path_error, path_diagnostics):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + list(points) + [total_epochs]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        ys = [r.dg] + [r.switch.get(p) for p in points] + [r.gg]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", alpha=0.35, lw=1, label="seed %d" % r.seed)
    stats = [(x, mean_sd([r.dg if x == 0 else r.gg if x == total_epochs else
                          r.switch.get(x) for r in results])) for x in xs]
    stats = [(x, m, sd) for x, (m, sd) in stats if m is not None]
    if stats:
        ax.errorbar([s[0] for s in stats], [s[1] for s in stats], yerr=[s[2] for s in stats],
                    fmt="s-", color="black", capsize=3, lw=2, label="mean ± sd")
    ax.set_xlabel("switch from GG to DG after epoch (0 = DG alone, %d = GG alone)"
                  % total_epochs)
    ax.set_ylabel("test error (%)")
    ax.set_title("MNIST LeNet, %d epochs in all: when to switch" % total_epochs)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path_error, dpi=110)

    fig, axes = plt.subplots(len(DIAGNOSTICS), 1, figsize=(7, 2.1 * len(DIAGNOSTICS)),
                             sharex=True)
    for ax, (name, title) in zip(axes, DIAGNOSTICS):
        for r in results:
            pts = [(e, out[name]) for e, out in r.gg_epochs if name in out]
            if pts:
                ax.plot(*zip(*pts), "o-", ms=3, label="seed %d" % r.seed)
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    axes[-1].set_xlabel("GG epoch (test pass after the epoch)")
    fig.suptitle("GG runs: the importance weights' diagnostics over training", fontsize=10)
    fig.tight_layout()
    save_png(fig, path_diagnostics, dpi=110)


def write_report(path, results, points, total_epochs, criteria, command, budget_note,
                 images):
    best = best_point(results, points)
    lines = [
        "# When to switch from GG to DG: a switch-epoch sweep on MNIST",
        "",
        "Measured %s here (2 CPU cores) by `%s`. %s" % (
            datetime.date.today().isoformat(), command, budget_note),
        "",
        "GG+DG = GG for E epochs, then DG (base_lr 0.003, solvers/lenet_gg_dg_stage2.prototxt) "
        "for the rest from GG's epoch-E snapshot with `-weights`; each seed's one GG run "
        "(a snapshot every epoch) serves every switch point. Test error (%) on the 10,000 "
        "MNIST test images after the last epoch.",
        "",
    ] + table_lines(results, points, total_epochs) + [
        "",
        "Best fixed switch point (lowest mean): **%s**." % (best if best is not None else "-"),
        "",
        "![test error against switch epoch](%s)" % images[0],
        "",
        "## The GG runs' diagnostics (test passes, mean over seeds)",
        "",
        "`ess` is the batch ESS fraction the Table 1 runner's auto switch used; "
        "`ess_within` the ESS of each class column's weights over that class's own "
        "examples, as a fraction of their count (mean over classes), `ess_within_sd` its "
        "spread across classes, `cross_weight` the weight a class column puts on the other "
        "classes' examples (GenerativeLoss tops 1-4).",
        "",
    ] + diagnostics_lines(results) + [
        "",
        "![diagnostics over training](%s)" % images[1],
        "",
    ]
    if criteria:
        rows = criterion_rows(results, criteria, total_epochs)
        best_mean = mean_sd([r.switch.get(best) for r in results])[0] if best else None
        lines += ["## Switch criteria against the sweep", "",
                  "| criterion | rule | chosen epoch per seed | test error per seed | mean | "
                  "vs best fixed (%s) |" % (best if best is not None else "-"),
                  "|---|---|---|---|---|---|"]
        for criterion in criteria:
            chosen = rows[criterion.name]
            errors = [e for _, _, e in chosen]
            mean = mean_sd(errors)[0]
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                criterion.name, criterion.describe(),
                ", ".join("none (GG)" if ep is None else str(ep) for _, ep, _ in chosen),
                ", ".join(fmt(e) for e in errors), fmt(mean),
                "-" if mean is None or best_mean is None else "%+.2f" % (mean - best_mean)))
        lines.append("")
    text = "\n".join(lines) + "\n"
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return text
