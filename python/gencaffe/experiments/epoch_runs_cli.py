"""The command-line shell the epoch-per-process runners share
(tools/reproduce_tiny_imagenet.py, tools/reproduce_tiny_imagenet_semi.py): their
"running" options, the Settings fields those set, and the main loop (check the
data, plan, train with progress, rewrite the report after every epoch, exit
status)."""
import os
from typing import Callable, Tuple

from ..cli_args import log, positive_int
from . import runner_cli


def add_running_options(parser, repo: str, runs_dir: str, report_name: str):
    """runner_cli's running options, and the epoch runners' own: the 5-crop
    evaluation's batch and a stop after N epochs."""
    run = runner_cli.add_running_options(
        parser, repo, runs_dir=runs_dir, runs_dir_help="default %(default)s",
        results_dir_help="where %s.md and %s.png go (default %%(default)s)"
                         % (report_name, report_name),
        jobs=min(2, os.cpu_count() or 1), jobs_help="runs at once")
    run.add_argument("--eval-batch", type=positive_int, default=50,
                     help="images per forward pass of the 5-crop evaluation (default %(default)s)")
    run.add_argument("--max-epochs", type=positive_int, default=None,
                     help="train at most N epochs in this call, then stop (rerun to go on)")
    return run


def running_settings(args) -> dict:
    """The Settings fields (gencaffe.experiments.tiny_imagenet.Settings) the
    running options set."""
    return dict(runner_cli.running_settings(args), runs_dir=args.runs_dir,
                eval_batch=args.eval_batch, chunk_limit=args.max_epochs)


def report_paths(repo: str, args, report_name: str) -> Tuple[str, str]:
    return (os.path.join(repo, args.results_dir, report_name + ".md"),
            os.path.join(repo, args.results_dir, report_name + ".png"))


def serialised(write: Callable[[], None]) -> Callable[[], None]:
    """write, one call at a time: the runs' threads rewrite the report after each
    epoch, the driver after each task, and matplotlib is not thread-safe."""
    import threading
    lock = threading.Lock()

    def locked():
        with lock:
            write()
    return locked


def main(settings, args, argv, paths, make_tasks: Callable, make_writer: Callable) -> int:
    """Check the data, plan (make_tasks(settings, runner, data) -> [(label, callable)]),
    train, and rewrite the report (make_writer(settings, data, paths, argv) ->
    callable) after every epoch and every task; the exit status: 0 done or stopped on purpose, 1 a task
    failed, 2 bad input or set-up."""
    from . import caffe_runs
    from . import tiny_imagenet as tiny
    try:
        data = tiny.prepare(settings)
        log("data: %s: %d classes, %d train / %d val images"
            % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
        write = serialised(make_writer(settings, data, paths, argv))
        if args.report_only:
            write()
            log("report: %s, %s" % paths)
            return 0
        if runner_cli.caffe_missing(settings):
            return 2
        runner = tiny.Runner(settings, data=data, on_epoch=write)
        work = make_tasks(settings, runner, data)   # every net and solver checked here
    except tiny.TinyError as err:
        log("error: %s" % err)
        return 2
    log("plan: %s; %d epoch(s) of training to do, %d run(s) at a time, runs in %s"
        % ("; ".join(label for label, _ in work), runner.epochs_left, settings.jobs,
           settings.runs_dir))
    failures = caffe_runs.drive(runner, work, settings.jobs, write, log)
    stopped = [f for f in failures if isinstance(f[1], tiny.ChunkLimitReached)]
    if stopped and len(stopped) == len(failures):
        log("stopped after %d epoch(s) as asked (--max-epochs); the same command goes on"
            % settings.chunk_limit)
        return 0
    return caffe_runs.exit_status(failures, log, "task(s)")
