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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe.cli_args import choice_list, int_list, log, positive_int  # noqa: E402

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
    exp.add_argument("--seeds", type=int_list, default=[1, 2],
                     help="seeds (each picks its own labelled subset and initial weights; "
                          "default 1-2)")
    exp.add_argument("--approaches", type=choice_list(APPROACHES, "approach",
                                                      canonical_order=True),
                     default=list(APPROACHES),
                     help="comma-separated subset of dg,semi_gg,semi_gg_dg (default all)")
    exp.add_argument("--balanced", action="store_true",
                     help="class-balanced labelled subsets (default: uniformly at random, as "
                          "the paper)")
    exp.add_argument("--labelled-share", type=float, default=0.0,
                     help="labelled share of each semi-supervised batch (default: the subset's "
                          "share of the train set, as the paper's random batches)")
    exp.add_argument("--unlabeled-weight", type=float, default=0.0,
                     help="lambda of Eq. 19 (default: the paper's 0.1)")
    exp.add_argument("--epochs", type=positive_int, default=None,
                     help="epochs per approach (default: the committed solvers' 9; the switch "
                          "to DG tuning, 6, and the learning-rate step scale with it)")
    exp.add_argument("--batch", type=positive_int, default=None,
                     help="train batch (default: the committed nets' 250; epochs of 60,000 "
                          "images are then whole batches)")
    data = p.add_argument_group("data")
    data.add_argument("--lmdb-dir", default="data/tiny_imagenet",
                      help="tools/make_imagenet_lmdb.py's output for tiny-imagenet-200 "
                           "(default %(default)s)")
    data.add_argument("--splits-dir", default="data/tiny_imagenet/semi",
                      help="where the splits go, one folder per fraction and seed "
                           "(default %(default)s)")
    run = p.add_argument_group("running")
    run.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools",
                                                     "caffe"),
                     help="the caffe binary (default %(default)s)")
    run.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                     help="runs at once (default %(default)s)")
    run.add_argument("--threads", type=positive_int, default=1,
                     help="BLAS/OpenMP threads per caffe process (default %(default)s)")
    run.add_argument("--gpu", type=int, metavar="ID", default=None,
                     help="train and evaluate on this GPU")
    run.add_argument("--eval-batch", type=positive_int, default=50,
                     help="images per forward pass of the 5-crop evaluation (default %(default)s)")
    run.add_argument("--max-epochs", type=positive_int, default=None,
                     help="train at most N epochs in this call, then stop (rerun to go on)")
    run.add_argument("--runs-dir", default="runs/tiny_imagenet_semi",
                     help="run directories, relative to the repo root (default %(default)s)")
    run.add_argument("--results-dir", default="results",
                     help="where tiny_imagenet_semi.md and .png go (default %(default)s)")
    run.add_argument("--retries", type=int, default=1,
                     help="retrain an epoch whose caffe failed this many more times "
                          "(default %(default)s)")
    run.add_argument("--report-only", action="store_true",
                     help="train nothing; rewrite the report from the runs on disk")
    run.add_argument("--progress-every", type=float, default=120.0,
                     help="seconds between progress lines of a running epoch (default "
                          "%(default)s)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import caffe_runs
    from gencaffe.experiments import tiny_imagenet as tiny
    from gencaffe.experiments import tiny_imagenet_semi as semi
    from gencaffe.experiments import tiny_imagenet_semi_report as report
    settings = semi.Settings(
        repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir=args.runs_dir,
        lmdb_dir=args.lmdb_dir, splits_dir=args.splits_dir, fractions=args.fractions,
        semi_seeds=args.seeds, seeds={semi.ARCH: args.seeds}, train_batch=args.batch,
        approaches=args.approaches, balanced=args.balanced,
        labelled_share=args.labelled_share, unlabeled_weight=args.unlabeled_weight,
        epochs=args.epochs, eval_batch=args.eval_batch, chunk_limit=args.max_epochs, log=log,
        progress_every_s=args.progress_every, threads_per_job=args.threads,
        retries=args.retries, jobs=args.jobs, gpu=args.gpu)
    paths = (os.path.join(REPO, args.results_dir, "tiny_imagenet_semi.md"),
             os.path.join(REPO, args.results_dir, "tiny_imagenet_semi.png"))
    try:
        data = tiny.prepare(settings)
        log("data: %s: %d classes, %d train / %d val images"
            % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
        write = report.writer(settings, data, paths, argv)
        if args.report_only:
            write()
            log("report: %s, %s" % paths)
            return 0
        if not os.access(settings.caffe, os.X_OK):
            raise tiny.TinyError("no caffe binary at %s (build first with `make`, or pass "
                                 "--caffe)" % settings.caffe)
        runner = tiny.Runner(settings, data=data)
        work = semi.tasks(settings, runner, data)   # splits made, nets and solvers checked
    except tiny.TinyError as err:
        log("error: %s" % err)
        return 2
    log("plan: %s; %d epoch(s) of training to do, %d run(s) at a time"
        % ("; ".join(label for label, _ in work), runner.epochs_left, args.jobs))
    failures = caffe_runs.drive(runner, work, args.jobs, write, log)
    stopped = [f for f in failures if isinstance(f[1], tiny.ChunkLimitReached)]
    if stopped and len(stopped) == len(failures):
        log("stopped after %d epoch(s) as asked (--max-epochs); the same command goes on"
            % args.max_epochs)
        return 0
    return caffe_runs.exit_status(failures, log, "task(s)")


if __name__ == "__main__":
    sys.exit(main())
