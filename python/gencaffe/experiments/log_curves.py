"""Curves of any train or test output of `caffe train` logs, over iterations,
for several runs side by side: e.g. GenerativeLoss's ESS top, which says when
a run leaves the starting plateau and how far its classes' batch weights
concentrate (results/tiny_imagenet_semi_collapse.md).

A run is a Caffe log file, a folder holding train.log, or a runner's run
folder of epoch chunks (epoch1/, epoch2/, ... each with its train.log; the
chunk still training has train.log.partial, which is read too, so a live run
can be watched). Chunks resume each other with -snapshot, so their
iterations continue one another.

An output is a train net output as the solver displays it ("ess", "loss",
...), or "test:NAME" for a test-net output ("test:accuracy"; test net #0).
"""
import os
import re
from typing import Dict, List, Sequence, Tuple

from .. import caffe_log
from .caffe_runs import LOG_NAME, PARTIAL_LOG_NAME

TEST_PREFIX = "test:"
_EPOCH_DIR = re.compile(r"^epoch(\d+)$")

Series = List[Tuple[int, float]]


def _log_in(folder):
    """folder's train.log, else its train.log.partial, else None."""
    for name in (LOG_NAME, PARTIAL_LOG_NAME):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def log_files(path: str) -> List[str]:
    """The log files of the run at `path`, in training order (see above)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ValueError("%s: no such log file or run folder" % path)
    own = _log_in(path)
    if own:
        return [own]
    chunks = sorted((int(m.group(1)), name) for name in os.listdir(path)
                    for m in [_EPOCH_DIR.match(name)] if m)
    logs = [log for _, name in chunks for log in [_log_in(os.path.join(path, name))] if log]
    if not logs:
        raise ValueError("%s has no %s, and no epochN/ folders with one" % (path, LOG_NAME))
    return logs


def output_values(log: caffe_log.CaffeLog, output: str) -> Series:
    """(iteration, value) of one output in one parsed log."""
    if output.startswith(TEST_PREFIX):
        name = output[len(TEST_PREFIX):]
        return [(t.iteration, t.outputs[name]) for t in log.tests() if name in t.outputs]
    return [(d.iteration, d.outputs[output]) for d in log.train_displays
            if output in d.outputs]


def available_outputs(log: caffe_log.CaffeLog) -> List[str]:
    """The outputs a log has, in output_values' names."""
    train = {name for d in log.train_displays for name in d.outputs}
    test = {TEST_PREFIX + name for t in log.tests() for name in t.outputs}
    return sorted(train) + sorted(test)


def run_series(path: str, outputs: Sequence[str]) -> Dict[str, Series]:
    """{output: [(iteration, value), ...]} over all of a run's logs, by
    iteration; where two chunks log the same iteration the later one counts.
    An output that none of the logs has is an error naming the run and what
    it does have."""
    merged: Dict[str, Dict[int, float]] = {output: {} for output in outputs}
    seen = set()
    for log_path in log_files(path):
        log = caffe_log.parse_file(log_path)
        seen.update(available_outputs(log))
        for output in outputs:
            merged[output].update(output_values(log, output))
    for output, values in merged.items():
        if not values:
            raise ValueError("%s: no output %r in its logs; they have: %s"
                             % (path, output, ", ".join(sorted(seen)) or "none"))
    return {output: sorted(values.items()) for output, values in merged.items()}


def figure(runs: Sequence[Tuple[str, Dict[str, Series]]], outputs: Sequence[str],
           log_y: bool = False, max_iteration=None, title=None):
    """A matplotlib figure: a panel per output, a line per run (name, series)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(outputs), 1, figsize=(8, 3.2 * len(outputs)), squeeze=False)
    for output, ax in zip(outputs, axes[:, 0]):
        for name, series in runs:
            points = [(i, v) for i, v in series[output]
                      if max_iteration is None or i <= max_iteration]
            if points:
                ax.plot(*zip(*points), lw=1.0, marker="." if len(points) < 60 else None,
                        label=name)
        if log_y:
            ax.set_yscale("log")
        ax.set_ylabel(output)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def csv_text(runs: Sequence[Tuple[str, Dict[str, Series]]], outputs: Sequence[str]) -> str:
    """The series as CSV: run,output,iteration,value."""
    lines = ["run,output,iteration,value"]
    for name, series in runs:
        quoted = '"%s"' % name.replace('"', '""')
        for output in outputs:
            lines += ["%s,%s,%d,%.9g" % (quoted, output, i, v) for i, v in series[output]]
    return "\n".join(lines) + "\n"
