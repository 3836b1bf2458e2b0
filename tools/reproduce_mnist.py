#!/usr/bin/env python3
"""Reproduce Table 1 of Dai, Lu & Wu (MNIST / LeNet: DG, GG, GG+DG), plus an
automatic GG->DG switch on the logged ESS fraction, over several seeds.

Each (approach, seed) trains with a per-run copy of the committed solver
(random_seed set, outputs under RUNS_DIR/<approach>/seed<N>/); the committed
solvers are never edited. Finished runs are skipped, interrupted ones restarted
cleanly, so the same command can be re-run until everything is done. After
every finished approach/seed the table and curves are rewritten.

Run from anywhere; caffe runs with the repo root as its working directory.
Needs the MNIST LMDBs (tools/make_mnist_lmdb.py) and a built caffe.
"""
import argparse
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe import pycaffe_path  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2, for reading/writing solvers
from gencaffe.experiments import mnist_report, mnist_runs  # noqa: E402


def parse_seeds(text):
    """'1-5' or '1,2,7' or '1-3,9' -> [1, 2, ...]"""
    seeds = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            seeds.extend(range(int(low), int(high) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds in %r" % text)
    return seeds


def parse_approaches(text):
    approaches = [a for a in text.split(",") if a]
    unknown = set(approaches) - set(mnist_runs.APPROACHES)
    if unknown or not approaches:
        raise argparse.ArgumentTypeError("unknown approach(es) %s; choose from %s"
                                         % (sorted(unknown), ",".join(mnist_runs.APPROACHES)))
    return approaches


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-5"),
                        help="seeds to run, e.g. '1-5' or '1,3,8' (default: 1-5); each is Caffe's "
                             "random_seed for weight init (the data order is the LMDB's)")
    parser.add_argument("--approaches", type=parse_approaches, default=list(mnist_runs.APPROACHES),
                        help="comma-separated subset of %s (default: all). gg_dg_auto needs the "
                             "gg run of the same seed and trains it if missing"
                             % ",".join(mnist_runs.APPROACHES))
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="scale the epoch length (938 iterations) for quick smoke runs, e.g. "
                             "0.04 -> 38 iterations per 'epoch'; the test set stays the full 10k. "
                             "Scaled runs go to their own runs dir and are not paper-comparable "
                             "(default: 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="how many caffe trainings at once (default: 1); each uses "
                             "--threads-per-job BLAS/OpenMP threads")
    parser.add_argument("--threads-per-job", type=int, default=1,
                        help="OMP/OpenBLAS threads per caffe process (default: 1)")
    parser.add_argument("--order", choices=("seed", "approach"), default="seed",
                        help="with few jobs, what finishes first: 'seed' = all approaches of seed 1, "
                             "then seed 2, ...; 'approach' = every seed of the first listed "
                             "approach, then the next (default: %(default)s)")
    parser.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools", "caffe"),
                        help="caffe binary (default: %(default)s)")
    parser.add_argument("--gpu", type=int, metavar="ID",
                        help="train on this GPU (caffe train -gpu ID; needs a CUDA build) "
                             "instead of the CPU; the table names the device of each run")
    parser.add_argument("--data-dir", default=mnist_runs.DEFAULT_DATA_DIR,
                        help="folder with mnist_train_lmdb and mnist_test_lmdb, relative to the "
                             "repo root or absolute (default: %(default)s, what "
                             "tools/make_mnist_lmdb.py writes); each run writes its own nets "
                             "reading them")
    parser.add_argument("--ess-threshold", type=float, default=0.15,
                        help="gg_dg_auto switches to DG after the first epoch whose test ESS "
                             "fraction (mean over classes of ESS_c/N, the GenerativeLoss 'ess' top) "
                             "is below this (default: %(default)s). The fraction starts near 1 and "
                             "falls towards 1/C (0.1 for MNIST) as each class column's importance "
                             "weights concentrate on that class's own ~N/C examples, i.e. as the "
                             "classes separate from q(x); it then stays just under 1/C. A threshold "
                             "at or below 1/C would hinge on that small residual, so the default "
                             "sits clearly above it")
    parser.add_argument("--runs-dir", default=None,
                        help="run outputs, relative to the repo root (default: runs/mnist, or "
                             "runs/mnist_scale<S> when --epochs-scale != 1)")
    parser.add_argument("--results-dir", default=None,
                        help="where mnist_table1.md and mnist_curves.png go, relative to the repo "
                             "root (default: results, or the runs dir for scaled runs)")
    parser.add_argument("--retries", type=int, default=1,
                        help="restart a run whose caffe process failed this many more times before "
                             "giving up on it (default: %(default)s); a second invocation of this "
                             "tool retries failed runs anyway")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing; rebuild the table and curves from finished runs")
    parser.add_argument("--progress-every", type=float, default=120.0,
                        help="seconds between progress lines of a running training (default: 120)")
    args = parser.parse_args(argv)
    if args.runs_dir is None:
        args.runs_dir = os.path.join("runs", "mnist" if args.epochs_scale == 1
                                     else "mnist_scale%g" % args.epochs_scale)
    if args.results_dir is None:
        args.results_dir = "results" if args.epochs_scale == 1 else args.runs_dir
    return args


def log(message):
    print("%s %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt()


def main(argv=None):
    args = parse_args(argv)
    settings = mnist_runs.Settings(repo=REPO, caffe=os.path.abspath(args.caffe), runs_dir=args.runs_dir,
                                   epochs_scale=args.epochs_scale, ess_threshold=args.ess_threshold,
                                   progress_every_s=args.progress_every, log=log,
                                   threads_per_job=args.threads_per_job, retries=args.retries,
                                   gpu=args.gpu, data_dir=args.data_dir)
    table_path = os.path.join(REPO, args.results_dir, "mnist_table1.md")
    curves_path = os.path.join(REPO, args.results_dir, "mnist_curves.png")
    command = "tools/reproduce_mnist.py " + " ".join(argv if argv is not None else sys.argv[1:])

    def report():
        results = mnist_report.write_report(settings, args.approaches, args.seeds, table_path,
                                            curves_path, command)
        finished = sum(r.complete for rs in results.values() for r in rs)
        log("report: %d/%d approach-seeds finished -> %s, %s" % (
            finished, len(args.approaches) * len(args.seeds), table_path, curves_path))

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

    # SIGTERM (e.g. `kill PID`) stops the driver like Ctrl-C: children are terminated.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    runner = mnist_runs.Runner(settings)
    if args.order == "seed":
        tasks = [(approach, seed) for seed in args.seeds for approach in args.approaches]
    else:
        tasks = [(approach, seed) for approach in args.approaches for seed in args.seeds]
    failures = []
    reported_after = -1  # report once at the start of the loop, then after each new training
    log("plan: %d approach-seeds, %d job(s), runs in %s" % (len(tasks), args.jobs, args.runs_dir))
    # No `with` block: its exit would join the worker threads, which wait on caffe
    # processes, so an interrupt would hang until the current trainings finished.
    pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))
    try:
        pending = {pool.submit(runner.run_approach, approach, seed): (approach, seed)
                   for approach, seed in tasks}
        while pending:
            # A timeout, so the main thread runs Python code every second and a
            # SIGTERM/Ctrl-C is acted upon promptly.
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                approach, seed = pending.pop(future)
                try:
                    future.result()
                except Exception as err:  # one failed run must not stop the others
                    failures.append((approach, seed, err))
                    log("FAILED %s seed%d: %s" % (approach, seed, err))
                if runner.trainings_finished != reported_after:
                    reported_after = runner.trainings_finished
                    report()
    except KeyboardInterrupt:
        log("interrupted: stopping caffe processes (unfinished runs restart cleanly next time)")
        runner.registry.terminate_all()
        os._exit(130)  # worker threads may still be in waits; do not join them
    pool.shutdown()
    report()
    if failures:
        log("%d approach-seed(s) failed: %s" % (len(failures), ", ".join(
            "%s seed%d" % (a, s) for a, s, _ in failures)))
        return 1
    log("all done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
