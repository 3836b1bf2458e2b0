#!/usr/bin/env python3
"""Draw images from the reverse (generator) model of a trained coupled net
(Flach, Shekhovtsov & Fikar 2017, Fig. 2 and 3), class by class, and write
PNG grids: a row per class, and above each image the class the forward
(recognition) model gives it with that class's probability.

Modes (--mode; "both" draws each):
  recursive   every hidden layer of the reverse chain sampled from the class
              layer down, and the image sampled from its pixel probabilities
              (binary pixels): the paper's Fig. 2 left
  one_layer   x^{d-1} sampled from q(x^{d-1} | class), then probabilities
              propagated (mean field) down to the image, shown as grey
              levels: Fig. 2 right and Fig. 3

The nets are the generator's deploy nets (models/<arch>/deploy_forward and
deploy_reverse.prototxt); the weights are a caffemodel of any of the
architecture's train_val nets (layers load by name), e.g. a run of
tools/reproduce_coupled.py:

  python3 python/coupled_sample.py --arch coupled_cnn \\
      --weights runs/coupled_mnist/cnn_eq22/seed1/coupled_cnn_iter_5625.caffemodel \\
      --out-dir samples/cnn_eq22

Outputs in --out-dir, per mode: samples_<mode>.png (the grid),
samples_<mode>.npz (images, pixel probabilities, labels, the forward
model's class and probability) and summary.json (settings and, per mode
and class, how often the forward model gives a sample the class it was
drawn from).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
REPO = os.path.dirname(HERE)


def _ensure_pycaffe():
    try:
        import caffe  # noqa: F401
        return
    except ImportError:
        pass
    from gencaffe.pycaffe_path import add_build_pycaffe
    add_build_pycaffe(REPO)
    try:
        import caffe  # noqa: F401
    except ImportError as err:
        raise SystemExit("error: cannot import pycaffe (%s); build Caffe (make) or set "
                         "PYTHONPATH" % err)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True,
                   help="trained caffemodel (a coupled train_val net's snapshot)")
    p.add_argument("--arch", choices=("coupled_dense", "coupled_cnn"),
                   help="use the committed deploy nets of this architecture "
                        "(models/<arch>/deploy_*.prototxt)")
    p.add_argument("--forward-model", help="deploy forward net (instead of --arch): Input "
                                           "\"image\" -> ... -> \"prob\"")
    p.add_argument("--reverse-model", help="deploy reverse net (instead of --arch): Input "
                                           "\"label\" -> ... each hidden layer ending in a "
                                           "Sigmoid ... -> Sigmoid of the pixels")
    p.add_argument("--mode", choices=("recursive", "one_layer", "both"), default="both",
                   help="recursive (every layer sampled), one_layer (x^{d-1} sampled, then "
                        "probabilities), or both (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=10,
                   help="images per class, one grid row each (default: %(default)s, the "
                        "paper's 10)")
    p.add_argument("--classes", default=None,
                   help="classes to draw, e.g. '0-9' or '3,5' (default: all)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the samples (NumPy's generator; default: %(default)s)")
    p.add_argument("--sample-layers", type=int,
                   help="beyond the paper: sample this many hidden layers from the top (0 = "
                        "pure mean field from the class) instead of the mode's (recursive: all, "
                        "one_layer: 1)")
    p.add_argument("--image", choices=("sample", "mean"),
                   help="show the sampled binary image or the pixel probabilities (default: "
                        "sample for recursive, mean for one_layer)")
    p.add_argument("--upscale", type=int, default=3, help="tile zoom (default: %(default)s)")
    p.add_argument("--out-dir", required=True, help="folder for the PNGs, .npz and summary.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.arch and (args.forward_model or args.reverse_model):
        p.error("give --arch or --forward-model/--reverse-model, not both")
    if not args.arch and not (args.forward_model and args.reverse_model):
        p.error("give --arch, or both --forward-model and --reverse-model")
    if args.per_class < 1:
        p.error("--per-class must be >= 1")
    if args.upscale < 1:
        p.error("--upscale must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")   # before pycaffe starts glog
    _ensure_pycaffe()
    import numpy as np
    from gencaffe.atomic_io import atomic_write
    from gencaffe.coupled import grids, sampling
    from gencaffe.progress import bar_factory
    if args.arch:
        forward_model, reverse_model = sampling.committed_deploy_nets(REPO, args.arch)
    else:
        forward_model, reverse_model = args.forward_model, args.reverse_model
    try:
        sampler = sampling.CoupledSampler(forward_model, reverse_model, args.weights)
        classes = (list(range(sampler.num_classes)) if args.classes is None
                   else sampling.parse_classes(args.classes, sampler.num_classes))
        modes = list(sampling.MODES) if args.mode == "both" else [args.mode]
        for mode in modes:
            sampling.depth_for(mode, sampler.hidden_layers, args.sample_layers)
    except sampling.SamplingError as err:
        raise SystemExit("error: %s" % err) from None
    os.makedirs(args.out_dir, exist_ok=True)
    make_bar = bar_factory(not args.no_progress)
    bar = make_bar(len(modes) * len(classes), "sampling", "class") if make_bar else None
    rng = np.random.default_rng(args.seed)
    summary = {"weights": args.weights, "forward_model": forward_model,
               "reverse_model": reverse_model, "seed": args.seed, "per_class": args.per_class,
               "hidden_layers": sampler.hidden_layers, "modes": {}}
    for mode in modes:
        samples = sampling.draw_samples(sampler, mode, classes, args.per_class, rng,
                                        args.sample_layers, args.image,
                                        tick=bar.update if bar else None)
        stem = os.path.join(args.out_dir, "samples_%s" % mode)
        title = "%s: %d of %d hidden layers sampled, image %s" % (
            mode, samples.sample_depth, sampler.hidden_layers,
            "sampled" if samples.image_mode == "sample" else "probabilities")
        grids.write_grid(samples, stem + ".png", title=title, upscale=args.upscale)
        with atomic_write(stem + ".npz", "wb") as handle:
            np.savez_compressed(handle, images=samples.images, pixel_prob=samples.pixel_prob,
                                labels=samples.labels, predicted=samples.predicted,
                                probability=samples.probability)
        per_class = {str(c): float(np.mean(samples.predicted[samples.labels == c] == c))
                     for c in classes}
        summary["modes"][mode] = {"sampled_hidden_layers": samples.sample_depth,
                                  "image": samples.image_mode,
                                  "agreement": samples.agreement(),
                                  "agreement_per_class": per_class,
                                  "png": stem + ".png"}
    if bar:
        bar.close()
    with atomic_write(os.path.join(args.out_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
        handle.write("\n")
    for mode, info in summary["modes"].items():
        print("%s: %s (forward model agrees with the drawn class for %.0f%% of the samples)"
              % (mode, info["png"], 100 * info["agreement"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
