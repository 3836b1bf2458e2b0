"""The Tiny ImageNet Table 2 report (results/tiny_imagenet.md + .png) from the
runs on disk (gencaffe.experiments.tiny_imagenet): 5-crop and centre-crop
errors per net, approach and seed, mean ± sd, paired differences, the paper's
full-ImageNet numbers beside, the cost per run and epoch, and the curves."""
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import solver_config
from . import caffe_runs, plots, run_ledger
from . import tiny_imagenet as tiny

# Table 2 of Dai, Lu & Wu (2016): top-1 error %, ILSVRC-2012 val, 224-px crops
PAPER_TOP1 = {"alexnet": {"dg": 40.7, "gg": 45.8, "gg_dg": 39.6},
              "zf": {"dg": 38.4, "gg": 44.3, "gg_dg": 37.4}}
ARCH_NAMES = {"alexnet": "AlexNet", "zf": "ZF-net"}
PAIRS = (("gg_dg", "dg"), ("gg_dg", "control"), ("gg", "dg"), ("control", "dg"))
# Published top-1 val accuracy % of AlexNet-like nets trained from scratch on
# the full Tiny ImageNet-200 (500 images per class), where docs/tiny_imagenet.md
# cites them: (accuracy, what, where)
ANCHORS = (
    (31.8, "AlexNet, ~30 epochs of SGD (lr 0.01, momentum 0.9, wd 0.0005, batch 128)",
     "aandyw.github.io/blog/2024/alexnet"),
    (32.9, "Keras AlexNet with augmentation", "lhandel/ImageClassification (KTH DD2424, 2018)"),
    (36.7, "AlexNet adjusted to 64x64, 60 epochs",
     "DavianYang/TinyImageNetChallenge, alexnet/README.md"),
    (41.8, "best single 5-conv, 3-fc net", "L. Yao, J. Miller, Stanford CS231n report"),
)


@dataclass
class RunResult:
    arch: str
    approach: str
    seed: int
    epochs_done: int = 0
    epochs_total: int = 0
    train_seconds: float = 0.0
    epoch_seconds: List[float] = field(default_factory=list)   # this run's own epochs
    # (epoch x, value, kind): the batch loss as "DG" / "GG", GenerativeLoss's ESS top as "ESS"
    displays: List[Tuple[float, float, str]] = field(default_factory=list)
    tests: List[Tuple[float, Optional[float], Optional[float]]] = field(default_factory=list)
    centre_top1_error: Optional[float] = None
    top1_error: Optional[float] = None
    top5_error: Optional[float] = None
    eval_seconds: Optional[float] = None
    diagnostics: Optional[dict] = None     # semi GG runs: semi_diagnostics.analyse's result
    class_prior: Optional[List[float]] = None   # semi GG runs: rho, when not uniform
    source: Optional[str] = None           # where a run read from the ledger came from

    @property
    def complete(self):
        return self.top1_error is not None


def objective(approach: str, epoch: int, sched: tiny.Schedule) -> str:
    if approach == "gg" or (approach == "gg_dg" and epoch <= sched.switch):
        return "GG"
    return "DG"


def read_chunks(settings, result: RunResult, chunks, iters_per_epoch: int, objective_of) -> None:
    """Add the done chunks of a run (in order, up to the first not done) to
    `result`: epochs, times, train displays (x in epochs, objective_of(chunk)
    = "DG" or "GG"; and the ESS top where the log has one, "ESS"), test
    passes; and, when all are done, the centre-crop error of the last test
    pass and the 5-crop evaluation of the last chunk."""
    ipe = float(iters_per_epoch)
    for chunk in chunks:
        done = chunk.read_done(settings)
        if done is None or not chunk.is_complete(settings):
            break
        result.epochs_done += 1
        result.train_seconds += done.get("seconds", 0.0)
        if chunk.approach == result.approach:
            result.epoch_seconds.append(done.get("seconds", 0.0))
        parsed = chunk.parsed_log(settings)
        start = chunk.epoch - 1 - chunk.first_iter / ipe   # epoch x of the solver's iteration 0
        kind = objective_of(chunk)
        result.displays += [(start + d.iteration / ipe, d.smoothed_loss, kind)
                            for d in parsed.train_displays]
        result.displays += [(start + d.iteration / ipe, d.outputs["ess"], "ESS")
                            for d in parsed.train_displays if "ess" in d.outputs]
        result.tests += [(start + t.iteration / ipe, t.outputs.get("accuracy"),
                          t.outputs.get("accuracy_top5")) for t in parsed.tests()]
    if result.epochs_done < len(chunks):
        return
    if result.tests and result.tests[-1][1] is not None:
        result.centre_top1_error = 100.0 * (1.0 - result.tests[-1][1])
    evaluation = tiny.read_eval(settings, chunks[-1])
    if evaluation:
        result.top1_error = evaluation["top1_error"]
        result.top5_error = evaluation["top5_error"]
        result.eval_seconds = evaluation.get("seconds")


def collect_run(settings, data, arch, approach, seed, sched, entries) -> RunResult:
    """The run on disk, or its ledger entry where the disk has it unfinished
    (run_ledger.reconcile, which also records a finished run)."""
    result = RunResult(arch, approach, seed, epochs_total=sched.epochs)
    # a two-stage run's chunks start with the shared stage 1: the source run's first S epochs
    chunks = tiny.full_chain(settings, data, arch, approach, seed, sched)
    read_chunks(settings, result, chunks, sched.iters_per_epoch,
                lambda chunk: objective(approach, chunk.epoch, sched))
    return run_ledger.reconcile(settings.ledger_dir, entries, tiny.run_key(arch, approach, seed),
                                run_ledger.plan_sha256(chunks, tiny.plan_folders(settings)),
                                result,
                                tiny.run_dir(settings, arch, approach, seed), settings.log,
                                RunResult)


def ledger_runs(entries, part: int, count: int) -> List[str]:
    """A field of the ledger's keys ("<a>-<b>-<c>", `count` parts), e.g. the nets."""
    return [key.split("-")[part] for key in entries if len(key.split("-")) == count]


def scope(settings, entries=None):
    """The nets, approaches and seeds to report: those asked for plus those on
    disk and in the ledger. A net not asked for keeps only the seeds it has
    (`--archs alexnet --seeds 3` adds no empty ZF seed 3 to the table)."""
    entries = entries or {}
    root = settings.path(settings.runs_dir)
    archs = caffe_runs.widened(settings.archs, [a for a in tiny.ARCHS if os.path.isdir(
        os.path.join(root, a)) or a in ledger_runs(entries, 0, 3)], order=tiny.ARCHS)
    seeds = {}
    for arch in archs:
        found = [s for approach in tiny.APPROACHES for s in caffe_runs.numbered_folders(
            os.path.join(root, arch, approach), "seed")]
        found += [int(key.rsplit("seed", 1)[1]) for key in entries
                  if key.startswith(arch + "-")]
        asked = settings.seeds.get(arch, ()) if arch in settings.archs else ()
        seeds[arch] = caffe_runs.widened(asked, found)
    return archs, seeds


def seed_options(seeds, asked):
    """The seed flags of the report's command for the seeds it covers
    ({arch: seeds}): none where every net's are its default, as given where
    they are what was asked, else each net's own --<arch>-seeds."""
    from ..cli_args import int_list_text
    flags = ["--seeds"] + ["--%s-seeds" % arch for arch in tiny.ARCHS]
    if all(set(seeds[arch]) == set(tiny.DEFAULT_SEEDS[arch]) for arch in seeds):
        return dict.fromkeys(flags)
    if all(set(seeds[arch]) == set(asked.get(arch, ())) for arch in seeds):
        return {}
    options = {"--seeds": None}
    options.update({"--%s-seeds" % arch: int_list_text(seeds[arch]) for arch in seeds})
    return options


def collect(settings, data, entries=None) -> Tuple[Dict[str, tiny.Schedule], List[RunResult]]:
    """Every run in scope, from disk or the ledger (`entries`: run_ledger.load's, read
    here when not given)."""
    if entries is None:
        entries = run_ledger.load(settings.ledger_dir)
    archs, seeds = scope(settings, entries)
    schedules, results = {}, []
    for arch in archs:
        sched = tiny.schedule(settings, arch, data, tiny.batches(arch, data, settings)[0])
        schedules[arch] = sched
        for approach in tiny.APPROACHES:
            for seed in seeds[arch]:
                results.append(collect_run(settings, data, arch, approach, seed, sched, entries))
    return schedules, results


def ledger_lines(settings, results: List[RunResult], key_of) -> List[str]:
    """Which runs the report read from the ledger, not from their folders."""
    read = [r for r in results if r.source is not None]
    if not read:
        return []
    where = os.path.relpath(settings.ledger_dir, settings.repo) if settings.ledger_dir else "-"
    lines = ["", "Read from the ledger `%s` (finished runs whose folders are not on this disk; "
             "run_ledger): %s." % (where, ", ".join(key_of(r) for r in read))]
    recovered = sorted({r.source for r in read if r.source.startswith("recovered")})
    if recovered:
        lines.append("Recovered entries hold the numbers their report printed, not the runs' "
                     "logs: no training curves, per-epoch errors to 0.1 point, minutes per "
                     "epoch as the report's mean, no evaluation time; " + "; ".join(recovered) + ".")
    return lines


def epoch_errors(result: RunResult) -> List[Optional[float]]:
    """Centre-crop val top-1 error % after each finished epoch (the test pass
    at an epoch's end: x within 1e-6 of a whole epoch)."""
    errors = {}
    for x, accuracy, _ in result.tests:
        epoch = int(round(x))
        if epoch >= 1 and abs(x - epoch) < 1e-6 and accuracy is not None:
            errors[epoch] = 100.0 * (1.0 - accuracy)
    return [errors.get(e) for e in range(1, result.epochs_done + 1)]


def learning_rows(group_title: str, groups, approaches, titles, results: List[RunResult],
                  max_epochs: int) -> List[str]:
    """A table of epoch_errors: a row per (group, approach, seed) that has a
    finished epoch; groups = [(RunResult.arch value, its name)]."""
    lines = ["| %s | approach | seed | %s |" % (group_title, " | ".join(
                 str(e) for e in range(1, max_epochs + 1))),
             "|---|---|---|%s" % ("---:|" * max_epochs)]
    for group, name in groups:
        for approach in approaches:
            for r in results:
                if r.arch != group or r.approach != approach or not r.epochs_done:
                    continue
                errors = epoch_errors(r) + [None] * (max_epochs - r.epochs_done)
                lines.append("| %s | %s | %d | %s |" % (
                    name, titles[approach], r.seed,
                    " | ".join(_num(e, "%.1f") for e in errors[:max_epochs])))
    return lines


def paired(results: List[RunResult], arch: str, first: str, second: str):
    """(seeds, first - second top-1 error differences) over the seeds where both are done."""
    by = {(r.approach, r.seed): r for r in results if r.arch == arch and r.complete}
    seeds = sorted(s for (a, s) in by if a == first and (second, s) in by)
    return seeds, [by[(first, s)].top1_error - by[(second, s)].top1_error for s in seeds]


def claim_line(name: str, claim: str, first_title: str, second_title: str,
               seeds: List[int], diffs: List[float], sign: int,
               paper: Optional[float]) -> str:
    """One statement on a paired difference first - second (percentage
    points, one per seed): sign -1 claims first is lower, +1 higher, 0 no
    claim (the mean is stated). "yes" only if every seed agrees."""
    mean = statistics.mean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else None
    if sign == 0:
        verdict = "%+.2f pp" % mean
    elif all(d * sign > 0 for d in diffs):
        verdict = "yes, in every seed"
    elif mean * sign > 0:
        verdict = "on average, not in every seed"
    else:
        verdict = "**no**"
    return "* %s, %s? %s: %s - %s = %+.2f%s pp over %d seed(s) (%s)%s." % (
        name, claim, verdict, first_title, second_title, mean,
        "" if spread is None else " ± %.2f" % spread, len(seeds),
        ", ".join("s%d %+.2f" % (s, d) for s, d in zip(seeds, diffs)),
        "" if paper is None else "; paper, full ImageNet: %+.1f" % paper)


LEARNING_Z = 5.0   # standard errors of a guessing classifier that "learns" must clear


def learning_threshold(classes: int, val_count: int, z: float = LEARNING_Z) -> float:
    """The top-1 error (%) a net must stay below to count as learning:
    chance, 1 - 1/C, less z standard errors of a guessing classifier's
    accuracy on val_count images (binomial); 99.15 % for 200 classes and
    10,000 images."""
    p = 1.0 / classes
    return 100.0 * (1.0 - p - z * math.sqrt(p * (1.0 - p) / val_count))


def learning_line(name: str, who: str, worst: RunResult, title: str, classes: int,
                  val_count: int) -> str:
    """The statement that every finished run of `who` learned, judged on the
    worst of them."""
    threshold = learning_threshold(classes, val_count)
    return ("* %s, learning: %s below chance (%.1f %%) by more than %g standard errors of "
            "guessing on %d val images (%.2f %%)? %s (the highest: %s seed %d, %.2f %%)." % (
                name, who, 100.0 * (1 - 1.0 / classes), LEARNING_Z, val_count, threshold,
                "yes" if worst.top1_error < threshold else "**no**", title, worst.seed,
                worst.top1_error))


def reading(results: List[RunResult], archs: List[str], classes: int,
            val_count: int) -> List[str]:
    """Plain statements of what the finished runs say against the paper's
    claims, each with its numbers; nothing for what has not finished."""
    lines = []
    for arch in archs:
        name = ARCH_NAMES[arch]
        done = [r for r in results if r.arch == arch and r.complete]
        if not done:
            continue
        worst = max(done, key=lambda r: r.top1_error)
        lines.append(learning_line(name, "every finished run's 5-crop top-1 error",
                                   worst, tiny.TITLES[worst.approach], classes, val_count))
        claims = (("gg", "dg", "GG alone is worse than DG", +1,
                   PAPER_TOP1[arch]["gg"] - PAPER_TOP1[arch]["dg"]),
                  ("gg_dg", "dg", "GG+DG beats DG", -1,
                   PAPER_TOP1[arch]["gg_dg"] - PAPER_TOP1[arch]["dg"]),
                  ("gg_dg", "control", "GG+DG beats the DG run restarted the same way", -1, None),
                  ("control", "dg", "the restart alone changes DG's error", 0, None))
        for first, second, claim, sign, paper in claims:
            seeds, diffs = paired(results, arch, first, second)
            if diffs:
                lines.append(claim_line(name, claim, tiny.TITLES[first], tiny.TITLES[second],
                                        seeds, diffs, sign, paper))
    return lines


def mean_sd(values: List[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return "%.2f (1 seed)" % values[0]
    return "%.2f ± %.2f" % (statistics.mean(values), statistics.stdev(values))


def _num(value, fmt="%.2f"):
    return "-" if value is None else fmt % value


def table_markdown(settings, data, schedules, results, command) -> str:
    lines = [
        "# Table 2 on Tiny ImageNet-200: DG, GG, GG+DG and a restart control",
        "",
        "Generated by `%s` from the runs in `%s` and the ledger of finished runs beside this "
        "report (rewritten after every epoch; the command trains whatever is missing and "
        "reproduces everything shown)." % (command, settings.runs_dir),
        "",
        "* data: `%s`, %d classes, %d train / %d val images (Tiny ImageNet-200, 64x64 "
        "photographs of ImageNet classes; 56x56 crops, random crop and mirror in training)"
        % (data.lmdb_dir, data.classes, data.train_count, data.val_count),
        "* nets: `models/alexnet_tiny`, `models/zf_tiny` (the paper's AlexNet and ZF with "
        "conv1's stride halved for the 64-px images; docs/tiny_imagenet.md); solvers: the "
        "committed `solvers/<net>_tiny_*.prototxt` (base_lr 0.01, momentum 0.9, weight decay "
        "0.0005, GG+DG stage 2 base_lr 0.003)",
    ]
    for arch, sched in schedules.items():
        lines.append(
            "* %s schedule: %d epochs of %d iterations (batch %d), lr / 10 every %d iterations "
            "(%.2f epochs%s); GG+DG and control: stage 1 = the GG / DG run's snapshot after "
            "epoch %d, stage 2 = %d epochs from it at base_lr 0.003%s" % (
                ARCH_NAMES[arch], sched.epochs, sched.iters_per_epoch,
                tiny.batches(arch, data, settings)[0],
                sched.stepsize, sched.stepsize / float(sched.iters_per_epoch),
                ": none within the run" if sched.stepsize >= sched.epochs * sched.iters_per_epoch
                else "", sched.switch,
                sched.epochs - sched.switch,
                "" if sched.exact_epochs else " (epochs do not end on a batch boundary)"))
    lines += [
        "* error: **5-crop** = `tools/eval_crops.py` on the val LMDB (centre + 4 corner "
        "56x56 crops of each 64x64 image, probabilities averaged, the paper's protocol); "
        "**centre** = the last test pass of training (one centre crop); chance top-1 error "
        "%.1f %%" % (100.0 * (1 - 1.0 / data.classes)),
        "* seeds: random_seed %d x seed + epoch (weights, crops, mirrors, dropout; DG and GG "
        "of one seed start from the same weights); device %s, %d BLAS thread(s) per run" % (
            tiny.SEED_STRIDE, "CPU" if settings.gpu is None else "GPU %d" % settings.gpu,
            settings.threads_per_job),
    ]
    lines += ledger_lines(settings, results, lambda r: tiny.run_key(r.arch, r.approach, r.seed))
    lines += [
        "",
        "## Top-1 / top-5 error %",
        "",
        "| net | approach | 5-crop top-1 | 5-crop top-5 | centre top-1 | per seed: 5-crop top-1 "
        "| paper top-1 (ImageNet, 224 px) | epochs done | minutes per epoch |",
        "|---|---|---|---|---|---|---:|---|---:|",
    ]
    archs = list(schedules)
    for arch in archs:
        for approach in tiny.APPROACHES:
            runs = [r for r in results if r.arch == arch and r.approach == approach]
            if not runs:
                continue
            done = [r for r in runs if r.complete]
            per_seed = ", ".join("s%d %s" % (r.seed, _num(r.top1_error) if r.complete else
                                              "(%d/%d)" % (r.epochs_done, r.epochs_total))
                                 for r in runs)
            epoch_s = [s for r in runs for s in r.epoch_seconds]
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                ARCH_NAMES[arch], tiny.TITLES[approach],
                mean_sd([r.top1_error for r in done]), mean_sd([r.top5_error for r in done]),
                mean_sd([r.centre_top1_error for r in done if r.centre_top1_error is not None]),
                per_seed, _num(PAPER_TOP1[arch].get(approach), "%.1f"),
                "%d/%d" % (sum(r.epochs_done for r in runs), sum(r.epochs_total for r in runs)),
                _num(statistics.mean(epoch_s) / 60.0 if epoch_s else None, "%.1f")))
    lines += ["", "## Paired differences (same seed), 5-crop top-1 error, percentage points",
              "", "Negative: the first approach has the lower error. Paper (full ImageNet): "
              "GG+DG - DG = -1.1 (AlexNet), -1.0 (ZF).", "",
              "| net | difference | mean ± sd | per seed |", "|---|---|---|---|"]
    for arch in archs:
        for first, second in PAIRS:
            seeds, diffs = paired(results, arch, first, second)
            lines.append("| %s | %s - %s | %s | %s |" % (
                ARCH_NAMES[arch], tiny.TITLES[first], tiny.TITLES[second],
                mean_sd(diffs) if diffs else "- (no paired seeds yet)",
                ", ".join("s%d %+.2f" % (s, d) for s, d in zip(seeds, diffs)) or "-"))
    max_epochs = max((sched.epochs for sched in schedules.values()), default=0)
    lines += ["", "## Learning: centre-crop val top-1 error % after each epoch", "",
              "The test pass at the end of every epoch (one centre crop, as in training); "
              "stage 2 of GG+DG and the control starts after epoch %s." % ", ".join(
                  "%d (%s)" % (s.switch, ARCH_NAMES[a]) for a, s in schedules.items()), ""]
    lines += learning_rows("net", [(arch, ARCH_NAMES[arch]) for arch in archs], tiny.APPROACHES,
                           tiny.TITLES, results, max_epochs)
    dg_done = [r for r in results if r.approach == "dg" and r.complete]
    lines += ["", "## An anchor for the DG baseline", "",
              "Published top-1 val accuracy of AlexNet-like nets trained from scratch on the "
              "full Tiny ImageNet-200 (500 images per class, 30-60 epochs; here 300 per class "
              "and %d epochs, so expect less):" % max_epochs, ""]
    lines += ["* %.1f %%: %s (%s)" % anchor for anchor in ANCHORS]
    for arch in archs:
        accuracies = [100.0 - r.top1_error for r in dg_done if r.arch == arch]
        if accuracies:
            mean = statistics.mean(accuracies)
            lines.append("* **here, %s DG: %.2f %% 5-crop top-1 accuracy** (%d seed(s)), %.1f "
                         "to %.1f points below these" % (
                             ARCH_NAMES[arch], mean, len(accuracies),
                             min(a for a, _, _ in ANCHORS) - mean,
                             max(a for a, _, _ in ANCHORS) - mean))
    statements = reading(results, archs, data.classes, data.val_count)
    lines += ["", "## What agrees with the paper, and what does not", ""]
    lines += statements or ["Nothing to say yet: no run has finished its 5-crop evaluation."]
    lines += [""] + cost_markdown(
        results, lambda r: "%s %s seed %d" % (ARCH_NAMES[r.arch], tiny.TITLES[r.approach], r.seed),
        lambda r: "--archs %s --seeds %d --approaches %s" % (r.arch, r.seed, r.approach),
        "GG+DG and the control") + [""]
    return "\n".join(lines)


def cost_markdown(results: List[RunResult], describe, flags_of, two_stage: str) -> List[str]:
    """The report's cost section: per run the wall time of its own epochs
    (with whatever ran beside it) and of its 5-crop evaluation, the flags that
    train and evaluate that run alone, and the sums. describe(run) -> its
    name, flags_of(run) -> its flags; two_stage names the runs whose stage 1
    is another run's epochs (counted there, once)."""
    lines = ["## Cost and commands", "",
             "Per run: its own epochs (%s start from another run's snapshot, so their stage "
             "1 is counted in that run, once), their wall time with whatever ran beside them, "
             "and its 5-crop evaluation; the flags that train and evaluate that run alone, "
             "added to the command at the top (resumable; a run the ledger holds is not "
             "trained again)." % two_stage, "",
             "| run | own epochs | training h | minutes per epoch | 5-crop evaluation min "
             "| flags |", "|---|---:|---:|---:|---:|---|"]
    train = evaluation = 0.0
    for result in results:
        seconds = sum(result.epoch_seconds)
        train += seconds
        evaluation += result.eval_seconds or 0.0
        epochs = len(result.epoch_seconds)
        lines.append("| %s | %d | %s | %s | %s | `%s` |" % (
            describe(result), epochs, _num(seconds / 3600.0 if epochs else None),
            _num(seconds / 60.0 / epochs if epochs else None, "%.1f"),
            _num(None if result.eval_seconds is None else result.eval_seconds / 60.0, "%.1f"),
            flags_of(result)))
    lines += ["", "Summed over these runs: %.1f h of training and %.1f h of evaluation, %.1f h "
              "of one core each (runs a ledger entry recovered from a report have no evaluation "
              "time); two runs at a time on two cores take about half of that in wall time."
              % (train / 3600.0, evaluation / 3600.0, (train + evaluation) / 3600.0)]
    return lines


def plot_curves(schedules, results, path, data):
    """The curves of every seed: a row per net; DG loss, GG loss, accuracy."""
    colours = {"dg": "tab:blue", "gg": "tab:orange", "gg_dg": "tab:green", "control": "tab:red"}
    rows = []
    for arch, sched in schedules.items():
        # a two-stage run's stage 1 is the GG / DG run's curve: drawn once, there
        runs = [(approach, r, sched.switch if approach in tiny.STAGE1_OF else -1)
                for approach in tiny.APPROACHES
                for r in results if r.arch == arch and r.approach == approach]
        rows.append(plots.EpochRow(ARCH_NAMES[arch], sched.epochs, sched.switch, runs))
    chance = math.log(data.classes)
    fig = plots.epoch_curves_figure(
        rows, [("DG", "train loss, DG (SoftmaxWithLoss)", (chance, "chance, ln %d" % data.classes),
                "batch loss"),
               ("GG", "train loss, GG (GenerativeLoss)", (-chance, "-ln %d" % data.classes),
                "batch loss")],
        colours, tiny.TITLES, data.classes, "GG+DG / control switch",
        suptitle="Tiny ImageNet-200, every seed (one line each)")
    plots.save_png(fig, path)


def writer(settings, data, paths, argv):
    """A report() for caffe_runs.drive: both files from everything on disk."""
    from ..cli_args import report_command
    table_path, plot_path = paths

    def write():
        entries = run_ledger.load(settings.ledger_dir)   # read once for both
        schedules, results = collect(settings, data, entries)
        archs, seeds = scope(settings, entries)
        command = report_command("python3 tools/reproduce_tiny_imagenet.py", argv, {
            "--archs": (archs, settings.archs, tiny.ARCHS)}, seed_options(seeds, settings.seeds))
        os.makedirs(os.path.dirname(table_path), exist_ok=True)
        solver_config.write_text_atomic(table_path, table_markdown(
            settings, data, schedules, results, command))
        plot_curves(schedules, results, plot_path, data)
    return write
