#!/usr/bin/env python3
"""Top-1 and top-5 error of a caffemodel, averaging the class probabilities of the
centre and four corner crops of each image, as the papers test on ImageNet val
(--ten-crop adds their mirrors).

Data: an LMDB of Datums (raw or JPEG-encoded, e.g. data/imagenet/val_lmdb from
tools/make_imagenet_lmdb.py), read by Caffe's Data layer; or an image folder
with a label file ('NAME LABEL' lines, like Caffe's val.txt) read by Caffe's
ImageData layer, resized to --resize first (unreadable images are named and
skipped). The mean is subtracted from the full image before cropping, as the
Data layer does with mean_file: --mean-file, --mean-values, or, for an LMDB
made by tools/make_imagenet_lmdb.py, the mean.binaryproto beside it.

The crop size is the deploy net's input (e.g. 227 for models/alexnet/deploy.prototxt;
its Input "data" is N x 3 x 227 x 227); the output is the net's last top (a
Softmax "prob") or --output-blob. The net's class count must equal the
data's classes.txt (the one beside the LMDB, or --classes).

Writes OUT.json (all numbers and settings) and OUT.md (a markdown table row);
default OUT = the weights' path with .5crop / .10crop instead of .caffemodel.
Prints the row. Exit status 0, or 1 with a message on bad input.

Example:
  tools/eval_crops.py --model models/alexnet/deploy.prototxt \\
      --weights runs/alexnet_dg_iter_450000.caffemodel --lmdb data/imagenet/val_lmdb --gpu 0
"""
import argparse
import os
import re
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe import progress, pycaffe_path  # noqa: E402
from gencaffe.cli_args import non_negative_int, positive_int, size_hw  # noqa: E402


def parse_values(text):
    try:
        return [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers like 104,117,123, got %r" % text)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="deploy prototxt: an Input blob (N x 3 x crop x crop) and the class "
                        "probabilities as its last top")
    p.add_argument("--weights", required=True, help="the trained .caffemodel")
    data = p.add_argument_group("data (one of --lmdb, --images)")
    data.add_argument("--lmdb", help="LMDB of Datums (raw or encoded), e.g. data/imagenet/val_lmdb")
    data.add_argument("--images", help="image folder; with --labels, or a <class>/ tree with "
                                       "--classes")
    data.add_argument("--labels", help="with --images: 'NAME LABEL' lines, NAME relative to "
                                       "--images (Caffe's val.txt format)")
    data.add_argument("--classes", help="the data's class list (classes.txt / synsets.txt) to "
                                        "check the net's class count against (default: "
                                        "classes.txt beside an LMDB made by make_imagenet_lmdb.py)")
    data.add_argument("--resize", type=size_hw, default=(256, 256), metavar="N|HxW",
                      help="with --images: resize to this before cropping, as convert_imageset "
                           "does (default 256)")
    data.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    prep = p.add_argument_group("preprocessing (as the training net's transform_param)")
    prep.add_argument("--mean-file", help="mean.binaryproto of the training data (full image "
                                          "size; subtracted before cropping)")
    prep.add_argument("--mean-values", type=parse_values, metavar="B,G,R",
                      help="per-channel means instead of a mean file")
    prep.add_argument("--no-mean", action="store_true", help="subtract nothing")
    prep.add_argument("--scale", type=float, default=1.0,
                      help="multiply after subtracting the mean (default 1)")
    run = p.add_argument_group("running")
    run.add_argument("--ten-crop", action="store_true",
                     help="also the mirrors of the five crops (10 per image)")
    run.add_argument("--batch-size", type=positive_int, default=50,
                     help="images per forward pass; the net sees 5x (or 10x) as many crops "
                          "(default 50)")
    run.add_argument("--gpu", type=non_negative_int, metavar="N",
                     help="run on GPU N (default: CPU)")
    run.add_argument("--input-blob", default="data", help="the net's input blob (default data)")
    run.add_argument("--output-blob", help="blob with the class probabilities (default: the "
                                           "net's last top)")
    run.add_argument("--out", help="results file .json (a .md with the same stem is written "
                                   "beside it); default: WEIGHTS.5crop.json / .10crop.json")
    run.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                     help="with --images: processes for the image decode check")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    pycaffe_path.add_build_pycaffe(REPO)
    try:
        import caffe  # noqa: F401
    except ImportError as err:
        print("error: cannot import pycaffe (%s); build Caffe first (`make`) or set "
              "CAFFE_BUILD_DIR / PYTHONPATH" % err, file=sys.stderr)
        return 1
    from gencaffe.experiments import eval_crops
    cfg = eval_crops.EvalConfig(
        model=args.model, weights=args.weights, lmdb=args.lmdb, images=args.images,
        labels=args.labels, classes=args.classes, mean_file=args.mean_file,
        mean_values=args.mean_values, no_mean=args.no_mean, scale=args.scale,
        ten_crop=args.ten_crop, batch_size=args.batch_size, resize=args.resize, gpu=args.gpu,
        limit=args.limit, input_blob=args.input_blob, output_blob=args.output_blob,
        jobs=args.jobs)
    try:
        result = eval_crops.evaluate(cfg, progress_factory=progress.bar_factory(not args.no_progress))
    except eval_crops.EvalError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    out = args.out or eval_crops.default_out_path(args.weights, args.ten_crop)
    md = eval_crops.write_results(result, out)
    print("%d images, %d crops each: top-1 error %.2f %%, top-5 error %.2f %% (%.1f images/s, %s)"
          % (result["n_images"], result["crops"], result["top1_error"], result["top5_error"],
             result["images_per_s"] or 0, result["mode"]))
    print(eval_crops.markdown_row(result))
    print("results: %s, %s" % (out, md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
