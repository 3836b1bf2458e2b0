"""tools/reproduce_coupled.py's work (the coupled recognition/generation nets
on MNIST): the arm-seed runs in the asked order, and the report rewritten
after each, covering every run on disk."""
import os

from .. import pycaffe_path
from ..cli_args import log, report_command
from . import caffe_runs, coupled_runs, runner_cli


def run(args, argv, repo) -> int:
    """Train what args ask for, rewriting the report after every finished
    arm-seed; the exit status (0 done, 1 a run failed, 2 bad input)."""
    settings = coupled_runs.Settings(
        repo=repo, runs_dir=args.runs_dir, data_dir=args.data_dir, epochs=args.epochs,
        epoch_iterations=args.epoch_iterations, **runner_cli.running_settings(args))
    results_dir = os.path.join(repo, args.results_dir)

    def report():
        from . import coupled_report
        # every arm and seed with runs on disk, not only this command's; the
        # report names the training command that covers them all
        arms, seeds = caffe_runs.report_scope(os.path.join(repo, args.runs_dir), args.arms,
                                              list(coupled_runs.ARMS), args.seeds)
        command = report_command("tools/reproduce_coupled.py", argv, {
            "--seeds": (seeds, args.seeds, None),
            "--arms": (arms, args.arms, list(coupled_runs.ARMS))})
        try:
            path = coupled_report.write_report(settings, arms, seeds, results_dir,
                                               command, samples=not args.no_samples)
            log("report -> %s" % path)
        except Exception as err:  # a report problem must not stop the trainings
            log("report failed: %s: %s" % (type(err).__name__, err))

    if args.report_only:
        report()
        return 0
    pycaffe_path.require_caffe_pb2()
    if runner_cli.caffe_missing(settings) or runner_cli.missing_lmdbs(
            settings, (settings.lmdb("train"), settings.lmdb("test")),
            "run tools/make_mnist_lmdb.py first (or give --data-dir)"):
        return 2
    pairs = runner_cli.ordered(args.arms, args.seeds, first_outer=args.order == "arm")
    log("plan: %d arm-seeds, %d job(s), runs in %s" % (len(pairs), args.jobs, args.runs_dir))
    runner = coupled_runs.Runner(settings)
    return runner_cli.drive(runner, pairs, "{} seed{}".format, runner.run_arm, args.jobs, report,
                            "arm-seed(s)")
