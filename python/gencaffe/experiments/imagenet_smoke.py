"""The ImageNet pipeline at smoke size, end to end and resumably
(tools/imagenet_smoke.py, `make imagenet-smoke`):

1. the stand-in data set (gencaffe.data.standin) and its LMDBs, mean and class
   list (gencaffe.data.imagenet, i.e. convert_imageset + compute_image_mean),
   or LMDBs the caller already has;
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
3. 5-crop evaluation of each approach's final model (gencaffe.experiments.eval_crops);
4. results: a markdown table and a PNG of the loss and accuracy curves.

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
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .. import caffe_log, solver_config
from ..data import datum_io
from ..atomic_io import atomic_write
from .caffe_runs import CaffeTraining, RunFailed, RunnerBase, RunSettings, file_sha256

ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg")
APPROACH_TITLES = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG"}
STAGES = {"dg": ("dg",), "gg": ("gg",), "gg_dg": ("gg_dg_stage1", "gg_dg_stage2")}
STAGE_VARIANT = {"dg": "dg", "gg": "gg", "gg_dg_stage1": "gg", "gg_dg_stage2": "dg"}
OBJECTIVE = {"dg": "DG", "gg": "GG"}     # variant -> the loss it logs
EVAL_NAME = "eval.5crop.json"
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
# "loss down" needs a fall of more than this fraction of ln C (the losses' scale)
LOSS_DOWN_MARGIN = 0.05
DATA_FILES = ("train_lmdb", "val_lmdb", "mean.binaryproto", "classes.txt")


class SmokeError(RuntimeError):
    """The smoke run cannot go on; the message says why and what to do."""


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


# ------------------------------------------------------------------ data

@dataclass(frozen=True)
class DataInfo:
    lmdb_dir: str          # as the nets write it (relative to the repo, or absolute)
    classes: int
    train_count: int
    val_count: int
    fingerprint: str       # what makes runs on other data stale

    def path(self, name):
        return os.path.join(self.lmdb_dir, name)


def check_data(settings: Settings) -> DataInfo:
    """The LMDB folder's contents, checked; SmokeError naming what is wrong."""
    base = settings.path(settings.lmdb_dir)
    hint = ("make it with `make imagenet-standin` (the stand-in) or "
            "tools/make_imagenet_lmdb.py ROOT --out-dir %s" % settings.lmdb_dir)
    for name in DATA_FILES:
        path = os.path.join(base, name)
        if name.endswith("_lmdb"):
            if not os.path.isfile(os.path.join(path, "data.mdb")):
                raise SmokeError("missing LMDB: %s (no data.mdb there); %s" % (path, hint))
        elif not os.path.isfile(path):
            raise SmokeError("missing %s: %s; %s" % (name, path, hint))
    with open(os.path.join(base, "classes.txt")) as handle:
        classes = [line.split()[0] for line in handle if line.strip()]
    if not classes:
        raise SmokeError("%s lists no classes" % os.path.join(base, "classes.txt"))
    counts = {}
    for split in ("train", "val"):
        path = os.path.join(base, split + "_lmdb")
        try:
            counts[split] = datum_io.lmdb_count(path)
        except Exception as err:  # lmdb.Error and friends
            raise SmokeError("cannot read the LMDB %s: %s" % (path, err)) from None
        if counts[split] == 0:
            raise SmokeError("the LMDB %s is empty" % path)
    manifest_path = os.path.join(base, "manifest.json")
    fingerprint = None
    if os.path.isfile(manifest_path):
        with open(manifest_path) as handle:
            fingerprint = json.load(handle).get("fingerprint")
    if not fingerprint:  # not made by our data tool: whatever identifies its contents
        fingerprint = "%s %d %d %s" % (file_sha256(os.path.join(base, "classes.txt")),
                                       counts["train"], counts["val"],
                                       file_sha256(os.path.join(base, "mean.binaryproto")))
    return DataInfo(settings.lmdb_dir, len(classes), counts["train"], counts["val"], fingerprint)


def prepare_data(settings: Settings) -> DataInfo:
    """Draw the stand-in and convert it (each a no-op when current), then check."""
    if settings.standin_dir is not None:
        from ..data import imagenet, imagenet_sources, standin
        config = settings.standin or standin.StandinConfig()
        factory = settings.progress_factory
        try:
            standin.generate(settings.path(settings.standin_dir), config, force=True,
                             jobs=settings.jobs, log=settings.log,
                             progress_factory=(lambda total: factory(total, "drawing", "img"))
                             if factory else None)
            sources = imagenet_sources.resolve(settings.path(settings.standin_dir))
            imagenet.prepare(sources, settings.path(settings.lmdb_dir), imagenet.Options(),
                             repo=settings.repo, jobs=settings.jobs, log=settings.log,
                             progress_factory=factory)
        except (standin.StandinError, imagenet_sources.SourceError, imagenet.DataError) as err:
            raise SmokeError("preparing the stand-in data: %s" % err) from None
    return check_data(settings)


# ------------------------------------------------------------------ nets and runs

def net_options(arch, data: DataInfo, settings: Settings):
    from ..nets.variants import NetOptions
    spec = dataclasses.replace(arch.data, train_source=data.path("train_lmdb"),
                               test_source=data.path("val_lmdb"),
                               mean_file=data.path("mean.binaryproto"),
                               train_batch=settings.train_batch, test_batch=settings.test_batch)
    return NetOptions(data=spec, num_classes=settings.num_classes or data.classes)


def net_class_count(net_param, score_blob: str) -> int:
    """num_output of the layer that writes the class scores."""
    for layer in net_param.layer:
        if score_blob in layer.top and layer.type == "InnerProduct":
            return layer.inner_product_param.num_output
    raise SmokeError("the net %s has no InnerProduct layer writing %r" % (net_param.name,
                                                                           score_blob))


def check_class_count(net_param, arch, data: DataInfo):
    count = net_class_count(net_param, arch.score)
    if count != data.classes:
        raise SmokeError("class count mismatch: the %s net %s scores %d classes (layer writing "
                         "%r) but the data %s lists %d; build the nets for the data's class "
                         "count (leave out --num-classes, or give --num-classes %d)"
                         % (arch.key, net_param.name, count, arch.score,
                            data.path("classes.txt"), data.classes, data.classes))


def checked_prototxt(arch, variant: str, options, data: DataInfo, generated_by: str) -> str:
    """The text of a generated net, its class count checked against the data's."""
    from ..nets import variants
    if variant != "deploy":
        check_class_count(variants.build(arch, variant, options), arch, data)
    return variants.prototxt(arch, variant, options, generated_by=generated_by)


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


def test_interval(iterations: int, tests_per_run: int) -> int:
    """A divisor of `iterations` (Caffe tests at the end of a run only when the
    interval divides max_iter) giving about tests_per_run passes after iteration
    0, at most 2 x tests_per_run; a prime count of iterations gets one pass, at
    the end."""
    wanted = max(1, tests_per_run)
    divisors = [d for d in range(1, iterations + 1)
                if iterations % d == 0 and iterations // d <= 2 * wanted]
    return min(divisors, key=lambda d: (abs(iterations // d - wanted), -d))  # ties: fewer


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


# ------------------------------------------------------------------ evaluation

def eval_path(run: SmokeRun) -> str:
    return os.path.join(run.run_dir, EVAL_NAME)


def read_eval(settings: Settings, run: SmokeRun) -> Optional[dict]:
    """The evaluation of run's final snapshot, or None if missing or of other weights."""
    try:
        with open(settings.path(eval_path(run))) as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return None
    weights = settings.path(run.final_snapshot(settings))
    if result.get("weights_sha256") != file_sha256(weights):
        return None
    return result


def evaluate(settings: Settings, data: DataInfo, run: SmokeRun) -> dict:
    """5-crop top-1/top-5 error of run's final snapshot on the val LMDB (cached)."""
    cached = read_eval(settings, run)
    if cached is not None:
        settings.log("[%s] 5-crop evaluation already done, skipped" % run.label)
        return cached
    from . import eval_crops
    weights = settings.path(run.final_snapshot(settings))
    config = eval_crops.EvalConfig(
        model=settings.path(os.path.join(run.run_dir, "deploy.prototxt")), weights=weights,
        lmdb=settings.path(data.path("val_lmdb")),
        classes=settings.path(data.path("classes.txt")),
        mean_file=settings.path(data.path("mean.binaryproto")), batch_size=settings.eval_batch,
        gpu=settings.gpu)
    settings.log("[%s] 5-crop evaluation of %s" % (run.label, run.final_snapshot(settings)))
    try:
        result = eval_crops.evaluate(config, log=settings.log,
                                    progress_factory=settings.progress_factory)
    except eval_crops.EvalError as err:
        raise SmokeError("[%s] evaluation: %s" % (run.label, err)) from None
    result["weights_sha256"] = file_sha256(weights)
    eval_crops.write_results(result, settings.path(eval_path(run)))
    settings.log("[%s] 5-crop top-1 error %.2f %%, top-5 error %.2f %%"
                 % (run.label, result["top1_error"], result["top5_error"]))
    return result


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


# ------------------------------------------------------------------ report

@dataclass
class StageSummary:
    objective: str
    first_loss: Optional[float]
    last_loss: Optional[float]       # mean of the displays in the run's final fifth
    curve: List[tuple] = field(default_factory=list)   # (approach iteration, loss)
    first_val_loss: Optional[float] = None   # the stage's loss on the val LMDB, first pass
    last_val_loss: Optional[float] = None    # ... and last pass

    def went_down(self, margin: float) -> Optional[bool]:
        """The val loss fell by more than `margin` (the train batches' loss
        where there is no val loss): the val passes see the same images, centre
        crops and no dropout each time, so their loss is free of the
        batch-to-batch noise of the displays."""
        if self.first_val_loss is not None and self.last_val_loss is not None:
            return self.last_val_loss < self.first_val_loss - margin
        if self.first_loss is not None and self.last_loss is not None:
            return self.last_loss < self.first_loss - margin
        return None


@dataclass
class ApproachResult:
    arch: str
    approach: str
    complete: bool
    iterations: int = 0
    stages: List[StageSummary] = field(default_factory=list)
    test_curve: List[tuple] = field(default_factory=list)  # (iteration, top-1, top-5 or None)
    test_accuracy: Optional[float] = None
    test_top5: Optional[float] = None
    top1_error: Optional[float] = None
    top5_error: Optional[float] = None
    train_seconds: float = 0.0
    eval_seconds: Optional[float] = None
    switch_iteration: Optional[int] = None

    def loss_went_down(self, classes: int) -> Optional[bool]:
        """Every stage's loss went down by more than LOSS_DOWN_MARGIN x ln C
        (StageSummary.went_down): both losses live on that scale (DG starts at
        ln C, GG falls from 0 towards -ln C)."""
        margin = LOSS_DOWN_MARGIN * math.log(classes)
        values = [s.went_down(margin) for s in self.stages]
        values = [v for v in values if v is not None]
        return all(values) if values and len(values) == len(self.stages) else None


def summarise_log(parsed, run: SmokeRun) -> StageSummary:
    curve = [(d.iteration + run.iteration_offset, d.smoothed_loss)
             for d in parsed.train_displays]
    first = parsed.train_displays[0].smoothed_loss if parsed.train_displays else None
    tail_start = run.iterations * 0.8
    tail = [d.smoothed_loss for d in parsed.train_displays if d.iteration >= tail_start]
    last = sum(tail) / len(tail) if tail else None
    val = [t.outputs["loss"] for t in parsed.tests() if "loss" in t.outputs]
    return StageSummary(run.objective, first, last, curve, val[0] if val else None,
                        val[-1] if len(val) > 1 else None)


def collect(settings: Settings, data: DataInfo) -> List[ApproachResult]:
    results = []
    for arch in settings.archs:
        for approach in settings.approaches:
            runs = approach_runs(settings, data, arch, approach)
            result = ApproachResult(arch, approach, all(r.is_complete(settings) for r in runs),
                                    iterations=sum(r.iterations for r in runs))
            if len(runs) > 1:
                result.switch_iteration = runs[1].iteration_offset
            for run in runs:
                if not os.path.exists(settings.path(run.log_path())):
                    continue
                parsed = run.parsed_log(settings)
                result.stages.append(summarise_log(parsed, run))
                for test in parsed.tests():
                    if run.iteration_offset and test.iteration == 0:
                        continue  # stage 2's first pass repeats stage 1's last model
                    result.test_curve.append((test.iteration + run.iteration_offset,
                                              test.outputs.get("accuracy"),
                                              test.outputs.get("accuracy_top5")))
                done = run.read_done(settings)
                if done:
                    result.train_seconds += done.get("seconds", 0.0)
            if result.complete and result.test_curve:
                _, result.test_accuracy, result.test_top5 = result.test_curve[-1]
            evaluation = read_eval(settings, runs[-1]) if result.complete else None
            if evaluation:
                result.top1_error = evaluation["top1_error"]
                result.top5_error = evaluation["top5_error"]
                result.eval_seconds = evaluation.get("seconds")
            results.append(result)
    return results


def _num(value, fmt="%.3f"):
    return "-" if value is None else fmt % value


def _loss_cell(result: ApproachResult, val=False) -> str:
    if not result.stages:
        return "-"
    return "; ".join("%s %s → %s" % (s.objective,
                                     _num(s.first_val_loss if val else s.first_loss),
                                     _num(s.last_val_loss if val else s.last_loss))
                     for s in result.stages)


def table_markdown(results, settings: Settings, data: DataInfo, command: str,
                   started: Optional[str] = None) -> str:
    from ..nets import catalog
    device = "CPU" if settings.gpu is None else "GPU %d" % settings.gpu
    lines = [
        "# ImageNet pipeline smoke run (stand-in data, %s)" % device,
        "",
        "Generated by `%s`%s. Not a reproduction of Table 2: a check that the ImageNet "
        "pipeline (data tools, generated AlexNet/ZF nets, committed solvers, GG+DG stage "
        "switch, 5-crop evaluation) runs end to end and learns." % (
            command, " (started %s)" % started if started else ""),
        "",
        "* data: `%s`, %d classes, %d train / %d val images (256x256); %s" % (
            data.lmdb_dir, data.classes, data.train_count, data.val_count,
            "the stand-in of tools/make_standin_imagenet.py (%s)" % (
                ", ".join("%s=%s" % kv for kv in sorted(dataclasses.asdict(settings.standin).items()))
                if settings.standin is not None else "default options")
            if settings.standin_dir else "given LMDBs"),
        "* nets: the generator's AlexNet (227x227 crops) and ZF (224x224), train batch %d, "
        "test batch %d; solvers: the committed `solvers/<arch>_*.prototxt` with max_iter, "
        "test_iter, test_interval, display, snapshot, snapshot_prefix, random_seed and "
        "solver_mode (%s) overridden (base_lr 0.01, stage 2 0.003, momentum 0.9, weight decay "
        "0.0005 as committed)" % (settings.train_batch, settings.test_batch,
                                  "CPU" if settings.gpu is None else "GPU"),
        "* GG+DG: stage 1 (GG) then stage 2 (DG, `-weights` stage 1's final snapshot), split "
        "%s of the budget, the committed solvers' 45:25 epochs" % ", ".join(
            "%s %d+%d" % (arch, *stage_split(settings.repo, arch, settings.iterations))
            for arch in settings.archs),
        "* train loss: the displayed batch loss at iteration 0 → the mean of the displays "
        "(every %d iterations) in each run's final fifth. DG = SoftmaxWithLoss (ln %d = %.3f "
        "at chance); GG = GenerativeLoss (0 at a constant net, falling towards -ln C as each "
        "class column's importance weights concentrate on its own examples)" % (
            settings.display, data.classes, math.log(data.classes)),
        "* test accuracy: the last test pass in the log (centre crop, the whole val LMDB); "
        "5-crop: `tools/eval_crops.py` (centre + 4 corners of the 256x256 image) on the val "
        "LMDB; chance top-1 error %.1f %%" % (100.0 * (1 - 1.0 / data.classes)),
        "* seed: Caffe's random_seed (weight init, crops, mirrors, dropout) %d; GG+DG stage 2 "
        "%d, so that it does not replay stage 1's exact crops and dropout masks (see "
        "STAGE2_SEED_OFFSET in python/gencaffe/experiments/imagenet_smoke.py); BLAS threads "
        "per caffe %d; wall time = training (all stages), then 5-crop evaluation" % (
            settings.seed, stage_seed(settings.seed, "gg_dg_stage2"), settings.threads_per_job),
        "* val loss: the loss on the val LMDB (the test passes: the same images, centre "
        "crops, no dropout) at the stage's first → last pass; **loss down** = each stage's "
        "val loss fell by more than %g x ln %d = %.3f (stage 2 of GG+DG starts at the DG loss "
        "of stage 1's weights)" % (LOSS_DOWN_MARGIN, data.classes,
                                   LOSS_DOWN_MARGIN * math.log(data.classes)),
        "",
        "| net | approach | iterations | train loss, first → last | val loss, first → last | "
        "loss down | test accuracy top-1 / top-5 | 5-crop top-1 / top-5 error % | "
        "wall time train + eval | seed |",
        "|---|---|---:|---|---|---|---|---|---|---:|",
    ]
    for r in results:
        name = catalog.architecture(r.arch).name if r.arch in catalog.ARCHITECTURES else r.arch
        if not r.complete:
            lines.append("| %s | %s | %d | %s | %s | - | pending | - | - | %d |" % (
                name, APPROACH_TITLES[r.approach], r.iterations, _loss_cell(r),
                _loss_cell(r, val=True), settings.seed))
            continue
        down = {True: "yes", False: "**no**", None: "-"}[r.loss_went_down(data.classes)]
        accuracy = "%s / %s" % (_num(r.test_accuracy), _num(r.test_top5))
        # with 5 classes or fewer every label is in the top 5: no top-5 figure
        top5 = r.top5_error if data.classes > 5 else None
        errors = "%s / %s" % (_num(r.top1_error, "%.1f"), _num(top5, "%.1f"))
        wall = "%.1f + %s min" % (r.train_seconds / 60.0,
                                  _num(None if r.eval_seconds is None else r.eval_seconds / 60.0,
                                       "%.1f"))
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %d |" % (
            name, APPROACH_TITLES[r.approach], r.iterations, _loss_cell(r),
            _loss_cell(r, val=True), down, accuracy, errors, wall, settings.seed))
    total = sum(r.train_seconds + (r.eval_seconds or 0) for r in results)
    lines += ["", "Training + evaluation time summed over the runs: %.1f min (with --jobs %d "
              "they ran %d at a time; data preparation not included)."
              % (total / 60.0, settings.jobs, settings.jobs), ""]
    return "\n".join(lines)


def plot_curves(results, path: str, settings: Settings, data: DataInfo):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = {"dg": "tab:blue", "gg": "tab:orange", "gg_dg": "tab:green"}
    archs = list(dict.fromkeys(r.arch for r in results))
    fig, axes = plt.subplots(len(archs), 3, figsize=(15, 4.2 * len(archs)), squeeze=False)
    for row, arch in enumerate(archs):
        ax_dg, ax_gg, ax_acc = axes[row]
        for r in (r for r in results if r.arch == arch):
            colour = colours[r.approach]
            title = APPROACH_TITLES[r.approach]
            for stage_index, stage in enumerate(r.stages):
                ax = ax_dg if stage.objective == "DG" else ax_gg
                label = title if len(r.stages) == 1 else "%s, stage %d (%s)" % (
                    title, stage_index + 1, stage.objective)
                if stage.curve:
                    xs, ys = zip(*stage.curve)
                    ax.plot(xs, ys, color=colour, marker=".", ms=3, lw=1.2, label=label,
                            ls="-" if stage_index == 0 else "--")
            if r.test_curve:
                xs = [t[0] for t in r.test_curve]
                ax_acc.plot(xs, [t[1] for t in r.test_curve], color=colour, marker="o", ms=4,
                            label="%s top-1" % title)
                if any(t[2] is not None for t in r.test_curve):
                    ax_acc.plot(xs, [t[2] for t in r.test_curve], color=colour, marker="^",
                                ms=4, ls=":", label="%s top-5" % title)
            if r.switch_iteration:
                for ax in (ax_dg, ax_gg, ax_acc):
                    ax.axvline(r.switch_iteration, color=colour, ls=":", lw=1)
        name = arch
        ax_dg.axhline(math.log(data.classes), color="grey", lw=0.8, ls="--",
                      label="chance, ln %d" % data.classes)
        ax_gg.axhline(-math.log(data.classes), color="grey", lw=0.8, ls="--",
                      label="-ln %d (separated classes)" % data.classes)
        ax_acc.axhline(1.0 / data.classes, color="grey", lw=0.8, ls="--", label="chance top-1")
        ax_dg.set_title("%s: train loss, DG (SoftmaxWithLoss)" % name)
        ax_gg.set_title("%s: train loss, GG (GenerativeLoss)" % name)
        ax_acc.set_title("%s: test accuracy (centre crop, val)" % name)
        for ax, ylabel in ((ax_dg, "batch loss"), (ax_gg, "batch loss"), (ax_acc, "accuracy")):
            ax.set_xlabel("iteration (GG+DG: stage 2 after the dotted line)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        ax_acc.set_ylim(0, 1.02)
    fig.suptitle("ImageNet pipeline smoke run: %d-class stand-in, batch %d, %d iterations per "
                 "approach, seed %d (%s)" % (data.classes, settings.train_batch,
                                             settings.iterations, settings.seed,
                                             "CPU" if settings.gpu is None else "GPU"))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=90)
    plt.close(fig)


def write_report(settings: Settings, data: DataInfo, table_path: str, plot_path: str,
                 command: str, started: Optional[str] = None) -> List[ApproachResult]:
    results = collect(settings, data)
    solver_config.write_text_atomic(table_path, table_markdown(results, settings, data, command,
                                                               started))
    plot_curves(results, plot_path, settings, data)
    return results


def started_stamp():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


__all__ = ["Settings", "SmokeError", "RunFailed", "prepare_data", "check_data", "run_all",
           "write_report", "approach_runs", "stage_split"]
