"""Run HMC visualization jobs: chains for the requested nodes, statistics, output files.

The CLI (python/hmc_visualize.py) only parses flags into a :class:`RunConfig`
and calls :func:`run`. Chains of all requested channels of one layer share one
net (stacked on the batch axis, one forward/backward per leapfrog step), split
into groups of at most ``batch_size`` chains.
"""
from __future__ import annotations

import csv
import os
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import blob_arrays, labels, sampler as hmc, target as caffe_target
from .blob_arrays import to_host
from .errors import NetSetupError
from .node_geometry import NodeGeometry
from .node_spec import NodeSpec, check_channels
from .. import imaging
from ..atomic_io import atomic_write
from ..input_space import InputTransform, load_image_as_input

INIT_CHOICES = ("noise", "zero")          # or "image:PATH"

STATS_COLUMNS = ["iteration", "warmup", "accept_rate", "mean_accept_prob", "mean_potential",
                 "mean_energy", "mean_energy_error", "mean_abs_energy_error", "divergences",
                 "step_size", "elapsed_s"]
# One row per node in nodes.csv (the same figures as summary.json's "nodes").
NODE_COLUMNS = ["layer", "channel", "class_name", "chains", "input_shape", "iterations",
                "warmup", "init", "acceptance_rate", "mean_accept_prob", "step_size",
                "mean_energy_error", "mean_abs_energy_error", "divergences",
                "gradient_evaluations", "wall_s"]


@dataclass
class RunConfig:
    model: str
    weights: Optional[str]
    nodes: List[NodeSpec]
    out_dir: str
    sigma: float = 10.0
    temperature: float = 1.0
    step_size: float = 1e-4
    n_leapfrog: int = 100
    mass: float = 0.01
    iterations: Optional[int] = 300         # None: per node from the preset rule
    iterations_spatial: int = 100           # preset rule (AlexNet): conv nodes ...
    iterations_flat: int = 500              # ... and fully connected nodes
    chains: int = 8
    seed: int = 0
    init: Optional[str] = "noise"           # None: zero for fc nodes, noise for conv nodes
    warmup: int = 0
    target_accept: float = 0.8
    divergence_threshold: Optional[float] = None
    batch_size: int = 64
    input_size: Optional[Tuple[int, int]] = None
    transform: InputTransform = field(default_factory=InputTransform)
    display: str = "auto"
    trajectory_frames: int = 10
    gpu: Optional[int] = None
    chains_on: str = "auto"                 # host | device | auto (blob_arrays.chain_arrays)
    workers: int = 1                        # processes; chain groups run in parallel
    class_names: Optional[List[str]] = None  # line i of --class-names = channel i
    class_names_file: Optional[str] = None


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def node_is_flat(model: str, layer: str) -> bool:
    """True for fully connected (non-spatial) nodes such as class scores (Caffe's
    shape of the node at the net's own input size has no spatial axes)."""
    return caffe_target.resolve_node(model, layer).flat


def initial_positions(init: str, n: int, shape: Sequence[int], sigma: float,
                      rng: np.random.Generator, transform: InputTransform) -> np.ndarray:
    """Chain starting points: 'noise' = the reference q = N(0, sigma^2 I) (paper),
    'zero' = the zero image (paper, AlexNet fc8), 'image:PATH' = that image."""
    shape = tuple(shape)
    if init == "noise":
        return rng.normal(0.0, sigma, size=(n,) + shape)
    if init == "zero":
        return np.zeros((n,) + shape)
    if init.startswith("image:"):
        x = load_image_as_input(init[len("image:"):], shape, transform)
        return np.repeat(x[None], n, axis=0)
    raise ValueError(f"--init must be noise, zero or image:PATH, got {init!r}")


@dataclass
class NodeResult:
    layer: str
    channel: int
    samples: np.ndarray                       # (chains, C, H, W) final net inputs
    trajectory: List[Tuple[int, np.ndarray]]  # (iteration, x of the node's first chain)
    stats: List[dict]
    input_shape: Tuple[int, ...]
    iterations: int
    init: str
    gradient_evaluations: int = 0
    wall_s: float = 0.0
    class_name: Optional[str] = None


def _frame_iterations(total: int, n_frames: int) -> set:
    if n_frames <= 1:
        return {total}
    return set(np.linspace(0, total, n_frames).round().astype(int).tolist())


def _stats_row(it, warm, info, state, idx, elapsed):
    return {
        "iteration": it + 1, "warmup": int(warm),
        "accept_rate": float(info.accepted[idx].mean()),
        "mean_accept_prob": float(info.accept_prob[idx].mean()),
        "mean_potential": float(state.u[idx].mean()),
        "mean_energy": float(info.energy[idx].mean()),
        "mean_energy_error": float(np.nanmean(np.where(np.isfinite(info.energy_error[idx]),
                                                       info.energy_error[idx], np.nan)))
        if np.isfinite(info.energy_error[idx]).any() else float("nan"),
        "mean_abs_energy_error": float(np.nanmean(np.where(
            np.isfinite(info.energy_error[idx]), np.abs(info.energy_error[idx]), np.nan)))
        if np.isfinite(info.energy_error[idx]).any() else float("nan"),
        "divergences": int(info.diverged[idx].sum()),
        "step_size": float(np.mean(info.step_size[idx])),
        "elapsed_s": round(elapsed, 4),
    }


def run_group(cfg: RunConfig, layer: str, chain_channels: Sequence[int], iterations: int,
              init: str, rng: np.random.Generator,
              on_iteration: Optional[Callable[[float], None]] = None,
              geometry: Optional[NodeGeometry] = None) -> List[NodeResult]:
    """Sample one group of chains (same layer, mixed channels) and split per node.
    ``geometry`` (from plan_nodes) saves asking Caffe for the shapes again."""
    arrays = blob_arrays.chain_arrays(cfg.chains_on, cfg.gpu)
    target = caffe_target.build_node_target(cfg.model, cfg.weights, layer, chain_channels,
                                            cfg.input_size, geometry_=geometry, arrays=arrays)
    shape = target.cut.input_shape[1:]
    # float32, the net's own precision: half the host work per leapfrog step of
    # float64 (the energies are still summed in float64)
    x0 = initial_positions(init, len(chain_channels), shape, cfg.sigma, rng,
                           cfg.transform).astype(np.float32)
    potential = hmc.make_potential(target.score, cfg.sigma, cfg.temperature)
    x0_chains = arrays.from_host(x0)
    settings = hmc.HMCSettings(cfg.step_size, cfg.n_leapfrog, cfg.mass, iterations,
                               cfg.warmup, cfg.target_accept, cfg.divergence_threshold)
    channels = np.asarray(chain_channels)
    per_node = {c: np.flatnonzero(channels == c) for c in dict.fromkeys(chain_channels)}
    total = cfg.warmup + iterations
    frames_at = _frame_iterations(total, cfg.trajectory_frames)
    results = {c: NodeResult(target.cut.node_layer, int(c), None, [], [], tuple(shape),
                             iterations, init) for c in per_node}
    if 0 in frames_at:
        for c, idx in per_node.items():
            results[c].trajectory.append((0, x0[idx[0]].copy()))
    start = time.perf_counter()
    state = None
    for it, warm, state, info in hmc.sample(x0_chains, potential, settings, rng):
        elapsed = time.perf_counter() - start
        for c, idx in per_node.items():
            results[c].stats.append(_stats_row(it, warm, info, state, idx, elapsed))
            if it + 1 in frames_at:
                results[c].trajectory.append((it + 1, np.array(to_host(state.x[idx[0]]))))
        if on_iteration is not None:
            on_iteration(float(info.accepted.mean()))
    wall = time.perf_counter() - start
    final = to_host(state.x) if state is not None else x0
    for c, idx in per_node.items():
        results[c].samples = final[idx].astype(np.float32)
        results[c].gradient_evaluations = target.score.n_evaluations
        results[c].wall_s = wall
    return list(results.values())


def plan_groups(channels: Sequence[int], chains: int, batch_size: int,
                workers: int = 1) -> List[List[int]]:
    """Chains (channel per chain, ``chains`` per channel) cut into batches of at most
    ``batch_size``, and into at least ``workers`` batches when there are enough chains."""
    per_chain = [c for c in channels for _ in range(chains)]
    size = max(1, min(batch_size, -(-len(per_chain) // max(1, workers))))
    return [per_chain[i:i + size] for i in range(0, len(per_chain), size)]


def merge_results(parts: List[NodeResult]) -> NodeResult:
    """Chains of one node that ran in several batches -> one result."""
    first = parts[0]
    if len(parts) == 1:
        return first
    n_iter = len(first.stats)
    weights = np.array([len(p.samples) for p in parts], dtype=float)
    stats = []
    for i in range(n_iter):
        row = dict(first.stats[i])
        for key in ("accept_rate", "mean_accept_prob", "mean_potential", "mean_energy",
                    "mean_energy_error", "mean_abs_energy_error", "step_size"):
            row[key] = float(np.average([p.stats[i][key] for p in parts], weights=weights))
        row["divergences"] = int(sum(p.stats[i]["divergences"] for p in parts))
        row["elapsed_s"] = round(sum(p.stats[i]["elapsed_s"] for p in parts), 4)
        stats.append(row)
    return NodeResult(first.layer, first.channel, np.concatenate([p.samples for p in parts]),
                      first.trajectory, stats, first.input_shape, first.iterations, first.init,
                      sum(p.gradient_evaluations for p in parts), sum(p.wall_s for p in parts),
                      first.class_name)


MAX_GRID_PX = 2048      # a grid of many chains is drawn smaller, not thousands of pixels wide


def grid_upscale(n_cols: int, height: int, width: int, pad: int = 2) -> int:
    """The zoom for small inputs (imaging.default_upscale), reduced so a grid of
    ``n_cols`` tiles stays within MAX_GRID_PX."""
    fit = (MAX_GRID_PX - pad) // max(1, n_cols) - pad
    return max(1, min(imaging.default_upscale(height), fit // max(1, width)))


def write_node_outputs(cfg: RunConfig, res: NodeResult) -> Dict[str, str]:
    base = f"{cfg.out_dir}/{safe_name(res.layer)}_{res.channel}"
    upscale = grid_upscale(int(np.ceil(np.sqrt(len(res.samples)))), *res.input_shape[1:3])
    shown = imaging.to_display(res.samples, cfg.transform, cfg.display)
    imaging.save_png(imaging.make_grid(shown, upscale=upscale), base + "_samples.png")
    frames = np.stack([x for _, x in res.trajectory])
    imaging.save_png(imaging.make_grid(imaging.to_display(frames, cfg.transform, cfg.display),
                                       n_cols=len(frames), upscale=upscale),
                     base + "_trajectory.png")
    with atomic_write(base + "_samples.npy", "wb") as fh:
        np.save(fh, res.samples)
    with atomic_write(base + "_stats.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(res.stats)
    return {"samples_png": base + "_samples.png", "trajectory_png": base + "_trajectory.png",
            "samples_npy": base + "_samples.npy", "stats_csv": base + "_stats.csv"}


def _mean(rows, key) -> float:
    values = [r[key] for r in rows if np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def node_summary(res: NodeResult, files: Dict[str, str]) -> dict:
    """Per-node figures over the sampling iterations (warm-up excluded): acceptance,
    step size, energy error H_new - H_old of the proposals (mean and mean |.|)."""
    sampling = [r for r in res.stats if not r["warmup"]] or res.stats
    return {
        "layer": res.layer, "channel": res.channel, "class_name": res.class_name,
        "label": labels.node_label(res.layer, res.channel, res.class_name),
        "chains": int(len(res.samples)),
        "input_shape": list(res.input_shape), "iterations": res.iterations,
        "warmup": len(res.stats) - len([r for r in res.stats if not r["warmup"]]),
        "init": res.init,
        "acceptance_rate": float(np.mean([r["accept_rate"] for r in sampling])),
        "mean_accept_prob": _mean(sampling, "mean_accept_prob"),
        "step_size": _mean(sampling, "step_size"),
        "mean_energy_error": _mean(sampling, "mean_energy_error"),
        "mean_abs_energy_error": _mean(sampling, "mean_abs_energy_error"),
        "divergences": int(sum(r["divergences"] for r in res.stats)),
        "final_mean_potential": res.stats[-1]["mean_potential"] if res.stats else None,
        "final_step_size": res.stats[-1]["step_size"] if res.stats else None,
        "gradient_evaluations": res.gradient_evaluations, "wall_s": round(res.wall_s, 3),
        "files": files,
    }


def _set_caffe_mode(gpu: Optional[int]) -> None:
    import caffe  # noqa: imported lazily, as everywhere in gencaffe.hmc
    if gpu is not None:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


_worker_ticks = None


def _worker_init(ticks, gpu):
    global _worker_ticks
    _worker_ticks = ticks
    _set_caffe_mode(gpu)


def _worker_task(cfg, layer, group, iterations, init, seed_key, geometry=None):
    """One group in a worker process; ticks go back to the parent's progress bar."""
    def tick(acc):
        _worker_ticks.put(acc)
    return run_group(cfg, layer, group, iterations, init, np.random.default_rng(seed_key), tick,
                     geometry)


def _run_tasks(cfg: RunConfig, tasks, tick) -> List[List[NodeResult]]:
    """Run (layer, group, iterations, init, seed_key[, geometry]) tasks in this process
    or in ``cfg.workers`` processes. Each task has its own seed, so a task's result
    does not depend on where it runs."""
    if cfg.workers <= 1 or len(tasks) <= 1:
        return [run_group(cfg, *t[:4], np.random.default_rng(t[4]), tick,
                          t[5] if len(t) > 5 else None) for t in tasks]
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import ProcessPoolExecutor, wait, FIRST_COMPLETED
    ctx = mp.get_context("spawn")            # fork after loading Caffe/OpenBLAS is unsafe
    ticks = ctx.Queue()
    # one BLAS thread per worker: the workers already use the cores
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(ticks, cfg.gpu)) as pool:
            futures = [pool.submit(_worker_task, cfg, *t) for t in tasks]
            expected = sum(cfg.warmup + t[2] for t in tasks)
            received = 0
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                try:
                    while True:
                        tick(ticks.get_nowait())
                        received += 1
                except queue_mod.Empty:
                    pass
            results = [f.result() for f in futures]     # re-raises a worker's error
            try:        # ticks can trail the results (the queue's feeder thread)
                while received < expected:
                    tick(ticks.get(timeout=2.0))
                    received += 1
            except queue_mod.Empty:
                pass
            return results
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)


def plan_nodes(cfg: RunConfig):
    """(node, channels, iterations, init, geometry) per requested node, resolving the
    preset rules (None = by node kind: fully connected vs spatial). Every node is
    checked here, with Caffe's shapes, before any sampling, so a bad name, channel
    or input size fails fast."""
    plans = []
    for node in cfg.nodes:
        geometry = caffe_target.resolve_node(cfg.model, node.layer, cfg.input_size)
        channels = check_channels(node, geometry.n_channels)
        iterations = cfg.iterations if cfg.iterations is not None else (
            cfg.iterations_flat if geometry.flat else cfg.iterations_spatial)
        init = cfg.init if cfg.init is not None else ("zero" if geometry.flat else "noise")
        plans.append((node, channels, iterations, init, geometry))
    if cfg.class_names is not None and not any(
            g.n_channels == len(cfg.class_names) for *_, g in plans):
        raise NetSetupError(
            f"--class-names lists {len(cfg.class_names)} names but no requested node has that "
            "many channels (" + ", ".join(f"{n.layer}: {g.n_channels}" for n, *_, g in plans)
            + "); line i of the file names channel i of a class score layer")
    return plans


def class_name_of(cfg: RunConfig, n_channels: int, channel: int) -> Optional[str]:
    """The class name of a node, for layers with one channel per listed class."""
    if cfg.class_names is None or n_channels != len(cfg.class_names):
        return None
    return cfg.class_names[channel]


def run(cfg: RunConfig, progress_factory=None) -> dict:
    """Sample every requested node and write all outputs; returns the summary dict.

    ``progress_factory(total)`` may return an object with ``update(n)`` and
    ``set_postfix_str(s, refresh=False)`` (a tqdm bar); None runs silently.
    """
    _set_caffe_mode(cfg.gpu)
    blob_arrays.chain_arrays(cfg.chains_on, cfg.gpu)   # a bad --chains-on stops here
    plans = plan_nodes(cfg)
    tasks, task_job = [], []
    for job, (node, channels, iterations, init, geometry) in enumerate(plans):
        for g, group in enumerate(plan_groups(channels, cfg.chains, cfg.batch_size, cfg.workers)):
            tasks.append((node.layer, group, iterations, init, (cfg.seed, job, g), geometry))
            task_job.append(job)
    bar = progress_factory(sum(cfg.warmup + t[2] for t in tasks)) if progress_factory else None

    def tick(acc):
        if bar is not None:
            # refresh=False: the bar redraws on update() at its own pace
            bar.set_postfix_str(f"accept {acc:.2f}", refresh=False)
            bar.update(1)

    outcomes = _run_tasks(cfg, tasks, tick)
    if bar is not None:
        bar.close()
    summary = {"settings": _settings_dict(cfg), "nodes": []}
    for job, (node, channels, iterations, init, geometry) in enumerate(plans):
        parts: Dict[int, List[NodeResult]] = {}
        for results in (o for o, j in zip(outcomes, task_job) if j == job):
            for res in results:
                parts.setdefault(res.channel, []).append(res)
        layer_results = []
        for channel in channels:
            res = merge_results(parts[channel])
            res.class_name = class_name_of(cfg, geometry.n_channels, channel)
            files = write_node_outputs(cfg, res)
            summary["nodes"].append(node_summary(res, files))
            layer_results.append(res)
        if len(layer_results) > 1:
            summary.setdefault("overviews", []).append(_write_overview(cfg, layer_results))
    with atomic_write(f"{cfg.out_dir}/nodes.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=NODE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in summary["nodes"]:
            writer.writerow(dict(row, input_shape="x".join(map(str, row["input_shape"])),
                                 class_name=row["class_name"] or ""))
    summary["nodes_csv"] = f"{cfg.out_dir}/nodes.csv"
    with atomic_write(f"{cfg.out_dir}/summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _write_overview(cfg: RunConfig, results: List[NodeResult]) -> str:
    """One row per channel of a layer, its chains across (paper Fig. 4 layout),
    each row labelled with its node, channel and class name."""
    path = f"{cfg.out_dir}/{safe_name(results[0].layer)}_overview.png"
    rows = [imaging.to_display(r.samples, cfg.transform, cfg.display) for r in results]
    upscale = grid_upscale(max(len(r) for r in rows), *results[0].input_shape[1:3])
    pad = 2
    grid = imaging.make_rows(rows, pad=pad, upscale=upscale)
    tile_h = results[0].input_shape[1] * upscale
    tops = [pad + i * (tile_h + pad) for i in range(len(rows))]
    text = [[f"{r.layer}:{r.channel}"] + ([r.class_name] if r.class_name else [])
            for r in results]
    imaging.save_png(labels.label_rows(grid, tops, tile_h, text), path)
    return path


def _settings_dict(cfg: RunConfig) -> dict:
    d = asdict(cfg)
    d["nodes"] = [str(n) for n in cfg.nodes]
    d["class_names"] = None if cfg.class_names is None else len(cfg.class_names)
    t = cfg.transform
    d["transform"] = {"scale": t.scale, "bgr": t.bgr,
                      "mean": None if t.mean is None else np.asarray(t.mean).tolist()
                      if np.asarray(t.mean).size <= 16 else "mean image"}
    return d
