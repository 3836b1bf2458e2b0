"""Semi-supervised LeNet on MNIST with few labels (tools/reproduce_semi.py):
for each number of labels k and seed, a split of the train LMDB
(gencaffe.data.splits; the seed picks the subset) and three approaches with
the same budget of training iterations:

    dg           DG on the labelled subset alone (solvers/lenet_semi_dg.prototxt)
    semi_gg      semi-supervised GG (journal Eq. 19) on mixed batches of the
                 labelled subset and the unlabelled rest, the whole budget
                 (solvers/lenet_semi_gg.prototxt)
    semi_gg_dg   semi-supervised GG, then DG tuning on the labelled subset
                 started from its weights with -weights
                 (solvers/lenet_semi_dg_tune.prototxt, base_lr 0.003); the
                 budget split between the stages as the committed solvers
                 split the paper's 25 epochs (16 : 9)

Layout, under runs_dir (default runs/mnist_semi):

    k<K>/seed<S>/dg/          solver.prototxt, net.prototxt, train.log,
                              lenet_iter_*.caffemodel, done.json
    k<K>/seed<S>/semi_gg/     the same; snapshots every `snapshot_every` iterations
    k<K>/seed<S>/semi_gg_dg/  stage 2 (DG tuning) only: its stage 1 is semi_gg's
                              snapshot at the stage-1 iteration

Stage 1 is not trained twice: Caffe's CPU training is deterministic for a
seed (the Data layers read their LMDBs in key order; LeNet has no dropout),
and the learning rate of the "inv" policy depends on the iteration only, so
semi_gg's snapshot at the stage-1 iteration holds exactly the weights a
stage-1 run of that length ends with (tests/test_semi_runs.py checks this
on real caffe).

Splits go to splits_dir/k<K>_seed<S>/ (made, or found current, before the
runs that read them). Runs are resumable as the Table 1 runner's
(gencaffe.experiments.caffe_runs): finished runs are skipped; interrupted or
outdated ones (other budget, split, options, a retrained stage 1) are
trained again from scratch.
"""
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .. import solver_config
from .caffe_runs import RunSettings, test_interval
from .caffe_runs import CaffeTraining, RunFailed, RunnerBase, file_sha256  # noqa: F401

APPROACHES = ("dg", "semi_gg", "semi_gg_dg")
TITLES = {"dg": "DG, labelled subset only", "semi_gg": "semi-supervised GG",
          "semi_gg_dg": "semi-supervised GG + DG tuning"}
SOLVERS = {"dg": "solvers/lenet_semi_dg.prototxt", "semi_gg": "solvers/lenet_semi_gg.prototxt",
           "tune": "solvers/lenet_semi_dg_tune.prototxt"}
VARIANT = {"dg": "semi_dg", "semi_gg": "semi_gg", "tune": "semi_dg"}
OBJECTIVE = {"dg": "DG", "semi_gg": "GG", "tune": "DG"}
SNAPSHOT_BASENAME = "lenet"
NET_NAME = "net.prototxt"
DEFAULT_KS = (100, 600, 1000, 3000)
DEFAULT_POOL = 50000   # the first 50,000 of the 60,000 train images (the classic train part)


class SemiError(RuntimeError):
    """The experiment cannot go on; the message says why and what to do."""


@dataclass
class Settings(RunSettings):
    runs_dir: str = "runs/mnist_semi"     # relative to repo, or absolute
    data_dir: str = "data/mnist"          # mnist_train_lmdb, mnist_test_lmdb
    splits_dir: str = "data/mnist/semi_splits"
    iterations: int = 3000                # budget per approach (semi_gg_dg: both stages)
    tests_per_run: int = 5                # test passes besides iteration 0
    snapshot_every: Optional[int] = None  # semi_gg snapshots; None: stage-1 iterations / 8
    display: int = 20
    labelled_share: Optional[float] = None   # None: the generator's default
    unlabeled_weight: Optional[float] = None  # lambda; None: the generator's (0.1)
    uniform_prior: bool = False           # rho uniform instead of the labelled frequencies
    balanced: bool = True                 # class-balanced subsets (the published protocol)
    pool: Optional[int] = DEFAULT_POOL    # split only the first `pool` train records
    evaluate_on: str = "test"             # "test": mnist_test_lmdb; "holdout": the
    #                                       records after the pool (a validation set)
    progress_every_s: float = 120.0

    def path(self, relative):
        return os.path.join(self.repo, relative)

    def train_lmdb(self):
        return os.path.join(self.data_dir, "mnist_train_lmdb")

    def test_lmdb(self):
        return os.path.join(self.data_dir, "mnist_test_lmdb")


def stage_split(repo: str, iterations: int):
    """(stage-1, stage-2) iterations of semi_gg_dg: the committed solvers'
    own ratio (16 : 9 epochs, as the paper's MNIST GG+DG) applied to
    `iterations`; each stage at least 1."""
    if iterations < 2:
        raise SemiError("semi_gg_dg needs at least 2 iterations (one per stage), got %d"
                        % iterations)
    first = solver_config.load_solver(os.path.join(repo, SOLVERS["semi_gg"])).max_iter
    second = solver_config.load_solver(os.path.join(repo, SOLVERS["tune"])).max_iter
    stage1 = min(iterations - 1, max(1, int(round(iterations * first / float(first + second)))))
    return stage1, iterations - stage1


def snapshot_interval(settings: Settings) -> int:
    """semi_gg's snapshot interval: a divisor of the stage-1 iteration, so that
    stage 1's weights are among the snapshots."""
    stage1, _ = stage_split(settings.repo, settings.iterations)
    every = settings.snapshot_every or max(1, stage1 // 8)
    if stage1 % every:
        raise SemiError("the semi_gg snapshot interval %d does not divide the stage-1 iteration "
                        "%d; choose one that does" % (every, stage1))
    return every


# ------------------------------------------------------------------ splits

def split_dir(settings: Settings, k: int, seed: int) -> str:
    return os.path.join(settings.splits_dir, "k%d_seed%d" % (k, seed))


def split_request(settings: Settings, k: int, seed: int):
    from ..data.splits import SplitRequest
    return SplitRequest(labelled=k, seed=seed, balanced=settings.balanced, pool=settings.pool,
                        holdout=settings.evaluate_on == "holdout")


def ensure_split(settings: Settings, k: int, seed: int) -> dict:
    from ..data import splits
    if settings.evaluate_on not in ("test", "holdout"):
        raise SemiError("evaluate_on must be 'test' or 'holdout', got %r" % settings.evaluate_on)
    try:
        return splits.make_split(settings.path(settings.train_lmdb()),
                                 settings.path(split_dir(settings, k, seed)),
                                 split_request(settings, k, seed),
                                 log=lambda m: settings.log("[k%d seed%d] %s" % (k, seed, m)))
    except splits.SplitError as err:
        raise SemiError("[k%d seed%d] split: %s" % (k, seed, err)) from None


def read_split(settings: Settings, k: int, seed: int) -> Optional[dict]:
    from ..data import splits
    return splits.read_manifest(settings.path(split_dir(settings, k, seed)))


# ------------------------------------------------------------------ runs

def eval_source(settings: Settings, k: int, seed: int) -> str:
    if settings.evaluate_on == "holdout":
        return os.path.join(split_dir(settings, k, seed), "holdout_lmdb")
    return settings.test_lmdb()


def test_iterations(settings: Settings, k: int, seed: int) -> int:
    """Test batches for one pass over the evaluation LMDB (the Data layer wraps
    around for the last batch): 100 for the 10,000 MNIST test images."""
    import math
    from ..data.datum_io import lmdb_count
    from ..nets import catalog
    entries = lmdb_count(settings.path(eval_source(settings, k, seed)))
    return int(math.ceil(entries / float(catalog.architecture("lenet").data.test_batch)))


def net_text(settings: Settings, variant: str, k: int, seed: int, manifest: dict) -> str:
    from ..nets import catalog, semi, variants
    arch = catalog.architecture("lenet")
    data = arch.semi_data.with_sources(test_source=eval_source(settings, k, seed))
    options = semi.split_options(arch, split_dir(settings, k, seed), manifest, data=data,
                                 labelled_share=settings.labelled_share,
                                 unlabeled_weight=settings.unlabeled_weight,
                                 uniform_prior=settings.uniform_prior or variant != "semi_gg")
    return variants.prototxt(arch, variant, options, generated_by="tools/reproduce_semi.py")


@dataclass
class SemiRun(CaffeTraining):
    """One `caffe train` of one approach (stage) for one k and seed."""
    label: str
    run_dir: str
    role: str                       # dg, semi_gg, tune
    k: int
    seed: int
    iterations: int
    weights: Optional[str] = None   # -weights (tune: semi_gg's stage-1 snapshot)
    iteration_offset: int = 0       # iterations of the approach before this run
    snapshot: int = 0               # snapshot interval (0: only at max_iter)

    def snapshot_prefix(self):
        return os.path.join(self.run_dir, SNAPSHOT_BASENAME)

    def max_iter(self, settings):
        return self.iterations

    def snapshot_path(self, iteration):
        return solver_config.final_snapshot_path(self.snapshot_prefix(), iteration)

    def spec(self, settings):
        manifest = read_split(settings, self.k, self.seed)
        if manifest is None:
            raise RunFailed("[%s] no split in %s" % (self.label,
                                                     split_dir(settings, self.k, self.seed)))
        template = solver_config.load_solver(settings.path(SOLVERS[self.role]))
        solver = solver_config.with_overrides(
            template, net=os.path.join(self.run_dir, NET_NAME), max_iter=self.iterations,
            test_iter=[test_iterations(settings, self.k, self.seed)],
            test_interval=test_interval(self.iterations, settings.tests_per_run),
            display=settings.display, snapshot=self.snapshot,
            snapshot_prefix=self.snapshot_prefix(), random_seed=self.seed,
            solver_mode="CPU" if settings.gpu is None else "GPU")
        return {"role": self.role, "solver_template": SOLVERS[self.role],
                "solver": solver_config.solver_text(solver),
                "files": {NET_NAME: net_text(settings, VARIANT[self.role], self.k, self.seed,
                                             manifest)},
                # the split these settings ask for, and the one on disk
                "split": {"wanted": split_request(settings, self.k, self.seed).as_dict(),
                          "request": manifest["request"], "sha256": manifest["sha256"]},
                "device": "CPU" if settings.gpu is None else "GPU",
                "weights": self.weights,
                # a retrained stage 1 (new weights file) makes stage 2 stale
                "weights_sha256": file_sha256(settings.path(self.weights)) if self.weights
                else None}

    @property
    def objective(self):
        return OBJECTIVE[self.role]


def seed_dir(settings: Settings, k: int, seed: int) -> str:
    return os.path.join(settings.runs_dir, "k%d" % k, "seed%d" % seed)


def semi_gg_run(settings: Settings, k: int, seed: int) -> SemiRun:
    return SemiRun("k%d seed%d semi_gg" % (k, seed),
                   os.path.join(seed_dir(settings, k, seed), "semi_gg"), "semi_gg", k, seed,
                   settings.iterations, snapshot=snapshot_interval(settings))


def approach_runs(settings: Settings, k: int, seed: int, approach: str) -> List[SemiRun]:
    """The runs whose last one gives the approach's result, in training order."""
    base = seed_dir(settings, k, seed)
    if approach == "dg":
        return [SemiRun("k%d seed%d dg" % (k, seed), os.path.join(base, "dg"), "dg", k, seed,
                        settings.iterations)]
    gg = semi_gg_run(settings, k, seed)
    if approach == "semi_gg":
        return [gg]
    if approach == "semi_gg_dg":
        stage1, stage2 = stage_split(settings.repo, settings.iterations)
        tune = SemiRun("k%d seed%d semi_gg_dg stage 2" % (k, seed),
                       os.path.join(base, "semi_gg_dg"), "tune", k, seed, stage2,
                       weights=gg.snapshot_path(stage1), iteration_offset=stage1)
        return [gg, tune]
    raise SemiError("unknown approach %r (one of %s)" % (approach, ", ".join(APPROACHES)))


@dataclass
class Runner(RunnerBase):
    """ensure(run) (caffe_runs.RunnerBase) plus the split and the approaches."""

    def run(self, k: int, seed: int, approaches: Sequence[str] = APPROACHES):
        ensure_split(self.settings, k, seed)
        for approach in approaches:
            for run in approach_runs(self.settings, k, seed, approach):
                self.ensure(run)


__all__ = ["Settings", "Runner", "SemiError", "APPROACHES", "approach_runs", "stage_split",
           "ensure_split", "split_dir", "seed_dir", "semi_gg_run"]
