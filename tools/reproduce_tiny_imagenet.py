#!/usr/bin/env python3
"""Table 2 of Dai, Lu & Wu (2016) on real ImageNet photographs: AlexNet and ZF
trained with DG, GG, GG+DG and a restart control on Tiny ImageNet-200, each
final model evaluated with 5 crops, then a report.

  python3 tools/make_imagenet_lmdb.py /path/to/tiny-imagenet-200 --out-dir data/tiny_imagenet
  python3 tools/reproduce_tiny_imagenet.py            # AlexNet seeds 1-3, ZF seeds 1-2

Approaches: dg, gg, gg_dg (stage 1 = the gg run's snapshot after the switch
epoch, stage 2 the committed stage-2 solver from it with -weights) and
control (the same restart from the dg run's snapshot). The solvers are the
committed solvers/<arch>_tiny_*.prototxt (9 epochs, switch after 6), loaded
and overridden on the way in: net (the generator's, with --lmdb-dir's paths),
max_iter and snapshot_prefix (one epoch per caffe process, see below),
test_iter (the whole val LMDB), test_interval, random_seed, solver_mode;
--epochs sets the run's length and scales the switch with it; the learning
rate steps every 20 epochs whatever the length (none within the default 9),
so --epochs 70 is the paper's whole schedule.

Resumable to the epoch: every run trains one epoch per `caffe train`
process, the next resuming its .solverstate; an epoch is a whole number of
batches and each epoch's seed is fixed, so a run stopped anywhere (Ctrl-C,
SIGTERM, a lost session) and started again by the same command ends with the
same weights as one that never stopped, and loses at most the epoch in
progress. --max-epochs N stops on purpose after N epochs of training.

Output: runs under --runs-dir (default runs/tiny_imagenet), the report
results/tiny_imagenet.md with results/tiny_imagenet.png (curves), rewritten
after every finished epoch from all runs on disk. Needs the CPU build (`make`)
or, with --gpu, a CUDA build (--caffe and CAFFE_BUILD_DIR pointing at it).
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import choice_list, int_list, positive_int  # noqa: E402
from gencaffe.experiments import epoch_runs_cli  # noqa: E402

ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg", "control")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    exp = p.add_argument_group("experiment")
    exp.add_argument("--archs", type=choice_list(ARCHS, "architecture", canonical_order=True),
                     default=list(ARCHS),
                     help="comma-separated subset of alexnet,zf (default both)")
    exp.add_argument("--approaches", type=choice_list(APPROACHES, "approach",
                                                      canonical_order=True),
                     default=list(APPROACHES),
                     help="comma-separated subset of dg,gg,gg_dg,control (default all; gg_dg "
                          "needs the gg run's switch-epoch snapshot and trains it if missing, "
                          "control the dg run's)")
    exp.add_argument("--seeds", type=int_list, default=None,
                     help="seeds for every net, e.g. 1-3 (default: AlexNet 1-3, ZF 1-2, the "
                          "issue's minimum; --alexnet-seeds/--zf-seeds set one net's)")
    exp.add_argument("--alexnet-seeds", type=int_list, default=None, help="AlexNet's seeds")
    exp.add_argument("--zf-seeds", type=int_list, default=None, help="ZF's seeds")
    exp.add_argument("--epochs", type=positive_int, default=None,
                     help="epochs per run (default: the committed solvers' 9); the GG+DG switch "
                          "(6 of 9) scales with it; the learning-rate step stays every 20 epochs")
    exp.add_argument("--batch", type=positive_int, default=None,
                     help="train batch (default: the committed nets' 250, which divides the "
                          "60,000 train images; with another, epochs do not end on batch "
                          "boundaries and each epoch starts at the first record)")
    data = p.add_argument_group("data")
    data.add_argument("--lmdb-dir", default="data/tiny_imagenet",
                      help="tools/make_imagenet_lmdb.py's output for tiny-imagenet-200 "
                           "(train_lmdb, val_lmdb, mean.binaryproto, classes.txt); relative to "
                           "the repo root or absolute (default %(default)s)")
    epoch_runs_cli.add_running_options(p, REPO, "runs/tiny_imagenet", "tiny_imagenet")
    return p


def seeds_of(args):
    from gencaffe.experiments import tiny_imagenet as tiny
    seeds = {arch: list(args.seeds or tiny.DEFAULT_SEEDS[arch]) for arch in ARCHS}
    if args.alexnet_seeds:
        seeds["alexnet"] = args.alexnet_seeds
    if args.zf_seeds:
        seeds["zf"] = args.zf_seeds
    return seeds


def make_settings(args):
    from gencaffe.experiments import tiny_imagenet as tiny
    return tiny.Settings(repo=REPO, lmdb_dir=args.lmdb_dir, archs=args.archs,
                         approaches=args.approaches, seeds=seeds_of(args), epochs=args.epochs,
                         train_batch=args.batch, **epoch_runs_cli.running_settings(args))


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import tiny_imagenet, tiny_imagenet_report
    return epoch_runs_cli.main(make_settings(args), args, argv,
                               epoch_runs_cli.report_paths(REPO, args, "tiny_imagenet"),
                               tiny_imagenet.tasks, tiny_imagenet_report.writer)


if __name__ == "__main__":
    sys.exit(main())
