"""Which .caffemodel a solver's training wrote last, so that a stage-2 command
never spells out stage 1's max_iter (tools/last_snapshot.py).

Caffe names snapshots SNAPSHOT_PREFIX + "_iter_" + N + ".caffemodel" (".h5"
appended with snapshot_format: HDF5) and writes one at max_iter unless
snapshot_after_train is false. Relative prefixes are relative to the
directory caffe ran in, as everything in a solver is.
"""
import os
import re

from .solver_config import load_solver


class SnapshotError(RuntimeError):
    """No such snapshot; the message says what was looked for and where."""


def effective_prefix(solver, solver_path):
    """snapshot_prefix as Caffe uses it (upgrade_proto.cpp, UpgradeSnapshotPrefixProperty):
    without one, the solver file's path minus its extension; a prefix that is a
    directory gets the solver file's stem appended."""
    if not solver.HasField("snapshot_prefix"):
        return os.path.splitext(solver_path)[0]
    prefix = solver.snapshot_prefix
    if os.path.isdir(prefix):
        return os.path.join(prefix, os.path.splitext(os.path.basename(solver_path))[0])
    return prefix


def extension(solver):
    return ".caffemodel.h5" if solver.snapshot_format == type(solver).HDF5 else ".caffemodel"


def snapshots(prefix, suffixes=(".caffemodel", ".caffemodel.h5")):
    """[(iteration, path)] of the weights files under prefix, by iteration."""
    folder = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    pattern = re.compile(re.escape(base) + r"_iter_(\d+)(%s)$" % "|".join(map(re.escape, suffixes)))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(os.path.dirname(prefix), name)))
    return sorted(found)


def where(path):
    return "" if os.path.isabs(path) else " (relative to the current directory %s)" % os.getcwd()


def newest(prefix):
    found = snapshots(prefix)
    if not found:
        raise SnapshotError("no snapshot %s_iter_N.caffemodel%s" % (prefix, where(prefix)))
    return found[-1][1]


def final_of_solver(solver_path, take_newest=False):
    """The snapshot a finished training with this solver wrote at max_iter; with
    take_newest, the newest one there is (an unfinished or shortened training)."""
    from google.protobuf import text_format
    try:
        solver = load_solver(solver_path)
    except OSError as err:
        raise SnapshotError("cannot read solver %s: %s" % (solver_path, err.strerror or err))
    except text_format.ParseError as err:
        raise SnapshotError("%s is not a Caffe solver: %s" % (solver_path, err)) from None
    prefix = effective_prefix(solver, solver_path)
    if take_newest:
        return newest(prefix)
    if not solver.snapshot_after_train:
        raise SnapshotError("%s sets snapshot_after_train: false, so no snapshot is written at "
                            "max_iter %d; use --newest" % (solver_path, solver.max_iter))
    final = "%s_iter_%d%s" % (prefix, solver.max_iter, extension(solver))
    if os.path.isfile(final):
        return final
    found = snapshots(prefix)
    have = ("the newest there is %s" % found[-1][1]) if found else "there is no snapshot at all"
    raise SnapshotError("%s has not finished: no %s (max_iter %d)%s; %s. Train it to the end, "
                        "or pass --newest to take the newest snapshot"
                        % (solver_path, final, solver.max_iter, where(final), have))
