#!/usr/bin/env python3
"""Print the weights file a solver's training wrote at its end, for the next
stage's -weights, so that no command spells out max_iter:

  W=$(python3 tools/last_snapshot.py solvers/lenet_gg_dg_stage1.prototxt) &&
    caffe train -solver solvers/lenet_gg_dg_stage2.prototxt -weights "$W"

With a solver file: SNAPSHOT_PREFIX_iter_<max_iter>.caffemodel, the snapshot
Caffe writes at max_iter (the prefix as Caffe derives it: the solver's path
without extension when it gives none, the solver's name inside a prefix that
is a folder; .caffemodel.h5 for snapshot_format HDF5). If that file does not
exist the training has not finished: exit 1 with a message naming the file
and the newest snapshot there is (--newest takes that one instead).

With a snapshot prefix (anything that is not a file): the newest
PREFIX_iter_N.caffemodel[.h5] by N.

Relative paths are relative to the current directory, as for caffe: run it
where caffe ran (the README's commands: the repository root). Prints the
path on stdout and nothing else; errors go to stderr with exit status 1, so
`W=$(...) && caffe ...` stops there.
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe import pycaffe_path  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2.SolverParameter


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOLVER_OR_PREFIX",
                        help="a solver .prototxt, or a snapshot prefix such as "
                             "runs/mnist/solvers/lenet_gg_dg_stage1")
    parser.add_argument("--newest", action="store_true",
                        help="with a solver: the newest snapshot even if the training has not "
                             "reached max_iter")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from gencaffe import snapshots
    try:
        if os.path.isfile(args.source):
            pycaffe_path.require_caffe_pb2()
            path = snapshots.final_of_solver(args.source, take_newest=args.newest)
        else:
            path = snapshots.newest(args.source)
    except snapshots.SnapshotError as err:
        print("last_snapshot: %s" % err, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
