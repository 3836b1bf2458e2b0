"""Small matplotlib helpers shared by the reports."""


def plain_tick_labels(ax):
    """Tick labels as plain numbers ("30", not "3 x 10^1") on ax's y axis,
    major and minor: log-scale error axes read better so."""
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda value, _: "%g" % value)
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


class EpochRow:
    """One row of an epoch-curves figure: `name` ("AlexNet", "50k labels"),
    the schedule's `epochs` and `switch` epoch, and `runs`: (approach,
    result, after) with result.displays = (epoch x, value, kind): kind "DG" /
    "GG" for the batch loss of that objective, "ESS" for GenerativeLoss's ESS top
    and result.tests = (epoch x, top-1 accuracy, top-5); a run's points at
    x <= after are not drawn (a two-stage run's stage 1 is drawn once, by
    the run it was taken from)."""

    def __init__(self, name, epochs, switch, runs):
        self.name, self.epochs, self.switch, self.runs = name, epochs, switch, runs


def epoch_curves_figure(rows, display_panels, colours, titles, classes, switch_label,
                        suptitle=None):
    """A matplotlib figure with a row per EpochRow and a column per
    display_panels entry, (kind, title, reference, ylabel): the displays of
    that kind ("DG", "GG" or "ESS"; the losses differ in scale, so each gets
    its own axes), with an optional (y, label) reference line; then the val
    top-1 accuracy with chance at 1/classes. Every seed is a line; colours and
    titles are keyed by approach, and each approach is labelled once per panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = len(display_panels) + 1
    fig, axes = plt.subplots(max(1, len(rows)), columns,
                             figsize=(5.3 * columns, 4.4 * max(1, len(rows))), squeeze=False)
    for row, axs in zip(rows, axes):
        labelled = set()
        for approach, result, after in row.runs:
            label = None if (approach in labelled) else titles[approach]
            drew = False
            for (kind, _, _, _), ax in zip(display_panels, axs):
                points = [(x, y) for x, y, k in result.displays if k == kind and x > after]
                if points:
                    ax.plot(*zip(*points), color=colours[approach], lw=0.8, alpha=0.7,
                            label=label)
                    drew = True
            tests = [(x, a) for x, a, _ in result.tests if a is not None and x > after]
            if tests:
                axs[-1].plot(*zip(*tests), color=colours[approach], marker="o", ms=3, lw=1.2,
                             label=label)
                drew = True
            if drew:
                labelled.add(approach)
        # runs read back from a report (run_ledger's recovered entries) have no displays
        recovered = sorted({result.seed for _, result, _ in row.runs if not result.displays
                            and (getattr(result, "source", None) or "").startswith("recovered")})
        for (kind, title, reference, ylabel), ax in zip(display_panels, axs):
            if recovered:
                ax.text(0.02, 0.03, "seed %s: no curves (recovered from its report)"
                        % ", ".join(map(str, recovered)), transform=ax.transAxes, fontsize=7,
                        color="dimgrey")
            if reference:
                ax.axhline(reference[0], color="grey", lw=0.8, ls="--", label=reference[1])
            ax.set_title("%s: %s" % (row.name, title))
            ax.set_ylabel(ylabel)
        axs[-1].axhline(1.0 / classes, color="grey", lw=0.8, ls="--", label="chance")
        axs[-1].set_title("%s: val top-1 accuracy (centre crop)" % row.name)
        axs[-1].set_ylabel("accuracy")
        for ax in axs:
            ax.set_xlim(0, row.epochs)
            ax.axvline(row.switch, color="grey", ls=":", lw=1)
            ax.set_xlabel("epoch (dotted: %s)" % switch_label)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
    else:
        fig.tight_layout()
    return fig


def save_png(fig, path, dpi=80):
    """Writes fig to path atomically (a reader never sees half a PNG) and
    closes it."""
    import matplotlib.pyplot as plt
    from ..atomic_io import atomic_write
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    plt.close(fig)
