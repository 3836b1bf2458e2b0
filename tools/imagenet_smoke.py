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

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import choice_list, positive_int  # noqa: E402
from gencaffe.experiments import runner_cli  # noqa: E402

# gencaffe.experiments.imagenet_smoke's, which loads numpy: the thread
# settings in main() must come first
ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg")


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
    run = runner_cli.add_running_options(
        p, REPO, runs_dir="runs/imagenet_smoke", runs_dir_help="default %(default)s",
        results_dir_help="where imagenet_smoke.md and imagenet_smoke.png go (default "
                         "%(default)s)",
        jobs=min(2, os.cpu_count() or 1),
        jobs_help="trainings at once, and worker processes of the data tools")
    run.add_argument("--eval-batch", type=positive_int, default=10,
                     help="images per forward pass of the 5-crop evaluation (x5 crops) "
                          "(default %(default)s)")
    run.add_argument("--data-only", action="store_true",
                     help="make the stand-in data and its LMDBs (`make imagenet-standin`), then "
                          "stop")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars (data drawing, conversion, evaluation)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # before numpy loads: the evaluation's pycaffe runs in this process after the trainings
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.jobs * args.threads)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import imagenet_smoke_cli
    return imagenet_smoke_cli.run(args, argv, REPO)


if __name__ == "__main__":
    sys.exit(main())
