#!/usr/bin/env python3
"""The ImageNet pipeline at smoke size, on the CPU (`make imagenet-smoke`).

1. draws the stand-in data set (tools/make_standin_imagenet.py's generator) and
   makes its LMDBs, mean and class list (tools/make_imagenet_lmdb.py's
   pipeline), or uses LMDBs you have (--lmdb-dir);
2. trains AlexNet and ZF with DG, GG and GG+DG (stage 1 GG, stage 2 DG from
   stage 1's final snapshot with -weights) through the committed solvers
   solvers/<arch>_*.prototxt: max_iter, test_iter, test_interval, display,
   snapshot, snapshot_prefix, random_seed and solver_mode (CPU) are overridden
   on the way in; the nets are the generator's, written into each run's
   directory with the data's paths, class count and --batch;
3. evaluates each final model 5-crop (tools/eval_crops.py's code) on the val LMDB;
4. writes a table (default results/imagenet_smoke.md) and the loss and
   accuracy curves (results/imagenet_smoke.png).

Resumable: finished runs and evaluations are skipped, interrupted or outdated
ones (other options or data) restarted from scratch, so the same command can
be re-run until everything is done; a second run of a finished command
trains nothing. Ctrl-C / SIGTERM stops the caffe processes.

Defaults: 10 classes, 80 train + 20 val images each, the object colour
tied to the class (--colour-cue 1: on the shape-and-texture-only stand-in,
--colour-cue 0, AlexNet and ZF stayed on their initial plateau for 200
iterations), batch 16, 400 iterations per approach, 2 trainings at once; see
docs/imagenet.md for the time they took and what they show. Needs the
CPU build (`make`).
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg")
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe.cli_args import choice_list, log, positive_int  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--classes", type=positive_int, default=None,
                      help="classes of the stand-in to draw (2..24; default 10); with "
                           "--lmdb-dir, leave it out")
    data.add_argument("--train-per-class", type=positive_int, default=80,
                      help="stand-in train images per class (default %(default)s)")
    data.add_argument("--val-per-class", type=positive_int, default=20,
                      help="stand-in val images per class (default %(default)s)")
    data.add_argument("--corrupt", type=int, default=4,
                      help="deliberately corrupt stand-in files, which the data tool names and "
                           "skips (default %(default)s)")
    data.add_argument("--colour-cue", type=float, default=1.0,
                      help="0..1: how far the stand-in objects' colour depends on the class "
                           "(tools/make_standin_imagenet.py --colour-cue; default %(default)s: "
                           "each class its own hue band, so that a few hundred CPU iterations "
                           "show learning; 0 = shape and texture only, on which the nets stay "
                           "on their initial plateau for longer than a smoke run)")
    data.add_argument("--data-seed", type=int, default=1,
                      help="seed of the stand-in drawing and of the LMDB shuffle (default 1)")
    data.add_argument("--data-dir", default="data/imagenet_smoke",
                      help="where the stand-in goes: DATA_DIR/standin (the JPEG tree) and "
                           "DATA_DIR/lmdb (LMDBs, mean, classes.txt); relative to the repo root "
                           "or absolute (default %(default)s)")
    data.add_argument("--lmdb-dir", default=None,
                      help="use the LMDBs in this folder (train_lmdb, val_lmdb, mean.binaryproto, "
                           "classes.txt, as tools/make_imagenet_lmdb.py writes) instead of drawing "
                           "the stand-in; relative to the repo root or absolute")
    data.add_argument("--num-classes", type=positive_int, default=None,
                      help="class count of the nets (default: the data's classes.txt); a value "
                           "that differs from the data stops with a message")
    train = p.add_argument_group("training")
    train.add_argument("--iterations", type=positive_int, default=400,
                       help="iterations per approach (default %(default)s); GG+DG splits them "
                            "45:25 like the committed solvers' epochs")
    train.add_argument("--batch", type=positive_int, default=16,
                       help="train batch size written into the generated nets (default "
                            "%(default)s; the paper's 256 is for a GPU)")
    train.add_argument("--test-batch", type=positive_int, default=25,
                       help="test batch size; test_iter covers the whole val LMDB (default "
                            "%(default)s)")
    train.add_argument("--tests-per-run", type=positive_int, default=4,
                       help="about this many test passes per run after the one at iteration "
                            "0; the interval divides the run's iterations, so that the last "
                            "iteration is tested (default %(default)s)")
    train.add_argument("--display", type=positive_int, default=10,
                       help="log the train loss every N iterations (default %(default)s)")
    train.add_argument("--seed", type=int, default=1,
                       help="Caffe's random_seed (weight init, dropout) (default %(default)s)")
    train.add_argument("--archs", type=choice_list(ARCHS, "architecture"), default=list(ARCHS),
                       help="comma-separated subset of alexnet,zf (default both)")
    train.add_argument("--approaches", type=choice_list(APPROACHES, "approach"),
                       default=list(APPROACHES),
                       help="comma-separated subset of dg,gg,gg_dg (default all)")
    run = p.add_argument_group("running")
    run.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools", "caffe"),
                     help="the caffe binary (default %(default)s)")
    run.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                     help="trainings at once, and worker processes of the data tools "
                          "(default %(default)s)")
    run.add_argument("--gpu", type=int, metavar="ID", default=None,
                     help="train (solver_mode GPU) and evaluate on this GPU instead of the CPU "
                          "(needs a CUDA build: --caffe and CAFFE_BUILD_DIR pointing at it)")
    run.add_argument("--threads", type=positive_int, default=1,
                     help="BLAS/OpenMP threads per caffe process (default %(default)s)")
    run.add_argument("--eval-batch", type=positive_int, default=10,
                     help="images per forward pass of the 5-crop evaluation (x5 crops) "
                          "(default %(default)s)")
    run.add_argument("--runs-dir", default="runs/imagenet_smoke",
                     help="run directories, relative to the repo root (default %(default)s)")
    run.add_argument("--results-dir", default="results",
                     help="where imagenet_smoke.md and imagenet_smoke.png go, relative to the "
                          "repo root (default %(default)s)")
    run.add_argument("--retries", type=int, default=1,
                     help="retrain a run whose caffe failed this many more times (default "
                          "%(default)s)")
    run.add_argument("--data-only", action="store_true",
                     help="make the stand-in data and its LMDBs (`make imagenet-standin`), then "
                          "stop")
    run.add_argument("--report-only", action="store_true",
                     help="train and evaluate nothing; rewrite the table and curves from what "
                          "is finished (the data must exist)")
    run.add_argument("--progress-every", type=float, default=60.0,
                     help="seconds between progress lines of a running training (default "
                          "%(default)s)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars (data drawing, conversion, evaluation)")
    return p


def make_settings(args):
    from gencaffe import progress
    from gencaffe.data import standin
    from gencaffe.experiments import imagenet_data
    from gencaffe.experiments import imagenet_smoke as smoke
    if args.lmdb_dir and args.classes:
        raise imagenet_data.SmokeError("--classes draws a stand-in; with --lmdb-dir the class "
                                       "count is the data's (check it with --num-classes)")
    config = None if args.lmdb_dir else standin.StandinConfig(
        classes=args.classes or 10, train_per_class=args.train_per_class,
        val_per_class=args.val_per_class, corrupt=args.corrupt, seed=args.data_seed,
        colour_cue=args.colour_cue)
    if config is not None:
        try:
            config.validate()
        except standin.StandinError as err:
            raise imagenet_data.SmokeError(str(err)) from None
    return smoke.Settings(
        repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir=args.runs_dir,
        lmdb_dir=args.lmdb_dir or os.path.join(args.data_dir, "lmdb"),
        standin_dir=None if args.lmdb_dir else os.path.join(args.data_dir, "standin"),
        standin=config,
        num_classes=args.num_classes, iterations=args.iterations, train_batch=args.batch,
        test_batch=args.test_batch, tests_per_run=args.tests_per_run, display=args.display,
        seed=args.seed, archs=args.archs, approaches=args.approaches, eval_batch=args.eval_batch,
        log=log, progress_factory=progress.bar_factory(not args.no_progress),
        progress_every_s=args.progress_every, threads_per_job=args.threads,
        retries=args.retries, jobs=args.jobs, gpu=args.gpu)


def report_scope(settings, args, argv):
    """(settings, command) for the report: every architecture and approach
    with runs under --runs-dir, not only this command's, so that a run of a
    subset does not drop earlier results; the command named covers them all."""
    import dataclasses
    from gencaffe.cli_args import report_command
    from gencaffe.experiments import caffe_runs
    root = os.path.join(REPO, args.runs_dir)
    archs = caffe_runs.widened(args.archs, [a for a in ARCHS if os.path.isdir(
        os.path.join(root, a))], order=ARCHS)
    approaches = caffe_runs.widened(args.approaches, [p for a in archs for p in APPROACHES
                                                      if os.path.isdir(os.path.join(root, a, p))],
                                    order=APPROACHES)
    command = report_command("python3 tools/imagenet_smoke.py", argv, {
        "--archs": (archs, args.archs, ARCHS),
        "--approaches": (approaches, args.approaches, APPROACHES)})
    return dataclasses.replace(settings, archs=archs, approaches=approaches), command


def main(argv=None):
    args = build_parser().parse_args(argv)
    # the evaluation's pycaffe runs in this process after the trainings
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.jobs * args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import caffe_runs, imagenet_data
    from gencaffe.experiments import imagenet_smoke as smoke
    from gencaffe.experiments import imagenet_smoke_eval as smoke_eval
    from gencaffe.experiments import imagenet_smoke_report as smoke_report
    table = os.path.join(REPO, args.results_dir, "imagenet_smoke.md")
    plot = os.path.join(REPO, args.results_dir, "imagenet_smoke.png")
    try:
        settings = make_settings(args)
        if args.report_only:
            data = imagenet_data.check_data(settings)
            scope, command = report_scope(settings, args, argv)
            smoke_report.write_report(scope, data, table, plot, command)
            log("report: %s, %s" % (table, plot))
            return 0
        if args.data_only:
            data = imagenet_data.prepare_data(settings)
            log("data: %s: %d classes, %d train / %d val images"
                % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
            return 0
        if not os.access(settings.caffe, os.X_OK):
            raise imagenet_data.SmokeError("no caffe binary at %s (build first with `make`, or "
                                           "pass --caffe)" % settings.caffe)
        started = smoke_report.started_stamp()
        data = imagenet_data.prepare_data(settings)
        log("data: %s: %d classes, %d train / %d val images"
            % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
        plan = [(arch, approach) for arch in args.archs for approach in args.approaches]
        for arch, approach in plan:  # every net built and checked before any training
            smoke.approach_runs(settings, data, arch, approach)
    except imagenet_data.SmokeError as err:
        log("error: %s" % err)
        return 2

    runner = smoke.Runner(settings, data=data)
    log("plan: %d approach(es) x %d iterations, %d training(s) at once, runs in %s"
        % (len(plan), args.iterations, args.jobs, args.runs_dir))
    tasks = [("%s %s" % plan_item, (lambda a=plan_item: runner.run_approach(*a)))
             for plan_item in plan]
    failures = [(label, str(err)) for label, err in
                caffe_runs.drive(runner, tasks, args.jobs, lambda: None, log)]
    failed = {label for label, _ in failures}
    try:
        for arch, approach in plan:
            if "%s %s" % (arch, approach) not in failed:
                smoke_eval.evaluate(settings, data,
                                    smoke.approach_runs(settings, data, arch, approach)[-1])
    except imagenet_data.SmokeError as err:
        log("error: %s" % err)
        failures.append(("evaluation", str(err)))
    except KeyboardInterrupt:
        log("interrupted during the evaluation (finished ones are kept)")
        return 130
    scope, command = report_scope(settings, args, argv)
    results = smoke_report.write_report(scope, data, table, plot, command, started)
    log("report: %s, %s" % (table, plot))
    for r in results:
        if r.complete and r.loss_went_down(data.classes) is False:
            log("warning: %s %s: the val loss did not go down by more than %g x ln %d"
                % (r.arch, r.approach, smoke_report.LOSS_DOWN_MARGIN, data.classes))
    return caffe_runs.exit_status(failures, log, "task(s)")


if __name__ == "__main__":
    sys.exit(main())
