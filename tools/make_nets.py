#!/usr/bin/env python3
"""Write the nets of models/ from their NetSpec definitions (python/gencaffe/nets/),
or one net with your own data paths.

  tools/make_nets.py                 regenerate every committed net under models/
  tools/make_nets.py --check         exit 1 and name the files that differ from the generator
  tools/make_nets.py --arch alexnet --variant gg --train-source my/train_lmdb \\
      --test-source my/val_lmdb --mean-file my/mean.binaryproto --num-classes 20 \\
      --out runs/my/train_val_gg.prototxt
  tools/make_nets.py --arch lenet --variant semi_gg --split data/mnist/semi \\
      --out runs/my/lenet_semi_gg.prototxt

Architectures: lenet, alexnet, zf, and alexnet_tiny, zf_tiny (Tiny ImageNet-200:
56x56 crops, 200 classes, data/tiny_imagenet/). Variants: dg, gg, semi_gg, semi_dg, deploy.
Coupled nets (Flach et al. 2017, python/gencaffe/nets/coupled.py): coupled_dense,
coupled_cnn; variants disc, eq21, eq22, eq21_sum, eq22_sum, deploy_forward,
deploy_reverse, e.g.
  tools/make_nets.py --arch coupled_cnn --variant eq22 --binarize threshold --out my.prototxt
--split DIR (a folder of tools/make_semi_split.py) sets the semi_gg/semi_dg
sources to DIR/labelled_lmdb and DIR/unlabelled_lmdb and, for semi_gg, the
class prior rho to the labelled subset's class frequencies (split.json).
Files are written atomically (temporary name, then rename). Needs the built
pycaffe (build/cpu, or $CAFFE_BUILD_DIR).
"""
import argparse
import os
import sys
from dataclasses import replace

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import non_negative_float, open_share, positive_int  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true",
                   help="compare models/ with the generator instead of writing; exit 1 on any "
                        "difference")
    p.add_argument("--arch", help="write one net of this architecture (lenet, alexnet, zf, "
                                  "alexnet_tiny, zf_tiny) "
                                  "to --out instead of regenerating models/")
    p.add_argument("--variant", default="gg",
                   help="with --arch: dg, gg, semi_gg, semi_dg or deploy (default gg)")
    p.add_argument("--out", help="with --arch: the prototxt to write")
    p.add_argument("--train-source", help="TRAIN data LMDB (semi_gg: the labelled one)")
    p.add_argument("--unlabelled-source", help="semi_gg: the unlabelled LMDB")
    p.add_argument("--test-source", help="TEST data LMDB")
    p.add_argument("--mean-file", help="mean .binaryproto (ImageNet nets)")
    p.add_argument("--train-batch", type=positive_int,
                   help="TRAIN batch size (semi_gg: labelled + unlabelled together)")
    p.add_argument("--test-batch", type=positive_int, help="TEST batch size")
    p.add_argument("--num-classes", type=positive_int,
                   help="class count (default: the architecture's)")
    p.add_argument("--input-size", type=positive_int, metavar="N",
                   help="alexnet, zf: N x N input crops (crop_size and the deploy shape), with "
                        "what that size forces in the net (below 160: conv1's stride halved; "
                        "python/gencaffe/nets/alexnet.py, zf.py); default the architecture's "
                        "(227, 224; alexnet_tiny and zf_tiny: 56)")
    p.add_argument("--labelled-share", type=open_share,
                   help="semi_gg: share of each TRAIN batch taken from the labelled LMDB")
    p.add_argument("--unlabeled-weight", type=non_negative_float,
                   help="semi_gg: lambda of Eq. 19, >= 0 (default 0.1)")
    p.add_argument("--class-prior", help="semi_gg: rho_y, comma-separated, one per class")
    p.add_argument("--split", metavar="DIR",
                   help="semi_gg/semi_dg: a split of tools/make_semi_split.py; its labelled and "
                        "unlabelled LMDBs are the TRAIN sources and (semi_gg) its labelled class "
                        "frequencies the class prior, unless --class-prior or --uniform-prior")
    p.add_argument("--uniform-prior", action="store_true",
                   help="semi_gg with --split: leave the class prior uniform (the layer's default)")
    p.add_argument("--binarize", choices=("sample", "threshold"),
                   help="coupled nets: binary pixels by a fresh Bernoulli sample of pixel/255 on "
                        "every pass (sample, the default) or by pixel/255 > 0.5 (threshold)")
    return p.parse_args(argv)


def coupled_text(args):
    """The text of a coupled net (--arch coupled_*), or None for another --arch."""
    from gencaffe.nets import catalog, coupled
    arch = catalog.COUPLED_ARCHITECTURES.get(args.arch)
    if arch is None:
        return None
    data = arch.data.with_sources(train_source=args.train_source, test_source=args.test_source)
    if args.train_batch:
        data = replace(data, train_batch=args.train_batch)
    if args.test_batch:
        data = replace(data, test_batch=args.test_batch)
    options = coupled.CoupledOptions(data=data, binarize=args.binarize or "sample")
    return coupled.prototxt(arch, args.variant, options,
                            generated_by="tools/make_nets.py (custom data)")


def custom_options(args, arch):
    from gencaffe.nets.variants import NetOptions
    if args.split:
        return split_options(args, arch)
    data = arch.semi_data if args.variant in ("semi_gg", "semi_dg") else arch.data
    data = data.with_sources(train_source=args.train_source, test_source=args.test_source,
                             mean_file=args.mean_file, unlabelled_source=args.unlabelled_source)
    if args.train_batch:
        data = replace(data, train_batch=args.train_batch, unlabelled_batch=0)
    if args.test_batch:
        data = replace(data, test_batch=args.test_batch)
    options = NetOptions(data=data, num_classes=args.num_classes)
    if args.labelled_share is not None:
        options = replace(options, labelled_share=args.labelled_share)
    if args.unlabeled_weight is not None:
        options = replace(options, unlabeled_weight=args.unlabeled_weight)
    if args.class_prior:
        options = replace(options, class_prior=tuple(float(v) for v in args.class_prior.split(",")))
    return options


def split_options(args, arch):
    """Options of a net on the split in args.split (its sources and class prior)."""
    from gencaffe.data import splits
    from gencaffe.nets import semi
    if args.variant not in ("semi_gg", "semi_dg"):
        raise ValueError("--split is for the semi_gg and semi_dg variants, not %r" % args.variant)
    try:
        manifest = splits.load(args.split)
    except splits.SplitError as err:
        raise ValueError(str(err)) from None
    data = arch.semi_data.with_sources(test_source=args.test_source, mean_file=args.mean_file)
    if args.train_batch:
        data = replace(data, train_batch=args.train_batch, unlabelled_batch=0)
    if args.test_batch:
        data = replace(data, test_batch=args.test_batch)
    prior = tuple(float(v) for v in args.class_prior.split(",")) if args.class_prior else None
    return semi.split_options(arch, args.split, manifest, data=data,
                              num_classes=args.num_classes, labelled_share=args.labelled_share,
                              unlabeled_weight=args.unlabeled_weight, class_prior=prior,
                              uniform_prior=args.uniform_prior or args.variant == "semi_dg")


def main(argv=None):
    args = parse_args(argv)
    pycaffe_path.add_build_pycaffe(REPO)   # $CAFFE_BUILD_DIR or build/cpu
    from gencaffe.atomic_io import atomic_write
    from gencaffe.nets import catalog, variants
    if args.arch:
        if not args.out:
            raise SystemExit("error: --arch needs --out")
        try:
            text = coupled_text(args)
            if text is None:
                arch = catalog.architecture(args.arch)
                if args.input_size:
                    arch = arch.at_input_size(args.input_size)
                text = variants.prototxt(arch, args.variant, custom_options(args, arch),
                                         generated_by="tools/make_nets.py (custom data)")
        except ValueError as err:
            raise SystemExit("error: %s" % err) from None
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with atomic_write(args.out, "w") as handle:
            handle.write(text)
        print(args.out)
        return 0
    if args.check:
        stale = catalog.stale_nets(REPO)
        for path in stale:
            print("differs from its generator: %s" % os.path.relpath(path, REPO))
        if stale:
            print("run tools/make_nets.py to regenerate")
        return 1 if stale else 0
    for path, text in catalog.committed_nets(REPO).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_write(path, "w") as handle:
            handle.write(text)
        print(os.path.relpath(path, REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
