"""The report of the coupled-net runs (coupled_runs): results/coupled_mnist.md
with a table per seed and mean +- sd beside the paper's numbers, the
curves of Fig. 1 (coupled_mnist_curves.png) and sample grids of the trained
reverse models (python/coupled_sample.py's functions, seed 1 of each
generative arm).

Numbers come from the runs' Caffe logs: the TEST passes (accuracy, loss,
rev_loss over the 10,000 test images, once per epoch) and the TRAIN outputs
Caffe displays every `display` iterations (one batch each), averaged per
epoch for the training curves.
"""
import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import caffe_log
from . import coupled_runs

# Sec. 3.2 (Flach et al. 2017); the dense net's Fig. 1 gives curves, no numbers
PAPER = {"cnn_eq21": {"accuracy": "0.989", "rev_loss": "0.23"},
         "cnn_eq22": {"accuracy": "0.990", "rev_loss": "0.14"}}
CURVES_NAME = "coupled_mnist_curves.png"
REPORT_NAME = "coupled_mnist.md"
REFERENCE_NAME = "coupled_mnist_reference.json"
# hand-written observations, appended to the generated report when present
NOTES_NAME = "coupled_mnist_notes.md"
SAMPLE_ARMS = {"dense_eq21": ("recursive", "one_layer"), "cnn_eq21": ("one_layer", "recursive"),
               "cnn_eq22": ("one_layer", "recursive")}


@dataclass
class EpochPoint:
    epoch: int
    outputs: Dict[str, float]


@dataclass
class SeedResult:
    arm: str
    seed: int
    complete: bool = False
    test: List[EpochPoint] = field(default_factory=list)    # epoch 0 .. E
    train: List[EpochPoint] = field(default_factory=list)   # epoch 1 .. E, per-epoch means
    seconds: Optional[float] = None
    epochs: Optional[int] = None
    iterations_per_epoch: Optional[int] = None
    weights: Optional[str] = None                            # final caffemodel, relative to repo

    def final(self, name):
        return self.test[-1].outputs.get(name) if self.complete and self.test else None


def epoch_curves(parsed, iterations_per_epoch):
    """(test points by epoch, train points: the displayed TRAIN outputs averaged
    over each epoch's displays) from a parsed Caffe log."""
    test = [EpochPoint(t.iteration // iterations_per_epoch, dict(t.outputs))
            for t in parsed.tests() if t.iteration % iterations_per_epoch == 0]
    sums: Dict[int, Dict[str, List[float]]] = {}
    for display in parsed.train_displays:
        if not display.outputs:
            continue  # the closing "Iteration N, loss = L" line
        epoch = display.iteration // iterations_per_epoch + 1
        for name, value in display.outputs.items():
            sums.setdefault(epoch, {}).setdefault(name, []).append(value)
    train = [EpochPoint(epoch, {name: statistics.fmean(values) for name, values in by.items()})
             for epoch, by in sorted(sums.items())]
    return test, train


def collect_seed(settings, arm_key, seed):
    run = coupled_runs.run_for(settings, arm_key, seed)
    result = SeedResult(arm_key, seed)
    log_path = os.path.join(settings.repo, run.log_path())
    partial = os.path.join(settings.repo, run.run_dir, coupled_runs.PARTIAL_LOG_NAME)
    try:
        result.complete = run.is_complete(settings)
    except (OSError, ValueError):
        result.complete = False
    path = log_path if result.complete else partial
    if not os.path.exists(path):
        return result
    done = run.read_done(settings) if result.complete else None
    if done:
        result.seconds = done.get("seconds")
        result.epochs = done["spec"]["epochs"]
        result.iterations_per_epoch = done["spec"]["iterations_per_epoch"]
        result.weights = run.final_snapshot(settings)
    else:
        result.iterations_per_epoch = coupled_runs.iterations_per_epoch(settings, run.arm)
    result.test, result.train = epoch_curves(caffe_log.parse_file(path),
                                             result.iterations_per_epoch)
    return result


def collect(settings, arms, seeds):
    return {a: [collect_seed(settings, a, s) for s in seeds] for a in arms}


def mean_sd(values):
    if not values:
        return None
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def format_mean_sd(values, digits):
    stats = mean_sd(values)
    if stats is None:
        return "-"
    mean, sd = stats
    if sd is None:
        return "%.*f (1)" % (digits, mean)
    return "%.*f ± %.*f (%d)" % (digits, mean, digits, sd, len(values))


def table(results, seeds, name, digits, paper_key):
    lines = ["| arm | " + " | ".join("seed %d" % s for s in seeds) + " | mean ± sd (n) | paper |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for arm_key, rs in results.items():
        if name == "rev_loss" and coupled_runs.ARMS[arm_key].variant == "disc":
            continue
        cells = []
        for r in rs:
            value = r.final(name)
            if value is not None:
                cells.append("%.*f" % (digits, value))
            elif r.test:
                cells.append("running (epoch %d)" % r.test[-1].epoch)
            else:
                cells.append("pending")
        values = [r.final(name) for r in rs if r.final(name) is not None]
        paper = PAPER.get(arm_key, {}).get(paper_key)
        lines.append("| %s | %s | %s | %s |" % (
            coupled_runs.ARMS[arm_key].title, " | ".join(cells), format_mean_sd(values, digits),
            paper or "-"))
    return "\n".join(lines)


def schedule_lines(results, settings):
    lines = []
    for arm_key, rs in results.items():
        done = [r for r in rs if r.complete]
        if not done:
            continue
        epochs = sorted({r.epochs for r in done})
        per_epoch = sorted({r.iterations_per_epoch for r in done})
        minutes = [r.seconds / 60 for r in done if r.seconds]
        lines.append("- %s: %s epoch(s) of %s iterations (batch %d); %s min per run" % (
            coupled_runs.ARMS[arm_key].title, "/".join(map(str, epochs)),
            "/".join(map(str, per_epoch)),
            coupled_runs.architecture(coupled_runs.ARMS[arm_key].arch).data.train_batch,
            "-".join(sorted({"%.0f" % min(minutes), "%.0f" % max(minutes)}, key=float))
            if minutes else "?"))
    return lines


def _mean_curve(points_per_seed, name, shift=0.0):
    """Mean over seeds per epoch, from epoch 1 (the untrained net's test pass
    at epoch 0 is left out); x = epoch + shift."""
    by_epoch: Dict[int, List[float]] = {}
    for points in points_per_seed:
        for p in points:
            if name in p.outputs and p.epoch >= 1:
                by_epoch.setdefault(p.epoch, []).append(p.outputs[name])
    epochs = sorted(by_epoch)
    return [e + shift for e in epochs], [statistics.fmean(by_epoch[e]) for e in epochs]


def plot_curves(results, path):
    """Fig. 1 style: accuracy (left) and reverse loss (right) per epoch, mean
    over the seeds with data; training dashed, validation solid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .plots import save_png
    families = [("coupled_dense", "dense 512-512-10"), ("coupled_cnn", "8-layer CNN")]
    # a row per net with data (both when none has: the empty figure says so)
    families = [(arch, title) for arch, title in families
                if any(coupled_runs.ARMS[a].arch == arch and any(r.test for r in rs)
                       for a, rs in results.items())] or families
    fig, axes = plt.subplots(len(families), 2, figsize=(11, 4 * len(families)), squeeze=False)
    for row, (arch, title) in enumerate(families):
        ax_acc, ax_rev = axes[row]
        colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
        for arm_key, rs in results.items():
            the_arm = coupled_runs.ARMS[arm_key]
            if the_arm.arch != arch or not any(r.test for r in rs):
                continue
            colour = next(colours)
            n = sum(1 for r in rs if r.test)
            # training: the mean over an epoch's batches, drawn at the epoch's middle
            for points, style, what, shift in (([r.train for r in rs], "--", "train", -0.5),
                                               ([r.test for r in rs], "-", "validation", 0.0)):
                epochs, acc = _mean_curve(points, "accuracy", shift)
                if epochs:
                    ax_acc.plot(epochs, acc, style, color=colour, marker=".",
                                label="%s, %s (n=%d)" % (the_arm.title, what, n))
                if the_arm.variant != "disc":
                    epochs, rev = _mean_curve(points, "rev_loss", shift)
                    if epochs:
                        ax_rev.plot(epochs, rev, style, color=colour, marker=".",
                                    label="%s, %s" % (the_arm.title, what))
        ax_acc.set_title("%s: accuracy" % title)
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylim(0.94, 1.0)
        ax_acc.grid(alpha=0.3)
        ax_rev.set_title("%s: reverse loss (per pixel)" % title)
        ax_rev.set_xlabel("epoch")
        ax_rev.grid(alpha=0.3)
        for ax in (ax_acc, ax_rev):
            if ax.lines:
                ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def draw_samples(settings, results, results_dir, seed=1, per_class=10):
    """Sample grids of seed `seed`'s trained reverse models; returns
    [(arm, mode, png path relative to results_dir, forward-model agreement)]
    and notes on what was not drawn."""
    from ..coupled import sampling
    drawn, notes = [], []
    for arm_key, modes in SAMPLE_ARMS.items():
        r = next((r for r in results.get(arm_key, []) if r.seed == seed), None)
        if r is None or not r.complete:
            continue
        the_arm = coupled_runs.ARMS[arm_key]
        models = sampling.committed_deploy_nets(settings.repo, the_arm.arch)
        weights = os.path.join(settings.repo, r.weights)
        for mode in modes:
            name = "coupled_samples_%s_%s.png" % (arm_key, mode)
            try:
                samples = sampling.sample_to_png(
                    models, weights, mode, os.path.join(results_dir, name), per_class=per_class,
                    seed=seed, title="%s, seed %d: %s" % (the_arm.title, seed, mode))
                drawn.append((arm_key, mode, name, samples.agreement()))
            except Exception as err:  # noqa: BLE001 - one grid must not stop the report
                notes.append("%s %s: not drawn (%s: %s)" % (arm_key, mode,
                                                            type(err).__name__, err))
    return drawn, notes


def reverse_loss_references(train_x, train_y, test_x, test_y, eps=1e-7):
    """Per-pixel reference values of the test reverse loss on Bernoulli pixels
    (images as grey levels in [0, 1], i.e. pixel probabilities), the expected
    binary cross-entropy of the test pixels against:
      class_mean_test   the test images' own class-mean image: the minimum over
                        every model that sees only the class and draws the
                        pixels independently (Eq. 21's reverse model is one);
      class_mean_train  the class-mean training image (such a model fitted to
                        the training set);
      global_mean       the mean training image (a model ignoring the class);
      entropy           the test pixels' own grey levels (the floor of any
                        model with independent pixels)."""
    import numpy as np

    def bce(p, q):
        q = np.clip(q, eps, 1 - eps)
        return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))

    def class_means(x, y):
        means = {c: x[y == c].mean(axis=0) for c in np.unique(y)}
        return np.stack([means[c] for c in test_y])
    return {"class_mean_test": bce(test_x, class_means(test_x, test_y)),
            "class_mean_train": bce(test_x, class_means(train_x, train_y)),
            "global_mean": bce(test_x, train_x.mean(0)), "entropy": bce(test_x, test_x)}


def _read_mnist(path):
    import numpy as np
    from ..data import mnist
    images, labels = [], []
    for _, _, _, _, pixels, label in mnist.read_datum_lmdb(path):
        images.append(pixels.astype(np.float32) / 255.0)
        labels.append(label)
    return np.stack(images), np.asarray(labels)


def reference(settings, results_dir):
    """reverse_loss_references of settings' LMDBs, cached in results_dir (the
    cache names the LMDBs and their sizes); None if the LMDBs are missing."""
    paths = [os.path.join(settings.repo, settings.lmdb(split)) for split in ("train", "test")]
    try:
        key = [[settings.lmdb(split), os.path.getsize(os.path.join(p, "data.mdb"))]
               for split, p in zip(("train", "test"), paths)]
    except OSError:
        return None
    cache = os.path.join(results_dir, REFERENCE_NAME)
    try:
        with open(cache) as handle:
            cached = json.load(handle)
        if cached.get("data") == key:
            return cached
    except (OSError, ValueError):
        pass
    from ..atomic_io import atomic_write
    train_x, train_y = _read_mnist(paths[0])
    test_x, test_y = _read_mnist(paths[1])
    values = reverse_loss_references(train_x, train_y, test_x, test_y)
    values["data"] = key
    with atomic_write(cache, "w") as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
    return values


def reference_lines(ref):
    if not ref or "class_mean_test" not in ref:
        return []
    return ["Reference values of the per-pixel reverse loss on these test images (Bernoulli "
            "pixels of pixel/255; `coupled_report.reverse_loss_references`): the test images "
            "against their own class-mean image **%.4f** -- the lowest test reverse loss any "
            "model can reach that sees only the class and draws the pixels independently, "
            "such as Eq. 21's reverse model --; against the class-mean training image %.4f; "
            "against the mean of all training images %.4f; the entropy of the pixels "
            "themselves (knowing each grey level) %.4f."
            % (ref["class_mean_test"], ref["class_mean_train"], ref["global_mean"],
               ref["entropy"])]


def write_report(settings, arms, seeds, results_dir, command=None, samples=True):
    from ..atomic_io import atomic_write
    results = collect(settings, arms, seeds)
    os.makedirs(results_dir, exist_ok=True)
    plot_curves(results, os.path.join(results_dir, CURVES_NAME))
    drawn, notes = draw_samples(settings, results, results_dir) if samples else ([], [])
    smoke = settings.epoch_iterations is not None
    lines = ["# Coupled recognition/generation nets on MNIST (Flach, Shekhovtsov & Fikar 2017)",
             ""]
    if smoke:
        lines += ["**Smoke run** (%d iterations per 'epoch'): not comparable with the paper."
                  % settings.epoch_iterations, ""]
    lines += ["Written by `%s`." % (command or "tools/reproduce_coupled.py"), "",
              "Setup: see the committed solvers (`solvers/coupled_*.prototxt`, each value with "
              "its source) and `python/gencaffe/nets/coupled.py`. Binary pixels: a fresh "
              "Bernoulli sample of pixel/255 on every pass, train and test; Adam (Keras's "
              "defaults), batch 32, no regularisation; the test set's 10,000 images are the "
              "validation set. Each seed is Caffe's random_seed (weights and every sample).", "",
              "Schedule (the paper gives none; the same for every arm of a net):", ""]
    lines += schedule_lines(results, settings) or ["- no finished run yet"]
    lines += ["", "## Validation accuracy (forward model, last test pass)", "",
              table(results, seeds, "accuracy", 4, "accuracy"), "",
              "## Validation reverse loss (per pixel, last test pass)", "",
              table(results, seeds, "rev_loss", 4, "rev_loss"), ""]
    try:
        ref = reference(settings, results_dir)
    except Exception as err:  # noqa: BLE001 - the reference must not stop the report
        ref = None
        notes.append("reference values not computed (%s: %s)" % (type(err).__name__, err))
    lines += reference_lines(ref) + [""]
    lines += ["## Curves", "", "![accuracy and reverse loss per epoch](%s)" % CURVES_NAME, "",
              "Mean over the seeds (n = seeds with data); validation solid (the test pass at "
              "the end of each epoch), training dashed (Caffe's displayed TRAIN batches, every "
              "25th, averaged over the epoch and drawn at its middle).", ""]
    if drawn or notes:
        from ..coupled.sampling import MODE_TITLES
        lines += ["## Samples of the reverse models (seed 1)", ""]
        lines += ["Per class (a row each), 10 images drawn from the reverse model with "
                  "`python/coupled_sample.py` (NumPy seed 1); above each image the forward "
                  "model's most probable class and its probability. \"Agreement\": the share "
                  "of the 100 images that the forward model puts in the class they were drawn "
                  "from.", ""]
        for arm_key, mode, name, agreement in drawn:
            lines += ["%s, %s (agreement %.0f%%):" % (coupled_runs.ARMS[arm_key].title,
                                                      MODE_TITLES[mode], 100 * agreement),
                      "", "![%s %s](%s)" % (arm_key, mode, name), ""]
        lines += ["- %s" % note for note in notes]
    notes_path = os.path.join(results_dir, NOTES_NAME)
    if os.path.exists(notes_path):
        with open(notes_path) as handle:
            lines += ["", handle.read().strip(), ""]
    path = os.path.join(results_dir, REPORT_NAME)
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return path
