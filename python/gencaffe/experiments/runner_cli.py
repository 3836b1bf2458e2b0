"""The options every reproduction runner shares, declared once.

Each runner under tools/ (reproduce_mnist, reproduce_semi, reproduce_coupled,
sweep_switch, imagenet_smoke, reproduce_tiny_imagenet[_semi]) adds its
experiment's options, then `add_running_options` for how it runs (the caffe
binary, jobs, threads, GPU, folders, retries, report-only, progress), and
builds its Settings (a caffe_runs.RunSettings) with `running_settings(args)`;
before training it checks the binary and data (`caffe_missing`,
`missing_lmdbs`) and trains its (approach, seed)-like pairs with `ordered`
and `drive`.
"""
import os
from typing import Callable, List, Sequence, Tuple

from ..cli_args import log, non_negative_int, positive_float, positive_int
from . import caffe_runs

PROGRESS_EVERY_S = 120.0


def default_caffe(repo: str) -> str:
    return os.path.join(repo, "build", "cpu", "caffe", "tools", "caffe")


def add_running_options(parser, repo: str, *, runs_dir=None, runs_dir_help: str,
                        results_dir="results", results_dir_help: str, jobs=1,
                        jobs_help="caffe trainings at once"):
    """The "running" option group. runs_dir/results_dir: the defaults (None:
    the runner derives one, as its help says); the helps say what goes there."""
    run = parser.add_argument_group("running")
    run.add_argument("--caffe", default=default_caffe(repo),
                     help="the caffe binary (default %(default)s)")
    run.add_argument("--jobs", type=positive_int, default=jobs,
                     help="%s (default %%(default)s); each uses --threads BLAS/OpenMP threads"
                          % jobs_help)
    run.add_argument("--threads", "--threads-per-job", dest="threads", type=positive_int,
                     default=1, help="BLAS/OpenMP threads per caffe process (default %(default)s)")
    run.add_argument("--gpu", type=non_negative_int, metavar="ID", default=None,
                     help="train on this GPU (solver_mode GPU, caffe train -gpu ID) instead of "
                          "the CPU; needs a CUDA build (--caffe, and CAFFE_BUILD_DIR for pycaffe)")
    run.add_argument("--runs-dir", default=runs_dir,
                     help="run folders, relative to the repository root or absolute: "
                          + runs_dir_help)
    run.add_argument("--results-dir", default=results_dir,
                     help="report folder, relative to the repository root: " + results_dir_help)
    run.add_argument("--retries", type=non_negative_int, default=1,
                     help="retrain a run whose caffe failed this many more times (default "
                          "%(default)s); running the command again retries failed runs too")
    run.add_argument("--report-only", action="store_true",
                     help="train nothing; rewrite the report from the runs on disk")
    run.add_argument("--progress-every", type=positive_float, default=PROGRESS_EVERY_S,
                     help="seconds between progress lines of a running training (default "
                          "%(default)s)")
    return run


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_own_blas_threads(threads: int) -> None:
    """The driver's own pycaffe work (a report's diagnostics, forward passes)
    runs beside its trainings: give it the --threads of one training. With
    BLAS's default, one thread per core, on cores the trainings already fill,
    its threads wait on each other (measured: 3 % of a core). BLAS reads
    the variables when pycaffe first loads it; where it is loaded already
    (the runners read caffe_pb2 first), OpenBLAS is told at run time."""
    import ctypes
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(int(threads))
    except (OSError, AttributeError):   # another BLAS: the variables are all we can set
        pass


def running_settings(args) -> dict:
    """The caffe_runs.RunSettings fields the running options set (and the
    driver's own BLAS threads limited to --threads: limit_own_blas_threads)."""
    limit_own_blas_threads(args.threads)
    from .. import blas_core
    core = blas_core.choose(os.path.abspath(args.caffe)) or blas_core.set_here
    if core:
        log("OpenBLAS fell back to its generic kernels on this CPU: OPENBLAS_CORETYPE=%s for "
            "the caffe processes (set OPENBLAS_CORETYPE yourself to choose)" % core)
    return dict(caffe=os.path.abspath(args.caffe), log=log, progress_every_s=args.progress_every,
                threads_per_job=args.threads, retries=args.retries, jobs=args.jobs,
                gpu=args.gpu)


def caffe_missing(settings) -> bool:
    """True (and says so) when settings.caffe is not an executable."""
    if os.access(settings.caffe, os.X_OK):
        return False
    log("error: no caffe binary at %s (build first with `make`, or pass --caffe)"
        % settings.caffe)
    return True


def missing_lmdbs(settings, lmdbs: Sequence[str], hint: str) -> bool:
    """True (and says which, with `hint`) when an LMDB (relative to the repo
    or absolute) has no data.mdb."""
    for db in lmdbs:
        if not os.path.isfile(os.path.join(settings.path(db), "data.mdb")):
            log("error: %s missing; %s" % (db, hint))
            return True
    return False


def ordered(first: Sequence, second: Sequence, first_outer: bool) -> List[Tuple]:
    """Every (a, b) of first x second: all b of the first a, then the next a
    (first_outer), or all a of the first b, then the next b."""
    if first_outer:
        return [(a, b) for a in first for b in second]
    return [(a, b) for b in second for a in first]


def drive(runner, items: Sequence[Tuple], label: Callable[..., str], work: Callable,
          jobs: int, report: Callable[[], None], what: str) -> int:
    """Train work(*item) for every item, `jobs` at once, in order (a worker
    takes the next item only when it is free), the report rewritten after
    each; Ctrl-C or SIGTERM stops the caffe processes (caffe_runs.drive).
    Returns the exit status (0 all done, 1 some failed: `what` names them)."""
    tasks = [(label(*item), (lambda item=item: work(*item))) for item in items]
    return caffe_runs.exit_status(caffe_runs.drive(runner, tasks, jobs, report, log), log, what)
