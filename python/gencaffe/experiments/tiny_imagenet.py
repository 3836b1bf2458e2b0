"""Table 2 on real ImageNet photographs: AlexNet and ZF with DG, GG, GG+DG and
a restart control on Tiny ImageNet-200, resumably (tools/reproduce_tiny_imagenet.py).

Approaches (journal Sec. 5.1), per net and seed:

    dg        DG for E epochs            solvers/<arch>_tiny_dg.prototxt
    gg        GG for E epochs            solvers/<arch>_tiny_gg.prototxt
    gg_dg     GG+DG: stage 1 = the gg run's snapshot after S epochs (its
              schedule is the stage-1 solver's up to there, checked), stage 2
              = solvers/<arch>_tiny_gg_dg_stage2.prototxt for E - S epochs
              from it with -weights
    control   DG with GG+DG's restart: stage 1 = the dg run's snapshot after
              S epochs, stage 2 the same stage-2 solver from it; so that
              GG+DG's gain over DG is not the restart at a lower rate

E and S are the committed solvers' (9 and 6) unless Settings.epochs sets E
(S = E x the committed stage-1 share, rounded to a whole epoch). The
learning-rate step stays the committed solvers' 20 epochs: a run of E epochs
is the paper's schedule cut at E (docs/tiny_imagenet.md says why).

Every run is trained one epoch per `caffe train` process (a chunk): chunk k
resumes chunk k-1's .solverstate with -snapshot. Caffe's Data layer starts
each process at the first record, and an epoch is a whole number of batches
(the nets' batch 250 divides the 60,000 train images), so each chunk reads
exactly the batches an uninterrupted run would; each chunk's random_seed
(crops, mirrors, dropout) is a fixed function of the run's seed and the
chunk, so a run stopped anywhere and resumed gives the same weights as one
that never stopped. A stop loses at most the epoch in progress. Each chunk's
test_interval is its own last iteration, so the val set is tested once per
epoch, at its end (and once before training), never twice at a restart.

Layout under runs_dir (default runs/tiny_imagenet):

    <arch>/<approach>/seed<N>/epoch<k>/   one chunk: solver.prototxt,
        train_val.prototxt, train.log, done.json, <arch>_iter_<i>.caffemodel
        (and .solverstate until the next chunk is done; kept: the final
        epoch's and the dg/gg runs' epoch S, which the stage-2 runs start from)
    <arch>/<approach>/seed<N>/deploy.prototxt, eval.5crop.json

gg_dg and control hold only their stage-2 chunks (epoch S+1 .. E).
"""
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import solver_config
from .caffe_runs import CaffeTraining, RunFailed, RunnerBase, RunSettings, file_sha256
from .imagenet_data import DataInfo, check_data, checked_prototxt

ARCHS = ("alexnet", "zf")
APPROACHES = ("dg", "gg", "gg_dg", "control")
TITLES = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG", "control": "DG restarted (control)"}
DEFAULT_SEEDS = {"alexnet": (1, 2, 3), "zf": (1, 2)}
# stage-1 run and stage-2 solver of the two-stage approaches
STAGE1_OF = {"gg_dg": "gg", "control": "dg"}
SOLVER_STAGE = {"dg": "dg", "gg": "gg", "gg_dg": "gg_dg_stage2", "control": "gg_dg_stage2"}
VARIANT = {"dg": "dg", "gg": "gg", "gg_dg": "dg", "control": "dg"}
EVAL_NAME = "eval.5crop.json"
# random_seed of chunk k: SEED_STRIDE x seed + k (+ STAGE2_OFFSET in stage 2),
# distinct for every chunk of every run of a net; DG and GG of one seed start
# from the same weights and see the same crops (a paired comparison). Stage 2
# never replays stage 1's stream (see imagenet_smoke.STAGE2_SEED_OFFSET).
SEED_STRIDE = 1000
STAGE2_OFFSET = 500


class TinyError(RuntimeError):
    """The experiment cannot go on; the message says why and what to do."""


def solver_template(arch: str, stage: str) -> str:
    return "solvers/%s_tiny_%s.prototxt" % (arch, stage)


@dataclass
class Settings(RunSettings):
    runs_dir: str = "runs/tiny_imagenet"   # relative to repo, or absolute
    lmdb_dir: str = "data/tiny_imagenet"   # tools/make_imagenet_lmdb.py's output
    archs: Sequence[str] = ARCHS
    approaches: Sequence[str] = APPROACHES
    seeds: Dict[str, Sequence[int]] = field(default_factory=lambda: dict(DEFAULT_SEEDS))
    epochs: Optional[int] = None           # None: the committed solvers' 9
    train_batch: Optional[int] = None      # None: the committed nets' 250
    test_batch: Optional[int] = None       # None: the committed nets' 50
    eval_batch: int = 50                   # images per forward pass of the 5-crop evaluation
    chunk_limit: Optional[int] = None      # train at most this many epochs (chunks), then stop
    keep_every_snapshot: bool = False      # keep every epoch's weights, not only those read later
    progress_every_s: float = 120.0
    jobs: int = 2                          # runs at a time (for the eta)
    # run_ledger's folder (results/<report>_runs): finished runs it holds for
    # the current plan are not trained again; None: no ledger
    ledger_dir: Optional[str] = None


# ------------------------------------------------------------------ schedule

@dataclass(frozen=True)
class Schedule:
    """Epochs and iterations of one net's runs on the data at hand."""
    epochs: int                 # E
    switch: int                 # S: GG+DG's stage 1 and the control's
    iters_per_epoch: int
    stepsize: int               # the lr step of every run: the committed one's epochs
    exact_epochs: bool          # an epoch is a whole number of batches

    def stage_epochs(self, approach):
        return self.epochs - self.switch if approach in STAGE1_OF else self.epochs

    def first_epoch(self, approach):
        """The approach's first own epoch (stage 2 continues after S)."""
        return self.switch + 1 if approach in STAGE1_OF else 1


def load_template(settings: Settings, arch: str, stage: str):
    path = settings.path(solver_template(arch, stage))
    if not os.path.isfile(path):
        raise TinyError("missing solver %s" % path)
    return solver_config.load_solver(path)


def template_epochs(solver, path) -> int:
    """Epochs of a committed Tiny ImageNet solver: max_iter in test intervals
    (each tests once per epoch)."""
    if not solver.test_interval or solver.max_iter % solver.test_interval:
        raise TinyError("%s: max_iter %d is not a whole number of test intervals (one epoch "
                        "each)" % (path, solver.max_iter))
    return solver.max_iter // solver.test_interval


def same_schedule(a, b) -> List[str]:
    """Fields in which two solvers differ, but max_iter, net and snapshot_prefix."""
    from google.protobuf import text_format
    def fields(solver):
        copy = type(solver)()
        copy.CopyFrom(solver)
        for name in ("max_iter", "net", "snapshot_prefix"):
            copy.ClearField(name)
        return {line.split(":")[0]: line for line in
                text_format.MessageToString(copy).splitlines()}
    fa, fb = fields(a), fields(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def schedule(settings: Settings, arch: str, data: DataInfo, train_batch: int) -> Schedule:
    dg = load_template(settings, arch, "dg")
    stage1 = load_template(settings, arch, "gg_dg_stage1")
    stage2 = load_template(settings, arch, "gg_dg_stage2")
    gg = load_template(settings, arch, "gg")
    # GG+DG's stage 1 is taken from the GG run: only sound if their schedules agree
    differ = same_schedule(gg, stage1)
    if differ:
        raise TinyError("%s and %s differ in %s: the GG run's snapshot cannot serve as GG+DG's "
                        "stage 1" % (solver_template(arch, "gg"),
                                     solver_template(arch, "gg_dg_stage1"), ", ".join(differ)))
    committed = template_epochs(dg, solver_template(arch, "dg"))
    share = template_epochs(stage1, solver_template(arch, "gg_dg_stage1")) / float(
        template_epochs(stage1, "") + template_epochs(stage2, solver_template(arch,
                                                                              "gg_dg_stage2")))
    epochs = settings.epochs or committed
    if epochs < 2:
        raise TinyError("GG+DG needs at least 2 epochs (one per stage), got %d" % epochs)
    switch = min(epochs - 1, max(1, int(round(epochs * share))))
    iters = int(math.ceil(data.train_count / float(train_batch)))
    # the committed step in epochs, whatever E: a run of E epochs is the
    # paper's schedule cut at E (docs/tiny_imagenet.md says why)
    step_epochs = dg.stepsize / float(dg.test_interval)
    return Schedule(epochs, switch, iters, max(1, int(round(step_epochs * iters))),
                    data.train_count % train_batch == 0)


# ------------------------------------------------------------------ nets

def net_spec(arch_key: str, data: DataInfo, settings: Settings):
    from dataclasses import replace
    from ..nets import catalog
    from ..nets.variants import NetOptions
    arch = catalog.architecture(arch_key + "_tiny")
    spec = replace(arch.data, train_source=data.path("train_lmdb"),
                   test_source=data.path("val_lmdb"), mean_file=data.path("mean.binaryproto"),
                   train_batch=settings.train_batch or arch.data.train_batch,
                   test_batch=settings.test_batch or arch.data.test_batch)
    return arch, NetOptions(data=spec, num_classes=data.classes)


def batches(arch_key: str, data: DataInfo, settings: Settings) -> Tuple[int, int]:
    """(train, test) batch of the runs' nets: the settings', else the committed nets'."""
    spec = net_spec(arch_key, data, settings)[1].data
    return spec.train_batch, spec.test_batch


def generated_net(arch_key: str, variant: str, data: DataInfo, settings: Settings) -> str:
    arch, options = net_spec(arch_key, data, settings)
    return checked_prototxt(arch, variant, options, data,
                            "tools/reproduce_tiny_imagenet.py (the data's paths)")


# ------------------------------------------------------------------ chunks

@dataclass
class Chunk(CaffeTraining):
    """One epoch of one run: a `caffe train` in its own directory."""
    label: str
    run_dir: str
    arch: str
    approach: str
    seed: int
    epoch: int                      # the run's epoch this chunk trains (1-based, global)
    first_iter: int                 # the solver's iteration at the start (stage 2 from 0)
    last_iter: int
    solver: str
    files: Dict[str, str]
    data_fingerprint: str
    previous: Optional["Chunk"] = None   # the chunk whose snapshot this one starts from
    resume: Optional[str] = None    # -snapshot: previous's .solverstate (same stage)
    weights: Optional[str] = None   # -weights: previous's .caffemodel (stage 2's first)
    keep: bool = False              # keep the snapshot when the next chunk is done
    run_root: str = ""              # the run's folder: its epoch<k>/, deploy, evaluation
    keep_solverstate = True

    def snapshot_prefix(self):
        return os.path.join(self.run_dir, self.arch)

    def max_iter(self, settings):
        return self.last_iter

    def solverstate(self):
        return "%s_iter_%d.solverstate" % (self.snapshot_prefix(), self.last_iter)

    def spec(self, settings):
        start = None
        if self.previous is not None:
            done = self.previous.read_done(settings)
            start = done.get("snapshot_sha256") if done else None
        return {"solver": self.solver, "files": self.files, "data": self.data_fingerprint,
                "resume": self.resume, "weights": self.weights, "start_sha256": start}

    def is_complete(self, settings):
        """Done with the current spec; its snapshot may since have been pruned."""
        done = self.read_done(settings)
        if done is None or done.get("spec") != self.spec(settings):
            return False
        return os.path.exists(settings.path(self.log_path())) and \
            self.parsed_log(settings).finished

    def can_resume_from(self, settings):
        """What the next chunk reads is still on disk."""
        return os.path.exists(settings.path(self.final_snapshot(settings))) and \
            os.path.exists(settings.path(self.solverstate()))

    def prune(self, settings):
        """Drop the solver state (and, unless kept, the weights) once the next
        chunk is done: an AlexNet snapshot is ~97 MB, as much again its state."""
        paths = [self.solverstate()] + ([] if self.keep else [self.final_snapshot(settings)])
        for path in paths:
            try:
                os.remove(settings.path(path))
            except FileNotFoundError:
                pass


def run_dir(settings: Settings, arch: str, approach: str, seed: int) -> str:
    return os.path.join(settings.runs_dir, arch, approach, "seed%d" % seed)


def chunk_seed(seed: int, epoch_index: int, stage2: bool) -> int:
    return SEED_STRIDE * seed + epoch_index + (STAGE2_OFFSET if stage2 else 0)


def epoch_chunks(settings, template, files: Dict[str, str], data_fingerprint: str, *,
                 arch: str, approach: str, seed: int, title: str, run_root: str,
                 epochs: Sequence[int], iters_per_epoch: int, stepsize: int,
                 test_iter: int, previous: Optional[Chunk] = None, stage2: bool = False,
                 keep_epochs: Sequence[int] = ()) -> List[Chunk]:
    """The chunks of one run (or one stage): an epoch each, `epochs` their global
    numbers (a chunk's label says "epoch E/L", L the run's last epoch: 6 for
    Table 3's semi GG, 9 for a run of 9). The committed solver `template`
    with the overrides every chunk needs; a stage 2 (`stage2`) counts its
    solver's iterations from 0 and its first chunk starts from `previous`'s
    weights with -weights, every other chunk resumes the chunk before it
    with -snapshot. The snapshots of the last epoch and of `keep_epochs` (of
    every epoch with settings.keep_every_snapshot) are kept when the next
    chunk is done."""
    chunks = []
    for index, epoch in enumerate(epochs):
        first = (index if stage2 else epoch - 1) * iters_per_epoch
        last = first + iters_per_epoch
        directory = os.path.join(run_root, "epoch%d" % epoch)
        solver = solver_config.with_overrides(
            template, net=os.path.join(directory, "train_val.prototxt"), max_iter=last,
            stepsize=stepsize, test_iter=[test_iter], test_interval=last,
            test_initialization=(first == 0 and not stage2), snapshot=0,
            display=min(template.display, iters_per_epoch),
            snapshot_prefix=os.path.join(directory, arch),
            random_seed=chunk_seed(seed, index, stage2),
            solver_mode="CPU" if settings.gpu is None else "GPU")
        chunk = Chunk("%s epoch %d/%d" % (title, epoch, epochs[-1]), directory, arch, approach,
                      seed, epoch, first, last, solver_config.solver_text(solver), dict(files),
                      data_fingerprint, previous=previous, run_root=run_root,
                      keep=(epoch == epochs[-1] or epoch in keep_epochs
                            or settings.keep_every_snapshot))
        if previous is not None and index == 0 and stage2:
            chunk.weights = previous.final_snapshot(settings)
        elif previous is not None:
            chunk.resume = previous.solverstate()
        chunks.append(chunk)
        previous = chunk
    return chunks


def chain(settings: Settings, data: DataInfo, arch: str, approach: str, seed: int,
          sched: Schedule) -> List[Chunk]:
    """The chunks of one run, in order (stage 2's first resumes stage 1's epoch S)."""
    template = load_template(settings, arch, SOLVER_STAGE[approach])
    net = generated_net(arch, VARIANT[approach], data, settings)
    test_iter = int(math.ceil(data.val_count / float(batches(arch, data, settings)[1])))
    two_stage = approach in STAGE1_OF
    previous = None
    if two_stage:
        previous = chain(settings, data, arch, STAGE1_OF[approach], seed, sched)[sched.switch - 1]
    first = sched.first_epoch(approach)
    return epoch_chunks(
        settings, template, {"train_val.prototxt": net}, data.fingerprint, arch=arch,
        approach=approach, seed=seed, title="%s %s seed %d" % (arch, TITLES[approach], seed),
        run_root=run_dir(settings, arch, approach, seed),
        epochs=range(first, first + sched.stage_epochs(approach)),
        iters_per_epoch=sched.iters_per_epoch, stepsize=sched.stepsize, test_iter=test_iter,
        previous=previous, stage2=two_stage,
        keep_epochs=[sched.switch] if approach in STAGE1_OF.values() else [])


def full_chain(settings: Settings, data: DataInfo, arch: str, approach: str, seed: int,
               sched: Schedule) -> List[Chunk]:
    """Every chunk a run's numbers rest on: a two-stage run's shared stage 1
    (the source run's first S epochs), then its own."""
    chunks = chain(settings, data, arch, approach, seed, sched)
    if approach in STAGE1_OF:
        return chain(settings, data, arch, STAGE1_OF[approach], seed, sched)[:sched.switch] + chunks
    return chunks


def plan_folders(settings: Settings) -> Dict[str, str]:
    """The folders run_ledger.plan_sha256 names instead of spelling out."""
    folders = {settings.runs_dir: "<runs>", settings.lmdb_dir: "<data>"}
    if getattr(settings, "splits_dir", None):
        folders[settings.splits_dir] = "<splits>"
    return folders


def run_key(arch: str, approach: str, seed: int) -> str:
    """The run's name in the ledger."""
    return "%s-%s-seed%d" % (arch, approach, seed)


def ensure_chain(runner: "Runner", chunks: Sequence[Chunk]) -> None:
    """Train the chunks not yet done, from the last one whose state is on disk."""
    settings = runner.settings
    pending = [i for i, c in enumerate(chunks) if not c.is_complete(settings)]
    if not pending:
        return
    start = pending[0]
    # a done chunk whose state was pruned (its successor went stale): redo it
    while start > 0 and not chunks[start - 1].can_resume_from(settings):
        start -= 1
    first = chunks[start]
    if start == 0 and first.weights and not os.path.exists(settings.path(first.weights)):
        raise RunFailed("[%s] the stage-1 snapshot %s is missing; run the %s run first"
                        % (first.label, first.weights, STAGE1_OF[first.approach]))
    for index in range(start, pending[0]):
        os.remove(settings.path(chunks[index].done_path()))   # done, but its state is gone
    for index in range(start, len(chunks)):
        runner.take_chunk(chunks[index])
        if index > 0 and chunks[index].is_complete(settings):
            chunks[index - 1].prune(settings)


# ------------------------------------------------------------------ evaluation

def eval_path(final: Chunk) -> str:
    return os.path.join(final.run_root, EVAL_NAME)


def read_eval(settings: Settings, final: Chunk) -> Optional[dict]:
    import json
    try:
        with open(settings.path(eval_path(final))) as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return None
    done = final.read_done(settings)
    if not done or result.get("weights_sha256") != done.get("snapshot_sha256"):
        return None
    return result


def evaluate(settings: Settings, data: DataInfo, final: Chunk, registry=None) -> dict:
    """5-crop top-1/top-5 error of a run's final snapshot on the val LMDB (cached
    by the weights' sha256). tools/eval_crops.py runs it in a process of its own,
    one BLAS thread per job like the trainings, stopped with them on Ctrl-C."""
    import json
    import subprocess
    import sys
    from . import eval_crops
    from .caffe_runs import tail
    cached = read_eval(settings, final)
    if cached is not None:
        return cached
    folder = final.run_root
    deploy = os.path.join(folder, "deploy.prototxt")
    solver_config.write_text_atomic(settings.path(deploy),
                                    generated_net(final.arch, "deploy", data, settings))
    weights = final.final_snapshot(settings)
    label = final.label.rsplit(" epoch ", 1)[0]
    partial = os.path.join(folder, "eval.partial.json")
    command = [sys.executable, os.path.join(settings.repo, "tools", "eval_crops.py"),
               "--model", deploy, "--weights", weights, "--lmdb", data.path("val_lmdb"),
               "--classes", data.path("classes.txt"), "--mean-file",
               data.path("mean.binaryproto"), "--batch-size", str(settings.eval_batch),
               "--out", partial, "--no-progress", "--jobs", "1"]
    if settings.gpu is not None:
        command += ["--gpu", str(settings.gpu)]
    env = dict(os.environ)
    threads = str(settings.threads_per_job)
    env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, GLOG_minloglevel="2")
    settings.log("[%s] 5-crop evaluation of %s" % (label, weights))
    log_path = settings.path(os.path.join(folder, "eval.log"))
    with open(log_path, "w") as log_handle:
        process = subprocess.Popen(command, cwd=settings.repo, env=env, stdout=log_handle,
                                   stderr=subprocess.STDOUT)
        if registry is not None:
            registry.add(process)
        try:
            process.wait()
        finally:
            if registry is not None:
                registry.discard(process)
    if process.returncode != 0:
        raise TinyError("[%s] the evaluation failed (exit %s); see %s:\n%s"
                        % (label, process.returncode, log_path, tail(log_path)))
    with open(settings.path(partial)) as handle:
        result = json.load(handle)
    result["weights_sha256"] = file_sha256(settings.path(weights))
    eval_crops.write_results(result, settings.path(eval_path(final)))
    for stale in (partial, partial[:-len(".json")] + ".md"):
        os.remove(settings.path(stale))
    settings.log("[%s] 5-crop top-1 error %.2f %%, top-5 error %.2f %%"
                 % (label, result["top1_error"], result["top5_error"]))
    return result


# ------------------------------------------------------------------ driver

class ChunkLimitReached(RunFailed):
    """Settings.chunk_limit epochs were trained in this call: stopped on purpose."""


@dataclass
class Runner(RunnerBase):
    data: Optional[DataInfo] = None
    chunks_trained: int = 0
    chunk_seconds: List[float] = field(default_factory=list)
    epochs_left: int = 0
    # called after every epoch trained; returns at once and never raises
    # (epoch_runs_cli.ReportWriter, which logs a rewrite that fails)
    on_epoch: Optional[Callable[[], None]] = None

    def take_chunk(self, chunk: Chunk):
        with self._locks_guard:
            if chunk.is_complete(self.settings):
                return
            limit = self.settings.chunk_limit
            if limit is not None and self.chunks_trained >= limit:
                raise ChunkLimitReached("stopped after %d epoch(s) (--max-epochs)" % limit)
            self.chunks_trained += 1
        started = time.time()
        if self.ensure(chunk):
            with self._locks_guard:
                self.chunk_seconds.append(time.time() - started)
                self.epochs_left -= 1
                mean = sum(self.chunk_seconds) / len(self.chunk_seconds)
                jobs = max(1, self.settings.jobs)
            self.settings.log("%d epoch(s) of training left in this command, eta %.1f h at %.0f "
                              "min an epoch, %d at a time" % (
                                  self.epochs_left, self.epochs_left * mean / 3600.0 / jobs,
                                  mean / 60.0, jobs))
            if self.on_epoch is not None:
                self.on_epoch()


def plan(settings: Settings, data: DataInfo) -> Dict[Tuple[str, str, int], List[Chunk]]:
    """{(arch, approach, seed): chunks} of everything asked for, checked before training."""
    runs = {}
    for arch in settings.archs:
        sched = schedule(settings, arch, data, batches(arch, data, settings)[0])
        for seed in settings.seeds.get(arch, ()):
            for approach in settings.approaches:
                runs[(arch, approach, seed)] = chain(settings, data, arch, approach, seed, sched)
    return runs


def ledger_plan(settings: Settings, runs: Dict[tuple, List[Chunk]], full: Callable,
                key_of: Callable, stage1_key: Callable) -> Tuple[set, Dict[tuple, List[Chunk]]]:
    """(the planned runs the ledger holds finished for their current plan,
    {pending two-stage run: the stage-1 chunks it needs first}). full(key) ->
    the run's full chain; stage1_key(key) -> the key of the run whose snapshot
    it starts from, or None."""
    from . import run_ledger
    entries = run_ledger.load(settings.ledger_dir)
    folders = plan_folders(settings)
    done = {key for key in runs if run_ledger.finished(
        entries, key_of(key), run_ledger.plan_sha256(full(key), folders))}
    # a pending stage 2 needs its source run's switch snapshot: trained up to
    # there (a no-op when the source run is on disk or trains first)
    needs = {}
    for key in runs:
        if stage1_key(key) is not None and key not in done:
            chunks = full(key)
            needs[key] = chunks[:len(chunks) - len(runs[key])]
    return done, needs


def ledger_work(settings: Settings, runner: "Runner", data: DataInfo,
                runs: Dict[tuple, List[Chunk]], full: Callable, key_of: Callable,
                stage1_key: Callable, describe: Callable) -> Callable:
    """Leaves the runs the ledger holds out of `runs` (saying so), sets the
    runner's epochs to train, and returns work(keys) -> the callable that
    trains those runs in order (a pending stage 2's source first, up to its
    switch) and evaluates each with 5 crops. describe(key) names a run."""
    skipped, needs = ledger_plan(settings, runs, full, key_of, stage1_key)
    for key in sorted(skipped):
        settings.log("%s: finished in the ledger (%s), not trained again"
                     % (describe(key), settings.ledger_dir))
        del runs[key]
    runner.epochs_left = len({c.run_dir for chunks in list(runs.values()) + list(needs.values())
                              for c in chunks if not c.is_complete(settings)})

    def work(keys):
        def run():
            for key in keys:
                if key in needs:
                    ensure_chain(runner, needs[key])
                ensure_chain(runner, runs[key])
                evaluate(settings, data, runs[key][-1], runner.registry)
        return run
    return work


def tasks(settings: Settings, runner: Runner, data: DataInfo):
    """[(label, callable)] for caffe_runs.drive: per net and seed, DG then the
    control, and GG then GG+DG, each followed by its 5-crop evaluation; the
    order puts every net's first seed first (to see it learn before the rest).
    Runs the ledger holds (Settings.ledger_dir) are left out."""
    runs = plan(settings, data)
    scheds = {arch: schedule(settings, arch, data, batches(arch, data, settings)[0])
              for arch in settings.archs}
    describe = (lambda k: "%s %s seed %d" % (k[0], TITLES[k[1]], k[2]))
    work = ledger_work(
        settings, runner, data, runs,
        lambda k: full_chain(settings, data, k[0], k[1], k[2], scheds[k[0]]),
        lambda k: run_key(*k),
        lambda k: (k[0], STAGE1_OF[k[1]], k[2]) if k[1] in STAGE1_OF else None, describe)
    order = []
    seeds = sorted({s for arch in settings.archs for s in settings.seeds.get(arch, ())})
    for seed in seeds:
        for arch in settings.archs:
            for first, second in (("dg", "control"), ("gg", "gg_dg")):
                keys = [(arch, a, seed) for a in (first, second) if (arch, a, seed) in runs]
                if keys:
                    order.append(keys)
    return [(", ".join(map(describe, keys)), work(keys)) for keys in order]


def prepare(settings: Settings) -> DataInfo:
    from .imagenet_data import SmokeError
    try:
        data = check_data(settings)
    except SmokeError as err:
        raise TinyError("%s\n(for Tiny ImageNet: tools/make_imagenet_lmdb.py "
                        "/path/to/tiny-imagenet-200 --out-dir %s)"
                        % (err, settings.lmdb_dir)) from None
    if not settings.seeds or not any(settings.seeds.get(a) for a in settings.archs):
        raise TinyError("no seeds to run")
    return data


__all__ = ["Settings", "TinyError", "Runner", "prepare", "plan", "tasks", "chain", "schedule",
           "evaluate", "read_eval", "ChunkLimitReached", "full_chain", "run_key", "ledger_plan", "ledger_work",
           "plan_folders", "APPROACHES", "ARCHS", "TITLES"]
