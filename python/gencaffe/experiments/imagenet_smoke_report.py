"""The smoke run's report from the runs on disk: a markdown table
(results/imagenet_smoke.md) and the loss and accuracy curves
(results/imagenet_smoke.png). Nothing here trains or evaluates; unfinished
approaches are listed as pending."""
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import List, Optional

from .. import solver_config
from .plots import save_png
from .imagenet_data import DataInfo
from .imagenet_smoke import (APPROACH_TITLES, Settings, SmokeRun, approach_runs, stage_seed,
                             stage_split)
from .imagenet_smoke_eval import read_eval

# "loss down" needs a fall of more than this fraction of ln C (the losses' scale)
LOSS_DOWN_MARGIN = 0.05


@dataclass
class StageSummary:
    objective: str
    first_loss: Optional[float]
    last_loss: Optional[float]       # mean of the displays in the run's final fifth
    curve: List[tuple] = field(default_factory=list)   # (approach iteration, loss)
    first_val_loss: Optional[float] = None   # the stage's loss on the val LMDB, first pass
    last_val_loss: Optional[float] = None    # ... and last pass

    def went_down(self, margin: float) -> Optional[bool]:
        """The val loss fell by more than `margin` (the train batches' loss
        where there is no val loss): the val passes see the same images, centre
        crops and no dropout each time, so their loss is free of the
        batch-to-batch noise of the displays."""
        if self.first_val_loss is not None and self.last_val_loss is not None:
            return self.last_val_loss < self.first_val_loss - margin
        if self.first_loss is not None and self.last_loss is not None:
            return self.last_loss < self.first_loss - margin
        return None


@dataclass
class ApproachResult:
    arch: str
    approach: str
    complete: bool
    iterations: int = 0
    stages: List[StageSummary] = field(default_factory=list)
    test_curve: List[tuple] = field(default_factory=list)  # (iteration, top-1, top-5 or None)
    test_accuracy: Optional[float] = None
    test_top5: Optional[float] = None
    top1_error: Optional[float] = None
    top5_error: Optional[float] = None
    train_seconds: float = 0.0
    eval_seconds: Optional[float] = None
    switch_iteration: Optional[int] = None

    def loss_went_down(self, classes: int) -> Optional[bool]:
        """Every stage's loss went down by more than LOSS_DOWN_MARGIN x ln C
        (StageSummary.went_down): both losses live on that scale (DG starts at
        ln C, GG falls from 0 towards -ln C)."""
        margin = LOSS_DOWN_MARGIN * math.log(classes)
        values = [s.went_down(margin) for s in self.stages]
        values = [v for v in values if v is not None]
        return all(values) if values and len(values) == len(self.stages) else None


def summarise_log(parsed, run: SmokeRun) -> StageSummary:
    curve = [(d.iteration + run.iteration_offset, d.smoothed_loss)
             for d in parsed.train_displays]
    first = parsed.train_displays[0].smoothed_loss if parsed.train_displays else None
    tail_start = run.iterations * 0.8
    tail = [d.smoothed_loss for d in parsed.train_displays if d.iteration >= tail_start]
    last = sum(tail) / len(tail) if tail else None
    val = [t.outputs["loss"] for t in parsed.tests() if "loss" in t.outputs]
    return StageSummary(run.objective, first, last, curve, val[0] if val else None,
                        val[-1] if len(val) > 1 else None)


def collect(settings: Settings, data: DataInfo) -> List[ApproachResult]:
    results = []
    for arch in settings.archs:
        for approach in settings.approaches:
            runs = approach_runs(settings, data, arch, approach)
            result = ApproachResult(arch, approach, all(r.is_complete(settings) for r in runs),
                                    iterations=sum(r.iterations for r in runs))
            if len(runs) > 1:
                result.switch_iteration = runs[1].iteration_offset
            for run in runs:
                if not os.path.exists(settings.path(run.log_path())):
                    continue
                parsed = run.parsed_log(settings)
                result.stages.append(summarise_log(parsed, run))
                for test in parsed.tests():
                    if run.iteration_offset and test.iteration == 0:
                        continue  # stage 2's first pass repeats stage 1's last model
                    result.test_curve.append((test.iteration + run.iteration_offset,
                                              test.outputs.get("accuracy"),
                                              test.outputs.get("accuracy_top5")))
                done = run.read_done(settings)
                if done:
                    result.train_seconds += done.get("seconds", 0.0)
            if result.complete and result.test_curve:
                _, result.test_accuracy, result.test_top5 = result.test_curve[-1]
            evaluation = read_eval(settings, runs[-1]) if result.complete else None
            if evaluation:
                result.top1_error = evaluation["top1_error"]
                result.top5_error = evaluation["top5_error"]
                result.eval_seconds = evaluation.get("seconds")
            results.append(result)
    return results


def _num(value, fmt="%.3f"):
    return "-" if value is None else fmt % value


def _loss_cell(result: ApproachResult, val=False) -> str:
    if not result.stages:
        return "-"
    return "; ".join("%s %s → %s" % (s.objective,
                                     _num(s.first_val_loss if val else s.first_loss),
                                     _num(s.last_val_loss if val else s.last_loss))
                     for s in result.stages)


def table_markdown(results, settings: Settings, data: DataInfo, command: str,
                   started: Optional[str] = None) -> str:
    from ..nets import catalog
    device = "CPU" if settings.gpu is None else "GPU %d" % settings.gpu
    lines = [
        "# ImageNet pipeline smoke run (stand-in data, %s)" % device,
        "",
        "Generated by `%s`%s. Not a reproduction of Table 2: a check that the ImageNet "
        "pipeline (data tools, generated AlexNet/ZF nets, committed solvers, GG+DG stage "
        "switch, 5-crop evaluation) runs end to end and learns." % (
            command, " (started %s)" % started if started else ""),
        "",
        "* data: `%s`, %d classes, %d train / %d val images (256x256); %s" % (
            data.lmdb_dir, data.classes, data.train_count, data.val_count,
            "the stand-in of tools/make_standin_imagenet.py (%s)" % (
                ", ".join("%s=%s" % kv for kv in sorted(dataclasses.asdict(settings.standin).items()))
                if settings.standin is not None else "default options")
            if settings.standin_dir else "given LMDBs"),
        "* nets: the generator's AlexNet (227x227 crops) and ZF (224x224), train batch %d, "
        "test batch %d; solvers: the committed `solvers/<arch>_*.prototxt` with max_iter, "
        "test_iter, test_interval, display, snapshot, snapshot_prefix, random_seed and "
        "solver_mode (%s) overridden (base_lr 0.01, stage 2 0.003, momentum 0.9, weight decay "
        "0.0005 as committed)" % (settings.train_batch, settings.test_batch,
                                  "CPU" if settings.gpu is None else "GPU"),
        "* GG+DG: stage 1 (GG) then stage 2 (DG, `-weights` stage 1's final snapshot), split "
        "%s of the budget, the committed solvers' 45:25 epochs" % ", ".join(
            "%s %d+%d" % (arch, *stage_split(settings.repo, arch, settings.iterations))
            for arch in settings.archs),
        "* train loss: the displayed batch loss at iteration 0 → the mean of the displays "
        "(every %d iterations) in each run's final fifth. DG = SoftmaxWithLoss (ln %d = %.3f "
        "at chance); GG = GenerativeLoss (0 at a constant net, falling towards -ln C as each "
        "class column's importance weights concentrate on its own examples)" % (
            settings.display, data.classes, math.log(data.classes)),
        "* test accuracy: the last test pass in the log (centre crop, the whole val LMDB); "
        "5-crop: `tools/eval_crops.py` (centre + 4 corners of the 256x256 image) on the val "
        "LMDB; chance top-1 error %.1f %%" % (100.0 * (1 - 1.0 / data.classes)),
        "* seed: Caffe's random_seed (weight init, crops, mirrors, dropout) %d; GG+DG stage 2 "
        "%d, so that it does not replay stage 1's exact crops and dropout masks (see "
        "STAGE2_SEED_OFFSET in python/gencaffe/experiments/imagenet_smoke.py); BLAS threads "
        "per caffe %d; wall time = training (all stages), then 5-crop evaluation" % (
            settings.seed, stage_seed(settings.seed, "gg_dg_stage2"), settings.threads_per_job),
        "* val loss: the loss on the val LMDB (the test passes: the same images, centre "
        "crops, no dropout) at the stage's first → last pass; **loss down** = each stage's "
        "val loss fell by more than %g x ln %d = %.3f (stage 2 of GG+DG starts at the DG loss "
        "of stage 1's weights)" % (LOSS_DOWN_MARGIN, data.classes,
                                   LOSS_DOWN_MARGIN * math.log(data.classes)),
        "",
        "| net | approach | iterations | train loss, first → last | val loss, first → last | "
        "loss down | test accuracy top-1 / top-5 | 5-crop top-1 / top-5 error % | "
        "wall time train + eval | seed |",
        "|---|---|---:|---|---|---|---|---|---|---:|",
    ]
    for r in results:
        name = catalog.architecture(r.arch).name if r.arch in catalog.ARCHITECTURES else r.arch
        if not r.complete:
            lines.append("| %s | %s | %d | %s | %s | - | pending | - | - | %d |" % (
                name, APPROACH_TITLES[r.approach], r.iterations, _loss_cell(r),
                _loss_cell(r, val=True), settings.seed))
            continue
        down = {True: "yes", False: "**no**", None: "-"}[r.loss_went_down(data.classes)]
        accuracy = "%s / %s" % (_num(r.test_accuracy), _num(r.test_top5))
        # with 5 classes or fewer every label is in the top 5: no top-5 figure
        top5 = r.top5_error if data.classes > 5 else None
        errors = "%s / %s" % (_num(r.top1_error, "%.1f"), _num(top5, "%.1f"))
        wall = "%.1f + %s min" % (r.train_seconds / 60.0,
                                  _num(None if r.eval_seconds is None else r.eval_seconds / 60.0,
                                       "%.1f"))
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %d |" % (
            name, APPROACH_TITLES[r.approach], r.iterations, _loss_cell(r),
            _loss_cell(r, val=True), down, accuracy, errors, wall, settings.seed))
    total = sum(r.train_seconds + (r.eval_seconds or 0) for r in results)
    lines += ["", "Training + evaluation time summed over the runs: %.1f min (with --jobs %d "
              "they ran %d at a time; data preparation not included)."
              % (total / 60.0, settings.jobs, settings.jobs), ""]
    return "\n".join(lines)


def plot_curves(results, path: str, settings: Settings, data: DataInfo):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = {"dg": "tab:blue", "gg": "tab:orange", "gg_dg": "tab:green"}
    archs = list(dict.fromkeys(r.arch for r in results))
    fig, axes = plt.subplots(len(archs), 3, figsize=(15, 4.2 * len(archs)), squeeze=False)
    for row, arch in enumerate(archs):
        ax_dg, ax_gg, ax_acc = axes[row]
        for r in (r for r in results if r.arch == arch):
            colour = colours[r.approach]
            title = APPROACH_TITLES[r.approach]
            for stage_index, stage in enumerate(r.stages):
                ax = ax_dg if stage.objective == "DG" else ax_gg
                label = title if len(r.stages) == 1 else "%s, stage %d (%s)" % (
                    title, stage_index + 1, stage.objective)
                if stage.curve:
                    xs, ys = zip(*stage.curve)
                    ax.plot(xs, ys, color=colour, marker=".", ms=3, lw=1.2, label=label,
                            ls="-" if stage_index == 0 else "--")
            if r.test_curve:
                xs = [t[0] for t in r.test_curve]
                ax_acc.plot(xs, [t[1] for t in r.test_curve], color=colour, marker="o", ms=4,
                            label="%s top-1" % title)
                if any(t[2] is not None for t in r.test_curve):
                    ax_acc.plot(xs, [t[2] for t in r.test_curve], color=colour, marker="^",
                                ms=4, ls=":", label="%s top-5" % title)
            if r.switch_iteration:
                for ax in (ax_dg, ax_gg, ax_acc):
                    ax.axvline(r.switch_iteration, color=colour, ls=":", lw=1)
        name = arch
        ax_dg.axhline(math.log(data.classes), color="grey", lw=0.8, ls="--",
                      label="chance, ln %d" % data.classes)
        ax_gg.axhline(-math.log(data.classes), color="grey", lw=0.8, ls="--",
                      label="-ln %d (separated classes)" % data.classes)
        ax_acc.axhline(1.0 / data.classes, color="grey", lw=0.8, ls="--", label="chance top-1")
        ax_dg.set_title("%s: train loss, DG (SoftmaxWithLoss)" % name)
        ax_gg.set_title("%s: train loss, GG (GenerativeLoss)" % name)
        ax_acc.set_title("%s: test accuracy (centre crop, val)" % name)
        for ax, ylabel in ((ax_dg, "batch loss"), (ax_gg, "batch loss"), (ax_acc, "accuracy")):
            ax.set_xlabel("iteration (GG+DG: stage 2 after the dotted line)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax_acc.set_ylim(0, 1.02)
    fig.suptitle("ImageNet pipeline smoke run: %d-class stand-in, batch %d, %d iterations per "
                 "approach, seed %d (%s)" % (data.classes, settings.train_batch,
                                             settings.iterations, settings.seed,
                                             "CPU" if settings.gpu is None else "GPU"))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_png(fig, path, dpi=90)


def write_report(settings: Settings, data: DataInfo, table_path: str, plot_path: str,
                 command: str, started: Optional[str] = None) -> List[ApproachResult]:
    results = collect(settings, data)
    solver_config.write_text_atomic(table_path, table_markdown(results, settings, data, command,
                                                               started))
    plot_curves(results, plot_path, settings, data)
    return results


def started_stamp():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
