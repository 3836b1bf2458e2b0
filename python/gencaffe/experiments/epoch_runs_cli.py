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
        results_dir_help="where %s.md, %s.png and the ledger of finished runs, %s_runs/, "
                         "go (default %%(default)s; a run the ledger holds is not trained again)"
                         % (report_name, report_name, report_name),
        jobs=min(2, os.cpu_count() or 1), jobs_help="runs at once")
    run.add_argument("--eval-batch", type=positive_int, default=50,
                     help="images per forward pass of the 5-crop evaluation (default %(default)s)")
    run.add_argument("--max-epochs", type=positive_int, default=None,
                     help="train at most N epochs in this call, then stop (rerun to go on)")
    run.add_argument("--keep-every-snapshot", action="store_true",
                     help="keep every epoch's .caffemodel (AlexNet at 56 px: ~97 MB each), not "
                          "only the switch epoch's and the last, e.g. to follow the features "
                          "over training with tools/feature_health.py; from the epochs trained "
                          "with it on (the results stay the same)")
    return run


def running_settings(args) -> dict:
    """The Settings fields (gencaffe.experiments.tiny_imagenet.Settings) the
    running options set."""
    return dict(runner_cli.running_settings(args), runs_dir=args.runs_dir,
                eval_batch=args.eval_batch, chunk_limit=args.max_epochs,
                keep_every_snapshot=args.keep_every_snapshot)


def report_paths(repo: str, args, report_name: str) -> Tuple[str, str]:
    return (os.path.join(repo, args.results_dir, report_name + ".md"),
            os.path.join(repo, args.results_dir, report_name + ".png"))


class ReportWriter:
    """Rewrites a report on a thread of its own. A training that finishes an
    epoch asks for a rewrite and goes on with its next epoch at once (a
    rewrite can take minutes: Table 3's semi GG diagnostics); asks that come
    while a rewrite runs are folded into one more after it, so the last
    report always reflects the last epoch. One thread writes, so matplotlib
    is never used from two at once. A rewrite that fails is logged and stops
    no training."""

    def __init__(self, write: Callable[[], None], log: Callable[[str], None]):
        import threading
        self._write, self._log = write, log
        self._changed = threading.Condition()
        self._pending = self._busy = False
        self._thread = threading.Thread(target=self._loop, name="report", daemon=True)
        self._thread.start()

    def __call__(self):
        """Ask for a rewrite; returns at once."""
        with self._changed:
            self._pending = True
            self._changed.notify_all()

    def flush(self):
        """Wait until every rewrite asked for so far is written."""
        with self._changed:
            while self._pending or self._busy:
                self._changed.wait()

    def _loop(self):
        while True:
            with self._changed:
                while not self._pending:
                    self._changed.wait()
                self._pending, self._busy = False, True
            try:
                self._write()
            except Exception as err:
                self._log("warning: the report was not rewritten: %s: %s"
                          % (type(err).__name__, err))
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


def main(settings, args, argv, paths, make_tasks: Callable, make_writer: Callable) -> int:
    """Check the data, plan (make_tasks(settings, runner, data) -> [(label, callable)]),
    train, and rewrite the report (make_writer(settings, data, paths, argv) ->
    callable) after every epoch and every task; the exit status: 0 done or stopped on purpose, 1 a task
    failed, 2 bad input or set-up."""
    from . import caffe_runs
    from . import tiny_imagenet as tiny
    from .run_ledger import LedgerError
    # finished runs' records, committed beside the report (run_ledger)
    settings.ledger_dir = os.path.splitext(paths[0])[0] + "_runs"
    try:
        data = tiny.prepare(settings)
        log("data: %s: %d classes, %d train / %d val images"
            % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
        write = make_writer(settings, data, paths, argv)
        if args.report_only:
            write()
            log("report: %s, %s" % paths)
            return 0
        if runner_cli.caffe_missing(settings):
            return 2
        report = ReportWriter(write, log)
        runner = tiny.Runner(settings, data=data, on_epoch=report)
        work = make_tasks(settings, runner, data)   # every net and solver checked here
    except (tiny.TinyError, LedgerError) as err:
        log("error: %s" % err)
        return 2
    log("plan: %s; %d epoch(s) of training to do, %d run(s) at a time, runs in %s"
        % ("; ".join(label for label, _ in work), runner.epochs_left, settings.jobs,
           settings.runs_dir))
    failures = caffe_runs.drive(runner, work, settings.jobs, report, log)
    report.flush()
    stopped = [f for f in failures if isinstance(f[1], tiny.ChunkLimitReached)]
    if stopped and len(stopped) == len(failures):
        log("stopped after %d epoch(s) as asked (--max-epochs); the same command goes on"
            % settings.chunk_limit)
        return 0
    return caffe_runs.exit_status(failures, log, "task(s)")
