#!/usr/bin/env python3
"""Benchmark GenerativeLoss against SoftmaxWithLoss (a benchmark, not a test).

In one run:
  1. the loss layer alone, forward+backward, on the same random blobs, for
     (N, C) in {(64, 10), (256, 1000), (1024, 1000)}: pycaffe drives the one
     layer (net._forward/_backward on its index); the cost of an empty layer
     call, measured the same way, is subtracted;
  2. `caffe time` of LeNet (models/lenet/lenet_dg.prototxt vs lenet_gg.prototxt,
     MNIST LMDB input) - the whole-net iteration time with each loss.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(64, 10), (256, 1000), (1024, 1000)]


def setup_paths(build):
    sys.path.insert(0, os.path.join(build, "caffe-src", "python"))
    sys.path.insert(0, os.path.join(REPO, "python"))
    os.environ.setdefault("GLOG_minloglevel", "2")


def loss_net(tmpdir, loss_type, n, c):
    import caffe
    from caffe import layers as L
    spec = caffe.NetSpec()
    spec.scores = L.Input(shape=dict(dim=[n, c]))
    spec.label = L.Input(shape=dict(dim=[n]))
    spec.loss = getattr(L, loss_type)(spec.scores, spec.label)
    proto = spec.to_proto()
    proto.force_backward = True
    path = os.path.join(tmpdir, f"{loss_type}_{n}_{c}.prototxt")
    with open(path, "w") as f:
        f.write(str(proto))
    return caffe.Net(path, caffe.TRAIN)


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


def caffe_time(caffe_bin, model, iterations, gpu):
    cmd = [caffe_bin, "time", "-model", model, "-iterations", str(iterations)]
    if gpu:
        cmd += ["-gpu", "0"]
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")  # inherits --threads
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    match = re.search(r"Average Forward-Backward: ([0-9.eE+-]+) ms", out.stderr)
    if out.returncode != 0 or not match:
        sys.exit(f"bench: `{' '.join(cmd)}` failed:\n{out.stderr[-3000:]}")
    return float(match.group(1))


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


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "cpu"),
                        help="CMake build directory (default: build/cpu)")
    parser.add_argument("--gpu", action="store_true", help="time on GPU 0 (needs a CUDA build)")
    parser.add_argument("--repeats", type=int, default=15,
                        help="alternating repetitions per measurement (default 15)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads (default 1; 0 = leave the environment's setting)")
    parser.add_argument("--lenet-iterations", type=int, default=20,
                        help="iterations per `caffe time` run (default 50)")
    parser.add_argument("--output", default=None,
                        help="results file (default results/bench_generative_loss[_gpu].md)")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    if args.threads > 0:  # before numpy/pycaffe load OpenBLAS
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    setup_paths(build)
    caffe_bin = os.path.join(build, "caffe", "tools", "caffe")
    output = args.output or os.path.join(
        REPO, "results", f"bench_generative_loss{'_gpu' if args.gpu else ''}.md")

    device = "GPU 0" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"bench: loss layers alone on {device}", flush=True)
    layer_rows = bench_layers(args.repeats, args.gpu)
    print("bench: LeNet with `caffe time`", flush=True)
    samples = bench_lenet(caffe_bin, args.repeats, args.lenet_iterations, args.gpu)
    dg, gg = min(samples["dg"]), min(samples["gg"])
    dg_median, gg_median = statistics.median(samples["dg"]), statistics.median(samples["gg"])
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")

    lines = [
        "# GenerativeLoss vs SoftmaxWithLoss",
        "",
        f"Measured {datetime.date.today()} on {device}, {platform.processor() or platform.machine()}, "
        f"by `python3 tools/bench_generative_loss.py{' --gpu' if args.gpu else ''} "
        f"--repeats {args.repeats} --threads {args.threads} --lenet-iterations {args.lenet_iterations}`; "
        f"BLAS threads: {threads}; load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "Best (minimum) of alternating repetitions; a ratio > 1 means GenerativeLoss is slower.",
        "",
        "## Loss layer alone, forward + backward (target: ratio <= 2)",
        "",
        "| N | C | SoftmaxWithLoss (us) | GenerativeLoss (us) | ratio GG/DG |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {c} | {dg_us:.1f} | {gg_us:.1f} | {r:.3f} |" for n, c, dg_us, gg_us, r in layer_rows]
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
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, output)
    print(f"bench: wrote {output}")


if __name__ == "__main__":
    main()
