"""The Tiny ImageNet Table 3 report (results/tiny_imagenet_semi.md + .png) from
the runs on disk (gencaffe.experiments.tiny_imagenet_semi): 5-crop and
centre-crop errors per labelled fraction, approach and seed, mean ± sd, the
paired difference semi GG + DG - DG, the paper's full-ImageNet numbers beside,
the cost, the curves, and for every finished semi GG run the unlabelled
term's diagnostics and the Bayes-rule reading (gencaffe.experiments.
semi_diagnostics, cached in the run's diagnostics.json)."""
import math
import os
import statistics
from typing import Dict, List, Optional

from .. import solver_config
from . import caffe_runs, plots, run_ledger, semi_diagnostics
from . import tiny_imagenet_semi as semi
from .tiny_imagenet_report import (RunResult, _num, claim_line, cost_markdown, epoch_errors,
                                   ledger_lines, learning_line, learning_rows, mean_sd, paired,
                                   read_chunks)

# A class given this many times its even share (1/C) of the unlabelled images
# counts as the unlabelled term collapsing onto it.
COLLAPSE_FACTOR = 10.0


def new_result(fraction, seed, approach, sched) -> RunResult:
    return RunResult(fraction, approach, seed,
                     epochs_total=sched.switch if approach == "semi_gg" else sched.epochs)


def collect_run(settings, data, fraction, seed, approach, sched, manifest) -> tuple:
    """(the run as on disk, its plan's sha256 for the ledger)."""
    result = new_result(fraction, seed, approach, sched)
    chunks = semi.full_chain(settings, data, fraction, seed, approach, sched, manifest)
    read_chunks(settings, result, chunks, sched.iters_per_epoch,
                lambda chunk: "GG" if chunk.approach == "semi_gg" else "DG")
    return result, run_ledger.plan_sha256(chunks, semi.tiny.plan_folders(settings))


def ensure_diagnostics(settings, data, fraction, seed, sched, manifest) -> Optional[dict]:
    """The diagnostics of the finished semi GG run of (fraction, seed) over its
    epoch snapshots, from its diagnostics.json when that was made for the
    same final weights and batch count, else computed (a few minutes of
    AlexNet forward passes on the CPU) and cached; None while it runs."""
    batches = settings.diagnostic_batches
    chunks = semi.chain(settings, data, fraction, seed, "semi_gg", sched, manifest)
    if batches <= 0 or not all(c.is_complete(settings) for c in chunks):
        return None
    snapshots = {c.last_iter: settings.path(c.final_snapshot(settings)) for c in chunks
                 if os.path.exists(settings.path(c.final_snapshot(settings)))}
    last = settings.path(chunks[-1].final_snapshot(settings))
    if last not in snapshots.values():
        return None
    root = settings.path(semi.run_root(settings, fraction, seed, "semi_gg"))
    path = os.path.join(root, semi_diagnostics.DIAGNOSTICS_NAME)
    weights = caffe_runs.file_sha256(last)
    found = semi_diagnostics.cached(path, weights, batches)
    if found:
        return found
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Merge(chunks[0].files["train_val.prototxt"], caffe_pb2.NetParameter())
    settings.log("[%s seed %d] diagnostics of %d semi GG snapshots" % (fraction, seed,
                                                                      len(snapshots)))
    result = semi_diagnostics.analyse(
        root, snapshots, settings.path(semi.split_dir(settings, fraction, seed)), manifest, net,
        batches, test_lmdb=settings.path(data.path("val_lmdb")),
        deploy_text=semi.tiny.generated_net(semi.ARCH, "deploy", data, settings),
        repo=settings.repo)
    return semi_diagnostics.save(path, result, weights, batches)


def collect(settings, data):
    from ..data import splits
    batch = semi.tiny.batches(semi.ARCH, data, settings)[0]
    sched = semi.schedule(settings, data, batch)
    root = settings.path(settings.runs_dir)
    entries = run_ledger.load(settings.ledger_dir)
    in_ledger = {tuple(key.split("-")) for key in entries if key.count("-") == 2}
    fractions = caffe_runs.widened(settings.fractions, [
        f for f in semi.FRACTIONS if os.path.isdir(os.path.join(root, f))
        or any(k[0] == f for k in in_ledger)], order=list(semi.FRACTIONS))
    results = []
    for fraction in fractions:
        seeds = caffe_runs.widened(settings.semi_seeds, caffe_runs.numbered_folders(
            os.path.join(root, fraction), "seed") + [int(k[1][len("seed"):]) for k in in_ledger
                                                     if k[0] == fraction])
        for seed in seeds:
            try:
                manifest = splits.load(settings.path(semi.split_dir(settings, fraction, seed)))
            except splits.SplitError:
                manifest = None   # its split is not on this disk: nothing of it ran here
            for approach in semi.APPROACHES:
                key = semi.run_key(fraction, seed, approach)
                if manifest is None:   # the ledger's entry as recorded (no plan to check)
                    if key in entries:
                        results.append(run_ledger.reconcile(
                            settings.ledger_dir, entries, key, None,
                            new_result(fraction, seed, approach, sched), "", settings.log,
                            RunResult))
                    continue
                result, plan = collect_run(settings, data, fraction, seed, approach, sched,
                                           manifest)
                if approach == "semi_gg":
                    if not settings.uniform_prior:
                        result.class_prior = list(manifest["class_prior"])
                    try:
                        result.diagnostics = ensure_diagnostics(settings, data, fraction, seed,
                                                                sched, manifest)
                    except Exception as err:   # the table is written without them
                        settings.log("warning: [%s seed %d] no diagnostics: %s: %s"
                                     % (fraction, seed, type(err).__name__, err))
                results.append(run_ledger.reconcile(
                    settings.ledger_dir, entries, key, plan, result,
                    semi.run_root(settings, fraction, seed, approach), settings.log, RunResult))
    return sched, results


def eq19_settings_text(settings) -> tuple:
    """How lambda, rho and the batches' labelled share were set, each saying
    whether it is the paper's choice or an option that departs from it."""
    lam = ("lambda %g (option; the paper: 0.1)" % settings.unlabeled_weight
           if settings.unlabeled_weight is not None else "lambda 0.1")
    prior = ("rho uniform (option; the paper: the class frequencies, here the labelled "
             "subset's)" if settings.uniform_prior else "rho = the labelled class frequencies")
    share = ("each batch %.3f labelled (option; the paper's random batches: the subset's "
             "share)" % settings.labelled_share if settings.labelled_share is not None else
             "each batch holding the subset's share of labelled images")
    return lam, prior, share


def table_markdown(settings, data, sched, results: List[RunResult], command: str) -> str:
    lam, prior, share = eq19_settings_text(settings)
    lines = [
        "# Table 3 on Tiny ImageNet-200: semi-supervised GG + DG tuning against DG",
        "",
        "Generated by `%s` from the runs in `%s` and the ledger of finished runs beside this "
        "report (rewritten after every epoch)." % (command, settings.runs_dir),
        "",
        "* data: `%s`, %d classes, %d train / %d val images; labelled subsets of the paper's "
        "shares of ILSVRC-2012 (50,000 / 100,000 / 300,000 of 1,281,167): %s, chosen %s, "
        "the seed picks the subset; the rest unlabelled" % (
            data.lmdb_dir, data.classes, data.train_count, data.val_count,
            " / ".join("%s %d" % (f, semi.labelled_count(f, data.train_count))
                       for f in semi.FRACTIONS),
            "class-balanced" if settings.balanced else "uniformly at random (the paper)"),
        "* AlexNet (`models/alexnet_tiny`), batch %d, %d epochs of %d iterations for both "
        "approaches; semi GG (Eq. 19, %s, %s, %s) for %d, then DG tuning on "
        "the labelled subset at base_lr 0.003 for %d; lr / 10 every %d iterations" % (
            semi.tiny.batches(semi.ARCH, data, settings)[0], sched.epochs,
            sched.iters_per_epoch, lam, prior, share, sched.switch,
            sched.epochs - sched.switch, sched.stepsize),
        "* error: 5-crop (`tools/eval_crops.py`, the paper's protocol) and centre crop (the "
        "last test pass); chance top-1 error %.1f %%" % (100.0 * (1 - 1.0 / data.classes)),
    ]
    lines += ledger_lines(settings, results,
                          lambda r: semi.run_key(r.arch, r.seed, r.approach))
    lines += [
        "",
        "| labelled | approach | 5-crop top-1 | 5-crop top-5 | centre top-1 | per seed: 5-crop "
        "top-1 | paper top-1 (ImageNet, 224 px) | epochs done | minutes per epoch |",
        "|---|---|---|---|---|---|---:|---|---:|",
    ]
    fractions = list(dict.fromkeys(r.arch for r in results))
    for fraction in fractions:
        for approach in semi.APPROACHES:
            runs = [r for r in results if r.arch == fraction and r.approach == approach]
            done = [r for r in runs if r.complete]
            epoch_s = [x for r in runs for x in r.epoch_seconds]
            lines.append("| %s (%d) | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                fraction, semi.labelled_count(fraction, data.train_count), semi.TITLES[approach],
                mean_sd([r.top1_error for r in done]), mean_sd([r.top5_error for r in done]),
                mean_sd([r.centre_top1_error for r in done]),
                ", ".join("s%d %s" % (r.seed, _num(r.top1_error) if r.complete else
                                       "(%d/%d)" % (r.epochs_done, r.epochs_total)) for r in runs),
                _num(semi.PAPER_TOP1[fraction].get(approach), "%.1f"),
                "%d/%d" % (sum(r.epochs_done for r in runs), sum(r.epochs_total for r in runs)),
                _num(sum(epoch_s) / len(epoch_s) / 60.0 if epoch_s else None, "%.1f")))
    lines += ["", "## Paired difference, semi GG + DG - DG (same seed and subset), 5-crop "
              "top-1, percentage points", "",
              "Paper (full ImageNet): -3.0 / -3.7 / -3.6 for 50,000 / 100,000 / 300,000 labels.",
              "", "| labelled | mean ± sd | per seed |", "|---|---|---|"]
    for fraction in fractions:
        seeds, diffs = paired(results, fraction, "semi_gg_dg", "dg")
        lines.append("| %s | %s | %s |" % (fraction, mean_sd(diffs) if diffs else
                                           "- (no paired seeds yet)",
                                           ", ".join("s%d %+.2f" % p for p in zip(seeds, diffs))
                                           or "-"))
    lines += ["", "## What agrees with the paper, and what does not", ""]
    lines += reading(results, fractions, data.classes, data.val_count, sched) or [
        "Nothing to say yet: no run has finished."]
    lines += ["", "## Learning: centre-crop val top-1 error % after each epoch", "",
              "The test pass at the end of every epoch (one centre crop, as in training). "
              "Semi GG + DG tuning repeats semi GG's epochs 1-%d (the same run) and tunes "
              "from epoch %d; semi GG's own column is its arg-max, which rests on per-class "
              "offsets GG does not learn (its Bayes rule is read below)." % (
                  sched.switch, sched.switch + 1), ""]
    lines += learning_rows("labelled", [(f, f) for f in fractions], semi.APPROACHES,
                           semi.TITLES, results, sched.epochs)
    lines += [""] + diagnostics_markdown(sched, results, fractions)
    lines += [""] + cost_markdown(
        results, lambda r: "%s %s seed %d" % (r.arch, semi.TITLES[r.approach], r.seed),
        lambda r: "--fractions %s --seeds %d --approaches %s" % (r.arch, r.seed, r.approach),
        "semi GG + DG tuning runs") + [""]
    return "\n".join(lines)


def term_weights(diagnostics: dict) -> tuple:
    """(labelled images, lambda x unlabelled images) of one mixed batch: how
    much each of Eq. 19's two sums weighs in the batch's loss."""
    return (diagnostics["labelled_batch"],
            diagnostics["unlabeled_weight"] * diagnostics["unlabelled_batch"])


def prior_ranks(class_share, class_prior, top: int = 5) -> List[int]:
    """For the `top` classes given the largest shares of the unlabelled images
    (most first), their rank by rho (1 = the largest prior; ties share the
    better rank); [] without a non-uniform prior. Says whether the max in
    Eq. 19 follows log rho_y rather than the images."""
    if not class_share or not class_prior or len(set(class_prior)) == 1:
        return []
    order = sorted(range(len(class_share)), key=lambda c: -class_share[c])[:top]
    return [1 + sum(1 for p in class_prior if p > class_prior[c]) for c in order
            if class_share[c] > 0]


def start_differences(results: List[RunResult], fraction: str, sched):
    """(seeds, differences) of centre-crop top-1 error, percentage points: the
    finished DG tuning after its epochs - sched.switch epochs, minus DG from
    random weights after as many of its own first epochs. Says whether semi
    GG's weights are a better start for DG than random ones, on the same
    labelled images for the same number of DG epochs (the tuning at its
    stage-2 base_lr 0.003, DG at 0.01)."""
    tuning_epochs = sched.epochs - sched.switch
    by = {(r.approach, r.seed): r for r in results if r.arch == fraction}
    seeds, diffs = [], []
    for (approach, seed), tuned in sorted(by.items()):
        dg = by.get(("dg", seed))
        if approach != "semi_gg_dg" or not tuned.complete or dg is None:
            continue
        tuned_errors, dg_errors = epoch_errors(tuned), epoch_errors(dg)
        if len(dg_errors) < tuning_epochs or None in (tuned_errors[-1],
                                                      dg_errors[tuning_epochs - 1]):
            continue
        seeds.append(seed)
        diffs.append(tuned_errors[-1] - dg_errors[tuning_epochs - 1])
    return seeds, diffs


def reading(results: List[RunResult], fractions, classes: int, val_count: int,
            sched) -> List[str]:
    """Plain statements of what the finished runs say, each with its numbers:
    learning, semi GG + DG against DG (the paper's claim), whether semi GG's
    weights are a better start for DG than random ones, and what semi GG's
    unlabelled term did; nothing for what has not finished."""
    lines = []
    for fraction in fractions:
        name = "%s labels" % fraction
        # semi GG alone's arg-max rests on per-class offsets that GG cannot learn:
        # it is read by its Bayes rule below, not here
        done = [r for r in results if r.arch == fraction and r.complete
                and r.approach != "semi_gg"]
        if done:
            worst = max(done, key=lambda r: r.top1_error)
            lines.append(learning_line(name, "every finished DG and semi GG + DG tuning run's "
                                       "5-crop top-1 error", worst, semi.TITLES[worst.approach],
                                       classes, val_count))
        seeds, diffs = paired(results, fraction, "semi_gg_dg", "dg")
        if diffs:
            paper = semi.PAPER_TOP1[fraction]
            lines.append(claim_line(name, "semi GG + DG tuning beats DG",
                                    semi.TITLES["semi_gg_dg"], semi.TITLES["dg"], seeds, diffs,
                                    -1, paper["semi_gg_dg"] - paper["dg"]))
        seeds, diffs = start_differences(results, fraction, sched)
        if diffs:
            tuning_epochs = sched.epochs - sched.switch
            lines.append(claim_line(
                name, "semi GG's weights a better start for DG than random weights (centre "
                "crop, after %d epochs of DG each)" % tuning_epochs,
                "DG tuning from semi GG (base_lr 0.003)",
                "DG from random weights after its first %d epochs (base_lr 0.01)"
                % tuning_epochs, seeds, diffs, -1, None))
        for r in _diagnosed(results, fraction):
            last = r.diagnostics["snapshots"][-1]
            labelled, unlabelled = term_weights(r.diagnostics)
            collapsed = last["largest_class_share"] > COLLAPSE_FACTOR / classes
            final = r.diagnostics.get("final")
            # a recovered entry keeps the ranks its report printed, not class_share
            favoured = prior_ranks(last.get("class_share"), r.class_prior) or \
                last.get("favoured_prior_ranks", [])
            lines.append(
                "* %s seed %d, semi GG's unlabelled term spreads over the classes? %s: at its "
                "last snapshot it gives %.1f %% of the unlabelled images to one class (even: "
                "%.1f %%; class entropy %.2f of ln C), its pseudo-labels are right for %.1f %% "
                "(chance %.1f %%), the labelled images' mean log p_y(x) is %+.2f; in a batch "
                "the unlabelled sum weighs lambda x %d = %.1f against %d labelled images "
                "(%.0f %% of the loss)%s%s." % (
                    name, r.seed, "**no**, it collapses" if collapsed else "yes",
                    100 * last["largest_class_share"], 100.0 / classes,
                    last["class_entropy"], 100 * last["pseudo_accuracy"], 100.0 / classes,
                    last["labelled_term"], r.diagnostics["unlabelled_batch"], unlabelled,
                    labelled, 100 * unlabelled / (labelled + unlabelled),
                    "" if not final else "; the final net's Bayes rule: %.2f %% top-1 error" % (
                        100 * (1 - final["generative_test_accuracy"])),
                    "" if not favoured else "; the classes it gives the most, ranked by rho "
                    "(1 = the labelled subset's most frequent class, of %d): %s" % (
                        classes, ", ".join(str(rank) for rank in favoured))))
    return lines


def _diagnosed(results, fraction) -> List[RunResult]:
    return [r for r in results if r.arch == fraction and r.approach == "semi_gg"
            and r.diagnostics]


def _epoch_means(runs: List[RunResult], iters_per_epoch: int) -> Dict[int, Dict[str, float]]:
    """{epoch: {statistic: mean over the runs that have that epoch's snapshot}}."""
    by: Dict[int, Dict[str, List[float]]] = {}
    for r in runs:
        for row in r.diagnostics["snapshots"]:
            epoch = int(round(row["iteration"] / float(iters_per_epoch)))
            for name, value in row.items():
                if isinstance(value, (int, float)) and name != "iteration":
                    by.setdefault(epoch, {}).setdefault(name, []).append(float(value))
    return {e: {name: statistics.mean(v) for name, v in stats.items()}
            for e, stats in sorted(by.items())}


def diagnostics_markdown(sched, results: List[RunResult], fractions) -> List[str]:
    """The unlabelled term over semi GG training, and the Bayes-rule reading
    of the finished semi GG nets (as results/mnist_semi.md reads MNIST's)."""
    lines = ["## The unlabelled term over semi-supervised GG training", "",
             "From every epoch's semi GG snapshot (gencaffe.experiments.semi_diagnostics): "
             "the first mixed train batches of the run's own split (centre crops, as the test "
             "passes see them), scored by the snapshot; for their unlabelled images, the class "
             "Eq. 19's max picks, argmax_y [log p_y(x) + log rho_y] with the batch's "
             "normaliser, against the true label (**pseudo acc.**), the net's own arg-max "
             "(**classifier acc.**), how often the two agree, the largest share of the "
             "unlabelled images given to one class (1/200 = 0.005 is even), the layer's "
             "ESS top, and Eq. 19's two terms per image: the labelled images' log p_y(x) at "
             "their label (the batch estimate of log p_y(x) / q(x): 0 = no likelier under "
             "its class than an average train image) and the unlabelled images' log p_y(x) + "
             "log rho_y at the class the max picks; mean over seeds. Caffe's GenerativeLoss "
             "checks the recomputed loss and ESS on every snapshot's first batch.", "",
             "| labelled | epoch | pseudo acc. | classifier acc. | agreement | largest class "
             "share | class entropy / ln C | ESS | labelled log p | unlabelled log p + log rho "
             "| seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    any_rows = False
    for fraction in fractions:
        runs = _diagnosed(results, fraction)
        for epoch, m in _epoch_means(runs, sched.iters_per_epoch).items():
            any_rows = True
            lines.append("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f "
                         "| %d |" % (
                             fraction, epoch, m["pseudo_accuracy"], m["classifier_accuracy"],
                             m["agreement"], m["largest_class_share"], m["class_entropy"],
                             m["ess"], m["labelled_term"], m["unlabelled_term"], len(runs)))
    if not any_rows:
        lines.append("| (no semi GG run has finished yet) | | | | | | | | | | |")
    lines += ["", "Val top-1 error (%, centre crop) of the final semi GG nets read two ways: "
              "the net's arg-max argmax_y f_y(x) (what Caffe's Accuracy layer reports), and the "
              "generative model's Bayes rule argmax_y [f_y(x) - log Z_y + log rho_y], log Z_y = "
              "log mean exp f_y over the first 10,000 unlabelled train images of the split "
              "(journal Sec. 4.1: p_y(x) = exp(f_y(x)) q(x) / Z_y). GG's loss and gradient do "
              "not change when a constant is added to one class's scores, so GG does not learn "
              "the per-class offsets that the first rule depends on; the second does not "
              "depend on them. Not the paper's protocol, which tunes with DG instead.", "",
              "| labelled | argmax f_y | Bayes rule with Z_y | per seed (argmax / Bayes) |",
              "|---|---:|---:|---|"]
    for fraction in fractions:
        finals = [(r.seed, r.diagnostics.get("final")) for r in _diagnosed(results, fraction)]
        finals = [(s, f) for s, f in finals if f]
        if finals:
            plain = [100 * (1 - f["classifier_test_accuracy"]) for _, f in finals]
            bayes = [100 * (1 - f["generative_test_accuracy"]) for _, f in finals]
            lines.append("| %s | %s | %s | %s |" % (
                fraction, mean_sd(plain), mean_sd(bayes),
                ", ".join("s%d %.2f / %.2f" % (s, p, b)
                          for (s, _), p, b in zip(finals, plain, bayes))))
    return lines


def writer(settings, data, paths, argv):
    from ..cli_args import report_command
    table_path, plot_path = paths

    def write():
        sched, results = collect(settings, data)
        seeds = sorted({result.seed for result in results})
        scope = {"--seeds": (seeds, settings.semi_seeds, semi.DEFAULT_SEEDS)} if seeds else {}
        fractions = [f for f in semi.FRACTIONS if any(r.arch == f for r in results)]
        if fractions:   # a run of one share reports the others it finds on disk or in the ledger
            scope["--fractions"] = (fractions, settings.fractions, list(semi.FRACTIONS))
        command = report_command("python3 tools/reproduce_tiny_imagenet_semi.py", argv, scope)
        os.makedirs(os.path.dirname(table_path), exist_ok=True)
        solver_config.write_text_atomic(table_path, table_markdown(settings, data, sched,
                                                                   results, command))
        plot_curves_semi(sched, results, plot_path, data)
    return write


def plot_curves_semi(sched, results, path, data):
    """The curves of every seed: a row per labelled share; the DG loss (DG on
    the labelled subset, and the tuning stage), semi GG's Eq. 19 loss (its
    own axes: the unlabelled term puts it on another scale), its ESS top (the
    collapse shows as a drop to a few images a class), accuracy."""
    colours = {"dg": "tab:blue", "semi_gg": "tab:orange", "semi_gg_dg": "tab:green"}
    rows = []
    for fraction in list(dict.fromkeys(r.arch for r in results)) or ["-"]:
        runs = [(approach, r, sched.switch if approach == "semi_gg_dg" else -1)
                for approach in semi.APPROACHES
                for r in results if r.arch == fraction and r.approach == approach]
        rows.append(plots.EpochRow("%s labels" % fraction, sched.epochs, sched.switch, runs))
    fig = plots.epoch_curves_figure(
        rows, [("DG", "train loss, DG (SoftmaxWithLoss)",
                (math.log(data.classes), "chance, ln %d" % data.classes), "batch loss"),
               ("GG", "train loss, semi GG (Eq. 19)", None, "batch loss"),
               ("ESS", "semi GG: the ESS top (low = few images carry each class)", None,
                "ESS, share of the batch")],
        colours, semi.TITLES, data.classes, "semi GG -> DG tuning",
        suptitle="Tiny ImageNet-200, Table 3: every seed (one line each)")
    plots.save_png(fig, path)
