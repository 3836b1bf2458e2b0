#!/usr/bin/env python3
"""Draw a small ImageNet-shaped stand-in data set (no registry ships ImageNet).

Layout, as ILSVRC-2012 plus Caffe's ilsvrc12 aux files:
  OUT/train/<wnid>/<wnid>_<k>.JPEG   OUT/val/STANDIN_val_<n>.JPEG
  OUT/val.txt ("NAME LABEL")  OUT/train.txt  OUT/synsets.txt  OUT/synset_words.txt
  OUT/standin_manifest.json (options, classes, counts, the corrupt files, a digest)

Classes are shape x texture ("striped star", "dotted ring", ...: 6 shapes x 4
textures, up to 24), with colours, size, position, rotation, background,
lighting, noise, image size and JPEG quality varied within every class. A few
deliberately corrupt files (truncated JPEG, zero-byte, text named .JPEG) are
added on top of the clean counts and listed in the manifest.

Seeded and deterministic (the same bytes for any --jobs); written under a
temporary name and renamed when complete; a rerun with the same options does
nothing. Then: tools/make_imagenet_lmdb.py OUT --out-dir DATA_DIR.
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe import progress  # noqa: E402
from gencaffe.cli_args import non_negative_int, positive_int  # noqa: E402
from gencaffe.data import standin  # noqa: E402


def build_parser():
    d = standin.StandinConfig()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default=os.path.join(REPO, "data", "standin_imagenet"),
                   help="the tree's folder (default: %(default)s)")
    p.add_argument("--classes", type=int, default=d.classes,
                   help="number of classes, 2..%d (default %d)" % (standin.MAX_CLASSES, d.classes))
    p.add_argument("--train-per-class", type=int, default=d.train_per_class,
                   help="clean train images per class (default %d)" % d.train_per_class)
    p.add_argument("--val-per-class", type=int, default=d.val_per_class,
                   help="clean val images per class (default %d)" % d.val_per_class)
    p.add_argument("--min-size", type=int, default=d.min_size,
                   help="smallest image side in pixels (default %d)" % d.min_size)
    p.add_argument("--max-size", type=int, default=d.max_size,
                   help="largest image side in pixels (default %d)" % d.max_size)
    p.add_argument("--corrupt", type=int, default=d.corrupt,
                   help="deliberately corrupt extra files, cycling truncated / zero-byte / "
                        "not-an-image, alternating train and val (default %d)" % d.corrupt)
    p.add_argument("--colour-cue", type=float, default=d.colour_cue,
                   help="0..1: how far the object's base colour depends on the class (its hue "
                        "drawn from a band around label/C; 1 = each class its own band); 0 = no "
                        "pixel statistic separates the classes (default %g)" % d.colour_cue)
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="seed (default %d)" % d.seed)
    p.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                   help="worker processes (output does not depend on it; default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace a stand-in tree made with other options")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    config = standin.StandinConfig(classes=args.classes, train_per_class=args.train_per_class,
                                   val_per_class=args.val_per_class, min_size=args.min_size,
                                   max_size=args.max_size, corrupt=args.corrupt, seed=args.seed,
                                   colour_cue=args.colour_cue)
    bars = progress.bar_factory(not args.no_progress)
    try:
        standin.generate(args.out_dir, config, force=args.force, jobs=max(1, args.jobs),
                         progress_factory=(lambda total: bars(total, "drawing", "img"))
                         if bars else None)
    except standin.StandinError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
