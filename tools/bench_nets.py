#!/usr/bin/env python3
"""Whole-net benchmarks of LeNet, AlexNet and ZF: GG vs DG iteration time
(`caffe time`), and training throughput (`caffe train`), with and without cuDNN.

Two steps, so that the machine that runs them needs only the caffe binary and
Python's standard library (no pycaffe):

  tools/bench_nets.py --prepare DIR [--batch ARCH=N ...] [--lmdb-source PATH --mean-file F]
      writes DIR/*.prototxt and DIR/plan.json with the net generator
      (python/gencaffe/nets): train_val nets with DummyData input (constant
      images and labels, which Caffe fills once at set-up: a Gaussian filler is
      redrawn on the CPU every pass and was what the first GPU bench timed) at
      the paper's batch sizes (LeNet 64, AlexNet and ZF
      256) unless --batch says otherwise; for AlexNet also throughput solvers,
      each with the default engine (cuDNN in a cuDNN build) and with every
      layer forced to Caffe's own (engine: CAFFE), from DummyData and, with
      --lmdb-source, from an LMDB of 256x256 images read at run time.
  tools/bench_nets.py --run DIR --caffe BIN [--gpu N] [--repeats R] [--out FILE]
      `caffe time` of each net, DG and GG alternating (DG GG DG GG ...),
      best of R (the usual estimate of a cost under additive interference;
      medians shown beside), then the throughput solvers: images/s over the
      iterations between the 2nd and the last display line of `caffe train`
      (glog's microsecond timestamps), so start-up and the first iterations
      (cuDNN algorithm choice, allocation) are not counted; on a GPU the
      default-engine runs once per --settings preset (FP32 with cuDNN's
      heuristics and upstream's 8 MiB workspace, FP32 with measured algorithms
      and 1 GiB, TF32 with measured algorithms and 1 GiB). Writes a markdown
      table (default results/bench_nets.md).

Targets (issue 12/16): whole net GG/DG <= 1.02.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import non_negative_int, positive_int  # noqa: E402

PAPER_BATCH = {"lenet": 64, "alexnet": 256, "zf": 256}
# per net, (loss, input, engine): AlexNet with DG on every engine and input
# and GG once beside it; ZF with DG and GG from DummyData, for the PyTorch
# comparison (--torch) of both
THROUGHPUT_RUNS = {
    "alexnet": (("dg", "dummy", "DEFAULT"), ("gg", "dummy", "DEFAULT"), ("dg", "dummy", "CAFFE"),
                ("dg", "lmdb", "DEFAULT"), ("dg", "lmdb", "CAFFE")),
    "zf": (("dg", "dummy", "DEFAULT"), ("gg", "dummy", "DEFAULT")),
}
TORCH_MODES = {"gpu": ("fp32", "tf32", "bf16"), "cpu": ("fp32",)}
# Caffe's GPU settings (caffe/patches/gpu-math-and-cudnn-search.patch) as
# `caffe train` flags: name -> (flags, the precision PyTorch is compared at)
SETTINGS = {
    "fp32": ([], "fp32"),
    "fp32-measured": (["-cudnn_search", "measured", "-cudnn_workspace_mb", "1024"], "fp32"),
    "tf32-measured": (["-gpu_math", "tf32", "-cudnn_search", "measured",
                       "-cudnn_workspace_mb", "1024"], "tf32"),
}
GLOG_TIME = re.compile(r"^I\d{8} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ solver\.cpp:\d+\] Iteration (\d+)")


# ------------------------------------------------------------------ prepare

def prepare(out_dir, batches, lmdb_source=None, mean_file=None, throughput_iterations=40,
            mode="GPU"):
    """Write the nets and solvers of a benchmark plan; returns the plan."""
    from dataclasses import replace
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    from gencaffe.atomic_io import atomic_write
    from gencaffe.nets import catalog, variants
    os.makedirs(out_dir, exist_ok=True)

    def write(name, text):
        with atomic_write(os.path.join(out_dir, name), "w") as handle:
            handle.write(text)
        return name

    plan = {"time": [], "throughput": [], "batches": batches, "lmdb_source": lmdb_source}
    for key, batch in batches.items():
        arch = catalog.architecture(key)
        data = replace(arch.data, dummy=True, train_batch=batch)
        pair = {"arch": key, "batch": batch}
        for loss in ("dg", "gg"):
            pair[loss] = write("%s_%s_b%d.prototxt" % (key, loss, batch),
                               variants.prototxt(arch, loss, variants.NetOptions(data=data),
                                                 generated_by="tools/bench_nets.py"))
        plan["time"].append(pair)
    for key, runs in THROUGHPUT_RUNS.items():
        if key not in batches:
            continue
        arch = catalog.architecture(key)
        batch = batches[key]
        data = {"dummy": replace(arch.data, dummy=True, train_batch=batch)}
        if lmdb_source:
            data["lmdb"] = replace(arch.data, train_source=lmdb_source, test_source=lmdb_source,
                                   mean_file=mean_file, train_batch=batch, test_batch=batch)
        for loss, source, engine in runs:
            if source not in data:
                continue
            options = variants.NetOptions(data=data[source],
                                          engine=None if engine == "DEFAULT" else engine)
            stem = "train_%s_%s_%s_%s_b%d" % (key, loss, source, engine.lower(), batch)
            net = write(stem + ".prototxt",
                        variants.prototxt(arch, loss, options, generated_by="tools/bench_nets.py"))
            solver = write(stem + "_solver.prototxt", solver_text(
                os.path.join(REPO, "solvers", "%s_%s.prototxt" % (key, loss)),
                net, throughput_iterations, max(1, throughput_iterations // 4), mode))
            plan["throughput"].append({"arch": key, "loss": loss, "source": source,
                                       "engine": engine, "batch": batch, "solver": solver,
                                       "net": net, "iterations": throughput_iterations})
    with atomic_write(os.path.join(out_dir, "plan.json"), "w") as handle:
        json.dump(plan, handle, indent=2)
    return plan


def solver_text(committed, net, iterations, display, mode):
    """The committed solver with the benchmark's overrides: its net, a few
    iterations, no test passes, no snapshots (paths are relative to DIR)."""
    from gencaffe import solver_config
    solver = solver_config.load_solver(committed)
    solver.net = net
    solver.max_iter = iterations
    solver.display = display
    solver.ClearField("test_iter")
    solver.test_interval = iterations + 1
    solver.test_initialization = False
    solver.snapshot = 0
    solver.snapshot_after_train = False
    solver.ClearField("snapshot_prefix")
    solver.solver_mode = getattr(type(solver), mode)
    return solver_config.solver_text(solver)


# ---------------------------------------------------------------------- run

def run_caffe(args_list, cwd, timeout=600):
    # the INFO lines are what is parsed, whatever the caller's glog level
    # (on the GPU machine the tools run with GLOG_minloglevel=2)
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    proc = subprocess.run(args_list, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d):\n%s" % (" ".join(args_list), proc.returncode,
                                                         proc.stderr[-3000:]))
    return proc.stderr


LAYER_TIME = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([\d.eE+-]+) ms\.")


# the loss layer's name in the generator's nets (SoftmaxWithLoss or GenerativeLoss)
LOSS_LAYER = "loss"


def caffe_time_ms(caffe, model, iterations, gpu, cwd, layer=None):
    """`caffe time`'s average forward-backward ms of the whole net, or with
    `layer`, (whole net ms, that layer's forward + backward ms)."""
    cmd = [caffe, "time", "-model", model, "-iterations", str(iterations)]
    if gpu is not None:
        cmd += ["-gpu", str(gpu)]
    log = run_caffe(cmd, cwd)
    m = re.search(r"Average Forward-Backward: ([\d.]+) ms", log)
    if not m:
        raise RuntimeError("no 'Average Forward-Backward' in the output of " + " ".join(cmd))
    if layer is None:
        return float(m.group(1))
    times = [float(t) for name, _, t in LAYER_TIME.findall(log) if name == layer]
    if len(times) != 2:
        raise RuntimeError("no forward and backward time of layer %r in the output of %s"
                           % (layer, " ".join(cmd)))
    return float(m.group(1)), sum(times)


def seconds_of_day(match):
    h, m, s = match.group(1), match.group(2), match.group(3)
    return int(h) * 3600 + int(m) * 60 + float(s)


def images_per_second(log, batch):
    """Throughput between the 2nd and the last 'Iteration N' display lines."""
    points = [(int(m.group(4)), seconds_of_day(m))
              for m in map(GLOG_TIME.match, log.splitlines()) if m]
    points = sorted(dict(points).items())
    if len(points) < 3:
        raise RuntimeError("fewer than 3 'Iteration' lines in the training log")
    (i0, t0), (i1, t1) = points[1], points[-1]
    if t1 < t0:
        t1 += 86400                                    # past midnight
    return (i1 - i0) * batch / (t1 - t0)


def torch_rows(plan_dir, throughput_rows, gpu, progress=print):
    """The same nets trained in PyTorch on the same device (gencaffe.nets.
    torch_port): every DummyData run on the default engine, in each of
    TORCH_MODES, as many iterations as Caffe's run."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    from gencaffe.nets import torch_port
    device = "cpu" if gpu is None else "cuda:%d" % gpu
    rows = []
    for entry in throughput_rows:
        if (entry["source"] != "dummy" or entry["engine"] != "DEFAULT"
                or entry["settings"] != "fp32"):
            continue
        with open(os.path.join(plan_dir, entry["net"])) as handle:
            net = text_format.Merge(handle.read(), caffe_pb2.NetParameter())
        for mode in TORCH_MODES["cpu" if gpu is None else "gpu"]:
            try:
                rate = torch_port.training_images_per_second(
                    net, device, mode, iterations=max(2, entry.get("iterations", 40)))
            except Exception as err:   # e.g. out of memory, a mode the GPU lacks: the
                # Caffe rows measured before still go into the report
                progress("  torch %s %s %s failed: %s: %s" % (entry["arch"], entry["loss"], mode,
                                                              type(err).__name__, err))
                rate = {"images_per_s": None, "mode": mode, "torch": "?", "cudnn": None,
                        "error": "%s: %s" % (type(err).__name__, str(err).splitlines()[0][:120])}
            else:
                progress("  torch %s %s %s: %.0f images/s" % (entry["arch"], entry["loss"], mode,
                                                              rate["images_per_s"]))
            caffe_rate, caffe_settings = caffe_at_precision(throughput_rows, entry, mode)
            rows.append(dict(rate, arch=entry["arch"], loss=entry["loss"], batch=entry["batch"],
                             caffe_images_per_s=caffe_rate, caffe_settings=caffe_settings))
    return rows


def caffe_at_precision(throughput_rows, entry, mode):
    """The fastest Caffe run of `entry`'s net, loss and input at PyTorch's
    precision `mode` (fp32 or tf32), as (images/s, settings preset); (None,
    None) where Caffe has no such mode (bf16)."""
    same = [r for r in throughput_rows
            if (r["arch"], r["loss"], r["source"], r["engine"]) ==
            (entry["arch"], entry["loss"], entry["source"], entry["engine"])
            and SETTINGS[r["settings"]][1] == mode]
    if not same:
        return None, None
    best = max(same, key=lambda r: r["images_per_s"])
    return best["images_per_s"], best["settings"]


def run(plan_dir, caffe, gpu, repeats, iterations, out, progress=print, torch=False,
        settings=tuple(SETTINGS)):
    with open(os.path.join(plan_dir, "plan.json")) as handle:
        plan = json.load(handle)
    time_rows = []
    for pair in plan["time"]:
        samples = {"dg": [], "gg": []}
        loss_ms = {"dg": [], "gg": []}
        for r in range(repeats):
            for loss in ("dg", "gg"):
                whole, layer = caffe_time_ms(caffe, pair[loss], iterations, gpu, plan_dir,
                                             layer=LOSS_LAYER)
                samples[loss].append(whole)
                loss_ms[loss].append(layer)
            progress("  %s b%d repeat %d/%d: DG %.3f ms  GG %.3f ms" % (
                pair["arch"], pair["batch"], r + 1, repeats, samples["dg"][-1],
                samples["gg"][-1]))
        time_rows.append(dict(pair, dg_ms=samples["dg"], gg_ms=samples["gg"],
                              dg_loss_ms=loss_ms["dg"], gg_loss_ms=loss_ms["gg"]))
    throughput_rows = []
    for entry in plan["throughput"]:
        # the settings touch cuDNN and cuBLAS only: Caffe's own engine and the
        # CPU run once, with the defaults
        presets = settings if gpu is not None and entry["engine"] == "DEFAULT" else ["fp32"]
        for preset in presets:
            cmd = [caffe, "train", "-solver", entry["solver"]] + SETTINGS[preset][0]
            if gpu is not None:
                cmd += ["-gpu", str(gpu)]
            ips = images_per_second(run_caffe(cmd, plan_dir), entry["batch"])
            progress("  train %s %s %s engine %s settings %s: %.0f images/s" % (
                entry["arch"], entry["loss"], entry["source"], entry["engine"], preset, ips))
            throughput_rows.append(dict(entry, images_per_s=ips, settings=preset))
    baseline = torch_rows(plan_dir, throughput_rows, gpu, progress) if torch else []
    text = report(time_rows, throughput_rows, gpu, repeats, iterations, baseline)
    from gencaffe.atomic_io import atomic_write
    with atomic_write(out, "w") as handle:
        handle.write(text)
    return time_rows, throughput_rows, baseline


def device_name(gpu):
    if gpu is None:
        model = platform.processor() or "CPU"
        try:
            with open("/proc/cpuinfo") as handle:
                model = next(l.split(":", 1)[1].strip() for l in handle
                             if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        return "%s, %d cores" % (model, os.cpu_count())
    try:
        out = subprocess.run(["nvidia-smi", "-i", str(gpu), "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return "GPU %d: %s (name, driver)" % (gpu, out)
    except (OSError, subprocess.TimeoutExpired):
        return "GPU %d" % gpu


def report(time_rows, throughput_rows, gpu, repeats, iterations, baseline=()):
    lines = [
        "# Whole-net benchmarks: GG vs DG, and training throughput",
        "",
        "Measured %s on %s by `tools/bench_nets.py --run ... %s--repeats %d --iterations %d` "
        "(nets from `--prepare`: the generator's train_val nets with DummyData input, constant "
        "fillers, filled once at set-up); "
        "BLAS threads: %s; load average at the end: %s."
        % (datetime.datetime.now().isoformat(timespec="seconds"), device_name(gpu),
           "" if gpu is None else "--gpu %d " % gpu, repeats, iterations,
           os.environ.get("OPENBLAS_NUM_THREADS", "default"),
           ", ".join("%.2f" % x for x in os.getloadavg())),
        "",
        "## `caffe time`: forward + backward of the whole net (target GG/DG <= 1.02)",
        "",
        "Best of %d alternating repetitions (median in brackets). The nets differ only in "
        "the loss layer, so the last column also gives the ratio from inside each run: the "
        "median DG net with its loss layer's time (forward + backward, `caffe time`'s "
        "per-layer figures) replaced by GenerativeLoss's, a figure that load on the "
        "machine, which slows every layer alike, hardly moves." % repeats,
        "",
        "| net | batch | DG ms | GG ms | ratio GG/DG | loss layer DG / GG ms | "
        "ratio from the loss layers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in time_rows:
        dg, gg = min(r["dg_ms"]), min(r["gg_ms"])
        dg_med = statistics.median(r["dg_ms"])
        loss_dg, loss_gg = statistics.median(r["dg_loss_ms"]), statistics.median(r["gg_loss_ms"])
        lines.append("| %s | %d | %.3f (%.3f) | %.3f (%.3f) | **%.3f** | %.3f / %.3f | "
                     "**%.4f** |" % (
                         r["arch"], r["batch"], dg, dg_med, gg, statistics.median(r["gg_ms"]),
                         gg / dg, loss_dg, loss_gg, (dg_med - loss_dg + loss_gg) / dg_med))
    if throughput_rows:
        lines += [
            "",
            "## Training throughput (`caffe train`, images/s)",
            "",
            "Between the 2nd and the last display line of a short run of the committed "
            "solver (net, iteration count, tests and snapshots overridden); engine DEFAULT = "
            "cuDNN where the build has it, CAFFE = Caffe's own layers. Settings: "
            + "; ".join("%s = `%s`" % (name, " ".join(flags) or "(no flags: FP32, cuDNN "
                                       "heuristics, 8 MiB workspace)")
                        for name, (flags, _) in SETTINGS.items()) + ".",
            "",
            "| net | loss | input | engine | settings | batch | images/s |",
            "|---|---|---|---|---|---:|---:|",
        ]
        for r in throughput_rows:
            lines.append("| %s | %s | %s | %s | %s | %d | %.0f |" % (
                r["arch"], r["loss"].upper(), r["source"], r["engine"],
                r["settings"], r["batch"], r["images_per_s"]))
    split = iteration_split(time_rows, throughput_rows)
    if split:
        lines += [
            "",
            "## Where a training iteration goes (default engine, fp32 settings)",
            "",
            "A training iteration's time (1000 x batch / images/s) against the same net's "
            "forward + backward alone (`caffe time` above, best of the repetitions): the "
            "rest is what training adds, the solver's update, the data layer's prefetch and "
            "transform, and the synchronisation between them.",
            "",
            "| net | loss | input | batch | iteration ms | forward + backward ms | rest ms | "
            "rest / iteration |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in split:
            lines.append("| %s | %s | %s | %d | %.2f | %.2f | %.2f | %.0f %% |" % (
                r["arch"], r["loss"].upper(), r["source"], r["batch"], r["iteration_ms"],
                r["forward_backward_ms"], r["rest_ms"], 100.0 * r["rest_ms"] / r["iteration_ms"]))
    if baseline:
        lines += [
            "",
            "## Against PyTorch on the same device (`--torch`)",
            "",
            "The same nets (gencaffe.nets.torch_port: the generator's layers one for one, "
            "GG's loss as Eq. 15) trained by PyTorch %s%s from constant random input, SGD "
            "with momentum 0.9 and weight decay 0.0005 as the solvers, the same batch and "
            "iteration count, after 5 warm-up iterations; cudnn.benchmark on. fp32 = TF32 "
            "off (what Caffe computes), tf32 = TF32 matmuls and convolutions, bf16 = "
            "autocast. Caffe: the fastest DummyData row above (default engine) at the same "
            "precision (fp32 or tf32 settings; Caffe has no bf16)." % (
                next((r["torch"] for r in baseline if r["images_per_s"]), "?"),
                next((", cuDNN %s" % r["cudnn"] for r in baseline if r["cudnn"]), "")),
            "",
            "| net | loss | batch | PyTorch mode | PyTorch images/s | Caffe settings | "
            "Caffe images/s | Caffe / PyTorch |",
            "|---|---|---:|---|---:|---|---:|---:|",
        ]
        for r in baseline:
            caffe_cells = ("- | -" if r["caffe_images_per_s"] is None else
                           "%s | %.4g" % (r["caffe_settings"], r["caffe_images_per_s"]))
            if r["images_per_s"] is None:
                lines.append("| %s | %s | %d | %s | failed: %s | %s | - |" % (
                    r["arch"], r["loss"].upper(), r["batch"], r["mode"], r["error"],
                    caffe_cells))
                continue
            ratio = ("-" if r["caffe_images_per_s"] is None else
                     "**%.2f**" % (r["caffe_images_per_s"] / r["images_per_s"]))
            lines.append("| %s | %s | %d | %s | %.4g | %s | %s |" % (
                r["arch"], r["loss"].upper(), r["batch"], r["mode"], r["images_per_s"],
                caffe_cells, ratio))
    return "\n".join(lines) + "\n"


def iteration_split(time_rows, throughput_rows):
    """Per default-engine fp32 throughput row with a `caffe time` row of the same
    net, loss and batch: its iteration time, the forward + backward time (best
    repetition) and the rest."""
    best = {(r["arch"], r["batch"], loss): min(r["%s_ms" % loss])
            for r in time_rows for loss in ("dg", "gg")}
    out = []
    for r in throughput_rows:
        key = (r["arch"], r["batch"], r["loss"])
        if (r["engine"] != "DEFAULT" or r["settings"] != "fp32"
                or key not in best or not r["images_per_s"]):
            continue
        iteration_ms = 1000.0 * r["batch"] / r["images_per_s"]
        out.append(dict(arch=r["arch"], loss=r["loss"], source=r["source"], batch=r["batch"],
                        iteration_ms=iteration_ms, forward_backward_ms=best[key],
                        rest_ms=iteration_ms - best[key]))
    return out


def parse_batches(values):
    batches = dict(PAPER_BATCH)
    for value in values:
        key, sep, n = value.partition("=")
        if not sep or key not in PAPER_BATCH or not n.isdigit() or int(n) < 1:
            raise SystemExit("error: --batch takes ARCH=N with ARCH in %s, got %r"
                             % (", ".join(PAPER_BATCH), value))
        batches[key] = int(n)
    return batches


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    step = p.add_mutually_exclusive_group(required=True)
    step.add_argument("--prepare", metavar="DIR", help="write the benchmark nets into DIR")
    step.add_argument("--run", metavar="DIR", help="run the benchmark prepared in DIR")
    p.add_argument("--batch", action="append", default=[], metavar="ARCH=N",
                   help="--prepare: batch size of an architecture (default: the paper's, "
                        "lenet=64 alexnet=256 zf=256); repeatable")
    p.add_argument("--arch", action="append", default=[],
                   help="--prepare: only these architectures (default all; repeatable)")
    p.add_argument("--lmdb-source", help="--prepare: LMDB of 256x256 images for the AlexNet "
                                         "throughput run from a Data layer (read at run time)")
    p.add_argument("--mean-file", help="--prepare: mean .binaryproto for that LMDB (optional)")
    p.add_argument("--throughput-iterations", type=positive_int, default=40,
                   help="--prepare: iterations of each throughput run (default 40)")
    p.add_argument("--mode", choices=("GPU", "CPU"), default="GPU",
                   help="--prepare: solver_mode of the throughput solvers (default GPU)")
    p.add_argument("--caffe", default=os.path.join(REPO, "build", "cpu", "caffe", "tools",
                                                   "caffe"),
                   help="--run: the caffe binary (default build/cpu's)")
    p.add_argument("--gpu", type=non_negative_int, metavar="ID",
                   help="--run: on this GPU (default CPU)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="--run: alternating repetitions per net (default 5)")
    p.add_argument("--iterations", type=positive_int, default=20,
                   help="--run: iterations per `caffe time` (default 20)")
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="--run: BLAS/OpenMP threads of each caffe process (default 1, as "
                        "tools/bench_generative_loss.py, so that other load on the machine "
                        "does not make thread scheduling the thing measured; 0 = leave the "
                        "environment's setting)")
    p.add_argument("--torch", action="store_true",
                   help="--run: also train the same nets in PyTorch on the same device "
                        "(needs torch and pycaffe's caffe_pb2; fp32, tf32 and bf16 on a GPU, "
                        "fp32 on the CPU) and report Caffe / PyTorch")
    p.add_argument("--settings", action="append", choices=tuple(SETTINGS), default=[],
                   help="--run with --gpu: Caffe GPU settings to train the default-engine "
                        "nets with (repeatable; default all: %s)" % ", ".join(
                            "%s = %s" % (k, " ".join(v[0]) or "no flags")
                            for k, v in SETTINGS.items()))
    p.add_argument("--out", default=os.path.join(REPO, "results", "bench_nets.md"),
                   help="--run: the markdown report (default results/bench_nets.md)")
    args = p.parse_args(argv)
    if args.prepare:
        batches = parse_batches(args.batch)
        if args.arch:
            unknown = sorted(set(args.arch) - set(batches))
            if unknown:
                raise SystemExit("error: unknown --arch %s" % ", ".join(unknown))
            batches = {k: v for k, v in batches.items() if k in args.arch}
        plan = prepare(args.prepare, batches, args.lmdb_source, args.mean_file,
                       args.throughput_iterations, args.mode)
        print("prepared %d caffe-time pairs and %d throughput runs in %s"
              % (len(plan["time"]), len(plan["throughput"]), args.prepare))
        return 0
    if args.repeats < 1 or args.iterations < 1:
        raise SystemExit("error: --repeats and --iterations must be >= 1")
    if not os.path.isfile(os.path.join(args.run, "plan.json")):
        raise SystemExit("error: %s has no plan.json: run --prepare first" % args.run)
    if args.threads > 0:  # inherited by every caffe process
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    if args.torch:
        try:
            import torch  # noqa: F401
            from caffe.proto import caffe_pb2  # noqa: F401
        except ImportError as err:
            raise SystemExit("error: --torch needs PyTorch and pycaffe's caffe_pb2 (%s)" % err)
    run(os.path.abspath(args.run), os.path.abspath(args.caffe), args.gpu, args.repeats,
        args.iterations, args.out, progress=lambda s: print(s, flush=True), torch=args.torch,
        settings=tuple(args.settings) or tuple(SETTINGS))
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
