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

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
# pycaffe (the report's sampler) quiet; the trainings' own logs are set by caffe_runs
os.environ.setdefault("GLOG_minloglevel", "2")
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import choice_list, int_list, positive_int  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)
from gencaffe.experiments import coupled_cli, coupled_runs, runner_cli  # noqa: E402


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
    parser.add_argument("--data-dir", default=coupled_runs.DEFAULT_DATA_DIR,
                        help="folder with mnist_train_lmdb and mnist_test_lmdb, relative to the "
                             "repo root or absolute (default: %(default)s)")
    parser.add_argument("--no-samples", action="store_true",
                        help="leave the sample grids out of the report (they need pycaffe)")
    runner_cli.add_running_options(
        parser, REPO,
        runs_dir_help="default %s, or a smoke-run folder beside it with --epoch-iterations"
                      % coupled_runs.DEFAULT_RUNS_DIR,
        results_dir=None,
        results_dir_help="where coupled_mnist.md, the curves and sample grids go (default "
                         "results, or the runs dir for smoke runs)")
    args = parser.parse_args(argv)
    smoke = args.epoch_iterations is not None
    if args.runs_dir is None:
        args.runs_dir = coupled_runs.DEFAULT_RUNS_DIR + (
            "_smoke%d" % args.epoch_iterations if smoke else "")
    if args.results_dir is None:
        args.results_dir = args.runs_dir if smoke else "results"
    return args


def main(argv=None):
    return coupled_cli.run(parse_args(argv), argv, REPO)


if __name__ == "__main__":
    sys.exit(main())
