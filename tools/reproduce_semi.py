#!/usr/bin/env python3
"""Semi-supervised LeNet on MNIST with few labels: for each number of labels k
and seed, a class-balanced k-label split of the first 50,000 train images (the
seed picks the subset and is Caffe's random_seed), then three approaches with
the same budget of training iterations (batch 64):

  dg          DG on the k labelled images alone
  semi_gg     semi-supervised GG (journal Eq. 19, lambda 0.1) on mixed batches of
              the labelled subset and the unlabelled rest
  semi_gg_dg  semi-supervised GG, then DG tuning on the labelled subset
              (-weights, base_lr 0.003); the budget split 16 : 9 as the paper's
              MNIST GG+DG

Finished runs are skipped and interrupted ones restarted cleanly, so the same
command can be re-run until everything is done; the table, the plot of error
against k and the diagnostics of the unlabelled term (what its arg-max class and
the ESS do over training) are rewritten after every finished (k, seed).

  tools/reproduce_semi.py --ks 100,600,1000,3000 --seeds 1-5 --iterations 3000 --jobs 2
  tools/reproduce_semi.py --report-only

Outputs: runs under runs/mnist_semi/ (see gencaffe.experiments.semi_runs),
splits under data/mnist/semi_splits/, and results/mnist_semi.md,
results/mnist_semi.png, results/mnist_semi_diagnostics.png. Needs the MNIST
LMDBs (tools/make_mnist_lmdb.py) and a built caffe and pycaffe.
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
# pycaffe (the diagnostics) logs every net it loads; the caffe trainings get
# their own INFO log regardless (caffe_runs)
os.environ.setdefault("GLOG_minloglevel", "2")
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import (choice_list, int_list, non_negative_float,  # noqa: E402
                               non_negative_int, open_share, positive_int)  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)
from gencaffe.experiments import runner_cli, semi_cli, semi_runs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ks", type=int_list, default=list(semi_runs.DEFAULT_KS),
                   help="numbers of labelled images (default: 100,600,1000,3000)")
    p.add_argument("--seeds", type=int_list, default=int_list("1-5"),
                   help="seeds, e.g. '1-5' (default); each picks the labelled subset and is "
                        "Caffe's random_seed")
    p.add_argument("--approaches",
                   type=choice_list(semi_runs.APPROACHES, "approach", canonical_order=True),
                   default=list(semi_runs.APPROACHES),
                   help="comma-separated subset of %s (default: all)"
                        % ",".join(semi_runs.APPROACHES))
    p.add_argument("--iterations", type=positive_int, default=3000,
                   help="training budget of every approach in iterations of the 64-image batch "
                        "(default: %(default)s; the paper's MNIST budget is 25 epochs = 23450); "
                        "semi_gg_dg splits it 16 : 9 between its stages. Runs of another budget "
                        "go to another runs dir")
    p.add_argument("--tests-per-run", type=positive_int, default=5,
                   help="test passes per run besides iteration 0 (default: %(default)s); the "
                        "last is at the final iteration")
    p.add_argument("--labelled-share", type=open_share, default=None,
                   help="share of each semi-supervised batch taken from the labelled subset "
                        "(default: the net generator's, DEFAULT_LABELLED_SHARE)")
    p.add_argument("--unlabeled-weight", type=non_negative_float, default=None,
                   help="lambda of Eq. 19 (default: the generator's, 0.1 as the paper)")
    p.add_argument("--uniform-prior", action="store_true",
                   help="class prior rho uniform instead of the labelled subset's class "
                        "frequencies (the same for balanced subsets)")
    p.add_argument("--uniform-subset", action="store_true",
                   help="choose the labelled images uniformly at random (the paper's ImageNet "
                        "choice) instead of class-balanced (the MNIST protocol of the published "
                        "numbers the table cites)")
    p.add_argument("--pool", type=non_negative_int, default=semi_runs.DEFAULT_POOL,
                   help="split the first N train images (default: %(default)s, the classic "
                        "train part; 0 = all 60,000)")
    p.add_argument("--evaluate-on", choices=("test", "holdout"), default="test",
                   help="'test': the 10,000 test images (default); 'holdout': the train images "
                        "after --pool, for choosing settings without the test set")
    p.add_argument("--data-dir", default="data/mnist",
                   help="folder with mnist_train_lmdb and mnist_test_lmdb (default: %(default)s)")
    p.add_argument("--splits-dir", default="data/mnist/semi_splits",
                   help="where the splits go, one folder per k and seed (default: %(default)s)")
    p.add_argument("--diagnostic-batches", type=non_negative_int, default=20,
                   help="mixed batches per semi_gg snapshot for the diagnostics (default: "
                        "%(default)s; 0 = no diagnostics)")
    runner_cli.add_running_options(
        p, REPO,
        runs_dir_help="default runs/mnist_semi, or runs/mnist_semi_<iterations> for a budget "
                      "other than 3000, with _holdout for --evaluate-on holdout",
        results_dir_help="where mnist_semi.md and the PNGs go (default %(default)s; the runs "
                         "dir for --evaluate-on holdout)")
    args = p.parse_args(argv)
    if args.runs_dir is None:
        args.runs_dir = "runs/mnist_semi" + ("" if args.iterations == 3000
                                             else "_%d" % args.iterations)
        if args.evaluate_on == "holdout":
            args.runs_dir += "_holdout"
    if args.evaluate_on == "holdout" and args.results_dir == "results":
        args.results_dir = args.runs_dir
    return args


def main(argv=None):
    return semi_cli.run(parse_args(argv), argv, REPO)


if __name__ == "__main__":
    sys.exit(main())
