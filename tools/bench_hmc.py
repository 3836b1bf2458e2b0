#!/usr/bin/env python3
"""Benchmark HMC visualization with the paper's settings (journal Sec. 4.6, Eq. 20-22).

Measures, on this machine (CPU, or a GPU with --gpu) and in one run:
  * samples per minute for one chain and for batches of chains, against the
    paper's cost on a GTX Titan: --preset lenet (default): node ip2, 300
    iterations of L = 100 leapfrog steps, eps 1e-4, sigma 10, mass 0.01; paper
    0.4 min per sample. --preset alexnet: node fc8 of models/alexnet/deploy,
    500 iterations of L = 50, eps 3e-6, sigma 10, mass 1e-5, T 0.001, chains
    from the zero image; paper 12 min per sample;
  * the overhead ratio = HMC wall time / (gradient evaluations x the time of a
    bare forward + backward pass of the same net, measured alongside).

On a GPU the chains live on the device by default (--chains-on device: CuPy
arrays over the blobs' GPU memory, gencaffe/hmc/blob_arrays.py); --chains-on
host keeps them in pycaffe's host arrays, as HMC did before.

Per-iteration cost is constant (every iteration does exactly L forward/backward
passes), so the batch sweep times --iterations iterations and scales to a whole
sample; a full single-chain run (LeNet only, skip with --no-full-run) checks
that scaling. Writes results/bench_hmc.md (or --out).

  python tools/bench_hmc.py [--weights runs/.../lenet_iter_N.caffemodel]
  python tools/bench_hmc.py --preset alexnet --gpu 0 --batches 1,8,32 --iterations 4
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import non_negative_int, positive_int  # noqa: E402
from gencaffe.pycaffe_path import add_build_pycaffe  # noqa: E402
add_build_pycaffe(REPO)
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402

PRESETS = {
    # journal Sec. 4.6 / 5.3 (journal Sec. 4.6, Eq. 20-22); minutes per sample on a GTX Titan
    "lenet": dict(model=os.path.join(REPO, "models", "lenet", "lenet_deploy.prototxt"),
                  node="ip2", classes=10, step_size=1e-4, n_leapfrog=100, sigma=10.0,
                  mass=0.01, temperature=1.0, iterations=300, init="noise",
                  paper_min_per_sample=0.4),
    "alexnet": dict(model=os.path.join(REPO, "models", "alexnet", "deploy.prototxt"),
                    node="fc8", classes=1000, step_size=3e-6, n_leapfrog=50, sigma=10.0,
                    mass=1e-5, temperature=0.001, iterations=500, init="zero",
                    paper_min_per_sample=12.0),
}
PAPER = dict(PRESETS["lenet"])   # the preset in use (main() replaces it)


def set_device(gpu):
    import caffe
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()


def time_hmc(model, weights, n_chains, iterations, seed=0, barrier=None, arrays=None):
    """Time ``iterations`` paper-setting HMC iterations for n_chains chains.

    After every HMC iteration the same net runs L bare forward + backward
    passes (Net._forward/_backward), timed separately: HMC and baseline are interleaved at
    ~50 ms granularity, so both see the same CPU load even on a busy machine.
    With a barrier (worker processes) all workers start together. ``arrays``:
    where the chains live (blob_arrays; default the host)."""
    from gencaffe.hmc import blob_arrays, sampler as hmc, target as caffe_target
    arrays = arrays or blob_arrays.HostBlobArrays
    channels = [i % PAPER["classes"] for i in range(n_chains)]
    target = caffe_target.build_node_target(model, weights, PAPER["node"], channels,
                                            arrays=arrays)
    net = target.net
    last = len(net.layers) - 1

    def bare_passes_of(count):
        # Net._forward/_backward: the net's own work, without the host copies
        # of outputs that net.forward() returns; the GPU is waited for at the end
        for _ in range(count):
            net._forward(0, last)
            net._backward(last, 0)
        blob_arrays.synchronize(arrays)
    rng = np.random.default_rng(seed)
    if PAPER["init"] == "zero":
        x0 = np.zeros(target.cut.input_shape, dtype=np.float32)   # as hmc_visualize.py
    else:
        x0 = rng.normal(0, PAPER["sigma"], size=target.cut.input_shape).astype(np.float32)
    x0 = arrays.from_host(x0)
    potential = hmc.make_potential(target.score, PAPER["sigma"], PAPER["temperature"])
    settings = hmc.HMCSettings(PAPER["step_size"], PAPER["n_leapfrog"], PAPER["mass"], iterations)
    bare_passes_of(20)                        # warm caches and allocations
    if barrier is not None:
        barrier.wait()
    evals_before = target.score.n_evaluations
    sampler = hmc.sample(x0, potential, settings, rng)
    hmc_time = bare_time = 0.0
    bare_passes = 0
    accepted = []
    while True:
        t = time.perf_counter()
        try:
            _, _, _, info = next(sampler)
        except StopIteration:
            break
        hmc_time += time.perf_counter() - t
        accepted.append(info.accepted.mean())
        t = time.perf_counter()
        bare_passes_of(PAPER["n_leapfrog"])
        bare_time += time.perf_counter() - t
        bare_passes += PAPER["n_leapfrog"]
    return dict(chains=n_chains, iterations=iterations, wall=hmc_time,
                evals=target.score.n_evaluations - evals_before, bare=bare_time / bare_passes,
                acceptance=float(np.mean(accepted)))


def _worker(args):
    model, weights, n_chains, iterations, seed, preset = args
    PAPER.clear()
    PAPER.update(PRESETS[preset])          # a spawned process starts from the defaults
    set_device(None)
    return time_hmc(model, weights, n_chains, iterations, seed, _BARRIER)


_BARRIER = None


def _init_worker(barrier):
    global _BARRIER
    _BARRIER = barrier


def time_hmc_workers(model, weights, n_chains, iterations, workers, preset):
    """n_chains split over ``workers`` processes (one BLAS thread each), timed together:
    the wall time is the slowest worker's, the bare pass the workers' mean."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"      # inherited by the spawned workers
    per = [n_chains // workers + (1 if i < n_chains % workers else 0) for i in range(workers)]
    with ctx.Pool(workers, initializer=_init_worker, initargs=(barrier,)) as pool:
        parts = pool.map(_worker, [(model, weights, n, iterations, i, preset)
                                   for i, n in enumerate(per)])
    wall = max(p["wall"] for p in parts)
    return dict(chains=n_chains, iterations=iterations, wall=wall,
                evals=max(p["evals"] for p in parts),
                bare=float(np.mean([p["bare"] for p in parts])),
                acceptance=float(np.mean([p["acceptance"] for p in parts])), workers=workers)


def random_weights(model, folder):
    import caffe
    caffe.set_random_seed(0)
    net = caffe.Net(model, caffe.TEST)
    path = os.path.join(folder, "random.caffemodel")
    net.save(path)
    return path


def gpu_name(gpu):
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", "-i", str(gpu), "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return "GPU %d: %s (driver %s)" % ((gpu,) + tuple(out.stdout.strip().split(", ")[:2]))
    except (OSError, ValueError, TypeError, subprocess.TimeoutExpired):
        return "GPU %d" % gpu


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _row(r):
    per_iter = r["wall"] / r["iterations"]
    min_per_sample = per_iter * PAPER["iterations"] / 60 / r["chains"]
    spm = 1 / min_per_sample
    return dict(r, per_iter=per_iter, min_per_sample=min_per_sample, spm=spm,
                speedup=spm * PAPER["paper_min_per_sample"],
                overhead=r["wall"] / (r["evals"] * r["bare"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="lenet",
                   help="net, node and the paper's HMC settings (default lenet)")
    p.add_argument("--model", help="deploy prototxt (default: the preset's)")
    p.add_argument("--gpu", type=non_negative_int, metavar="ID",
                   help="run on this GPU (default: CPU)")
    p.add_argument("--weights", help="trained caffemodel (default: seeded random weights; "
                                     "the cost does not depend on the weight values)")
    p.add_argument("--batches", default="1,2,4,8,16,32,64",
                   help="chain counts to time (default 1,2,4,8,16,32,64)")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="also time each chain count >= this split over this many processes, "
                        "as hmc_visualize.py --workers does (default 2; 1 = skip)")
    p.add_argument("--iterations", type=positive_int, default=10,
                   help="HMC iterations timed per row (default 10; scaled to 300)")
    p.add_argument("--no-full-run", action="store_true",
                   help="skip the full 300-iteration single-chain run")
    from gencaffe.hmc.blob_arrays import CHAINS_ON
    p.add_argument("--chains-on", choices=CHAINS_ON, default="auto",
                   help="where the chains live with --gpu: device (CuPy arrays over the "
                        "blobs' GPU memory), host (pycaffe's host arrays) or auto (the "
                        "device when CuPy and a GPU pycaffe are there; default); the CPU "
                        "always uses the host")
    p.add_argument("--out", default=os.path.join(REPO, "results", "bench_hmc.md"))
    args = p.parse_args(argv)
    PAPER.clear()
    PAPER.update(PRESETS[args.preset])
    args.model = args.model or PAPER["model"]
    if args.gpu is not None:
        args.workers = 1          # one GPU: chains are batched, not split over processes

    set_device(args.gpu)
    from gencaffe.hmc import blob_arrays
    try:
        arrays = blob_arrays.chain_arrays(args.chains_on, args.gpu)
    except ValueError as err:
        raise SystemExit("error: %s" % err)
    batches = [int(v) for v in args.batches.split(",")]
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_weights(args.model, tmp)
        full = None
        if not args.no_full_run and args.preset == "lenet":
            full = _row(dict(time_hmc(args.model, weights, 1, PAPER["iterations"],
                                      arrays=arrays), workers=1))
            print(f"full single chain: {full['wall']:.1f} s/sample, overhead {full['overhead']:.3f}",
                  flush=True)
        for b in batches:
            r = _row(dict(time_hmc(args.model, weights, b, args.iterations, arrays=arrays),
                          workers=1))
            rows.append(r)
            print(f"1 process, {b:3d} chains: {r['per_iter']:.3f} s/iteration, "
                  f"{r['speedup']:.2f}x paper, overhead {r['overhead']:.3f}", flush=True)
        if args.workers > 1:
            for b in batches:
                if b < args.workers:
                    continue
                r = _row(time_hmc_workers(args.model, weights, b, args.iterations, args.workers,
                                          args.preset))
                rows.append(r)
                print(f"{args.workers} processes, {b:3d} chains: {r['per_iter']:.3f} s/iteration, "
                      f"{r['speedup']:.2f}x paper, overhead {r['overhead']:.3f}", flush=True)

    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    device = cpu_name() if args.gpu is None else gpu_name(args.gpu)
    lines = [
        "# HMC visualization benchmark (%s %s, paper settings, %s)"
        % (args.preset, PAPER["node"], "CPU" if args.gpu is None else "GPU"),
        "",
        f"Command: `python tools/bench_hmc.py{(' ' + cmd) if cmd else ''}`",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}; device: {device}; "
        f"{os.cpu_count()} CPU cores; load average at the end: "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; OPENBLAS_NUM_THREADS={blas_threads} "
        "(worker processes: 1); weights: "
        f"{args.weights or 'seeded random (the cost does not depend on the values)'}.",
        "",
        f"Settings: eps {PAPER['step_size']}, L {PAPER['n_leapfrog']}, sigma {PAPER['sigma']}, "
        f"mass {PAPER['mass']}, T {PAPER['temperature']}, {PAPER['iterations']} iterations per "
        f"sample, node {PAPER['node']} (chains spread over its {PAPER['classes']} classes), "
        f"start: {PAPER['init']}. Paper: {PAPER['paper_min_per_sample']} min per sample on a "
        f"GTX Titan, one chain at a time = {1 / PAPER['paper_min_per_sample']:.3g} samples/min.",
        "",
        f"Sweep: {args.iterations} timed iterations per row, scaled to {PAPER['iterations']} "
        "(every iteration is exactly L forward/backward passes, so the cost per iteration "
        "is constant). `bare` = one forward + backward pass of the same cut net "
        "(`net._forward` + `net._backward`, input gradient only, without the host copies "
        "of outputs that `net.forward()` returns; on a GPU waited for at the end), timed in "
        "the same process as L passes after every HMC "
        "iteration (interleaved, so both see the same CPU load), excluded from the HMC "
        "time. overhead = HMC time / (gradient evaluations x bare). With several "
        "processes, all start together (barrier); wall = slowest process. Chains on the "
        f"{arrays.where}"
        + (" (CuPy arrays over the blobs' GPU memory)." if arrays.where == "device" else
           " (pycaffe's host arrays)."),
        "",
    ]
    if full is not None:
        lines += [
            f"Full single-chain run ({PAPER['iterations']} iterations, no scaling): "
            f"{full['wall']:.1f} s per sample = {full['spm']:.2f} samples/min = "
            f"**{full['speedup']:.2f}x** the paper's speed; {full['evals']} gradient "
            f"evaluations; bare pass {full['bare'] * 1e3:.3f} ms; overhead "
            f"**{full['overhead']:.3f}**; acceptance {full['acceptance']:.3f}.",
            ""]
    lines += [
        "| processes | chains | s / iteration | min / sample | samples / min | x paper speed | bare pass (ms) | overhead |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['chains']} | {r['per_iter']:.3f} | "
                     f"{r['min_per_sample']:.4f} | {r['spm']:.2f} | {r['speedup']:.2f} | "
                     f"{r['bare'] * 1e3:.3f} | {r['overhead']:.3f} |")
    single = [r for r in rows if r["workers"] == 1]
    best1 = max(single, key=lambda r: r["spm"]) if single else None
    best = max(rows, key=lambda r: r["spm"]) if rows else None
    lines += ["", "Targets (issues 6, 16): >= 3x the paper's per-sample speed on 2 CPU cores; "
                  ">= 100x on a GPU; overhead <= 1.1 (CPU), <= 1.3 (GPU, issue 27).", ""]
    if single and single[0]["chains"] == 1:
        lines.append(f"- single chain: {single[0]['speedup']:.2f}x, overhead {single[0]['overhead']:.3f}")
    if best1 is not None:
        lines.append(f"- best batch, 1 process: {best1['chains']} chains, {best1['speedup']:.2f}x, "
                     f"overhead {best1['overhead']:.3f}")
    if best is not None and best is not best1:
        lines.append(f"- best overall: {best['workers']} processes x {best['chains']} chains, "
                     f"{best['speedup']:.2f}x, overhead {best['overhead']:.3f}")
    lines.append("")
    from gencaffe.atomic_io import atomic_write
    with atomic_write(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
