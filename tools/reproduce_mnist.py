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

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import choice_list, int_list  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2, for reading/writing solvers
from gencaffe.experiments import mnist_cli, mnist_runs, runner_cli  # noqa: E402


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
    parser.add_argument("--order", choices=("seed", "approach"), default="seed",
                        help="with few jobs, what finishes first: 'seed' = all approaches of seed 1, "
                             "then seed 2, ...; 'approach' = every seed of the first listed "
                             "approach, then the next (default: %(default)s)")
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
    runner_cli.add_running_options(
        parser, REPO,
        runs_dir_help="default runs/mnist for the paper's setup, otherwise "
                      "runs/<name>[_e<epochs>g<gg epochs>][_c<classes>][_smoke<N>], so that runs "
                      "of other data or schedules never replace them",
        results_dir=None,
        results_dir_help="where mnist_table1.md and mnist_curves.png go (default results for "
                         "MNIST from data/mnist with the paper's schedule, else the runs dir)")
    args = parser.parse_args(argv)
    if args.epochs_scale is not None and args.epoch_iterations is not None:
        parser.error("--epochs-scale is the old spelling of --epoch-iterations; give one")
    return args


def main(argv=None):
    return mnist_cli.run(parse_args(argv), argv, REPO)


if __name__ == "__main__":
    sys.exit(main())
