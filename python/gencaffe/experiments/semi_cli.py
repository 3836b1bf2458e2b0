"""tools/reproduce_semi.py's work (Table 3's semi-supervised comparison on
MNIST): which runs the report covers, and the run itself (splits staged,
the (k, seed) pairs trained, the table, plots and diagnostics rewritten
after each)."""
import os

from .. import pycaffe_path
from ..cli_args import log, report_command
from . import caffe_runs, runner_cli, semi_report, semi_runs


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


def run(args, argv, repo) -> int:
    """Train what args ask for, rewriting the table and plots after every
    finished (k, seed) pair; the exit status (0 done, 1 a run failed, 2 bad input)."""
    settings = semi_runs.Settings(
        repo=repo, runs_dir=args.runs_dir,
        data_dir=args.data_dir, splits_dir=args.splits_dir, iterations=args.iterations,
        tests_per_run=args.tests_per_run, labelled_share=args.labelled_share,
        unlabeled_weight=args.unlabeled_weight, uniform_prior=args.uniform_prior,
        balanced=not args.uniform_subset, pool=args.pool or None, evaluate_on=args.evaluate_on,
        **runner_cli.running_settings(args))
    paths = semi_report.ReportPaths.under(os.path.join(repo, args.results_dir))

    def report():
        ks, seeds, approaches = report_scope(os.path.join(repo, args.runs_dir), args)
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
    if runner_cli.caffe_missing(settings) or runner_cli.missing_lmdbs(
            settings, (settings.train_lmdb(), settings.test_lmdb()),
            "run tools/make_mnist_lmdb.py first (or give --data-dir)"):
        return 2
    try:
        semi_runs.stage_split(repo, settings.iterations)
        semi_runs.snapshot_interval(settings)
    except semi_runs.SemiError as err:
        log("error: %s" % err)
        return 2

    pairs = runner_cli.ordered(args.ks, args.seeds, first_outer=False)
    log("plan: %d (k, seed) pairs x %s, %d iterations each, %d job(s), runs in %s"
        % (len(pairs), ",".join(args.approaches), settings.iterations, args.jobs, args.runs_dir))
    runner = semi_runs.Runner(settings)
    return runner_cli.drive(runner, pairs, "k{} seed{}".format,
                            lambda k, seed: runner.run(k, seed, args.approaches), args.jobs,
                            report, "(k, seed) pair(s)")
