#!/usr/bin/env python3
"""Reproduce the MNIST experiments of Flach, Shekhovtsov & Fikar (2017),
"Generative learning for deep networks", Sec. 3: the dense 512-512-10 net
learned discriminatively and generatively (Eq. 21; Fig. 1) and the 8-layer
CNN learned with Eq. 21 and Eq. 22 (paper: validation accuracy 0.989 / 0.990,
reverse loss 0.23 / 0.14), over several seeds, resumably.

Each (arm, seed) trains a per-run copy of the committed solver
(solvers/coupled_<net>_<objective>.prototxt; random_seed = the seed) on the
generator's net with your LMDBs, under RUNS_DIR/<arm>/seed<N>/. Finished runs
are skipped, interrupted ones restarted cleanly, so the same command can be
re-run until everything is done; a stopped driver loses only the run in
progress. After every finished run the report is rewritten:
results/coupled_mnist.md (a table per seed and mean +- sd beside the paper's
numbers, the schedule used), coupled_mnist_curves.png (Fig. 1: accuracy and
reverse loss, training dashed, validation solid) and, once seed 1 of an arm
is done, sample grids of its reverse model (python/coupled_sample.py).

Run from anywhere; caffe runs with the repo root as its working directory.
Needs the MNIST LMDBs (tools/make_mnist_lmdb.py) and a built caffe.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
# pycaffe (the report's sampler) quiet; the trainings' own logs are set by caffe_runs
os.environ.setdefault("GLOG_minloglevel", "2")
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import (choice_list, int_list, log, positive_int,  # noqa: E402
                                report_command)

pycaffe_path.add_build_pycaffe(REPO)
from gencaffe.experiments import caffe_runs, coupled_runs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int_list, default=int_list("1-3"),
                        help="seeds, e.g. '1-3' or '1,4' (default: 1-3); each is Caffe's "
                             "random_seed: weight init and every Bernoulli sample")
    parser.add_argument("--arms", type=choice_list(coupled_runs.ARMS, "arm"),
                        default=list(coupled_runs.ARMS),
                        help="comma-separated subset of %s (default: all, in this order)"
                             % ",".join(coupled_runs.ARMS))
    parser.add_argument("--order", choices=("arm", "seed"), default="arm",
                        help="what finishes first: 'arm' = every seed of the first listed arm, "
                             "then the next; 'seed' = all arms of seed 1, then seed 2 "
                             "(default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int,
                        help="train every arm this many epochs instead of its committed "
                             "solver's schedule (dense 10, CNN 3); recorded in each run's spec "
                             "and stated in the report")
    parser.add_argument("--epoch-iterations", type=positive_int,
                        help="smoke runs only: iterations per 'epoch' instead of "
                             "ceil(60000 / batch 32) = 1875 (the test pass stays the full 10k "
                             "images); such runs go to their own runs dir")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="caffe trainings at once (default: 1)")
    parser.add_argument("--threads-per-job", type=positive_int, default=1,
                        help="OMP/OpenBLAS threads per caffe process (default: 1)")
    parser.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools",
                                                        "caffe"),
                        help="caffe binary (default: %(default)s)")
    parser.add_argument("--gpu", type=int, metavar="ID",
                        help="train on this GPU (caffe train -gpu ID; needs a CUDA build)")
    parser.add_argument("--data-dir", default=coupled_runs.DEFAULT_DATA_DIR,
                        help="folder with mnist_train_lmdb and mnist_test_lmdb, relative to the "
                             "repo root or absolute (default: %(default)s)")
    parser.add_argument("--runs-dir",
                        help="run outputs, relative to the repo root (default: %s, or a "
                             "smoke-run folder beside it with --epoch-iterations)"
                             % coupled_runs.DEFAULT_RUNS_DIR)
    parser.add_argument("--results-dir",
                        help="where coupled_mnist.md, the curves and sample grids go, relative "
                             "to the repo root (default: results, or the runs dir for smoke "
                             "runs)")
    parser.add_argument("--no-samples", action="store_true",
                        help="leave the sample grids out of the report (they need pycaffe)")
    parser.add_argument("--retries", type=int, default=1,
                        help="restart a failed caffe run this many more times (default: "
                             "%(default)s)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing; rebuild the report from finished runs")
    parser.add_argument("--progress-every", type=float, default=120.0,
                        help="seconds between progress lines of a running training "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    smoke = args.epoch_iterations is not None
    if args.runs_dir is None:
        args.runs_dir = coupled_runs.DEFAULT_RUNS_DIR + (
            "_smoke%d" % args.epoch_iterations if smoke else "")
    if args.results_dir is None:
        args.results_dir = args.runs_dir if smoke else "results"
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = coupled_runs.Settings(
        repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir=args.runs_dir,
        data_dir=args.data_dir, epochs=args.epochs, epoch_iterations=args.epoch_iterations,
        progress_every_s=args.progress_every, log=log, threads_per_job=args.threads_per_job,
        retries=args.retries, gpu=args.gpu)
    results_dir = os.path.join(REPO, args.results_dir)

    def report():
        from gencaffe.experiments import coupled_report
        # every arm and seed with runs on disk, not only this command's; the
        # report names the training command that covers them all
        arms, seeds = caffe_runs.report_scope(os.path.join(REPO, args.runs_dir), args.arms,
                                              list(coupled_runs.ARMS), args.seeds)
        command = report_command("tools/reproduce_coupled.py", argv, {
            "--seeds": (seeds, args.seeds, None),
            "--arms": (arms, args.arms, list(coupled_runs.ARMS))})
        try:
            path = coupled_report.write_report(settings, arms, seeds, results_dir,
                                               command, samples=not args.no_samples)
            log("report -> %s" % path)
        except Exception as err:  # a report problem must not stop the trainings
            log("report failed: %s: %s" % (type(err).__name__, err))

    if args.report_only:
        report()
        return 0
    pycaffe_path.require_caffe_pb2()
    if not os.access(settings.caffe, os.X_OK):
        log("error: no caffe binary at %s (build first, or pass --caffe)" % settings.caffe)
        return 2
    for db in (settings.lmdb("train"), settings.lmdb("test")):
        if not os.path.isdir(os.path.join(REPO, db)):
            log("error: %s missing; run tools/make_mnist_lmdb.py first (or give --data-dir)" % db)
            return 2

    runner = coupled_runs.Runner(settings)
    if args.order == "arm":
        pairs = [(a, s) for a in args.arms for s in args.seeds]
    else:
        pairs = [(a, s) for s in args.seeds for a in args.arms]
    log("plan: %d arm-seeds, %d job(s), runs in %s" % (len(pairs), args.jobs, args.runs_dir))
    # a worker takes the next task only when one is free: the order holds.
    # Ctrl-C or SIGTERM stops the driver and its caffe processes (caffe_runs.drive)
    tasks = [("%s seed%d" % (a, s), (lambda a=a, s=s: runner.run_arm(a, s))) for a, s in pairs]
    failures = caffe_runs.drive(runner, tasks, args.jobs, report, log)
    return caffe_runs.exit_status(failures, log, "arm-seed(s)")


if __name__ == "__main__":
    sys.exit(main())
