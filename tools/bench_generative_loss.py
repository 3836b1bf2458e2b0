#!/usr/bin/env python3
"""Benchmark GenerativeLoss against SoftmaxWithLoss (a benchmark, not a test).

In one run:
  1. the loss layer alone, forward+backward, on the same random blobs, for
     (N, C) in {(64, 10), (256, 1000), (1024, 1000)}: pycaffe drives the one
     layer (net._forward/_backward on its index); the cost of an empty layer
     call, measured the same way, is subtracted;
  2. `caffe time` of LeNet (models/lenet/lenet_dg.prototxt vs lenet_gg.prototxt,
     MNIST LMDB input) - the whole-net iteration time with each loss.
With --caffe-time-only (no pycaffe needed, e.g. on a GPU machine carrying a
tools/device_bundle.py bundle), step 1 uses `caffe time`'s per-layer timer on
Input-fed nets instead, and step 2 is skipped.
Repetitions alternate between the two losses (ABAB...), so load drift on the
machine hits both alike; the ratio uses the best (minimum) of the repetitions,
the usual estimate of a cost under additive interference, and medians are
shown beside it. BLAS runs single-threaded by default (--threads) so that the
other core's load does not make thread scheduling the thing measured. Results, as ratios
GG/DG, go to results/bench_generative_loss.md (written atomically).
Targets (issue 4): loss layer within 2x of SoftmaxWithLoss; LeNet GG/DG <= 1.02.
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe.atomic_io import atomic_write  # noqa: E402
from gencaffe.cli_args import non_negative_int, positive_int  # noqa: E402
SHAPES = [(64, 10), (256, 1000), (1024, 1000)]


def setup_paths(build):
    sys.path.insert(0, os.path.join(build, "caffe-src", "python"))
    os.environ.setdefault("GLOG_minloglevel", "2")


def loss_net(tmpdir, loss_type, n, c):
    import caffe
    return caffe.Net(write_loss_net(tmpdir, loss_type, n, c), caffe.TRAIN)


def time_layer(net, index, iterations):
    """Seconds per forward+backward of layer `index` (Python call included)."""
    start = time.perf_counter()
    for _ in range(iterations):
        net._forward(index, index)
        net._backward(index, index)
    return (time.perf_counter() - start) / iterations


def bench_layers(repeats, gpu):
    import numpy as np
    import caffe
    (caffe.set_mode_gpu if gpu else caffe.set_mode_cpu)()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, c in SHAPES:
            rng = np.random.default_rng(0)
            scores = (2 * rng.standard_normal((n, c))).astype(np.float32)
            labels = rng.integers(0, c, size=n).astype(np.float32)
            nets = {t: loss_net(tmp, t, n, c) for t in ("SoftmaxWithLoss", "GenerativeLoss")}
            for net in nets.values():
                net.blobs["scores"].data[...] = scores
                net.blobs["label"].data[...] = labels
                net.forward()
                net.backward()
            iterations = max(20, int(2e6 / (n * c)))
            samples = {t: [] for t in nets}
            overhead = []
            for _ in range(repeats):
                for t, net in nets.items():
                    samples[t].append(time_layer(net, len(net.layers) - 1, iterations))
                # an Input layer's forward/backward do nothing: the call's own cost
                overhead.append(time_layer(nets["SoftmaxWithLoss"], 0, iterations))
            base = min(overhead)
            dg = max(min(samples["SoftmaxWithLoss"]) - base, 1e-9)
            gg = max(min(samples["GenerativeLoss"]) - base, 1e-9)
            rows.append((n, c, dg * 1e6, gg * 1e6, gg / dg))
            print(f"  N={n:5d} C={c:5d}  SoftmaxWithLoss {dg*1e6:9.1f} us  "
                  f"GenerativeLoss {gg*1e6:9.1f} us  ratio {gg/dg:.3f}", flush=True)
    caffe.set_mode_cpu()
    return rows


def run_caffe_time(caffe_bin, model, iterations, gpu):
    """stderr (glog) of `caffe time`; exits with its tail on failure."""
    cmd = [caffe_bin, "time", "-model", model, "-iterations", str(iterations)]
    if gpu:
        cmd += ["-gpu", "0"]
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")  # inherits --threads
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0 or "Average Forward-Backward" not in out.stderr:
        sys.exit(f"bench: `{' '.join(cmd)}` failed:\n{out.stderr[-3000:]}")
    return out.stderr


def caffe_time(caffe_bin, model, iterations, gpu):
    """Whole-net forward+backward milliseconds per iteration."""
    log = run_caffe_time(caffe_bin, model, iterations, gpu)
    return float(re.search(r"Average Forward-Backward: ([0-9.eE+-]+) ms", log).group(1))


def layer_time_ms(log, layer):
    """Forward + backward milliseconds of one layer from `caffe time`'s per-layer lines."""
    total = 0.0
    for phase in ("forward", "backward"):
        m = re.search(rf"\b{re.escape(layer)}\t{phase}: ([0-9.eE+-]+) ms", log)
        if not m:
            sys.exit(f"bench: no '{layer} {phase}' time in the `caffe time` output")
        total += float(m.group(1))
    return total


def write_loss_net(tmpdir, loss_type, n, c):
    """Path of a net of two Input blobs (scores N x C, labels N) and one loss layer.

    The same net for both timings: pycaffe fills the blobs, `caffe time` leaves
    them all zero.
    """
    path = os.path.join(tmpdir, f"{loss_type}_{n}_{c}.prototxt")
    with open(path, "w") as f:
        f.write(f'name: "{loss_type}_{n}x{c}"\nforce_backward: true\n'
                f'layer {{ name: "scores" type: "Input" top: "scores" '
                f'input_param {{ shape {{ dim: {n} dim: {c} }} }} }}\n'
                f'layer {{ name: "label" type: "Input" top: "label" '
                f'input_param {{ shape {{ dim: {n} }} }} }}\n'
                f'layer {{ name: "loss" type: "{loss_type}" bottom: "scores" bottom: "label" '
                f'top: "loss" }}\n')
    return path


def bench_layers_caffe_time(caffe_bin, repeats, gpu):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, c in SHAPES:
            models = {t: write_loss_net(tmp, t, n, c)
                      for t in ("SoftmaxWithLoss", "GenerativeLoss")}
            iterations = max(50, int(2e7 / (n * c)))
            samples = {t: [] for t in models}
            for _ in range(repeats):
                for t, path in models.items():
                    log = run_caffe_time(caffe_bin, path, iterations, gpu)
                    samples[t].append(layer_time_ms(log, "loss"))
            dg = max(min(samples["SoftmaxWithLoss"]) * 1e3, 1e-6)
            gg = max(min(samples["GenerativeLoss"]) * 1e3, 1e-6)
            rows.append((n, c, dg, gg, gg / dg))
            print(f"  N={n:5d} C={c:5d}  SoftmaxWithLoss {dg:9.1f} us  "
                  f"GenerativeLoss {gg:9.1f} us  ratio {gg/dg:.3f}", flush=True)
    return rows


def bench_lenet(caffe_bin, repeats, iterations, gpu):
    models = {k: os.path.join(REPO, "models", "lenet", f"lenet_{k}.prototxt") for k in ("dg", "gg")}
    for path in models.values():
        if not os.path.exists(path):
            sys.exit(f"bench: {path} missing")
    if not os.path.isdir(os.path.join(REPO, "data", "mnist", "mnist_train_lmdb")):
        sys.exit("bench: data/mnist/mnist_train_lmdb missing: run `python3 tools/make_mnist_lmdb.py` first")
    samples = {k: [] for k in models}
    for r in range(repeats):
        for k, path in models.items():
            samples[k].append(caffe_time(caffe_bin, path, iterations, gpu))
        print(f"  LeNet repeat {r + 1}/{repeats}: DG {samples['dg'][-1]:.2f} ms  "
              f"GG {samples['gg'][-1]:.2f} ms", flush=True)
    return samples


def report_lines(args, device, layer_rows, samples):
    flags = " ".join(filter(None, [
        "--gpu" if args.gpu else "", "--caffe-time-only" if args.caffe_time_only else "",
        f"--repeats {args.repeats}", f"--threads {args.threads}",
        "" if args.caffe_time_only else f"--lenet-iterations {args.lenet_iterations}"]))
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    lines = [
        "# GenerativeLoss vs SoftmaxWithLoss",
        "",
        f"Measured {datetime.date.today()} on {device}, {platform.processor() or platform.machine()}, "
        f"by `python3 tools/bench_generative_loss.py {flags}`; "
        f"BLAS threads: {threads}; load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "Best (minimum) of alternating repetitions; a ratio > 1 means GenerativeLoss is slower.",
        "",
        "## Loss layer alone, forward + backward (target: ratio <= 2)",
        "",
        "| N | C | SoftmaxWithLoss (us) | GenerativeLoss (us) | ratio GG/DG |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {c} | {dg_us:.1f} | {gg_us:.1f} | {r:.3f} |"
              for n, c, dg_us, gg_us, r in layer_rows]
    if args.caffe_time_only:
        lines += [
            "",
            "Timed by `caffe time`'s per-layer timer (CUDA events on the GPU) on a net of",
            "two Input blobs (all-zero scores and labels) and the loss layer.",
            "",
        ]
        return lines
    dg, gg = min(samples["dg"]), min(samples["gg"])
    dg_median, gg_median = statistics.median(samples["dg"]), statistics.median(samples["gg"])
    lines += [
        "",
        "Per-call pycaffe overhead (timed on a no-op Input layer) is subtracted. Upstream's",
        "SoftmaxWithLoss runs its softmax per example with BLAS calls and strided loops;",
        "GenerativeLoss walks the N x C scores row by row, once for exp.",
        "",
        "## LeNet, whole-net iteration (`caffe time`, batch 64, MNIST LMDB; target: ratio <= 1.02)",
        "",
        "| net | best forward-backward (ms) | median (ms) | runs (ms) |",
        "|---|---|---|---|",
        f"| lenet_dg (SoftmaxWithLoss) | {dg:.3f} | {dg_median:.3f} | {', '.join(f'{x:.2f}' for x in samples['dg'])} |",
        f"| lenet_gg (GenerativeLoss + ESS top) | {gg:.3f} | {gg_median:.3f} | {', '.join(f'{x:.2f}' for x in samples['gg'])} |",
        "",
        f"Whole-net ratio GG/DG: **{gg / dg:.3f}** (best of {args.repeats}); "
        f"ratio of medians {gg_median / dg_median:.3f}.",
        "",
    ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "cpu"),
                        help="CMake build directory (default: build/cpu)")
    parser.add_argument("--caffe", default=None,
                        help="the caffe binary (default: BUILD/caffe/tools/caffe)")
    parser.add_argument("--gpu", action="store_true", help="time on GPU 0 (needs a CUDA build)")
    parser.add_argument("--caffe-time-only", action="store_true",
                        help="no pycaffe: time the loss layers with `caffe time` and skip "
                             "the LeNet part (for a GPU machine with a device bundle)")
    parser.add_argument("--repeats", type=positive_int, default=15,
                        help="alternating repetitions per measurement (default 15)")
    parser.add_argument("--threads", type=non_negative_int, default=1,
                        help="BLAS/OpenMP threads (default 1; 0 = leave the environment's setting)")
    parser.add_argument("--lenet-iterations", type=positive_int, default=20,
                        help="iterations per LeNet `caffe time` run (default 20)")
    parser.add_argument("--output", default=None,
                        help="results file (default results/bench_generative_loss[_gpu].md)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    build = os.path.abspath(args.build)
    if args.threads > 0:  # before numpy/pycaffe load OpenBLAS
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    caffe_bin = os.path.abspath(args.caffe or os.path.join(build, "caffe", "tools", "caffe"))
    if not os.path.isfile(caffe_bin):
        sys.exit(f"bench: {caffe_bin} not found: build first (make) or pass --caffe")
    output = args.output or os.path.join(
        REPO, "results", f"bench_generative_loss{'_gpu' if args.gpu else ''}.md")

    device = "GPU 0" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"bench: loss layers alone on {device}", flush=True)
    samples = None
    if args.caffe_time_only:
        layer_rows = bench_layers_caffe_time(caffe_bin, args.repeats, args.gpu)
    else:
        setup_paths(build)
        layer_rows = bench_layers(args.repeats, args.gpu)
        print("bench: LeNet with `caffe time`", flush=True)
        samples = bench_lenet(caffe_bin, args.repeats, args.lenet_iterations, args.gpu)
    with atomic_write(output, "w") as f:
        f.write("\n".join(report_lines(args, device, layer_rows, samples)))
    print(f"bench: wrote {output}")


if __name__ == "__main__":
    main()
