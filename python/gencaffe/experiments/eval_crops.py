"""Top-1/top-5 error of a Caffe classifier by averaging 5 (or 10) crops, through pycaffe.

Caffe reads and prepares the images: a Data layer for an LMDB (raw or
JPEG-encoded Datums), an ImageData layer for an image folder (the same
cv::imread + cv::resize as convert_imageset), each with the transform_param
the training nets use (mean_file subtracted from the full image before any
crop, or mean_value per channel, then scale). Those full images are cut into
crops in NumPy (gencaffe.experiments.crops), the deploy net classifies all
crops of a batch in one forward pass, and the class probabilities are
averaged per image.

Checked before anything runs, each with a message that says what was
expected: the files exist; the weights fit the deploy net layer by layer (a
caffemodel trained for another class count would otherwise abort inside
Caffe); the net's class count equals the data's classes.txt; the mean's size
equals the images'; the crop fits in the image. During the run every label is
checked against the net's class count.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic_io import atomic_write
from ..pycaffe_net import net_from_param
from ..data import datum_io, image_check, imagenet_sources
from . import crops


class EvalError(RuntimeError):
    """The evaluation cannot run as asked; the message says why."""


@dataclasses.dataclass
class EvalConfig:
    model: str
    weights: str
    lmdb: Optional[str] = None
    images: Optional[str] = None
    labels: Optional[str] = None          # with images: "NAME LABEL" lines (val.txt)
    classes: Optional[str] = None         # classes.txt / synsets.txt: the data's class list
    mean_file: Optional[str] = None
    mean_values: Optional[Sequence[float]] = None
    no_mean: bool = False
    scale: float = 1.0
    ten_crop: bool = False
    batch_size: int = 50                  # images per forward pass (x5 or x10 crops)
    resize: Tuple[int, int] = (256, 256)  # images mode: what convert_imageset would resize to
    gpu: Optional[int] = None
    limit: Optional[int] = None
    input_blob: str = "data"
    output_blob: Optional[str] = None
    jobs: int = 1                         # images mode: processes for the decode check


# ---------------------------------------------------------------- checks without Caffe

def our_data_folder(lmdb_path: str) -> Optional[str]:
    """The folder holding lmdb_path if tools/make_imagenet_lmdb.py wrote it, else None."""
    from ..data import imagenet
    parent = os.path.dirname(os.path.abspath(lmdb_path.rstrip("/")))
    return parent if imagenet.read_manifest(parent) is not None else None


def read_class_list(path: str) -> List[str]:
    try:
        return imagenet_sources.read_classes_file(path)[0]
    except imagenet_sources.SourceError as err:
        raise EvalError(str(err)) from None


def weights_mismatches(net, weights_path: str) -> Tuple[List[str], List[str]]:
    """(mismatches, layers of the net without weights) between a net and a caffemodel,
    by the rule of Caffe's Net::CopyTrainedLayersFrom (layers matched by name)."""
    from caffe.proto import caffe_pb2
    param = caffe_pb2.NetParameter()
    with open(weights_path, "rb") as handle:
        param.ParseFromString(handle.read())
    source = {layer.name: layer for layer in list(param.layer) + list(param.layers)}
    problems, untouched = [], []
    for name, blobs in net.params.items():
        layer = source.get(name)
        if layer is None or len(layer.blobs) == 0:
            untouched.append(name)
            continue
        if len(layer.blobs) != len(blobs):
            problems.append("layer %r: the weights have %d blobs, the net %d"
                            % (name, len(layer.blobs), len(blobs)))
            continue
        for i, (saved, target) in enumerate(zip(layer.blobs, blobs)):
            shape = tuple(target.data.shape)
            if saved.HasField("shape"):
                saved_shape = tuple(saved.shape.dim)
                ok = saved_shape == shape
            else:  # legacy num/channels/height/width
                saved_shape = (saved.num, saved.channels, saved.height, saved.width)
                ok = len(shape) <= 4 and saved_shape == (1,) * (4 - len(shape)) + shape
            if not ok:
                problems.append("layer %r blob %d: the weights have shape %s, the net %s"
                                % (name, i, "x".join(map(str, saved_shape)),
                                   "x".join(map(str, shape))))
    return problems, untouched


def producing_layer_type(net, blob: str) -> Optional[str]:
    kind = None
    for name, layer in zip(net._layer_names, net.layers):
        if blob in net.top_names.get(name, []):
            kind = layer.type
    return kind


# ---------------------------------------------------------------- the run

class _Data:
    """What the reader net reads: kind, path, number of images, image shape, etc."""

    def __init__(self):
        self.kind = ""
        self.path = ""
        self.count = 0
        self.shape = (0, 0, 0)
        self.list_file = None
        self.labels_file = None
        self.skipped: List[Dict[str, str]] = []
        self.class_names: Optional[List[str]] = None
        self.classes_file: Optional[str] = None


def _resolve_data(cfg: EvalConfig, log) -> _Data:
    data = _Data()
    if bool(cfg.lmdb) == bool(cfg.images):
        raise EvalError("give exactly one of --lmdb DB and --images DIR")
    if cfg.classes:
        data.classes_file = os.path.abspath(cfg.classes)
        data.class_names = read_class_list(cfg.classes)
    if cfg.lmdb:
        data.kind, data.path = "lmdb", os.path.abspath(cfg.lmdb)
        if not os.path.isfile(os.path.join(data.path, "data.mdb")):
            raise EvalError("LMDB not found: %s (expected a folder with data.mdb, e.g. "
                            "data/imagenet/val_lmdb from tools/make_imagenet_lmdb.py)" % cfg.lmdb)
        data.count = datum_io.lmdb_count(data.path)
        if data.count == 0:
            raise EvalError("LMDB %s is empty" % cfg.lmdb)
        _, first = next(datum_io.iter_datums(data.path, limit=1))
        data.shape = tuple(datum_io.datum_shape(first))
        ours = our_data_folder(data.path)
        if data.class_names is None and ours and os.path.isfile(os.path.join(ours, "classes.txt")):
            data.classes_file = os.path.join(ours, "classes.txt")
            data.class_names = read_class_list(data.classes_file)
        return data
    data.kind, data.path = "images", os.path.abspath(cfg.images)
    if not os.path.isdir(data.path):
        raise EvalError("image folder not found: %s" % cfg.images)
    if cfg.labels:
        entries, problems = imagenet_sources.read_list_file(cfg.labels, data.class_names)
        data.labels_file = os.path.abspath(cfg.labels)
        missing = imagenet_sources.files_missing(data.path, entries)
        if missing:
            problems.append("%s: %d listed file(s) missing under %s: %s"
                            % (cfg.labels, len(missing), data.path,
                               imagenet_sources.quote_some(missing)))
    elif data.class_names is not None:
        _, entries, problems, warnings = imagenet_sources.scan_class_tree(
            data.path, "eval", data.class_names)
        problems = [p for p in problems if "hold no image files" not in p]
        for warning in warnings:
            log("warning: " + warning)
    else:
        raise EvalError("--images needs --labels FILE ('NAME LABEL' lines, like val.txt), or "
                        "--classes FILE for a DIR/<class>/ tree")
    if problems:
        raise EvalError("\n".join(problems))
    if cfg.limit:
        entries = entries[:cfg.limit]
    bad = dict(image_check.check_images([os.path.join(data.path, r) for r, _ in entries],
                                        jobs=cfg.jobs))
    for rel, _ in entries:
        reason = bad.get(os.path.join(data.path, rel))
        if reason:
            data.skipped.append({"path": rel, "reason": reason})
            log("warning: skipping %s: %s" % (rel, reason))
    entries = [(r, lab) for r, lab in entries if os.path.join(data.path, r) not in bad]
    if not entries:
        raise EvalError("no readable image to evaluate in %s" % cfg.images)
    handle, data.list_file = tempfile.mkstemp(prefix="eval_crops_", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        for rel, label in entries:
            out.write("%s %d\n" % (os.path.join(data.path, rel), label))
    data.count = len(entries)
    data.shape = (3,) + tuple(cfg.resize)
    return data


def _mean(cfg: EvalConfig, data: _Data) -> Tuple[dict, str]:
    """(transform_param fields for the mean, a description)."""
    given = [bool(cfg.mean_file), cfg.mean_values is not None, cfg.no_mean]
    if sum(given) > 1:
        raise EvalError("give at most one of --mean-file, --mean-values, --no-mean")
    mean_file = cfg.mean_file
    if not any(given) and data.kind == "lmdb":
        ours = our_data_folder(data.path)
        if ours and os.path.isfile(os.path.join(ours, "mean.binaryproto")):
            mean_file = os.path.join(ours, "mean.binaryproto")
    if mean_file:
        if not os.path.isfile(mean_file):
            raise EvalError("mean file not found: %s" % mean_file)
        try:
            shape = datum_io.read_mean(mean_file).shape
        except Exception as err:
            raise EvalError("cannot read the mean file %s: %s" % (mean_file, err)) from None
        if tuple(shape) != tuple(data.shape):
            raise EvalError("the mean %s is %s (CxHxW) but the images are %s; use the mean of the "
                            "same data (tools/make_imagenet_lmdb.py writes both)"
                            % (mean_file, "x".join(map(str, shape)),
                               "x".join(map(str, data.shape))))
        return {"mean_file": os.path.abspath(mean_file)}, os.path.abspath(mean_file)
    if cfg.mean_values is not None:
        values = [float(v) for v in cfg.mean_values]
        if len(values) not in (1, data.shape[0]):
            raise EvalError("--mean-values needs 1 or %d values (B,G,R), got %d"
                            % (data.shape[0], len(values)))
        return {"mean_value": values}, "per-channel " + ",".join("%g" % v for v in values)
    if cfg.no_mean:
        return {}, "none"
    raise EvalError("no mean given: pass --mean-file (the training data's mean.binaryproto), "
                    "--mean-values B,G,R or --no-mean")


def _reader_net(cfg: EvalConfig, data: _Data, transform: dict, batch: int):
    import caffe
    from caffe import layers as L, params as P
    spec = caffe.NetSpec()
    if data.kind == "lmdb":
        spec.data, spec.label = L.Data(ntop=2, transform_param=transform,
                                       data_param=dict(source=data.path, backend=P.Data.LMDB,
                                                       batch_size=batch))
    else:
        spec.data, spec.label = L.ImageData(
            ntop=2, transform_param=transform,
            image_data_param=dict(source=data.list_file, batch_size=batch, shuffle=False,
                                  new_height=cfg.resize[0], new_width=cfg.resize[1],
                                  is_color=True))
    return net_from_param(spec.to_proto(), caffe.TEST, prefix="eval_crops_reader_")


def evaluate(cfg: EvalConfig, log: Callable[[str], None] = print,
             progress_factory=None, keep_probs: bool = False) -> dict:
    """Run the evaluation; return the results (and "probs", (N, C), if keep_probs)."""
    for path, what in ((cfg.model, "--model"), (cfg.weights, "--weights")):
        if not os.path.isfile(path):
            raise EvalError("%s file not found: %s" % (what, path))
    if cfg.batch_size < 1:
        raise EvalError("--batch-size must be >= 1")
    data = _resolve_data(cfg, log)
    try:
        return _evaluate(cfg, data, log, progress_factory, keep_probs)
    finally:
        if data.list_file:
            os.unlink(data.list_file)


def _evaluate(cfg, data, log, progress_factory, keep_probs):
    import caffe
    if cfg.gpu is not None:
        caffe.set_device(int(cfg.gpu))
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    warnings: List[str] = []
    net = caffe.Net(cfg.model, caffe.TEST)
    if cfg.input_blob not in net.blobs:
        raise EvalError("the net %s has no input blob %r (its inputs: %s; see --input-blob)"
                        % (cfg.model, cfg.input_blob, ", ".join(net.inputs) or "none"))
    output = cfg.output_blob or net.outputs[-1]
    if output not in net.blobs:
        raise EvalError("the net %s has no blob %r (its outputs: %s)"
                        % (cfg.model, output, ", ".join(net.outputs)))
    problems, untouched = weights_mismatches(net, cfg.weights)
    if problems:
        raise EvalError("the weights %s do not fit the net %s (trained for another net or class "
                        "count?):\n  %s" % (cfg.weights, cfg.model, "\n  ".join(problems)))
    if untouched:
        if len(untouched) == len(net.params):
            raise EvalError("the weights %s share no layer name with the net %s"
                            % (cfg.weights, cfg.model))
        warnings.append("layers without weights in %s (left at their fillers): %s"
                        % (cfg.weights, ", ".join(untouched)))
    net.copy_from(cfg.weights)
    n_classes = int(np.prod(net.blobs[output].data.shape[1:]))
    softmax = producing_layer_type(net, output) == "Softmax"
    if not softmax:
        warnings.append("the output %r is not a Softmax top: averaging its raw values over crops"
                        % output)
    if data.class_names is not None and len(data.class_names) != n_classes:
        raise EvalError("class count mismatch: the net %s outputs %d classes (blob %r) but the "
                        "data's %s lists %d; evaluate with the net trained on this data"
                        % (cfg.model, n_classes, output, data.classes_file,
                           len(data.class_names)))
    _, channels, crop_h, crop_w = net.blobs[cfg.input_blob].data.shape
    if channels != data.shape[0]:
        raise EvalError("the net takes %d-channel input, the images have %d"
                        % (channels, data.shape[0]))
    if crop_h > data.shape[1] or crop_w > data.shape[2]:
        raise EvalError("the net's input %dx%d is larger than the images (%dx%d): nothing to crop"
                        % (crop_h, crop_w, data.shape[1], data.shape[2]))
    transform, mean_text = _mean(cfg, data)
    if cfg.scale != 1.0:
        transform["scale"] = float(cfg.scale)
    for warning in warnings:
        log("warning: " + warning)

    n_images = min(data.count, cfg.limit) if cfg.limit else data.count
    batch = min(cfg.batch_size, n_images)
    reader = _reader_net(cfg, data, transform, batch)
    k = crops.crops_per_image(cfg.ten_crop)
    tally = crops.Tally((1, 5))
    kept = [] if keep_probs else None
    bar = progress_factory(n_images, "%d-crop eval" % k, "img") if progress_factory else None
    started = time.time()
    done = 0
    try:
        while done < n_images:
            reader.forward()
            valid = min(batch, n_images - done)
            images = reader.blobs["data"].data[:valid]
            labels = reader.blobs["label"].data[:valid].astype(np.int64).ravel()
            bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
            if bad.size:
                raise EvalError("image #%d of %s has label %d, outside the net's %d classes "
                                "(0..%d): data and net do not match"
                                % (done + bad[0], data.path, labels[bad[0]], n_classes,
                                   n_classes - 1))
            views = crops.crop_views(images, crop_h, crop_w, mirror=cfg.ten_crop)
            views = views.reshape((valid * k,) + views.shape[2:])
            blob = net.blobs[cfg.input_blob]
            if blob.data.shape[0] != views.shape[0]:
                blob.reshape(*views.shape)
            blob.data[...] = views
            outputs = net.forward()[output] if output in net.outputs else (
                net.forward(blobs=[output])[output])
            probs = crops.average_over_crops(outputs, valid)
            tally.add(probs, labels)
            if kept is not None:
                kept.append(probs)
            done += valid
            if bar:
                bar.update(valid)
    finally:
        if bar:
            bar.close()
    seconds = time.time() - started
    result = {
        "model": cfg.model,
        "weights": cfg.weights,
        "data": {"kind": data.kind, "path": data.path, "labels": data.labels_file,
                 "classes_file": data.classes_file, "image_size": list(data.shape[1:])},
        "n_images": n_images,
        "skipped": data.skipped,
        "crops": k,
        "crop_size": [int(crop_h), int(crop_w)],
        "mean": mean_text,
        "scale": cfg.scale,
        "classes": n_classes,
        "output_blob": output,
        "output_is_softmax": softmax,
        "top1_error": round(tally.error(1), 4),
        "top5_error": round(tally.error(5), 4),
        "seconds": round(seconds, 2),
        "images_per_s": round(n_images / seconds, 2) if seconds > 0 else None,
        "mode": "GPU %d" % cfg.gpu if cfg.gpu is not None else "CPU",
        "warnings": warnings,
    }
    if kept is not None:
        result["probs"] = np.concatenate(kept)
    return result


# ---------------------------------------------------------------- results file

MARKDOWN_HEADER = ("| model | weights | data | images | top-1 error % | top-5 error % | crops |\n"
                   "|---|---|---|---:|---:|---:|---|")


def markdown_row(result: dict) -> str:
    crop = "%d (%dx%d of %dx%d%s)" % (result["crops"], result["crop_size"][0],
                                     result["crop_size"][1], result["data"]["image_size"][0],
                                     result["data"]["image_size"][1],
                                     ", mirrored" if result["crops"] == 10 else "")
    return "| %s | %s | %s | %d | %.2f | %.2f | %s |" % (
        result["model"], result["weights"], result["data"]["path"], result["n_images"],
        result["top1_error"], result["top5_error"], crop)


def default_out_path(weights: str, ten_crop: bool) -> str:
    stem = weights[:-len(".caffemodel")] if weights.endswith(".caffemodel") else weights
    return "%s.%dcrop.json" % (stem, 10 if ten_crop else 5)


def write_results(result: dict, json_path: str) -> str:
    """Write the JSON and a markdown file beside it (same stem, .md); return the .md path."""
    stored = {k: v for k, v in result.items() if k != "probs"}
    with atomic_write(json_path, "w") as handle:
        json.dump(stored, handle, indent=2, sort_keys=True)
        handle.write("\n")
    md_path = os.path.splitext(json_path)[0] + ".md"
    with atomic_write(md_path, "w") as handle:
        handle.write(MARKDOWN_HEADER + "\n" + markdown_row(result) + "\n")
    return md_path
