#!/usr/bin/env python3
"""Generative visualization of ConvNet nodes by Hamiltonian Monte Carlo (journal Sec. 4.6, Eq. 20-22).

Samples images x from p_y(x) ∝ exp(f_y(x)) q(x), q = N(0, sigma^2 I), for a node y
of a trained Caffe net: a class score of the last layer, or one channel of an
intermediate conv layer (the net is then cut above that layer and the input
size chosen so its response is 1x1). Dai, Lu, Wu (2016), Sec. 4.6 and 5.3.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from gencaffe.cli_args import (non_negative_int, open_share, positive_float,  # noqa: E402
                               positive_int, size_hw)
from gencaffe.hmc.blob_arrays import CHAINS_ON  # noqa: E402  (numpy only, no pycaffe)


def _ensure_pycaffe():
    """Find pycaffe in this repo's build (CAFFE_BUILD_DIR, default build/cpu) when
    PYTHONPATH does not already provide it."""
    try:
        import caffe  # noqa: F401
        return
    except ImportError:
        pass
    from gencaffe.pycaffe_path import add_build_pycaffe
    add_build_pycaffe(os.path.dirname(HERE))
    try:
        import caffe  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"error: cannot import pycaffe ({err}); build Caffe or set PYTHONPATH")

# Paper settings (journal Sec. 5.3). Explicit flags override a preset.
PRESETS = {
    "lenet": dict(iterations=300, step_size=1e-4, leapfrog_steps=100, sigma=10.0, mass=0.01,
                  temperature=1.0, init="noise", input_scale=0.00390625),
    # iterations/init None: 100 iterations from noise for conv nodes, 500 from the
    # zero image for fully connected nodes (fc8); mean = Caffe's ImageNet BGR mean.
    "alexnet": dict(iterations=None, step_size=3e-6, leapfrog_steps=50, sigma=10.0, mass=1e-5,
                    temperature=0.001, init=None, input_scale=1.0, mean="104,117,123"),
}
# The paper visualizes LeNet and AlexNet only; its ZF net (Sec. 5.2) gets AlexNet's
# settings: same ImageNet input, mean and scale, and a similar depth.
PRESETS["zf"] = dict(PRESETS["alexnet"])

EPILOG = """\
presets (paper settings, journal Sec. 5.3):
  lenet    300 iterations, eps 1e-4, L 100, sigma 10, mass 0.01, T 1, init noise,
           input scale 1/256 (MNIST LeNet's deploy net takes pixels/256)     [default]
  alexnet  eps 3e-6, L 50, sigma 10, mass 1e-5, T 0.001; conv nodes 100 iterations
           from noise, fully connected nodes (fc6-fc8) 500 iterations from the zero
           image; mean 104,117,123 (BGR)
  zf       the alexnet settings (the paper samples LeNet and AlexNet only; ZF takes
           the same ImageNet input)
  Any flag given explicitly overrides the preset.

nodes:
  NAME          every channel of layer NAME (e.g. ip2 = all 10 class scores)
  NAME:C        channel C;  NAME:0-4,7  channels 0..4 and 7
  NAME is a layer name (or a top blob name). The node is that layer's output, so
  'conv1' is before its in-place ReLU and 'relu1' after it. The net is cut after
  NAME and Caffe itself computes the shapes (any layer type Caffe has works): a
  spatial node gets the largest input size at which Caffe gives it a 1x1 response
  and every input pixel moves it (its receptive field: AlexNet conv1 11x11, conv5
  35x35), searched by reshaping the cut net in a helper process; --input-size
  fixes the size. A size Caffe rejects is reported with Caffe's reason.

outputs in --out-dir, per node LAYER_C:
  LAYER_C_samples.png      grid of the final samples of all chains
  LAYER_C_trajectory.png   the first chain at evenly spaced iterations (paper Fig. 1/3)
  LAYER_C_samples.npy      raw final samples, float32 (chains, C, H, W), net input space
  LAYER_C_stats.csv        per iteration: acceptance rate and probability, potential U,
                           energy H, energy error, divergences, step size, elapsed time
  LAYER_overview.png       one row per channel (when a layer has several nodes), each
                           row labelled with node, channel and class name
  nodes.csv                one row per node: acceptance rate, mean acceptance
                           probability, step size, mean energy error and mean |energy
                           error| of the sampling iterations, divergences, time
  summary.json             settings and the same per-node figures, with file names

tips:
  With the paper's LeNet settings each iteration integrates only eps*L = 0.01 time
  units, so in 300 iterations chains started from q = N(0, 10^2) move little on a
  typical MNIST LeNet (the samples still look like noise). '--warmup 50' adapts the
  step size first (here to ~0.02, acceptance ~0.85) and gives clear digits.
  Chains of all requested channels of a layer share each forward/backward pass;
  on a multi-core CPU add --workers N.

example:
  python python/hmc_visualize.py --model models/lenet/lenet_deploy.prototxt \\
      --weights runs/lenet.caffemodel --nodes ip2 --chains 8 --out-dir demo/hmc
"""


def build_parser():
    p = argparse.ArgumentParser(
        prog="hmc_visualize.py", description=__doc__,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    net = p.add_argument_group("net and nodes")
    net.add_argument("--model", required=True,
                     help="deploy prototxt with one 4-D image input (Input layer or input: "
                          "field); never modified on disk")
    net.add_argument("--weights", required=True, help="trained .caffemodel matching --model")
    net.add_argument("--nodes", nargs="+", required=True, metavar="NODE",
                     help="nodes to visualize: NAME, NAME:C or NAME:C0-C1,C2 (see below)")
    net.add_argument("--input-size", type=size_hw, metavar="HxW",
                     help="input size instead of the one searched with Caffe (a spatial "
                          "node's receptive field at a 1x1 response, else the net's own); "
                          "Caffe must accept it and give a 1x1 (or flat) response")
    net.add_argument("--class-names", metavar="FILE",
                     help="class names, line i = channel i of the class score layer: a name a "
                          "line, or Caffe's synset_words.txt ('n01440764 tench, Tinca tinca'); "
                          "labels rows and summaries of nodes with that many channels. LeNet "
                          "needs none: channel k of ip2 is the digit k")
    net.add_argument("--gpu", type=non_negative_int, metavar="ID",
                     help="run Caffe on this GPU (CUDA builds); default CPU")
    net.add_argument("--chains-on", choices=CHAINS_ON, default="auto",
                     help="with --gpu, where the chains' positions, momenta and gradients "
                          "live: device (CuPy arrays over the blobs' GPU memory, no copy "
                          "per leapfrog step; needs CuPy), host (pycaffe's host arrays) or "
                          "auto (device where CuPy is installed; default). The CPU always "
                          "uses the host")

    hmc = p.add_argument_group("HMC (U(x) = (-f_y(x) + |x|^2/(2 sigma^2)) / T, K = |phi|^2/(2m))")
    hmc.add_argument("--preset", choices=sorted(PRESETS), default="lenet",
                     help="paper settings to start from (default: lenet)")
    hmc.add_argument("--sigma", type=positive_float,
                     help="std of the reference distribution q = N(0, sigma^2 I) (paper: 10)")
    hmc.add_argument("--temperature", "-T", type=positive_float,
                     help="temperature T (lenet 1, alexnet/zf 0.001)")
    hmc.add_argument("--step-size", "--eps", type=positive_float, dest="step_size",
                     help="leapfrog step size eps (lenet 1e-4, alexnet 3e-6)")
    hmc.add_argument("--leapfrog-steps", "-L", type=positive_int, dest="leapfrog_steps",
                     help="leapfrog steps per iteration L (lenet 100, alexnet 50)")
    hmc.add_argument("--mass", type=positive_float,
                     help="particle mass m; momentum phi ~ N(0, m I) (lenet 0.01, alexnet 1e-5)")
    hmc.add_argument("--iterations", type=positive_int,
                     help="HMC iterations per chain (lenet 300; alexnet 100 conv / 500 fc)")
    hmc.add_argument("--chains", type=positive_int, default=8,
                     help="independent chains per node, stacked on the batch axis (default 8)")
    hmc.add_argument("--batch-size", type=positive_int, default=64,
                     help="most chains per forward/backward; more run in further batches "
                          "(default 64)")
    hmc.add_argument("--workers", type=positive_int, default=1,
                     help="processes sampling groups of chains in parallel (CPU: up to the "
                          "number of cores; each uses one BLAS thread); chains are split "
                          "into at least this many groups. Results are reproducible for a "
                          "given seed, batch size and worker count (default 1)")
    hmc.add_argument("--seed", type=non_negative_int, default=0,
                     help="random seed, >= 0 (default 0)")
    hmc.add_argument("--init", metavar="noise|zero|image:PATH",
                     help="chain start: 'noise' = a draw from q (paper), 'zero' = zero image "
                          "(paper, AlexNet fc8), 'image:PATH' = an image file mapped to net "
                          "input (lenet: noise; alexnet: zero for fc, noise for conv nodes)")

    extra = p.add_argument_group("beyond the paper (all off by default)")
    extra.add_argument("--warmup", type=non_negative_int, default=0, metavar="N",
                       help="N extra warm-up iterations adapting each chain's step size by "
                            "dual averaging (Stan/NumPyro); the step size is then frozen")
    extra.add_argument("--target-accept", type=open_share, default=0.8,
                       help="acceptance rate the warm-up aims for, between 0 and 1 "
                            "(default 0.8)")
    extra.add_argument("--detect-divergences", action="store_true",
                       help="reject and count proposals whose energy error exceeds "
                            "--divergence-threshold or is not finite")
    extra.add_argument("--divergence-threshold", type=positive_float, default=1000.0,
                       help="energy error counted as a divergence (default 1000, as Stan)")

    io = p.add_argument_group("input space and output")
    io.add_argument("--transform-from", metavar="PROTOTXT",
                    help="read mean and scale from the transform_param of this train/test "
                         "prototxt's data layer")
    io.add_argument("--input-scale", type=positive_float,
                    help="net input = (pixel - mean) * scale (lenet 1/256, alexnet 1)")
    io.add_argument("--mean", metavar="FILE|V1,V2,V3",
                    help="mean in pixel units: .binaryproto, .npy or per-channel values "
                         "(alexnet: 104,117,123)")
    io.add_argument("--channel-order", choices=("bgr", "rgb"), default="bgr",
                    help="channel order of a 3-channel net input (default bgr, as Caffe)")
    io.add_argument("--display", choices=("auto", "clip"), default="auto",
                    help="'auto': stretch each image's min..max; 'clip': undo mean/scale "
                         "and clip to pixels 0..255 (default auto)")
    io.add_argument("--trajectory-frames", type=positive_int, default=10,
                    help="frames in the trajectory strip (default 10)")
    io.add_argument("--out-dir", default="hmc_out", help="output folder (default hmc_out)")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    from gencaffe import input_space
    from gencaffe.hmc import labels, visualize
    from gencaffe.hmc.node_spec import parse_node_spec
    preset = PRESETS[args.preset]

    def pick(name):
        value = getattr(args, name, None)
        return preset.get(name) if value is None else value

    if args.transform_from:
        transform = input_space.transform_from_prototxt(args.transform_from)
        if args.input_scale is not None:
            transform.scale = args.input_scale
        if args.mean is not None:
            transform.mean = input_space.load_mean(args.mean)
    else:
        mean = pick("mean")
        transform = input_space.InputTransform(
            scale=pick("input_scale"),
            mean=input_space.load_mean(mean) if mean else None)
    transform.bgr = args.channel_order == "bgr"
    init = pick("init")
    if init is not None and init not in visualize.INIT_CHOICES and not init.startswith("image:"):
        raise SystemExit(f"error: --init must be noise, zero or image:PATH, got {init!r}")
    if init is not None and init.startswith("image:") and not os.path.isfile(init[6:]):
        raise SystemExit(f"error: --init image not found: {init[6:]}")
    class_names = labels.read_class_names(args.class_names) if args.class_names else None
    return visualize.RunConfig(
        model=args.model, weights=args.weights,
        nodes=[parse_node_spec(n) for n in args.nodes],
        out_dir=args.out_dir, sigma=pick("sigma"), temperature=pick("temperature"),
        step_size=pick("step_size"), n_leapfrog=pick("leapfrog_steps"), mass=pick("mass"),
        iterations=pick("iterations"), chains=args.chains, seed=args.seed, init=init,
        warmup=args.warmup, target_accept=args.target_accept,
        divergence_threshold=args.divergence_threshold if args.detect_divergences else None,
        batch_size=args.batch_size, input_size=args.input_size, transform=transform,
        display=args.display, trajectory_frames=args.trajectory_frames, gpu=args.gpu,
        chains_on=args.chains_on, workers=args.workers, class_names=class_names, class_names_file=args.class_names)


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    _ensure_pycaffe()
    from gencaffe.hmc import visualize
    from gencaffe.hmc.errors import NetSetupError
    for path, what in ((args.model, "--model"), (args.weights, "--weights")):
        if not os.path.isfile(path):
            raise SystemExit(f"error: {what} file not found: {path}")
    try:
        cfg = config_from_args(args)
        progress = None
        if not args.no_progress:
            from tqdm import tqdm

            # Into a log file (not a terminal) every redraw is kept: there, one
            # redraw every 30 s instead of several per second.
            interactive = sys.stderr.isatty()

            def progress(total):
                return tqdm(total=total, unit="it", desc="HMC", dynamic_ncols=True,
                            mininterval=0.1 if interactive else 30.0,
                            ascii=not interactive)
        summary = visualize.run(cfg, progress)
    except (NetSetupError, ValueError, OSError) as err:
        # user-facing problems (bad node, weights, mean file, image): a message, no traceback
        raise SystemExit(f"error: {err}") from None
    for node in summary["nodes"]:
        print(f"{node['label']}  chains {node['chains']}  "
              f"acceptance {node['acceptance_rate']:.3f}  divergences {node['divergences']}  "
              f"-> {node['files']['samples_png']}")
    print(f"summary: {os.path.join(cfg.out_dir, 'summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
