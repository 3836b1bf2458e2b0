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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
# pycaffe (the diagnostics) logs every net it loads; the caffe trainings get
# their own INFO log regardless (caffe_runs)
os.environ.setdefault("GLOG_minloglevel", "2")
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import choice_list, int_list, log, report_command  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)
from gencaffe.experiments import caffe_runs, semi_report, semi_runs  # noqa: E402


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
    p.add_argument("--iterations", type=int, default=3000,
                   help="training budget of every approach in iterations of the 64-image batch "
                        "(default: %(default)s; the paper's MNIST budget is 25 epochs = 23450); "
                        "semi_gg_dg splits it 16 : 9 between its stages. Runs of another budget "
                        "go to another runs dir")
    p.add_argument("--tests-per-run", type=int, default=5,
                   help="test passes per run besides iteration 0 (default: %(default)s); the "
                        "last is at the final iteration")
    p.add_argument("--labelled-share", type=float, default=None,
                   help="share of each semi-supervised batch taken from the labelled subset "
                        "(default: the net generator's, DEFAULT_LABELLED_SHARE)")
    p.add_argument("--unlabeled-weight", type=float, default=None,
                   help="lambda of Eq. 19 (default: the generator's, 0.1 as the paper)")
    p.add_argument("--uniform-prior", action="store_true",
                   help="class prior rho uniform instead of the labelled subset's class "
                        "frequencies (the same for balanced subsets)")
    p.add_argument("--uniform-subset", action="store_true",
                   help="choose the labelled images uniformly at random (the paper's ImageNet "
                        "choice) instead of class-balanced (the MNIST protocol of the published "
                        "numbers the table cites)")
    p.add_argument("--pool", type=int, default=semi_runs.DEFAULT_POOL,
                   help="split the first N train images (default: %(default)s, the classic "
                        "train part; 0 = all 60,000)")
    p.add_argument("--evaluate-on", choices=("test", "holdout"), default="test",
                   help="'test': the 10,000 test images (default); 'holdout': the train images "
                        "after --pool, for choosing settings without the test set")
    p.add_argument("--jobs", type=int, default=1,
                   help="how many caffe trainings at once (default: 1)")
    p.add_argument("--threads-per-job", type=int, default=1,
                   help="OMP/OpenBLAS threads per caffe process (default: 1)")
    p.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools", "caffe"),
                   help="caffe binary (default: %(default)s)")
    p.add_argument("--gpu", type=int, metavar="ID", help="train on this GPU (caffe train -gpu ID)")
    p.add_argument("--data-dir", default="data/mnist",
                   help="folder with mnist_train_lmdb and mnist_test_lmdb (default: %(default)s)")
    p.add_argument("--splits-dir", default="data/mnist/semi_splits",
                   help="where the splits go, one folder per k and seed (default: %(default)s)")
    p.add_argument("--runs-dir", default=None,
                   help="run outputs (default: runs/mnist_semi, or runs/mnist_semi_<iterations> "
                        "for a budget other than 3000, with _holdout for --evaluate-on holdout)")
    p.add_argument("--results-dir", default="results",
                   help="where mnist_semi.md and the PNGs go (default: %(default)s; the runs dir "
                        "for --evaluate-on holdout)")
    p.add_argument("--diagnostic-batches", type=int, default=20,
                   help="mixed batches per semi_gg snapshot for the diagnostics (default: "
                        "%(default)s; 0 = no diagnostics)")
    p.add_argument("--retries", type=int, default=1,
                   help="restart a failed caffe run this many more times (default: %(default)s)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing; rebuild the table and plots from finished runs")
    p.add_argument("--progress-every", type=float, default=120.0,
                   help="seconds between progress lines of a running training (default: 120)")
    args = p.parse_args(argv)
    if args.runs_dir is None:
        args.runs_dir = "runs/mnist_semi" + ("" if args.iterations == 3000
                                             else "_%d" % args.iterations)
        if args.evaluate_on == "holdout":
            args.runs_dir += "_holdout"
    if args.evaluate_on == "holdout" and args.results_dir == "results":
        args.results_dir = args.runs_dir
    return args


def report_scope(runs_dir, args):
    """(ks, seeds, approaches) the report covers: those asked for widened by
    the runs on disk (runs_dir/k<k>/seed<N>/<approach>), so that a command run
    on a subset does not drop earlier commands' results from the report."""
    ks = caffe_runs.widened(args.ks, caffe_runs.numbered_folders(runs_dir, "k"))
    seed_dirs = {k: os.path.join(runs_dir, "k%d" % k) for k in ks}
    seeds = caffe_runs.widened(args.seeds, [seed for k in ks for seed in
                                            caffe_runs.numbered_folders(seed_dirs[k], "seed")])
    found = [a for a in semi_runs.APPROACHES for k in ks for seed in seeds
             if os.path.isdir(os.path.join(seed_dirs[k], "seed%d" % seed, a))]
    return ks, seeds, caffe_runs.widened(args.approaches, found, order=semi_runs.APPROACHES)


def main(argv=None):
    args = parse_args(argv)
    settings = semi_runs.Settings(
        repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir=args.runs_dir,
        data_dir=args.data_dir, splits_dir=args.splits_dir, iterations=args.iterations,
        tests_per_run=args.tests_per_run, labelled_share=args.labelled_share,
        unlabeled_weight=args.unlabeled_weight, uniform_prior=args.uniform_prior,
        balanced=not args.uniform_subset, pool=args.pool or None, evaluate_on=args.evaluate_on,
        log=log, progress_every_s=args.progress_every, threads_per_job=args.threads_per_job,
        retries=args.retries, gpu=args.gpu)
    paths = semi_report.ReportPaths.under(os.path.join(REPO, args.results_dir))

    def report():
        ks, seeds, approaches = report_scope(os.path.join(REPO, args.runs_dir), args)
        command = report_command("tools/reproduce_semi.py", argv, {
            "--ks": (ks, args.ks, None), "--seeds": (seeds, args.seeds, None),
            "--approaches": (approaches, args.approaches, None)})
        results = semi_report.write_report(settings, ks, seeds, approaches, paths,
                                           command, diagnostic_batches=args.diagnostic_batches)
        log("report: %d/%d runs finished -> %s" % (
            sum(r.complete for r in results.values()), len(results), paths.table))

    if args.report_only:
        report()
        return 0
    pycaffe_path.require_caffe_pb2()
    if not os.access(settings.caffe, os.X_OK):
        log("error: no caffe binary at %s (build first, or pass --caffe)" % settings.caffe)
        return 2
    for db in (settings.train_lmdb(), settings.test_lmdb()):
        if not os.path.isfile(os.path.join(settings.path(db), "data.mdb")):
            log("error: %s missing; run tools/make_mnist_lmdb.py first (or give --data-dir)" % db)
            return 2
    try:
        semi_runs.stage_split(REPO, settings.iterations)
        semi_runs.snapshot_interval(settings)
    except semi_runs.SemiError as err:
        log("error: %s" % err)
        return 2

    runner = semi_runs.Runner(settings)
    pairs = [(k, seed) for seed in args.seeds for k in args.ks]
    log("plan: %d (k, seed) pairs x %s, %d iterations each, %d job(s), runs in %s"
        % (len(pairs), ",".join(args.approaches), settings.iterations, args.jobs, args.runs_dir))
    # Ctrl-C or SIGTERM stops the driver and its caffe processes (caffe_runs.drive)
    tasks = [("k%d seed%d" % (k, seed), (lambda k=k, seed=seed: runner.run(k, seed, args.approaches)))
             for k, seed in pairs]
    failures = caffe_runs.drive(runner, tasks, args.jobs, report, log)
    return caffe_runs.exit_status(failures, log, "(k, seed) pair(s)")


if __name__ == "__main__":
    sys.exit(main())
