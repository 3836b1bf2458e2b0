#!/usr/bin/env python3
"""Table 3 of Dai, Lu & Wu (2016) on real ImageNet photographs: AlexNet on Tiny
ImageNet-200 with few labels, semi-supervised GG (Eq. 19) then DG tuning,
against DG on the labelled images alone, each final model evaluated with 5
crops, then a report.

  python3 tools/make_imagenet_lmdb.py /path/to/tiny-imagenet-200 --out-dir data/tiny_imagenet
  python3 tools/reproduce_tiny_imagenet_semi.py     # 3 fractions x seeds 1-2

Labelled fractions: the paper's 50,000 / 100,000 / 300,000 of ILSVRC-2012's
1,281,167 train images (3.9 / 7.8 / 23.4 %), i.e. 2,342 / 4,683 / 14,050 of
Tiny ImageNet's 60,000; each split is made by tools/make_semi_split.py's
code (uniformly at random, the paper's choice; --balanced for class-balanced),
the seed picking the subset. Approaches, with the same budget: dg (DG on the
labelled subset, 9 epochs), semi_gg (semi-supervised GG on mixed batches, 6
epochs, evaluated on its own too) and semi_gg_dg (its snapshot, then 3
epochs of DG tuning on the labelled subset at base_lr 0.003). Solvers:
solvers/alexnet_tiny_semi_{dg,gg,dg_tune}.prototxt, overridden as
tools/reproduce_tiny_imagenet.py does; resumable to the epoch in the same way
(--max-epochs N to stop on purpose).

Output: splits under --splits-dir, runs under --runs-dir, the report
results/tiny_imagenet_semi.md + .png, rewritten after every epoch.
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import (choice_list, int_list, non_negative_float,  # noqa: E402
                               non_negative_int, open_share, positive_int)  # noqa: E402
from gencaffe.experiments import epoch_runs_cli  # noqa: E402

FRACTIONS = ("50k", "100k", "300k")
APPROACHES = ("dg", "semi_gg", "semi_gg_dg")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    exp = p.add_argument_group("experiment")
    exp.add_argument("--fractions", type=choice_list(FRACTIONS, "fraction", canonical_order=True),
                     default=list(FRACTIONS),
                     help="comma-separated subset of 50k,100k,300k: Table 3's labelled counts "
                          "as shares of the train set (default all)")
    exp.add_argument("--seeds", type=int_list, default=None,
                     help="seeds (each picks its own labelled subset and initial weights; "
                          "default 1-2)")
    exp.add_argument("--approaches", type=choice_list(APPROACHES, "approach",
                                                      canonical_order=True),
                     default=list(APPROACHES),
                     help="comma-separated subset of dg,semi_gg,semi_gg_dg (default all)")
    exp.add_argument("--balanced", action="store_true",
                     help="class-balanced labelled subsets (default: uniformly at random, as "
                          "the paper)")
    exp.add_argument("--labelled-share", type=open_share, default=None,
                     help="labelled share of each semi-supervised batch (default: the subset's "
                          "share of the train set, as the paper's random batches)")
    exp.add_argument("--unlabeled-weight", type=non_negative_float, default=None,
                     help="lambda of Eq. 19, >= 0 (default: the paper's 0.1; 0 keeps the "
                          "unlabelled images as importance samples only)")
    exp.add_argument("--uniform-prior", action="store_true",
                     help="rho of Eq. 19 uniform, 1/C (default: the labelled subset's class "
                          "frequencies, the paper's 'class frequency'; with few labels per class "
                          "those are noisy estimates of a balanced set's prior)")
    exp.add_argument("--epochs", type=positive_int, default=None,
                     help="epochs per approach (default: the committed solvers' 9; the switch "
                          "to DG tuning, 6, scales with it; the learning-rate step stays every 20 "
                          "epochs)")
    exp.add_argument("--batch", type=positive_int, default=None,
                     help="train batch (default: the committed nets' 250; epochs of 60,000 "
                          "images are then whole batches)")
    exp.add_argument("--diagnostic-batches", type=non_negative_int, default=20,
                     help="mixed batches per semi GG epoch snapshot for the unlabelled term's "
                          "diagnostics and the Bayes-rule reading in the report (default "
                          "%(default)s; 0 = none)")
    data = p.add_argument_group("data")
    data.add_argument("--lmdb-dir", default="data/tiny_imagenet",
                      help="tools/make_imagenet_lmdb.py's output for tiny-imagenet-200 "
                           "(default %(default)s)")
    data.add_argument("--splits-dir", default="data/tiny_imagenet/semi",
                      help="where the splits go, one folder per fraction and seed "
                           "(default %(default)s)")
    epoch_runs_cli.add_running_options(p, REPO, "runs/tiny_imagenet_semi", "tiny_imagenet_semi")
    return p


def make_settings(args):
    from gencaffe.experiments import tiny_imagenet_semi as semi
    seeds = list(args.seeds or semi.DEFAULT_SEEDS)
    return semi.Settings(
        repo=REPO, lmdb_dir=args.lmdb_dir, splits_dir=args.splits_dir,
        fractions=args.fractions, semi_seeds=seeds, seeds={semi.ARCH: seeds},
        train_batch=args.batch, approaches=args.approaches, balanced=args.balanced,
        labelled_share=args.labelled_share, unlabeled_weight=args.unlabeled_weight,
        uniform_prior=args.uniform_prior,
        epochs=args.epochs, diagnostic_batches=args.diagnostic_batches,
        **epoch_runs_cli.running_settings(args))


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import tiny_imagenet_semi as semi
    from gencaffe.experiments import tiny_imagenet_semi_report as report
    settings = make_settings(args)
    return epoch_runs_cli.main(settings, args, argv,
                               epoch_runs_cli.report_paths(REPO, args, "tiny_imagenet_semi"),
                               semi.tasks, report.writer)


if __name__ == "__main__":
    sys.exit(main())
