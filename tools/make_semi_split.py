#!/usr/bin/env python3
"""Split a labelled train LMDB into a labelled subset and the unlabelled rest,
for semi-supervised training (journal Sec. 5.2: "a random subset of examples in
the train set are used as labeled examples, while all the other examples in
the train set are treated as unlabeled examples").

  tools/make_semi_split.py SOURCE_LMDB --labelled K [--seed S] [--balanced] --out-dir DIR

SOURCE_LMDB: an LMDB of Caffe Datums with labels, raw or encoded (what
tools/make_mnist_lmdb.py, tools/make_imagenet_lmdb.py and convert_imageset
write). Outputs in DIR:

  labelled_lmdb/      the K chosen records, unchanged: DG trains on it, and the
                      semi-supervised net's labelled Data layer reads it
  unlabelled_lmdb/    every other record, its label set to -1 (GenerativeLoss's
                      unlabeled_label): the semi-supervised net's second Data layer
  holdout_lmdb/       with --pool N --holdout: the records after the first N,
                      labels kept (a validation set)
  labelled_keys.txt   the chosen keys; split.json: request, counts, labelled class
                      counts and the class prior rho (their frequencies), which
                      tools/make_nets.py --split DIR writes into the net

Examples:
  tools/make_semi_split.py data/mnist/mnist_train_lmdb --labelled 100 --balanced --seed 1 \\
      --out-dir data/mnist/semi
  tools/make_semi_split.py data/imagenet/train_lmdb --labelled 50000 --seed 1 \\
      --out-dir data/imagenet/semi

The records keep their keys, so Caffe reads each output in the source's order.
Everything is written under temporary names, read back and checked (counts,
keys, labels), then renamed into place; a rerun with the same source and
options does nothing. Exit status 0 done or up to date, 1 bad request or input
(message on stderr, the output folder unchanged).
"""
import argparse
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe import progress, pycaffe_path  # noqa: E402
from gencaffe.cli_args import non_negative_int, positive_int  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the labelled train LMDB folder (Caffe Datums)")
    p.add_argument("--labelled", "-k", type=positive_int, required=True, metavar="K",
                   help="how many records get to keep their label")
    p.add_argument("--seed", type=non_negative_int, default=1,
                   help="seed of the choice (default: %(default)s); the same seed, source and "
                        "options always give the same subset")
    p.add_argument("--balanced", action="store_true",
                   help="K/C records of each of the C classes (the remainder to classes drawn at "
                        "random) instead of K uniformly at random (the paper's choice). Needs "
                        "K >= C")
    p.add_argument("--pool", type=positive_int, metavar="N",
                   help="split only the first N records (key order); the rest are left out, or "
                        "written as holdout_lmdb with --holdout. E.g. --pool 50000 on MNIST's "
                        "60,000 keeps the last 10,000 (the classic validation part) apart")
    p.add_argument("--holdout", action="store_true",
                   help="with --pool: write the records after the pool, labels kept, as "
                        "holdout_lmdb (a validation set for choosing settings without the test "
                        "set)")
    p.add_argument("--num-classes", type=positive_int,
                   help="class count (default: the largest label + 1); the class prior has one "
                        "value per class")
    p.add_argument("--unlabeled-label", type=int, default=-1,
                   help="label written into the unlabelled records (default: %(default)s, "
                        "GenerativeLoss's default unlabeled_label)")
    p.add_argument("--out-dir", required=True,
                   help="output folder: new, empty, or one this tool wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.data import splits
    request = splits.SplitRequest(labelled=args.labelled, seed=args.seed, balanced=args.balanced,
                                  pool=args.pool, holdout=args.holdout,
                                  unlabeled_label=args.unlabeled_label,
                                  num_classes=args.num_classes)
    if args.holdout and args.pool is None:
        print("error: --holdout needs --pool N (the holdout set is the records after the first N)",
              file=sys.stderr)
        return 1
    try:
        manifest = splits.make_split(args.source, args.out_dir, request,
                                     log=lambda m: print(m, flush=True),
                                     progress_factory=progress.bar_factory(not args.no_progress))
    except splits.SplitError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    print(splits.summary(manifest, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
