"""The ImageNet pipeline at smoke size, end to end and resumably
(tools/imagenet_smoke.py, `make imagenet-smoke`); this module plans and
trains the runs, the steps it calls live beside it:

1. the stand-in data set (gencaffe.data.standin) and its LMDBs, mean and class
   list (gencaffe.data.imagenet, i.e. convert_imageset + compute_image_mean),
   or LMDBs the caller already has (gencaffe.experiments.imagenet_data);
2. AlexNet and ZF trained with DG, GG and GG+DG (stage 1 GG, stage 2 DG from
   stage 1's final snapshot with -weights) through the committed solvers
   solvers/<arch>_{dg,gg,gg_dg_stage1,gg_dg_stage2}.prototxt, each loaded and
   overridden on the way in: net (the run's own generated net), max_iter,
   test_iter (the whole val LMDB), test_interval, display, snapshot (cleared:
   Caffe snapshots at max_iter), snapshot_prefix, random_seed, solver_mode CPU
   (GPU with Settings.gpu).
   Everything else (base_lr, momentum, weight decay, lr policy; stage 2's
   base_lr 0.003) is the committed solver's. The GG+DG stage split is the
   committed solvers' own proportion (stage-1 max_iter over both stages'
   max_iter: 45 of 70 epochs) applied to the smoke budget;
3. 5-crop evaluation of each approach's final model (gencaffe.experiments.
   imagenet_smoke_eval, with gencaffe.experiments.eval_crops);
4. results: a markdown table and a PNG of the loss and accuracy curves
   (gencaffe.experiments.imagenet_smoke_report).

The nets are the generator's output (gencaffe.nets: the same definitions as
models/<arch>/), with the data's paths, class count and the smoke batch size.

Layout under runs_dir (default runs/imagenet_smoke):

    <arch>/dg/  <arch>/gg/  <arch>/gg_dg/stage1/  <arch>/gg_dg/stage2/
        train_val.prototxt   generated net
        solver.prototxt      the committed solver with the overrides above
        train.log, <arch>_iter_<N>.caffemodel, done.json
    and in each approach's last run directory: deploy.prototxt and
        eval.5crop.json / eval.5crop.md (5-crop top-1/top-5 error)

Runs are resumable as the MNIST runner's (gencaffe.experiments.caffe_runs):
finished runs are skipped, interrupted or outdated ones (other options,
other data, a retrained stage 1) are trained again from scratch. An
evaluation is redone when the weights it read changed.
"""
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .. import solver_config
from .caffe_runs import CaffeTraining, RunnerBase, RunSettings, file_sha256, test_interval
from .imagenet_data import DataInfo, SmokeError, checked_prototxt, prepare_data
from .imagenet_smoke_eval import evaluate

ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg")
APPROACH_TITLES = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG"}
STAGES = {"dg": ("dg",), "gg": ("gg",), "gg_dg": ("gg_dg_stage1", "gg_dg_stage2")}
STAGE_VARIANT = {"dg": "dg", "gg": "gg", "gg_dg_stage1": "gg", "gg_dg_stage2": "dg"}
OBJECTIVE = {"dg": "DG", "gg": "GG"}     # variant -> the loss it logs
# GG+DG stage 2 runs with random_seed = seed + STAGE2_SEED_OFFSET. With the same
# seed as stage 1 it would replay stage 1's random stream exactly: the same
# crops, mirrors and dropout masks, iteration by iteration, on the same batches
# (the Data layer starts both stages at the first record). Measured on the
# stand-in: AlexNet's stage-2 DG loss then fell from 2.33 to 0.83 in 70
# iterations while the val accuracy stayed at chance and the same weights gave
# a loss of 4-8 on the same training images under other dropout masks; the net
# had imprinted the exact (image, crop, mask) inputs of stage 1. With another
# seed the stage-2 loss stays at 2.3-2.5. (`caffe train` without random_seed,
# as the committed solvers are run, seeds from entropy: no replay.)
STAGE2_SEED_OFFSET = 1000


def solver_template(arch: str, stage: str) -> str:
    return "solvers/%s_%s.prototxt" % (arch, stage)


# ------------------------------------------------------------------ settings

@dataclass
class Settings(RunSettings):
    runs_dir: str = "runs/imagenet_smoke"            # relative to repo, or absolute
    lmdb_dir: str = "data/imagenet_smoke/lmdb"       # train_lmdb, val_lmdb, mean, classes.txt
    standin_dir: Optional[str] = "data/imagenet_smoke/standin"  # None: lmdb_dir is given
    standin: Optional[object] = None    # standin.StandinConfig for the stand-in to draw
    num_classes: Optional[int] = None   # the nets' class count; None = the data's
    iterations: int = 400               # per approach; GG+DG splits it 45:25
    train_batch: int = 16
    test_batch: int = 25
    tests_per_run: int = 4              # test passes per run besides the one at iteration 0
    display: int = 10
    seed: int = 1
    archs: Sequence[str] = ARCHS
    approaches: Sequence[str] = APPROACHES
    eval_batch: int = 10                # images per forward pass in the 5-crop evaluation
    # jobs (RunSettings): trainings at once, and the data tools' worker processes


def stage_split(repo: str, arch: str, iterations: int):
    """(stage-1, stage-2) iterations of GG+DG: the committed solvers' own ratio
    (45 : 25 epochs) applied to `iterations`; each stage at least 1."""
    if iterations < 2:
        raise SmokeError("GG+DG needs at least 2 iterations (one per stage), got %d" % iterations)
    first = solver_config.load_solver(os.path.join(repo, solver_template(arch, "gg_dg_stage1")))
    second = solver_config.load_solver(os.path.join(repo, solver_template(arch, "gg_dg_stage2")))
    share = first.max_iter / float(first.max_iter + second.max_iter)
    stage1 = min(iterations - 1, max(1, int(round(iterations * share))))
    return stage1, iterations - stage1


# ------------------------------------------------------------------ nets and runs

def net_options(arch, data: DataInfo, settings: Settings):
    from ..nets.variants import NetOptions
    spec = dataclasses.replace(arch.data, train_source=data.path("train_lmdb"),
                               test_source=data.path("val_lmdb"),
                               mean_file=data.path("mean.binaryproto"),
                               train_batch=settings.train_batch, test_batch=settings.test_batch)
    return NetOptions(data=spec, num_classes=settings.num_classes or data.classes)


def generated_net(arch, variant: str, data: DataInfo, settings: Settings) -> str:
    return checked_prototxt(arch, variant, net_options(arch, data, settings), data,
                            "tools/imagenet_smoke.py (smoke-size data)")


@dataclass
class SmokeRun(CaffeTraining):
    """One stage of one approach: a `caffe train` in run_dir."""
    label: str
    run_dir: str
    arch: str
    stage: str                      # dg, gg, gg_dg_stage1, gg_dg_stage2
    iterations: int
    solver: str                     # the solver text written to run_dir/solver.prototxt
    files: Dict[str, str]           # name in run_dir -> text (the generated nets)
    data_fingerprint: str
    weights: Optional[str] = None   # -weights (stage 2: stage 1's final snapshot)
    iteration_offset: int = 0       # iterations of the approach before this stage

    def snapshot_prefix(self):
        return os.path.join(self.run_dir, self.arch)

    def max_iter(self, settings):
        return self.iterations

    def spec(self, settings):
        return {"stage": self.stage, "solver_template": solver_template(self.arch, self.stage),
                "solver": self.solver, "files": self.files, "data": self.data_fingerprint,
                "weights": self.weights,
                # a retrained stage 1 (new weights file) makes stage 2 stale
                "weights_sha256": file_sha256(os.path.join(settings.repo, self.weights))
                if self.weights else None}

    @property
    def objective(self):
        return OBJECTIVE[STAGE_VARIANT[self.stage]]


def test_plan(settings: Settings, data: DataInfo, iterations: int):
    """(test_iter, test_interval): the whole val LMDB per pass (the Data layer
    wraps around for the last batch), test passes as test_interval() says."""
    test_iter = int(math.ceil(data.val_count / float(settings.test_batch)))
    return test_iter, test_interval(iterations, settings.tests_per_run)


def stage_seed(seed: int, stage: str) -> int:
    """Caffe's random_seed of a stage: the run's seed, stage 2 offset (see
    STAGE2_SEED_OFFSET)."""
    return seed + STAGE2_SEED_OFFSET if stage == "gg_dg_stage2" else seed


def make_run(settings, data, arch_key, approach, stage, iterations, weights=None, offset=0,
             last=False):
    from ..nets import catalog
    arch = catalog.architecture(arch_key)
    base = os.path.join(settings.runs_dir, arch_key, approach)
    run_dir = os.path.join(base, "stage%d" % (STAGES[approach].index(stage) + 1)) \
        if len(STAGES[approach]) > 1 else base
    variant = STAGE_VARIANT[stage]
    files = {"train_val.prototxt": generated_net(arch, variant, data, settings)}
    if last:
        files["deploy.prototxt"] = generated_net(arch, "deploy", data, settings)
    template = solver_config.load_solver(settings.path(solver_template(arch_key, stage)))
    test_iter, interval = test_plan(settings, data, iterations)
    solver = solver_config.with_overrides(
        template, net=os.path.join(run_dir, "train_val.prototxt"), max_iter=iterations,
        test_iter=[test_iter], test_interval=interval, display=settings.display, snapshot=0,
        snapshot_prefix=os.path.join(run_dir, arch_key),
        random_seed=stage_seed(settings.seed, stage),
        solver_mode="CPU" if settings.gpu is None else "GPU")
    label = "%s %s%s" % (arch_key, APPROACH_TITLES[approach],
                         " stage %d" % (STAGES[approach].index(stage) + 1)
                         if len(STAGES[approach]) > 1 else "")
    return SmokeRun(label, run_dir, arch_key, stage, iterations,
                    solver_config.solver_text(solver), files, data.fingerprint, weights, offset)


def approach_runs(settings: Settings, data: DataInfo, arch: str, approach: str) -> List[SmokeRun]:
    if approach in ("dg", "gg"):
        return [make_run(settings, data, arch, approach, approach, settings.iterations, last=True)]
    if approach != "gg_dg":
        raise SmokeError("unknown approach %r (one of %s)" % (approach, ", ".join(APPROACHES)))
    first, second = stage_split(settings.repo, arch, settings.iterations)
    stage1 = make_run(settings, data, arch, approach, "gg_dg_stage1", first)
    stage2 = make_run(settings, data, arch, approach, "gg_dg_stage2", second,
                      weights=stage1.final_snapshot(settings), offset=first, last=True)
    return [stage1, stage2]


# ------------------------------------------------------------------ driver

@dataclass
class Runner(RunnerBase):
    data: Optional[DataInfo] = None

    def run_approach(self, arch: str, approach: str):
        for run in approach_runs(self.settings, self.data, arch, approach):
            self.ensure(run)


def run_all(settings: Settings, runner: Optional[Runner] = None) -> Runner:
    """Data, every training, every evaluation, in order; returns the Runner."""
    data = prepare_data(settings)
    settings.log("data: %s: %d classes, %d train / %d val images"
                 % (settings.lmdb_dir, data.classes, data.train_count, data.val_count))
    runner = runner or Runner(settings)
    runner.data = data
    plan = [(arch, approach) for arch in settings.archs for approach in settings.approaches]
    for arch, approach in plan:  # nets and class counts checked before any training
        approach_runs(settings, data, arch, approach)
    for arch, approach in plan:
        runner.run_approach(arch, approach)
    for arch, approach in plan:
        evaluate(settings, data, approach_runs(settings, data, arch, approach)[-1])
    return runner



__all__ = ["Settings", "SmokeRun", "Runner", "run_all", "approach_runs", "stage_split",
           "stage_seed", "test_plan", "generated_net"]
