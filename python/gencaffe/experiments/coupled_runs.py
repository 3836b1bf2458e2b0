"""Train the coupled recognition/generation nets of Flach, Shekhovtsov & Fikar
(2017) on MNIST for several seeds, resumably (the life cycle of each run is
caffe_runs.CaffeTraining's).

Arms (each a committed solver naming a generated net, models/coupled_*):

    dense_disc      dense 512-512-10, discriminative          (Fig. 1 baseline)
    dense_eq21      dense, Eq. 21, reverse loss per pixel     (Fig. 1, Fig. 2)
    cnn_eq21        8-layer CNN, Eq. 21                       (Sec. 3.2: 0.989, 0.23)
    cnn_eq22        8-layer CNN, Eq. 22                       (Sec. 3.2: 0.990, 0.14)
    cnn_disc        8-layer CNN, discriminative               (our baseline)
    dense_eq21_sum  dense, Eq. 21 as printed (log q summed over pixels)

Layout under runs_dir (default runs/coupled_mnist): <arm>/seed<N>/ with
solver.prototxt, net.prototxt (the generator's net reading settings'
LMDBs), train.log, the final caffemodel and done.json. The seed is Caffe's
random_seed: weight initialisation and every Bernoulli sample (binarised
pixels, Eq. 22's x^{d-1}); the data order is the LMDB's.
"""
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from .. import solver_config
from .caffe_runs import RunSettings
from .caffe_runs import (DONE_NAME, LOG_NAME, PARTIAL_LOG_NAME, CaffeTraining,  # noqa: F401
                         ProcessRegistry, RunFailed, RunnerBase)

TRAIN_IMAGES = 60000
DEFAULT_DATA_DIR = "data/mnist"
DEFAULT_RUNS_DIR = "runs/coupled_mnist"
NET_NAME = "net.prototxt"


@dataclass(frozen=True)
class Arm:
    key: str
    arch: str          # catalog.COUPLED_ARCHITECTURES key
    variant: str       # coupled.TRAIN_VARIANTS
    title: str

    @property
    def solver(self):
        return "solvers/%s_%s.prototxt" % (self.arch, self.variant)

    @property
    def committed_net(self):
        return os.path.join("models", self.arch, "train_val_%s.prototxt" % self.variant)


ARMS = OrderedDict((arm.key, arm) for arm in (
    Arm("dense_disc", "coupled_dense", "disc", "dense, discriminative"),
    Arm("dense_eq21", "coupled_dense", "eq21", "dense, Eq. 21"),
    Arm("cnn_eq21", "coupled_cnn", "eq21", "CNN, Eq. 21"),
    Arm("cnn_eq22", "coupled_cnn", "eq22", "CNN, Eq. 22"),
    Arm("cnn_disc", "coupled_cnn", "disc", "CNN, discriminative"),
    Arm("dense_eq21_sum", "coupled_dense", "eq21_sum", "dense, Eq. 21 summed over pixels"),
))


def arm(key):
    try:
        return ARMS[key]
    except KeyError:
        raise ValueError("unknown arm %r (one of %s)" % (key, ", ".join(ARMS))) from None


@dataclass
class Settings(RunSettings):
    runs_dir: str = DEFAULT_RUNS_DIR   # relative to repo
    data_dir: str = DEFAULT_DATA_DIR   # holds mnist_{train,test}_lmdb; relative to repo or absolute
    epochs: Optional[int] = None       # None: each committed solver's own
    epoch_iterations: Optional[int] = None   # None: ceil(60000 / train batch); smoke runs: fewer
    progress_every_s: float = 120.0

    def lmdb(self, split):
        return os.path.join(self.data_dir, "mnist_%s_lmdb" % split)


def architecture(key):
    from ..nets import catalog
    return catalog.COUPLED_ARCHITECTURES[key]


def iterations_per_epoch(settings, the_arm):
    if settings.epoch_iterations:
        return settings.epoch_iterations
    return math.ceil(TRAIN_IMAGES / architecture(the_arm.arch).data.train_batch)


def full_epoch_iterations(the_arm):
    return math.ceil(TRAIN_IMAGES / architecture(the_arm.arch).data.train_batch)


def solver_epochs(template, the_arm):
    """The committed solver's schedule in epochs of the arm's batch size."""
    return solver_config.solver_epochs(template, full_epoch_iterations(the_arm))


def run_net_text(the_arm, settings):
    from ..nets import coupled
    arch = architecture(the_arm.arch)
    data = arch.data.with_sources(train_source=settings.lmdb("train"),
                                  test_source=settings.lmdb("test"))
    return coupled.prototxt(arch, the_arm.variant, coupled.CoupledOptions(data=data),
                            generated_by="tools/reproduce_coupled.py")


@dataclass
class CoupledRun(CaffeTraining):
    """One `caffe train` of one arm and seed in its own directory."""
    label: str
    run_dir: str
    arm: Arm
    seed: int
    weights: Optional[str] = None

    def snapshot_prefix(self):
        return os.path.join(self.run_dir, self.arm.arch)

    def template(self, settings):
        template = solver_config.load_solver(os.path.join(settings.repo, self.arm.solver))
        if template.net != self.arm.committed_net:
            raise ValueError("%s names net %r; the arm %s trains %s" % (
                self.arm.solver, template.net, self.arm.key, self.arm.committed_net))
        return template

    def epochs(self, settings):
        return settings.epochs or solver_epochs(self.template(settings), self.arm)

    def max_iter(self, settings):
        return self.epochs(settings) * iterations_per_epoch(settings, self.arm)

    def spec(self, settings):
        template = self.template(settings)
        epochs = self.epochs(settings)
        per_epoch = iterations_per_epoch(settings, self.arm)
        solver = solver_config.run_solver(template, self.seed, self.snapshot_prefix(), epochs,
                                          per_epoch)
        solver.net = os.path.join(self.run_dir, NET_NAME)
        if settings.gpu is not None:
            solver.solver_mode = type(solver).GPU
        return {"arm": self.arm.key, "solver_template": self.arm.solver,
                "solver": solver_config.solver_text(solver),
                "files": {NET_NAME: run_net_text(self.arm, settings)},
                "device": "CPU" if settings.gpu is None else "GPU",
                "seed": self.seed, "epochs": epochs, "iterations_per_epoch": per_epoch}


def run_for(settings, arm_key, seed):
    the_arm = arm(arm_key)
    return CoupledRun("%s seed%d" % (arm_key, seed),
                      os.path.join(settings.runs_dir, arm_key, "seed%d" % seed), the_arm, seed)


@dataclass
class Runner(RunnerBase):
    """ensure(run) (caffe_runs.RunnerBase) for one arm and seed."""

    def run_arm(self, arm_key, seed):
        return self.ensure(run_for(self.settings, arm_key, seed))
