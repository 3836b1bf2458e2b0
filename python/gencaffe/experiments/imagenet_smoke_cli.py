"""tools/imagenet_smoke.py's work (the ImageNet pipeline at smoke size): the
settings from its arguments, which runs the report covers, and the run
itself (data, trainings, 5-crop evaluations, report)."""
import dataclasses
import os

from .. import progress
from ..cli_args import log, report_command
from ..data import standin
from . import caffe_runs, imagenet_data, runner_cli
from . import imagenet_smoke as smoke
from . import imagenet_smoke_eval as smoke_eval
from . import imagenet_smoke_report as smoke_report
from .imagenet_smoke import APPROACHES, ARCHS


def make_settings(args, repo):
    if args.lmdb_dir and args.classes:
        raise imagenet_data.SmokeError("--classes draws a stand-in; with --lmdb-dir the class "
                                       "count is the data's (check it with --num-classes)")
    config = None if args.lmdb_dir else standin.StandinConfig(
        classes=args.classes or 10, train_per_class=args.train_per_class,
        val_per_class=args.val_per_class, corrupt=args.corrupt, seed=args.data_seed,
        colour_cue=args.colour_cue)
    if config is not None:
        try:
            config.validate()
        except standin.StandinError as err:
            raise imagenet_data.SmokeError(str(err)) from None
    return smoke.Settings(
        repo=repo, runs_dir=args.runs_dir,
        lmdb_dir=args.lmdb_dir or os.path.join(args.data_dir, "lmdb"),
        standin_dir=None if args.lmdb_dir else os.path.join(args.data_dir, "standin"),
        standin=config,
        num_classes=args.num_classes, iterations=args.iterations, train_batch=args.batch,
        test_batch=args.test_batch, tests_per_run=args.tests_per_run, display=args.display,
        seed=args.seed, archs=args.archs, approaches=args.approaches, eval_batch=args.eval_batch,
        progress_factory=progress.bar_factory(not args.no_progress),
        **runner_cli.running_settings(args))


def report_scope(settings, args, argv, repo):
    """(settings, command) for the report: every architecture and approach
    with runs under --runs-dir, not only this command's, so that a run of a
    subset does not drop earlier results; the command named covers them all."""
    root = os.path.join(repo, args.runs_dir)
    archs = caffe_runs.widened(args.archs, [a for a in ARCHS if os.path.isdir(
        os.path.join(root, a))], order=ARCHS)
    approaches = caffe_runs.widened(args.approaches, [p for a in archs for p in APPROACHES
                                                      if os.path.isdir(os.path.join(root, a, p))],
                                    order=APPROACHES)
    command = report_command("python3 tools/imagenet_smoke.py", argv, {
        "--archs": (archs, args.archs, ARCHS),
        "--approaches": (approaches, args.approaches, APPROACHES)})
    return dataclasses.replace(settings, archs=archs, approaches=approaches), command


def run(args, argv, repo) -> int:
    """Data, trainings, 5-crop evaluations and the report, as args ask; the
    exit status (0 done, 1 a run failed, 2 bad input, 130 interrupted)."""
    table = os.path.join(repo, args.results_dir, "imagenet_smoke.md")
    plot = os.path.join(repo, args.results_dir, "imagenet_smoke.png")
    try:
        settings = make_settings(args, repo)
        if args.report_only:
            data = imagenet_data.check_data(settings)
            scope, command = report_scope(settings, args, argv, repo)
            smoke_report.write_report(scope, data, table, plot, command)
            log("report: %s, %s" % (table, plot))
            return 0
        if args.data_only:
            data = imagenet_data.prepare_data(settings)
            log("data: %s: %d classes, %d train / %d val images"
                % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
            return 0
        if runner_cli.caffe_missing(settings):
            return 2
        started = smoke_report.started_stamp()
        data = imagenet_data.prepare_data(settings)
        log("data: %s: %d classes, %d train / %d val images"
            % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
        plan = [(arch, approach) for arch in args.archs for approach in args.approaches]
        for arch, approach in plan:  # every net built and checked before any training
            smoke.approach_runs(settings, data, arch, approach)
    except imagenet_data.SmokeError as err:
        log("error: %s" % err)
        return 2

    runner = smoke.Runner(settings, data=data)
    log("plan: %d approach(es) x %d iterations, %d training(s) at once, runs in %s"
        % (len(plan), args.iterations, args.jobs, args.runs_dir))
    tasks = [("%s %s" % plan_item, (lambda a=plan_item: runner.run_approach(*a)))
             for plan_item in plan]
    failures = [(label, str(err)) for label, err in
                caffe_runs.drive(runner, tasks, args.jobs, lambda: None, log)]
    failed = {label for label, _ in failures}
    try:
        for arch, approach in plan:
            if "%s %s" % (arch, approach) not in failed:
                smoke_eval.evaluate(settings, data,
                                    smoke.approach_runs(settings, data, arch, approach)[-1])
    except imagenet_data.SmokeError as err:
        log("error: %s" % err)
        failures.append(("evaluation", str(err)))
    except KeyboardInterrupt:
        log("interrupted during the evaluation (finished ones are kept)")
        return 130
    scope, command = report_scope(settings, args, argv, repo)
    results = smoke_report.write_report(scope, data, table, plot, command, started)
    log("report: %s, %s" % (table, plot))
    for r in results:
        if r.complete and r.loss_went_down(data.classes) is False:
            log("warning: %s %s: the val loss did not go down by more than %g x ln %d"
                % (r.arch, r.approach, smoke_report.LOSS_DOWN_MARGIN, data.classes))
    return caffe_runs.exit_status(failures, log, "task(s)")

