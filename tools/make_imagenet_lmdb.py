#!/usr/bin/env python3
"""Make Caffe's ImageNet inputs from an ImageNet-style tree: shuffled train/val
LMDBs (resized, default 256x256), mean.binaryproto and the class-index map.

Input (ROOT, e.g. an unpacked ILSVRC-2012 with Caffe's ilsvrc12 aux files, or
Tiny ImageNet's tiny-imagenet-200/ as downloaded):
  ROOT/train/<wnid>/*.JPEG      class folders; label i = i-th wnid in sorted order
  ROOT/val/*.JPEG + a label file ROOT/val.txt or ROOT/val/val.txt ("NAME LABEL"
                                lines, Caffe's data/ilsvrc12/val.txt), or ROOT/val/<wnid>/*
  ROOT/synsets.txt              optional: the class order (checked against train/)
  ROOT/synset_words.txt         optional: names, copied in label order
or Tiny ImageNet's layout: ROOT/wnids.txt (class order), ROOT/words.txt,
ROOT/train/<wnid>/images/*.JPEG, ROOT/val/images/*.JPEG labelled by
ROOT/val/val_annotations.txt ("NAME<TAB>WNID..."), written at 64x64 by default;
or convert_imageset's own list files ("relative/path LABEL") with --train-list /
--val-labels, relative to --train-dir / --val-dir. Greyscale images are
stored with 3 channels (convert_imageset reads every image in colour).

Output (--out-dir, default data/imagenet, where models/alexnet and models/zf
read): train_lmdb/, val_lmdb/, mean.binaryproto, classes.txt (line i = class
of label i), synset_words.txt (if names are known), train_list.txt and
val_list.txt (what convert_imageset was given), skipped.txt (every file left
out, with why), logs/, manifest.json (counts, classes, options, sources,
fingerprint of the inputs).

Upstream's convert_imageset and compute_image_mean do the conversion. Every
image is decoded once beforehand so unreadable and truncated files are named
and left out (convert_imageset would store a truncated JPEG silently). Outputs
appear only when everything succeeded; a rerun with unchanged inputs and
options does nothing. Exit status: 0 done or up to date, 1 bad input or a
failed tool (message on stderr, nothing changed in the output folder).

Examples:
  tools/make_imagenet_lmdb.py data/standin_imagenet --out-dir data/standin_imagenet_lmdb
  tools/make_imagenet_lmdb.py /path/to/tiny-imagenet-200 --out-dir data/tiny_imagenet --encoded
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe import progress  # noqa: E402
from gencaffe.cli_args import non_negative_int, positive_int, size_hw  # noqa: E402
from gencaffe.data import imagenet, imagenet_sources  # noqa: E402
from gencaffe.data.caffe_convert import ToolError  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?",
                   help="the data folder holding train/ and val/ (and val.txt, synsets.txt, "
                        "synset_words.txt if present); optional if --train-dir and --val-dir "
                        "are given")
    src = p.add_argument_group("inputs (defaults derived from ROOT)")
    src.add_argument("--train-dir", metavar="DIR", help="train images: a <wnid>/ class tree, or the folder "
                                         "--train-list paths are relative to (default ROOT/train)")
    src.add_argument("--train-list", metavar="FILE", help="a convert_imageset list file 'relative/path LABEL' for "
                                          "train (e.g. Caffe's ilsvrc12 train.txt) instead of "
                                          "scanning the tree")
    src.add_argument("--val-dir", metavar="DIR", help="val images: a flat folder with a label file, or a <wnid>/ "
                                       "class tree (default ROOT/val)")
    src.add_argument("--val-labels", "--val-list", dest="val_list", metavar="FILE",
                     help="the val label file, 'NAME LABEL' lines relative to --val-dir (Caffe's "
                          "ilsvrc12 val.txt; LABEL may be an index or a wnid). Default: ROOT/val.txt "
                          "or VAL_DIR/val.txt, unless val is a class tree")
    src.add_argument("--classes", metavar="FILE", help="class order, one name a line (synsets.txt) or 'name words' "
                                       "(synset_words.txt); default ROOT/synsets.txt if present, "
                                       "else the sorted train class folders")
    src.add_argument("--class-names", metavar="FILE", help="'wnid words' file for synset_words.txt in the output "
                                           "(default ROOT/synset_words.txt if present)")
    src.add_argument("--allow-missing-val-classes", action="store_true",
                     help="accept val labels that cover fewer classes than train (default: error)")
    out = p.add_argument_group("output")
    out.add_argument("--out-dir", metavar="DIR", default=os.path.join(REPO, "data", "imagenet"),
                     help="output folder; must be new, empty, or an earlier output of this tool "
                          "(default: %(default)s)")
    out.add_argument("--size", type=size_hw, default=None, metavar="N|HxW",
                     help="resize every image to this (convert_imageset --resize_height/width; "
                          "default 256, Caffe's ImageNet size, or 64 for a Tiny ImageNet tree, "
                          "whose images are 64x64: stored as they are, not resampled)")
    out.add_argument("--encoded", action="store_true",
                     help="store JPEG-encoded Datums (about 10x smaller on disk; Caffe's Data "
                          "layer decodes them) instead of raw pixels")
    out.add_argument("--encode-type", default="jpg",
                     help="with --encoded: the format every resized image is re-encoded in "
                          "(OpenCV's default quality); '' keeps each file's own by extension "
                          "(default: %(default)s)")
    out.add_argument("--seed", type=non_negative_int, default=1, help="seed of the list shuffle (default 1)")
    run = p.add_argument_group("running")
    run.add_argument("--no-check", action="store_true",
                     help="skip the decode pass: only files OpenCV cannot open at all are left out "
                          "(and named); truncated JPEGs then go into the LMDB with grey fill")
    run.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                     help="processes for the decode pass (default: all cores, %(default)s)")
    run.add_argument("--caffe-tools", metavar="DIR",
                     help="folder with convert_imageset and compute_image_mean (default: "
                          "$CAFFE_BUILD_DIR/caffe/tools or build/cpu/caffe/tools, then PATH)")
    run.add_argument("--force", action="store_true",
                     help="rebuild even if the manifest says the outputs are current")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        sources = imagenet_sources.resolve(
            root=args.root, train_dir=args.train_dir, val_dir=args.val_dir,
            train_list=args.train_list, val_list=args.val_list, classes_file=args.classes,
            words_file=args.class_names,
            allow_missing_val_classes=args.allow_missing_val_classes)
    except imagenet_sources.SourceError as err:
        problems = err.problems
        print("error: the input does not match the expected layout (%d problem%s):\n%s"
              % (len(problems), "" if len(problems) == 1 else "s",
                 "\n".join("  - " + p for p in problems)), file=sys.stderr)
        return 1
    size = args.size or imagenet.default_size(sources)
    options = imagenet.Options(height=size[0], width=size[1], encoded=args.encoded,
                               encode_type=args.encode_type, seed=args.seed,
                               check=not args.no_check)
    print("classes: %d (%s); images resized to %dx%d%s"
          % (len(sources.classes), sources.classes_source, size[0], size[1],
             "" if args.size else " (the default for this layout; --size to change)"))
    print("train: %d images (%s)  val: %d images (%s)"
          % (len(sources.train.entries), sources.train.source.get("list", sources.train.root),
             len(sources.val.entries), sources.val.source.get("list", sources.val.root)))
    try:
        manifest, _ = imagenet.prepare(
            sources, args.out_dir, options, tools_dir=args.caffe_tools, repo=REPO,
            jobs=max(1, args.jobs), force=args.force,
            progress_factory=progress.bar_factory(not args.no_progress))
    except (imagenet.DataError, ToolError) as err:
        print("error: %s\n(nothing was changed in %s)" % (err, os.path.abspath(args.out_dir)),
              file=sys.stderr)
        return 1
    print(imagenet.summary(manifest, os.path.abspath(args.out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
