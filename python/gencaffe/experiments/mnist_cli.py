"""tools/reproduce_mnist.py's work (Table 1 on MNIST or the user's own data):
the settings from its arguments (the data checked before anything is
written, runs of other data or schedules in their own folders) and the run
itself (the trainings in the asked order, the table and curves rewritten
after each)."""
import os

from .. import pycaffe_path
from ..cli_args import log, report_command
from . import caffe_runs, mnist_report, mnist_runs, runner_cli


def repo_path(path, repo):
    """A command-line path (relative to the current directory) as the runner
    keeps it: relative to the repo when inside it (run specs then do not depend
    on where the repo is), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, repo)
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


def make_settings(args, repo):
    """Settings from the arguments; the data is scanned (and checked) here, before
    anything is written. Raises ValueError with a message for the user."""
    settings = mnist_runs.Settings(
        repo=repo, runs_dir="", total_epochs=args.epochs,
        gg_epochs=args.gg_epochs, epoch_iterations=args.epoch_iterations,
        switch_rule=(args.switch_rule if args.ess_threshold is None
                     else "ess<%g" % args.ess_threshold),
        **runner_cli.running_settings(args),
        data_dir=repo_path(args.data_dir, repo) if args.data_dir else mnist_runs.DEFAULT_DATA_DIR,
        train_lmdb=repo_path(args.train_lmdb, repo) if args.train_lmdb else None,
        test_lmdb=repo_path(args.test_lmdb, repo) if args.test_lmdb else None,
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
    settings.runs_dir = repo_path(args.runs_dir, repo) if args.runs_dir else os.path.join("runs", tag)
    if args.results_dir:
        args.results_dir = repo_path(args.results_dir, repo)
    else:
        args.results_dir = "results" if default_data and tag == "mnist" else settings.runs_dir
    return settings


def run(args, argv, repo) -> int:
    """Train what args ask for, rewriting the table and curves after every
    finished run; the exit status (0 done, 1 a run failed, 2 bad input)."""
    pycaffe_path.require_caffe_pb2()
    try:
        settings = make_settings(args, repo)
    except ValueError as err:  # a bad schedule, or data that do not fit LeNet
        log("error: %s" % str(err).replace("\n", "\nerror: "))
        if "does not exist" in str(err) and not (args.data_dir or args.train_lmdb):
            log("(make MNIST's LMDBs with tools/make_mnist_lmdb.py, or give --data-dir)")
        return 2
    table_path = os.path.join(repo, args.results_dir, "mnist_table1.md")
    curves_path = os.path.join(repo, args.results_dir, "mnist_curves.png")

    def report():
        # every approach and seed with runs on disk, not only this command's;
        # the report names the training command that covers them all
        approaches, seeds = caffe_runs.report_scope(
            os.path.join(repo, settings.runs_dir), args.approaches, mnist_runs.APPROACHES,
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
    if runner_cli.caffe_missing(settings):
        return 2
    log("data: train %s (%d images), test %s (%d images); %d epochs of %d iterations%s%s" % (
        settings.lmdb("train"), settings.data_summary("train").entries, settings.lmdb("test"),
        settings.data_summary("test").entries, settings.total_epochs,
        settings.iterations_per_epoch, " (smoke run)" if settings.smoke else "",
        ", GG+DG switch after %d%s" % (
            settings.stage1_epochs(), "" if args.gg_epochs is not None or settings.total_epochs
            == mnist_runs.TOTAL_EPOCHS else " (the paper's 16 of 25, scaled)")
        if "gg_dg" in args.approaches else ""))

    pairs = runner_cli.ordered(args.approaches, args.seeds, first_outer=args.order == "approach")
    log("plan: %d approach-seeds, %d job(s), runs in %s" % (len(pairs), args.jobs, settings.runs_dir))
    runner = mnist_runs.Runner(settings)
    return runner_cli.drive(runner, pairs, "{} seed{}".format, runner.run_approach, args.jobs,
                            report, "approach-seed(s)")
