"""Per-run copies of the committed solvers (MNIST, ImageNet).

A reproduction run never edits solvers/*.prototxt: it loads one, sets the seed,
the output prefix and (for smoke runs) a shorter schedule, and writes the copy
into the run's own directory.
"""
import math

from .atomic_io import atomic_write

TRAIN_IMAGES = 60000
TRAIN_BATCH = 64
# One epoch = ceil(60000 / 64) = 938 iterations (60,032 images: a full pass).
ITERATIONS_PER_EPOCH = math.ceil(TRAIN_IMAGES / TRAIN_BATCH)


def _caffe_pb2():
    from caffe.proto import caffe_pb2  # late: only needed when solvers are touched
    return caffe_pb2


def load_solver(path):
    from google.protobuf import text_format
    solver = _caffe_pb2().SolverParameter()
    with open(path) as handle:
        text_format.Merge(handle.read(), solver)
    return solver


def solver_epochs(solver, iterations_per_epoch=ITERATIONS_PER_EPOCH):
    """Whole epochs in a committed solver (its max_iter must be a multiple)."""
    if solver.max_iter % iterations_per_epoch:
        raise ValueError("max_iter %d is not a whole number of %d-iteration epochs"
                         % (solver.max_iter, iterations_per_epoch))
    return solver.max_iter // iterations_per_epoch


def scaled_iterations_per_epoch(epochs_scale):
    """Iterations per 'epoch' for a run at epochs_scale (1.0 = the paper's)."""
    if epochs_scale <= 0:
        raise ValueError("epochs scale must be positive")
    return max(1, int(round(ITERATIONS_PER_EPOCH * epochs_scale)))


def run_solver(template, seed, snapshot_prefix, epochs, iterations_per_epoch,
               snapshot_every_epoch=False):
    """A copy of `template` (a SolverParameter) set up for one run."""
    solver = _caffe_pb2().SolverParameter()
    solver.CopyFrom(template)
    solver.random_seed = seed
    solver.snapshot_prefix = snapshot_prefix
    solver.max_iter = epochs * iterations_per_epoch
    solver.test_interval = iterations_per_epoch  # one test pass per epoch
    if solver.display > iterations_per_epoch:
        solver.display = iterations_per_epoch  # keep >= 1 train-loss point per epoch
    if snapshot_every_epoch:
        solver.snapshot = iterations_per_epoch
    else:
        solver.ClearField("snapshot")  # Caffe still snapshots at max_iter
    return solver


def with_overrides(template, **fields):
    """A copy of `template` (a SolverParameter) with `fields` set. None leaves a
    field as it is; 0 for `snapshot` clears it (Caffe then snapshots only at
    max_iter); `test_iter` takes a list (one per test net); `solver_mode` takes
    "CPU" or "GPU"."""
    pb2 = _caffe_pb2()
    solver = pb2.SolverParameter()
    solver.CopyFrom(template)
    for name, value in fields.items():
        if value is None:
            continue
        if name == "test_iter":
            del solver.test_iter[:]
            solver.test_iter.extend(int(v) for v in value)
        elif name == "solver_mode":
            solver.solver_mode = getattr(pb2.SolverParameter, value)
        elif name == "snapshot" and not value:
            solver.ClearField("snapshot")
        else:
            setattr(solver, name, value)
    return solver


def solver_text(solver):
    from google.protobuf import text_format
    return text_format.MessageToString(solver)


def write_text_atomic(path, text):
    with atomic_write(path, "w") as handle:
        handle.write(text)


def final_snapshot_path(snapshot_prefix, max_iter):
    """The .caffemodel Caffe writes at the end of training."""
    return "%s_iter_%d.caffemodel" % (snapshot_prefix, max_iter)
