"""One `caffe train` per directory, resumably: what the MNIST and ImageNet
runners share.

A run subclasses CaffeTraining and says what determines its result
(`spec(settings)`: at least the solver text under "solver"; any files it
needs beside the solver, such as generated nets, under "files" as
{name in run_dir: text}), how many iterations it trains (`max_iter`) and
its `snapshot_prefix()`; it has the attributes `label`, `run_dir` (relative
to settings.repo) and `weights` (a -weights caffemodel or None).

A run is finished when done.json in its directory says so, matches the run's
current spec, its log reached "Optimization Done." and its final snapshot
exists. Anything else in a run directory is an interrupted or outdated run:
it is wiped and trained again from iteration 0 (a -snapshot resume would
restart the Data layer at the first record and so change the data order).

`settings` is any object with: repo, caffe, log, progress_every_s,
threads_per_job, retries; and optionally gpu (an id: `caffe train -gpu ID`).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import caffe_log
from .. import solver_config

DONE_NAME = "done.json"
LOG_NAME = "train.log"
PARTIAL_LOG_NAME = "train.log.partial"


class RunFailed(RuntimeError):
    pass


@dataclass
class RunSettings:
    """What every runner's settings hold: the fields CaffeTraining and
    RunnerBase read. Runners subclass it with their own."""
    repo: str                            # caffe runs with this as its working directory
    caffe: str                           # the caffe binary
    log: Callable[[str], None] = print
    progress_factory: Optional[Callable] = None
    progress_every_s: float = 60.0       # seconds between progress lines of a training
    threads_per_job: int = 1             # BLAS/OpenMP threads per caffe process
    retries: int = 0                     # retrain a failed run this many more times
    jobs: int = 1                        # runs (or worker processes) at once
    gpu: Optional[int] = None            # caffe train -gpu ID (default: the CPU)

    def path(self, relative):
        return os.path.join(self.repo, relative)


class CaffeTraining:
    """Mixin: the life cycle of one `caffe train` in its own directory."""

    # a run that a later one resumes with -snapshot keeps its .solverstate
    keep_solverstate = False

    def spec(self, settings):  # pragma: no cover - subclasses say
        raise NotImplementedError

    def max_iter(self, settings):  # pragma: no cover
        raise NotImplementedError

    def snapshot_prefix(self):  # pragma: no cover
        raise NotImplementedError

    def solver_path(self):
        return os.path.join(self.run_dir, "solver.prototxt")

    def log_path(self):
        return os.path.join(self.run_dir, LOG_NAME)

    def done_path(self):
        return os.path.join(self.run_dir, DONE_NAME)

    def final_snapshot(self, settings):
        return solver_config.final_snapshot_path(self.snapshot_prefix(), self.max_iter(settings))

    def read_done(self, settings):
        try:
            with open(os.path.join(settings.repo, self.done_path())) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def is_complete(self, settings):
        absolute = lambda p: os.path.join(settings.repo, p)
        done = self.read_done(settings)
        if done is None or done.get("spec") != self.spec(settings):
            return False
        if not os.path.exists(absolute(self.final_snapshot(settings))):
            return False
        return caffe_log.parse_file(absolute(self.log_path())).finished

    def parsed_log(self, settings):
        return caffe_log.parse_file(os.path.join(settings.repo, self.log_path()))

    def command(self):
        command = ["train", "-solver", self.solver_path()]
        if self.weights:
            command += ["-weights", self.weights]
        if getattr(self, "resume", None):
            command += ["-snapshot", self.resume]
        return command

    def execute(self, settings, registry):
        """Train from scratch in a clean run_dir; raise RunFailed on failure."""
        absolute = lambda p: os.path.join(settings.repo, p)
        spec = self.spec(settings)
        run_dir = absolute(self.run_dir)
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)  # an interrupted or outdated run: start clean
        os.makedirs(run_dir)
        for name, text in sorted(spec.get("files", {}).items()):
            solver_config.write_text_atomic(os.path.join(run_dir, name), text)
        solver_config.write_text_atomic(absolute(self.solver_path()), spec["solver"])
        command = [settings.caffe] + self.command()
        if getattr(settings, "gpu", None) is not None:
            command += ["-gpu", str(settings.gpu)]
        env = dict(os.environ)
        threads = str(settings.threads_per_job)
        # the INFO log is what is parsed, whatever the driver's own glog settings
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                   GLOG_logtostderr="1", GLOG_minloglevel="0")
        partial_log = absolute(os.path.join(self.run_dir, PARTIAL_LOG_NAME))
        if registry.stopping:
            raise RunFailed("[%s] not started: the driver is stopping" % self.label)
        settings.log("[%s] start: %s" % (self.label, " ".join(command)))
        started = time.time()
        with open(partial_log, "w") as log_handle:
            log_handle.write("# command: %s\n" % " ".join(command))
            log_handle.flush()
            process = subprocess.Popen(command, cwd=settings.repo, env=env, stdout=log_handle,
                                       stderr=subprocess.STDOUT)
            registry.add(process)
            try:
                self._wait_with_progress(process, partial_log, settings, started)
            finally:
                registry.discard(process)
        parsed = caffe_log.parse_file(partial_log)
        if process.returncode != 0 or not parsed.finished:
            raise RunFailed("[%s] caffe exited with %s; see %s:\n%s" % (
                self.label, process.returncode, partial_log, tail(partial_log)))
        if not os.path.exists(absolute(self.final_snapshot(settings))):
            raise RunFailed("[%s] no final snapshot %s" % (self.label, self.final_snapshot(settings)))
        os.replace(partial_log, absolute(self.log_path()))
        for name in os.listdir(run_dir):
            if name.endswith(".solverstate") and not self.keep_solverstate:
                os.remove(os.path.join(run_dir, name))  # restarts are clean
        done = {"spec": spec, "seconds": round(time.time() - started, 1),
                "snapshot_sha256": file_sha256(absolute(self.final_snapshot(settings))),
                "caffe_build": build_fingerprint(settings.caffe),
                "final_test": parsed.final_test().outputs if parsed.final_test() else None}
        solver_config.write_text_atomic(absolute(self.done_path()),
                                        json.dumps(done, indent=2, sort_keys=True) + "\n")
        settings.log("[%s] done in %.0f s; final test %s" % (self.label, done["seconds"],
                                                             format_outputs(done["final_test"])))

    def _wait_with_progress(self, process, log_path, settings, started):
        total = self.max_iter(settings)
        first = getattr(self, "first_iter", 0)  # a run resumed with -snapshot starts there
        while True:
            try:
                process.wait(timeout=settings.progress_every_s)
                return
            except subprocess.TimeoutExpired:
                pass
            parsed = caffe_log.parse_file(log_path)
            done_iters = parsed.last_iteration
            trained = max(0, done_iters - first)
            elapsed = time.time() - started
            eta = elapsed / trained * (total - done_iters) if trained else float("nan")
            last = parsed.final_test()
            # the training loss as Caffe displays it (smoothed over average_loss
            # iterations), so that a plateau or a descent shows between test passes
            display = parsed.train_displays[-1] if parsed.train_displays else None
            settings.log("[%s] iter %d/%d (%.0f%%), train loss %s, last test %s, eta %.0f min" % (
                self.label, done_iters, total, 100.0 * trained / max(1, total - first),
                "%.4g" % display.smoothed_loss if display else "-",
                format_outputs(last.outputs if last else None), eta / 60))


def file_sha256(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def build_fingerprint(caffe_binary):
    """sha256 of the caffe binary and the libcaffe next to it: which build (and so
    which GenerativeLoss layer) produced a run. Recorded, not compared: a rebuild
    must not invalidate finished runs by itself."""
    fingerprint = {}
    lib_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(caffe_binary))), "lib")
    for path in (caffe_binary, os.path.join(lib_dir, "libcaffe.so")):
        fingerprint[os.path.basename(path)] = file_sha256(path)
    return fingerprint


def format_outputs(outputs):
    if not outputs:
        return "-"
    return ", ".join("%s %.4g" % item for item in sorted(outputs.items()))


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def test_interval(iterations: int, tests_per_run: int) -> int:
    """A divisor of `iterations` (Caffe tests at the end of a run only when the
    interval divides max_iter) giving about tests_per_run passes after iteration
    0, at most 2 x tests_per_run; a prime count of iterations gets one pass, at
    the end."""
    wanted = max(1, tests_per_run)
    divisors = [d for d in range(1, iterations + 1)
                if iterations % d == 0 and iterations // d <= 2 * wanted]
    return min(divisors, key=lambda d: (abs(iterations // d - wanted), -d))  # ties: fewer


class ProcessRegistry:
    """Live caffe processes, so an interrupted driver can stop them all. Once
    terminate_all() has begun, no new process may run: one added later is killed
    (a worker thread that saw its caffe die must not retry it behind the
    driver's back)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._processes = set()
        self.stopping = False

    def add(self, process):
        with self._lock:
            if self.stopping:
                process.kill()
                process.wait()
                raise RunFailed("the driver is stopping")
            self._processes.add(process)

    def discard(self, process):
        with self._lock:
            self._processes.discard(process)

    def terminate_all(self):
        with self._lock:
            self.stopping = True
            processes = list(self._processes)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class RunnerBase:
    """Runs trainings unless complete, one thread per run_dir, with retries."""
    settings: object
    registry: ProcessRegistry = field(default_factory=ProcessRegistry)
    _locks: Dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    trainings_finished: int = 0  # successful caffe runs by this Runner (for reporting)

    def ensure(self, run):
        """Run `run` unless it is already complete; True if it trained now."""
        with self._locks_guard:
            lock = self._locks.setdefault(run.run_dir, threading.Lock())
        with lock:
            if run.is_complete(self.settings):
                self.settings.log("[%s] already complete, skipped" % run.label)
                return False
            for attempt in range(self.settings.retries + 1):
                try:
                    run.execute(self.settings, self.registry)
                    break
                except RunFailed as err:
                    # e.g. libcaffe relinked under a running process by a rebuild
                    if attempt == self.settings.retries or self.registry.stopping:
                        raise
                    self.settings.log("%s\n[%s] retrying from scratch" % (err, run.label))
        with self._locks_guard:
            self.trainings_finished += 1
        return True


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt()


def drive(runner: RunnerBase, tasks: Sequence[Tuple[str, Callable[[], object]]], jobs: int,
          report: Callable[[], None], log: Callable[[str], None]) -> List[Tuple[str, Exception]]:
    """Run `tasks` ([(label, callable)], each typically ensuring one or more
    runs of `runner`) on `jobs` threads; report() at the start and after
    every task that trained something. One failed task does not stop the
    others; returns [(label, error)] of the failed ones. Ctrl-C or SIGTERM
    stops every caffe process and exits with 130 (unfinished runs restart
    cleanly next time). Call from the main thread."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    failures = []
    reported_after = -1
    # No `with` block: its exit would join the worker threads, which wait on
    # caffe processes, so an interrupt would hang until the trainings finished.
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        pending = {pool.submit(task): label for label, task in tasks}
        report()
        reported_after = runner.trainings_finished
        while pending:
            # a timeout, so that the main thread acts on SIGTERM/Ctrl-C promptly
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                label = pending.pop(future)
                try:
                    future.result()
                except Exception as err:
                    failures.append((label, err))
                    log("FAILED %s: %s" % (label, err))
                if runner.trainings_finished != reported_after:
                    reported_after = runner.trainings_finished
                    report()
    except KeyboardInterrupt:
        log("interrupted: stopping caffe processes (unfinished runs restart cleanly next time)")
        runner.registry.terminate_all()
        os._exit(130)  # worker threads may still be in waits; do not join them
    pool.shutdown()
    report()
    return failures


def exit_status(failures: Sequence[Tuple[str, object]], log: Callable[[str], None],
                what: str = "task(s)") -> int:
    """The runners' last line and exit status: the failed tasks named (1), or
    'all done' (0). failures: [(label, error)] as drive() returns them."""
    if failures:
        log("%d %s failed: %s" % (len(failures), what, ", ".join(label for label, _ in failures)))
        return 1
    log("all done")
    return 0


def numbered_folders(folder: str, prefix: str) -> List[int]:
    """The N of every sub-folder `<prefix><N>` of `folder` (e.g. seed3), sorted;
    none if `folder` does not exist."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(name[len(prefix):]) for name in names
                  if name.startswith(prefix) and name[len(prefix):].isdigit()
                  and os.path.isdir(os.path.join(folder, name)))


def widened(requested: Sequence, found: Sequence, order: Sequence = None) -> list:
    """What a report covers: the values asked for plus those with runs on disk,
    so that a command run on a subset (one arm, one new seed) does not drop
    earlier commands' results from the rewritten report. In `order`'s order
    when given (e.g. a runner's list of approaches), else sorted."""
    union = set(requested) | set(found)
    return [value for value in order if value in union] if order else sorted(union)


def report_scope(runs_dir: str, keys: Sequence[str], all_keys: Sequence[str],
                 seeds: Sequence[int]) -> Tuple[list, list]:
    """(keys, seeds) a report covers for runs laid out as runs_dir/<key>/seed<N>:
    the ones asked for widened by those with runs on disk (see widened)."""
    found = {key: numbered_folders(os.path.join(runs_dir, key), "seed") for key in all_keys}
    keys = widened(keys, [key for key in all_keys if found[key]], order=all_keys)
    return keys, widened(seeds, [seed for key in keys for seed in found[key]])
