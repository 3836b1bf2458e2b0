"""Run the MNIST LeNet training approaches (DG, GG, GG+DG, GG+DG with an
automatic ESS-based switch) for several seeds, resumably, on MNIST or on any
data set in its format (Datum LMDBs of 1x28x28 images, labels 0..C-1).

Layout, under runs_dir (default runs/mnist):

    dg/seed<N>/            solver.prototxt, net.prototxt, train.log, lenet_iter_*.caffemodel, done.json
    gg/seed<N>/            same; snapshots every epoch (the auto switch picks one)
    gg_dg/seed<N>/stage1/  GG for the GG epochs  (solvers/lenet_gg_dg_stage1.prototxt; 16)
    gg_dg/seed<N>/stage2/  DG for the rest, from stage 1's final snapshot, with -weights
    gg_dg_auto/seed<N>/    switch.json, stage2/ (DG for the remaining epochs)

The schedule is in epochs (Settings.total_epochs, 25, and gg_epochs, 16, as in
the paper); an epoch is one pass over the train LMDB, ceil(entries / 64)
iterations (938 for MNIST's 60,000 images), and a test pass covers the test
LMDB once (ceil(entries / 100) batches). Settings.epoch_iterations replaces
the epoch by a fixed number of iterations for smoke runs.

Before anything is created, check_data() scans both LMDBs (gencaffe.data.
datum_check): a missing or empty LMDB, images that are not LeNet's 1x28x28 or
labels outside the net's classes stop with a message that names the file.
The scan's record digest is part of each run's spec, so runs on data that
changed are trained again.

A run is finished when done.json says so, matches the run's current spec
(solver, net, data, seed, weights), its log reached "Optimization Done." and
its final snapshot exists. Anything else in a run directory is an interrupted
run: it is wiped and restarted from iteration 0 (Caffe's -snapshot resume
would restart the Data layer at the first record and so change the data order).

gg_dg_auto (beyond the paper): the GG run of the same seed logs the ESS fraction
on the test set after every epoch; the switch epoch is the first epoch whose
test ESS is below the threshold, and DG tuning (base_lr 0.003, as the paper's
stage 2) starts from GG's snapshot of that epoch for the remaining epochs. The
GG run is deterministic for a given seed on the CPU, so its log and per-epoch
snapshots are exactly what a GG process watched and stopped at that epoch
would have produced; reusing them saves training it twice.
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional

from .. import solver_config
from ..data import datum_check
from .caffe_runs import RunSettings
from .caffe_runs import (DONE_NAME, LOG_NAME, PARTIAL_LOG_NAME, CaffeTraining,  # noqa: F401
                         ProcessRegistry, RunFailed, RunnerBase, build_fingerprint)
from .caffe_runs import file_sha256 as _file_sha256

APPROACHES = ("dg", "gg", "gg_dg", "gg_dg_auto")
TOTAL_EPOCHS = 25                 # the paper's (Sec. 5.1: "a max epoch number of 25")

SOLVERS = {
    "dg": "solvers/lenet_dg.prototxt",
    "gg": "solvers/lenet_gg.prototxt",
    "stage1": "solvers/lenet_gg_dg_stage1.prototxt",
    "stage2": "solvers/lenet_gg_dg_stage2.prototxt",
}
SNAPSHOT_BASENAME = "lenet"
# gg_dg_auto's default switch rule (experimental): after the first epoch at
# which GG's test cross_weight (the weight class columns put on other classes'
# examples) changed by less than 0.002 over 2 epochs. Of the rules judged by
# the switch sweep (results/mnist_switch.md) it came closest to the best fixed
# switch (12 epochs: +0.00 %; 8 epochs: it never fired, GG alone, -0.01 %);
# none beat a fixed late switch, which stays the default GG+DG. The batch-ESS
# rule of Sec. 4.2 ("ess<0.15", the old default) fired after epoch 1 and was
# the worst choice of the sweep.
DEFAULT_SWITCH_RULE = "cross_weight~0.002/2"
DEFAULT_DATA_DIR = "data/mnist"
NET_NAME = "net.prototxt"         # each run's net, written by the generator
SWITCH_NAME = "switch.json"
# sha256 of the records (datum_check digest) of the LMDBs tools/make_mnist_lmdb.py
# writes from the pinned MNIST: the data of the paper's Table 1
MNIST_RECORDS_SHA256 = {
    "train": "9d5033ce75689a8fa651ec4dda842481e7155fe87a76034a44c15cb8e88be112",
    "test": "62308ea504883915994da639f6fa5ac9ba87d20771d37aa80e74560f84e88f35",
}


def _lenet():
    from ..nets import lenet
    return lenet.ARCH


@dataclass
class Settings(RunSettings):
    runs_dir: str = "runs/mnist"   # relative to repo (or absolute)
    total_epochs: int = TOTAL_EPOCHS
    gg_epochs: Optional[int] = None         # GG+DG stage 1; None: 16 of 25 (stage1_epochs)
    epoch_iterations: Optional[int] = None  # smoke runs: an "epoch" of this many iterations
    switch_rule: str = DEFAULT_SWITCH_RULE   # gg_dg_auto's rule (switch_criteria)
    data_dir: str = DEFAULT_DATA_DIR   # holds mnist_{train,test}_lmdb; relative to repo or absolute
    train_lmdb: Optional[str] = None   # instead of data_dir's (relative to repo or absolute)
    test_lmdb: Optional[str] = None
    num_classes: int = 10          # LeNet's outputs; labels must lie in 0..num_classes-1
    _summaries: dict = field(default_factory=dict, repr=False, compare=False)

    def switch_criterion(self):
        """gg_dg_auto's switch rule (switch_rule, parsed)."""
        from .switch_criteria import parse_criterion
        return parse_criterion(self.switch_rule)

    def lmdb(self, split):
        explicit = self.train_lmdb if split == "train" else self.test_lmdb
        return explicit or os.path.join(self.data_dir, "mnist_%s_lmdb" % split)

    def data_summary(self, split):
        """datum_check.summarize of the split's LMDB, once per Settings and path (a
        scan of every record; raises DataCheckError naming a missing or empty LMDB)."""
        path = os.path.join(self.repo, self.lmdb(split))
        if (split, path) not in self._summaries:
            self._summaries[(split, path)] = datum_check.summarize(path, role="%s LMDB" % split)
        return self._summaries[(split, path)]

    @property
    def data_iterations_per_epoch(self):
        """One pass over the train LMDB: ceil(entries / train batch)."""
        return math.ceil(self.data_summary("train").entries / _lenet().data.train_batch)

    @property
    def iterations_per_epoch(self):
        return self.epoch_iterations or self.data_iterations_per_epoch

    @property
    def test_iterations(self):
        """Test batches covering the test LMDB once (the last one wraps around
        when the count is not a multiple of the batch)."""
        return math.ceil(self.data_summary("test").entries / _lenet().data.test_batch)

    @property
    def smoke(self):
        return self.epoch_iterations is not None

    def stage1_epochs(self):
        """GG+DG's GG epochs: gg_epochs if given; else the stage-1 solver's (16)
        for the paper's 25 epochs, and the same share of other totals
        (round(total x 16 / 25), at least 1, leaving at least one DG epoch)."""
        if self.gg_epochs is not None:
            return self.gg_epochs
        paper = solver_config.solver_epochs(
            solver_config.load_solver(os.path.join(self.repo, SOLVERS["stage1"])))
        if self.total_epochs == TOTAL_EPOCHS:
            return paper
        return min(self.total_epochs - 1,
                   max(1, int(round(self.total_epochs * paper / float(TOTAL_EPOCHS)))))

    def check(self, approaches=APPROACHES):
        """Raise ValueError (DataCheckError for the data) unless the schedule is
        sound for `approaches` and both LMDBs fit LeNet; nothing is written."""
        if self.total_epochs < 1:
            raise ValueError("--epochs must be at least 1, got %d" % self.total_epochs)
        stage1 = self.stage1_epochs()
        if "gg_dg" in approaches and not 1 <= stage1 < self.total_epochs:
            raise ValueError("--gg-epochs %d: GG+DG needs 1 <= GG epochs < total epochs (%d), "
                             "so that a DG stage remains" % (stage1, self.total_epochs))
        if self.epoch_iterations is not None and self.epoch_iterations < 1:
            raise ValueError("--epoch-iterations must be at least 1")
        arch = _lenet()
        problems = []
        for split in ("train", "test"):
            problems += datum_check.mismatches(
                self.data_summary(split), "%s LMDB" % split, arch.deploy_shape[1:],
                self.num_classes, net_name="LeNet (%d classes)" % self.num_classes
                if self.num_classes != arch.num_classes else "LeNet")
        if problems:
            raise datum_check.DataCheckError("\n".join(problems))

    def is_mnist(self):
        """True when the LMDBs hold exactly the pinned MNIST records."""
        return all(self.data_summary(split).records_sha256 == digest
                   for split, digest in MNIST_RECORDS_SHA256.items())

    def is_paper_setup(self):
        """MNIST, 10 classes, 25 epochs with the switch at 16, whole epochs."""
        return (self.is_mnist() and self.num_classes == 10 and not self.smoke
                and self.total_epochs == TOTAL_EPOCHS and self.stage1_epochs() == 16)


# ------------------------------------------------------------- one caffe run

@dataclass
class TrainingRun(CaffeTraining):
    """One `caffe train` invocation with its own directory (life cycle: caffe_runs)."""
    label: str                     # for progress output, e.g. "gg_dg seed3 stage2"
    run_dir: str                   # relative to repo
    solver_template: str           # committed solver, relative to repo
    seed: int
    epochs: int
    weights: Optional[str] = None  # -weights caffemodel, relative to repo
    snapshot_every_epoch: bool = False
    epoch_offset: int = 0          # epochs trained before this run (for curves)

    def snapshot_prefix(self):
        return os.path.join(self.run_dir, SNAPSHOT_BASENAME)

    def max_iter(self, settings):
        return self.epochs * settings.iterations_per_epoch

    def epoch_snapshot(self, settings, epoch):
        return solver_config.final_snapshot_path(self.snapshot_prefix(),
                                                 epoch * settings.iterations_per_epoch)

    def spec(self, settings):
        """Everything that determines the run's result; done.json must match it.

        The run's net is the generator's LeNet variant that the committed
        solver names (models/lenet/lenet_dg or _gg), with settings.data_dir's
        LMDBs; it is written into the run directory and the solver points at it.
        """
        template = solver_config.load_solver(os.path.join(settings.repo, self.solver_template))
        solver = solver_config.run_solver(template, self.seed, self.snapshot_prefix(), self.epochs,
                                          settings.iterations_per_epoch, self.snapshot_every_epoch)
        del solver.test_iter[:]
        solver.test_iter.append(settings.test_iterations)  # the test LMDB once
        net_text = run_net_text(template.net, settings)
        solver.net = os.path.join(self.run_dir, NET_NAME)
        if settings.gpu is not None:
            solver.solver_mode = type(solver).GPU
        return {"solver_template": self.solver_template, "solver": solver_config.solver_text(solver),
                "files": {NET_NAME: net_text},
                "device": "CPU" if settings.gpu is None else "GPU",
                "data": {split: {"entries": settings.data_summary(split).entries,
                                 "records_sha256": settings.data_summary(split).records_sha256}
                         for split in ("train", "test")},
                "seed": self.seed, "epochs": self.epochs, "weights": self.weights,
                # a retrained earlier stage (new weights file) makes this stage stale
                "weights_sha256": _file_sha256(os.path.join(settings.repo, self.weights))
                if self.weights else None,
                "iterations_per_epoch": settings.iterations_per_epoch}


def run_net_text(committed_net, settings):
    """The generator's text of the committed LeNet net `committed_net` (a
    models/lenet/ path, as the solver names it) reading settings' LMDBs, with
    settings.num_classes outputs."""
    from ..nets import catalog, variants
    arch = catalog.architecture("lenet")
    variant = next((v for v, name in arch.files.items()
                    if committed_net == os.path.join("models", "lenet", name)), None)
    if variant is None:
        raise ValueError("solver net %s is not one of the generated LeNet nets" % committed_net)
    data = arch.data.with_sources(train_source=settings.lmdb("train"),
                                  test_source=settings.lmdb("test"))
    return variants.prototxt(arch, variant,
                             variants.NetOptions(data=data, num_classes=settings.num_classes),
                             generated_by="tools/reproduce_mnist.py")


# ------------------------------------------------------------- approaches

def seed_dir(settings, approach, seed):
    return os.path.join(settings.runs_dir, approach, "seed%d" % seed)


def dg_run(settings, seed):
    return TrainingRun("dg seed%d" % seed, seed_dir(settings, "dg", seed), SOLVERS["dg"], seed,
                       settings.total_epochs)


def gg_run(settings, seed):
    return TrainingRun("gg seed%d" % seed, seed_dir(settings, "gg", seed), SOLVERS["gg"], seed,
                       settings.total_epochs, snapshot_every_epoch=True)


def gg_dg_runs(settings, seed):
    base = seed_dir(settings, "gg_dg", seed)
    stage1_epochs = settings.stage1_epochs()
    stage1 = TrainingRun("gg_dg seed%d stage1" % seed, os.path.join(base, "stage1"),
                         SOLVERS["stage1"], seed, stage1_epochs)
    stage2 = TrainingRun("gg_dg seed%d stage2" % seed, os.path.join(base, "stage2"),
                         SOLVERS["stage2"], seed, settings.total_epochs - stage1_epochs,
                         weights=stage1.final_snapshot(settings), epoch_offset=stage1_epochs)
    return stage1, stage2


def epoch_tests(gg_log, iterations_per_epoch):
    """[(epoch, test outputs)] of the whole-epoch test passes after epoch 0."""
    return [(t.iteration // iterations_per_epoch, t.outputs) for t in gg_log.tests()
            if t.iteration and not t.iteration % iterations_per_epoch]


def dg_after_gg(settings, seed, switch_epoch, run_dir, label, total_epochs=None):
    """DG tuning (the stage-2 solver) for the epochs left after switch_epoch
    of total_epochs (default settings.total_epochs), from the GG run's snapshot
    of that epoch (the GG run of a seed serves every switch point: it is
    deterministic on the CPU and snapshots each epoch)."""
    gg = gg_run(settings, seed)
    return TrainingRun(label, run_dir, SOLVERS["stage2"], seed,
                       (total_epochs or settings.total_epochs) - switch_epoch,
                       weights=gg.epoch_snapshot(settings, switch_epoch), epoch_offset=switch_epoch)


def gg_dg_auto_stage2(settings, seed, switch_epoch):
    return dg_after_gg(settings, seed, switch_epoch,
                       os.path.join(seed_dir(settings, "gg_dg_auto", seed), "stage2"),
                       "gg_dg_auto seed%d stage2" % seed)


# ------------------------------------------------------------- pipelines

@dataclass
class Runner(RunnerBase):
    """ensure(run) (caffe_runs.RunnerBase) plus the MNIST approaches."""

    def run_approach(self, approach, seed):
        settings = self.settings
        if approach == "dg":
            self.ensure(dg_run(settings, seed))
        elif approach == "gg":
            self.ensure(gg_run(settings, seed))
        elif approach == "gg_dg":
            for run in gg_dg_runs(settings, seed):
                self.ensure(run)
        elif approach == "gg_dg_auto":
            gg = gg_run(settings, seed)
            self.ensure(gg)
            switch_epoch = auto_switch_epoch(settings, gg)
            write_switch_record(settings, seed, switch_epoch, gg)
            if switch_epoch is None:
                settings.log("[gg_dg_auto seed%d] the switch rule %s never held (%s): no "
                             "switch, the GG run is the result"
                             % (seed, settings.switch_criterion().rule(),
                                settings.switch_criterion().describe()))
                return
            settings.log("[gg_dg_auto seed%d] switching to DG after epoch %d" % (seed, switch_epoch))
            self.ensure(gg_dg_auto_stage2(settings, seed, switch_epoch))
        else:
            raise ValueError("unknown approach %r" % approach)


def auto_switch_epoch(settings, gg):
    """gg_dg_auto's switch epoch from the finished GG run's per-epoch test
    passes (settings.switch_criterion()), or None: no switch."""
    try:
        return settings.switch_criterion().choose(
            epoch_tests(gg.parsed_log(settings), settings.iterations_per_epoch),
            settings.total_epochs)
    except ValueError as err:
        raise RunFailed(str(err)) from None


def write_switch_record(settings, seed, switch_epoch, gg):
    record = {"switch_rule": settings.switch_criterion().rule(), "switch_epoch": switch_epoch,
              "gg_run": gg.run_dir,
              "weights": gg.epoch_snapshot(settings, switch_epoch) if switch_epoch else None}
    path = os.path.join(settings.repo, seed_dir(settings, "gg_dg_auto", seed), SWITCH_NAME)
    solver_config.write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_switch_record(settings, seed):
    path = os.path.join(settings.repo, seed_dir(settings, "gg_dg_auto", seed), SWITCH_NAME)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
