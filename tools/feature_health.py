#!/usr/bin/env python3
"""Do a net's features still depend on the image? For each set of weights and
each chosen blob of a deploy net, over the same val images: the share of
dead units (never positive on any image), the input dependence (the share of
the features' second moment that varies from image to image: 0 = every image
gives the same features), the effective dimension (participation ratio of
the features' covariance spectrum: 1 when one direction dominates) and the
number of principal directions that hold 90 % of the variation. Use it to
see, e.g., whether a pre-training left features a DG tuning can start from;
`random` weights (the prototxt's fillers) are the baseline.

Images: the first --images records of the TEST Data layer's LMDB of --net (a
train_val prototxt), through that layer's transform_param (mean, centre crop)
by Caffe's own Data layer. Relative paths in --net are taken from the current
folder, as Caffe does: run it from the repository root.

Example (Table 3, 50k labels, seed 1):
  python3 tools/feature_health.py --net runs/tiny_imagenet_semi/50k/seed1/dg/epoch1/train_val.prototxt \\
      --deploy runs/tiny_imagenet_semi/50k/seed1/semi_gg/deploy.prototxt \\
      --weights random=random \\
      --weights "DG epoch 6=runs/tiny_imagenet_semi/50k/seed1/dg/epoch6/alexnet_iter_1440.caffemodel" \\
      --weights "semi GG epoch 6=runs/tiny_imagenet_semi/50k/seed1/semi_gg/epoch6/alexnet_iter_1440.caffemodel"
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe import progress, pycaffe_path  # noqa: E402
from gencaffe.cli_args import named_path, non_negative_int, positive_int  # noqa: E402


def named_weights(text):
    """argparse type: NAME=PATH, or NAME=random for the prototxt's fillers."""
    name, path = named_path(text)
    return name, None if path == "random" else path


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", required=True,
                   help="a train_val prototxt: its TEST Data layer gives the images (source "
                        "LMDB, mean, crop)")
    p.add_argument("--deploy", required=True,
                   help="the deploy prototxt (an Input layer 'data' first) the weights fit")
    p.add_argument("--weights", type=named_weights, action="append", required=True,
                   metavar="NAME=PATH", help="a caffemodel and the name its rows get; "
                   "NAME=random for the prototxt's fillers (drawn with --seed); repeat for "
                   "several")
    p.add_argument("--blobs", default=None,
                   help="comma-separated blobs of the deploy net (default: the tops of its "
                        "InnerProduct layers, e.g. fc6,fc7,fc8)")
    p.add_argument("--images", type=positive_int, default=1000,
                   help="how many val images, the first in key order (default %(default)s)")
    p.add_argument("--lmdb", default=None,
                   help="read this LMDB instead of --net's TEST source (same transform)")
    p.add_argument("--seed", type=non_negative_int, default=1,
                   help="Caffe's random seed for NAME=random (default %(default)s)")
    p.add_argument("--out", default=None,
                   help="also write the table to this markdown file (atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def test_data_layer(net_param, net_path):
    """The Data layer Caffe builds in the TEST phase (its source and transform)."""
    from gencaffe.hmc import net_surgery
    for layer in net_surgery.test_phase_layers(net_param):
        if layer.type == "Data":
            return layer
    raise ValueError("%s has no Data layer for the TEST phase" % net_path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    pycaffe_path.add_build_pycaffe(REPO)
    from gencaffe.atomic_io import atomic_write
    from gencaffe.experiments import feature_health, semi_diagnostics
    from gencaffe.hmc import net_surgery
    for path in [args.net, args.deploy] + [w for _, w in args.weights if w]:
        if not os.path.isfile(path):
            sys.exit("feature_health: %s not found" % path)
    try:
        layer = test_data_layer(net_surgery.load_net_param(args.net), args.net)
        deploy = net_surgery.load_net_param(args.deploy)
    except (ValueError, net_surgery.NetSetupError) as err:
        sys.exit("feature_health: %s" % err)
    source = args.lmdb or layer.data_param.source
    if not os.path.isdir(source):
        sys.exit("feature_health: the LMDB %s is not a folder" % source)
    blobs = [b for b in (args.blobs or "").split(",") if b] or feature_health.default_blobs(deploy)
    if not blobs:
        sys.exit("feature_health: %s has no InnerProduct layer: name --blobs" % args.deploy)
    images, _ = semi_diagnostics.lmdb_images(source, args.images, layer.transform_param)
    rows = []
    make_bar = progress.bar_factory(not args.no_progress)
    bar = make_bar(len(args.weights), "forward passes", "net") if make_bar else None
    for name, weights in args.weights:
        try:
            stats = feature_health.measure(args.deploy, weights, images, blobs, args.seed)
        except KeyError as err:
            sys.exit("feature_health: %s" % err.args[0])
        rows += [(name, blob, stats[blob]) for blob in blobs]
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    table = feature_health.markdown(rows)
    print("%d images of %s\n\n%s" % (len(images), source, table))
    if args.out:
        with atomic_write(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
