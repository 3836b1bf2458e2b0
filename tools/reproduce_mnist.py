#!/usr/bin/env python3
"""Reproduce Table 1 of Dai, Lu & Wu (MNIST / LeNet: DG, GG, GG+DG), plus an
automatic GG->DG switch on the logged ESS fraction, over several seeds, on
MNIST or on your own data in its format (tools/make_mnist_lmdb.py --idx-dir).

Each (approach, seed) trains with a per-run copy of the committed solver
(random_seed set, the schedule in epochs of the given data, outputs under
RUNS_DIR/<approach>/seed<N>/) and its own generated LeNet net reading the
given LMDBs; the committed solvers and nets are never edited. Finished runs
are skipped, interrupted ones restarted cleanly, so the same command can be
re-run until everything is done. After every finished approach/seed the
table and curves are rewritten; the table states the data and the schedule.

Both LMDBs are checked before anything is created: a missing or empty LMDB,
images other than LeNet's 1x28x28, or labels outside 0..--num-classes-1
stop the run with a message naming the file.

Run from anywhere: paths on the command line are relative to the current
directory, and caffe runs with the repo root as its working directory.

  tools/reproduce_mnist.py --seeds 1-5                       # the paper's setup
  tools/reproduce_mnist.py --data-dir data/fashion --epochs 10 --gg-epochs 6 --seeds 1
  tools/reproduce_mnist.py --epochs 2 --gg-epochs 1 --epoch-iterations 20 --seeds 1  # smoke
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import choice_list, int_list, log, report_command  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2, for reading/writing solvers
from gencaffe.experiments import caffe_runs, mnist_report, mnist_runs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int_list, default=int_list("1-5"),
                        help="seeds to run, e.g. '1-5' or '1,3,8' (default: 1-5); each is Caffe's "
                             "random_seed for weight init (the data order is the LMDB's)")
    parser.add_argument("--approaches", type=choice_list(mnist_runs.APPROACHES, "approach"),
                        default=list(mnist_runs.APPROACHES),
                        help="comma-separated subset of %s (default: all). gg_dg_auto needs the "
                             "gg run of the same seed and trains it if missing"
                             % ",".join(mnist_runs.APPROACHES))
    parser.add_argument("--epochs", type=int, default=mnist_runs.TOTAL_EPOCHS,
                        help="epochs of every approach (default: %(default)s, the paper's); an "
                             "epoch is one pass over the train LMDB, ceil(images / 64) iterations")
    parser.add_argument("--gg-epochs", type=int, default=None,
                        help="GG+DG: epochs of the GG stage, the rest are DG; must be below "
                             "--epochs (default: the stage-1 solver's 16 of 25, the paper's, and "
                             "the same share of another --epochs: round(E x 16 / 25))")
    parser.add_argument("--epoch-iterations", type=int, default=None, metavar="N",
                        help="smoke runs: an 'epoch' of N iterations instead of a pass over the "
                             "train LMDB (the test pass still reads the whole test LMDB); the "
                             "table and curves say it is a smoke run")
    parser.add_argument("--epochs-scale", type=float, default=None, metavar="S",
                        help="deprecated: it shortened each epoch to S x (a pass over the train "
                             "LMDB), not the number of epochs; use --epoch-iterations N for a "
                             "smoke run, --epochs/--gg-epochs for fewer epochs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="how many caffe trainings at once (default: 1); each uses "
                             "--threads-per-job BLAS/OpenMP threads")
    parser.add_argument("--threads-per-job", type=int, default=1,
                        help="OMP/OpenBLAS threads per caffe process (default: 1)")
    parser.add_argument("--order", choices=("seed", "approach"), default="seed",
                        help="with few jobs, what finishes first: 'seed' = all approaches of seed 1, "
                             "then seed 2, ...; 'approach' = every seed of the first listed "
                             "approach, then the next (default: %(default)s)")
    parser.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools", "caffe"),
                        help="caffe binary (default: %(default)s)")
    parser.add_argument("--gpu", type=int, metavar="ID",
                        help="train on this GPU (caffe train -gpu ID; needs a CUDA build) "
                             "instead of the CPU; the table names the device of each run")
    parser.add_argument("--data-dir", default=None,
                        help="folder with mnist_train_lmdb and mnist_test_lmdb, as "
                             "tools/make_mnist_lmdb.py writes them (default: %s); each run writes "
                             "its own nets reading them" % os.path.join(REPO, mnist_runs.DEFAULT_DATA_DIR))
    parser.add_argument("--train-lmdb", help="the train LMDB (instead of --data-dir's)")
    parser.add_argument("--test-lmdb", help="the test LMDB (instead of --data-dir's)")
    parser.add_argument("--num-classes", type=int, default=10,
                        help="LeNet's class count; labels must lie in 0..N-1 (default: %(default)s)")
    parser.add_argument("--name", help="the data's name in the default runs dir, runs/NAME[_eEgG]"
                                       "[_cC][_smokeN] (default: the data folder's name)")
    switch = parser.add_mutually_exclusive_group()
    switch.add_argument("--switch-rule", metavar="RULE", default=mnist_runs.DEFAULT_SWITCH_RULE,
                        help="gg_dg_auto's switch rule (experimental; results/mnist_switch.md "
                             "judges rules against a sweep of fixed switch epochs): "
                             "OUTPUT<THRESHOLD (switch after the first epoch whose GG test OUTPUT "
                             "is below it) or OUTPUT~CHANGE/WINDOW (after the first epoch at which "
                             "OUTPUT changed by less than CHANGE over WINDOW epochs); OUTPUT one of "
                             "accuracy, ess, ess_within, ess_within_sd, cross_weight; a rule that "
                             "never holds means no switch (GG throughout). Default %(default)s, "
                             "the weight on other classes' examples settling: the rule closest to "
                             "the best fixed switch in the sweep")
    switch.add_argument("--ess-threshold", type=float, metavar="T",
                        help="shorthand for --switch-rule ess<T: the batch ESS fraction (GenerativeLoss "
                             "top 1) below T, Sec. 4.2 taken literally and this runner's rule before "
                             "the sweep (with T = 0.15). It falls to ~1/C within the first epoch, so "
                             "it switches after epoch 1, the worst point of the sweep")
    parser.add_argument("--runs-dir", default=None,
                        help="run outputs (default: REPO/runs/mnist for the paper's setup; "
                             "otherwise REPO/runs/<name>[_e<epochs>g<gg epochs>][_c<classes>]"
                             "[_smoke<N>], so runs of other data or schedules never replace them)")
    parser.add_argument("--results-dir", default=None,
                        help="where mnist_table1.md and mnist_curves.png go (default: REPO/results "
                             "for MNIST from data/mnist with the paper's schedule, else the runs "
                             "dir)")
    parser.add_argument("--retries", type=int, default=1,
                        help="restart a run whose caffe process failed this many more times before "
                             "giving up on it (default: %(default)s); a second invocation of this "
                             "tool retries failed runs anyway")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing; rebuild the table and curves from finished runs")
    parser.add_argument("--progress-every", type=float, default=120.0,
                        help="seconds between progress lines of a running training (default: 120)")
    args = parser.parse_args(argv)
    if args.epochs_scale is not None and args.epoch_iterations is not None:
        parser.error("--epochs-scale is the old spelling of --epoch-iterations; give one")
    return args


def repo_path(path):
    """A command-line path (relative to the current directory) as the runner
    keeps it: relative to the repo when inside it (run specs then do not depend
    on where the repo is), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, REPO)
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def data_name(args):
    if args.name:
        return args.name
    if args.train_lmdb:
        parent = os.path.basename(os.path.dirname(os.path.abspath(args.train_lmdb)))
        return parent or os.path.basename(os.path.abspath(args.train_lmdb))
    return os.path.basename(os.path.abspath(args.data_dir)) if args.data_dir else "mnist"


def default_runs_tag(args, settings):
    tag = data_name(args)
    if (settings.total_epochs, settings.stage1_epochs()) != (mnist_runs.TOTAL_EPOCHS, 16):
        tag += "_e%dg%d" % (settings.total_epochs, settings.stage1_epochs())
    if settings.num_classes != 10:
        tag += "_c%d" % settings.num_classes
    if settings.smoke:
        tag += "_smoke%d" % settings.epoch_iterations
    return tag


def make_settings(args):
    """Settings from the arguments; the data is scanned (and checked) here, before
    anything is written. Raises ValueError with a message for the user."""
    settings = mnist_runs.Settings(
        repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir="", total_epochs=args.epochs,
        gg_epochs=args.gg_epochs, epoch_iterations=args.epoch_iterations,
        switch_rule=(args.switch_rule if args.ess_threshold is None
                     else "ess<%g" % args.ess_threshold),
        progress_every_s=args.progress_every, log=log,
        threads_per_job=args.threads_per_job, retries=args.retries, gpu=args.gpu,
        data_dir=repo_path(args.data_dir) if args.data_dir else mnist_runs.DEFAULT_DATA_DIR,
        train_lmdb=repo_path(args.train_lmdb) if args.train_lmdb else None,
        test_lmdb=repo_path(args.test_lmdb) if args.test_lmdb else None,
        num_classes=args.num_classes)
    if args.epochs_scale is not None:
        if args.epochs_scale <= 0:
            raise ValueError("--epochs-scale must be positive")
        settings.epoch_iterations = max(1, int(round(settings.data_iterations_per_epoch
                                                     * args.epochs_scale)))
        log("warning: --epochs-scale is deprecated: it shortens each epoch (here to %d "
            "iterations), it does not change the number of epochs. Same run: --epoch-iterations "
            "%d; fewer epochs: --epochs N --gg-epochs K"
            % (settings.epoch_iterations, settings.epoch_iterations))
    settings.switch_criterion()  # a bad --switch-rule: ValueError naming the forms
    settings.check(args.approaches)
    default_data = not (args.data_dir or args.train_lmdb or args.test_lmdb)
    tag = default_runs_tag(args, settings)
    settings.runs_dir = repo_path(args.runs_dir) if args.runs_dir else os.path.join("runs", tag)
    if args.results_dir:
        args.results_dir = repo_path(args.results_dir)
    else:
        args.results_dir = "results" if default_data and tag == "mnist" else settings.runs_dir
    return settings


def main(argv=None):
    args = parse_args(argv)
    pycaffe_path.require_caffe_pb2()
    try:
        settings = make_settings(args)
    except ValueError as err:  # a bad schedule, or data that do not fit LeNet
        log("error: %s" % str(err).replace("\n", "\nerror: "))
        if "does not exist" in str(err) and not (args.data_dir or args.train_lmdb):
            log("(make MNIST's LMDBs with tools/make_mnist_lmdb.py, or give --data-dir)")
        return 2
    table_path = os.path.join(REPO, args.results_dir, "mnist_table1.md")
    curves_path = os.path.join(REPO, args.results_dir, "mnist_curves.png")

    def report():
        # every approach and seed with runs on disk, not only this command's;
        # the report names the training command that covers them all
        approaches, seeds = caffe_runs.report_scope(
            os.path.join(REPO, settings.runs_dir), args.approaches, mnist_runs.APPROACHES,
            args.seeds)
        command = report_command("tools/reproduce_mnist.py", argv, {
            "--seeds": (seeds, args.seeds, None),
            "--approaches": (approaches, args.approaches, None)})
        results = mnist_report.write_report(settings, approaches, seeds, table_path,
                                            curves_path, command)
        finished = sum(r.complete for rs in results.values() for r in rs)
        log("report: %d/%d approach-seeds finished -> %s, %s" % (
            finished, len(approaches) * len(seeds), table_path, curves_path))

    if args.report_only:
        report()
        return 0
    if not os.access(settings.caffe, os.X_OK):
        log("error: no caffe binary at %s (build first, or pass --caffe)" % settings.caffe)
        return 2
    log("data: train %s (%d images), test %s (%d images); %d epochs of %d iterations%s%s" % (
        settings.lmdb("train"), settings.data_summary("train").entries, settings.lmdb("test"),
        settings.data_summary("test").entries, settings.total_epochs,
        settings.iterations_per_epoch, " (smoke run)" if settings.smoke else "",
        ", GG+DG switch after %d%s" % (
            settings.stage1_epochs(), "" if args.gg_epochs is not None or settings.total_epochs
            == mnist_runs.TOTAL_EPOCHS else " (the paper's 16 of 25, scaled)")
        if "gg_dg" in args.approaches else ""))

    runner = mnist_runs.Runner(settings)
    if args.order == "seed":
        pairs = [(approach, seed) for seed in args.seeds for approach in args.approaches]
    else:
        pairs = [(approach, seed) for approach in args.approaches for seed in args.seeds]
    log("plan: %d approach-seeds, %d job(s), runs in %s" % (len(pairs), args.jobs, settings.runs_dir))
    tasks = [("%s seed%d" % (approach, seed),
              (lambda a=approach, s=seed: runner.run_approach(a, s))) for approach, seed in pairs]
    # Ctrl-C or SIGTERM (e.g. `kill PID`) stops the driver and its caffe processes
    failures = caffe_runs.drive(runner, tasks, args.jobs, report, log)
    return caffe_runs.exit_status(failures, log, "approach-seed(s)")


if __name__ == "__main__":
    sys.exit(main())
