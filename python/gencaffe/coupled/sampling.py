"""Sampling the reverse (generator) model of a coupled net (Flach, Shekhovtsov &
Fikar 2017, Sec. 3, Fig. 2 and 3), class by class.

The reverse model is a chain of conditionally independent Bernoulli layers
q(x^{k-1} | x^k), k = d .. 1, whose probabilities the deploy reverse net
computes (models/coupled_*/deploy_reverse.prototxt: each hidden layer ends
in a Sigmoid, the pixels in Sigmoid "pixel_prob"). Starting from the class
x^d = onehot(y), the chain is run stage by stage; after each hidden stage
the probabilities are either replaced by a Bernoulli sample (a sampled
layer) or passed on as they are (the mean-field approximation (2), "applying
the approximation recursively"). Two modes, as the paper's figures:

    recursive   every hidden layer sampled, and the image sampled from its
                pixel probabilities: "recursive sampling through the net
                starting from the class layer till the image layer"
    one_layer   x^{d-1} sampled from q(x^{d-1} | x^d), then probabilities
                down to the image, shown as grey levels: "sampling through
                one layer only and then recursively computing probabilities
                till the image layer"

Each image is then classified by the forward model (deploy_forward), whose
most probable class and its probability are written above the image.

The chain logic, the Bernoulli draws, the stage plan and the captions are
plain functions here (tests call them without Caffe); Caffe runs the layers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import grids
from .grids import caption  # noqa: F401  (the samples' captions; grids draws them)

MODES = ("recursive", "one_layer")
MODE_TITLES = {
    "recursive": "every layer sampled, class layer down to the image (Fig. 2 left)",
    "one_layer": "x^{d-1} sampled, then probabilities down to the image (Fig. 2 right, Fig. 3)",
}
IMAGE_MODES = ("sample", "mean")


class SamplingError(ValueError):
    """A net or request the sampler cannot use; the message says why."""


@dataclass(frozen=True)
class Stage:
    """Layers start..end (names) of the reverse net: one layer of units, whose
    probabilities end up in blob `top` (the stage's last layer, a Sigmoid)."""
    start: str
    end: str
    top: str


def plan_stages(layers: Sequence[Tuple[str, str, Sequence[str]]]) -> List[Stage]:
    """Split a deploy reverse net, given as (name, type, tops) per layer in
    order, into stages that each end at a Sigmoid: the hidden layers x^{d-1}
    .. x^1, then the pixels. Input layers are skipped."""
    stages, start = [], None
    for name, kind, tops in layers:
        if kind == "Input":
            continue
        if start is None:
            start = name
        if kind == "Sigmoid":
            if not tops:
                raise SamplingError("Sigmoid layer %r has no top" % name)
            stages.append(Stage(start, name, tops[0]))
            start = None
    if start is not None:
        raise SamplingError("the reverse net's last layers (from %r) end in no Sigmoid: the "
                            "pixel layer must give probabilities (deploy_reverse ends in "
                            "Sigmoid \"pixel_prob\")" % start)
    if len(stages) < 2:
        raise SamplingError("the reverse net has %d Sigmoid stage(s); it needs at least one "
                            "hidden layer and the pixel layer" % len(stages))
    return stages


def bernoulli(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One binary sample per unit: 1 with probability prob (clipped to [0, 1])."""
    prob = np.asarray(prob)
    return (rng.random(prob.shape) < prob).astype(prob.dtype if prob.dtype.kind == "f"
                                                   else np.float32)


def depth_for(mode: str, hidden_layers: int, sample_layers: Optional[int] = None) -> int:
    """How many hidden layers (from the top) are sampled."""
    if sample_layers is not None:
        if not 0 <= sample_layers <= hidden_layers:
            raise SamplingError("--sample-layers must be 0..%d (the reverse net's hidden "
                                "layers), got %d" % (hidden_layers, sample_layers))
        return sample_layers
    if mode == "recursive":
        return hidden_layers
    if mode == "one_layer":
        return 1
    raise SamplingError("mode must be one of %s, got %r" % (", ".join(MODES), mode))


def default_image_mode(mode: str) -> str:
    return "sample" if mode == "recursive" else "mean"


def run_chain(run_stage: Callable[[int, Optional[np.ndarray]], np.ndarray], n_stages: int,
              sample_depth: int, rng: np.random.Generator, image: str = "mean"):
    """Run the reverse chain. run_stage(i, replacement) must first, if
    `replacement` is given, put it into stage i-1's output (the units feeding
    stage i), then compute stage i and return its probabilities. Hidden
    stages 0 .. sample_depth-1 are replaced by samples; the last stage gives
    the pixel probabilities, and the image is their sample ("sample") or
    themselves ("mean"). Returns (image, pixel probabilities, the units fed
    to each stage after the first: sampled or mean-field)."""
    if image not in IMAGE_MODES:
        raise SamplingError("image must be one of %s, got %r" % (IMAGE_MODES, image))
    replacement, fed = None, []
    for i in range(n_stages):
        prob = run_stage(i, replacement)
        if i == n_stages - 1:
            pixels = np.array(prob, copy=True)
            shown = bernoulli(pixels, rng) if image == "sample" else pixels
            return shown, pixels, fed
        units = bernoulli(prob, rng) if i < sample_depth else np.array(prob, copy=True)
        fed.append(units)
        replacement = units if i < sample_depth else None
    raise SamplingError("no stages")


def parse_classes(text: str, num_classes: int) -> List[int]:
    """'0-9', '3', '1,4,7', '0-2,8' -> class indices (checked against num_classes)."""
    classes = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-"))
                classes.extend(range(low, high + 1))
            elif part:
                classes.append(int(part))
    except ValueError:
        raise SamplingError("classes must look like '0-9' or '1,4', got %r" % text) from None
    bad = [c for c in classes if not 0 <= c < num_classes]
    if not classes or bad:
        raise SamplingError("classes %r: each must be in 0..%d" % (text, num_classes - 1))
    return classes


# ------------------------------------------------------------------ with Caffe

def committed_deploy_nets(repo: str, arch_key: str) -> Tuple[str, str]:
    """(forward, reverse) deploy prototxt of a committed coupled architecture."""
    folder = os.path.join(repo, "models", arch_key)
    return (os.path.join(folder, "deploy_forward.prototxt"),
            os.path.join(folder, "deploy_reverse.prototxt"))


def _check_file(path, what):
    if not os.path.isfile(path):
        raise SamplingError("%s %s does not exist" % (what, path))


def trained_blobs(weights: str):
    """What a caffemodel holds: (names of the layers with blobs, {param name:
    array} of every named param). Caffe saves each layer's blobs, shared or
    not, with its LayerParameter, so a shared blob is found under its name
    even where the layer that a deploy net needs was not in the trained net
    (the Eq. 22 net has no Embed layer; its blobs, W_d and b_{d-1}, are the
    forward net's)."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    with open(weights, "rb") as handle:
        net.ParseFromString(handle.read())
    layers, by_name = set(), {}
    for layer in list(net.layer) + list(net.layers):
        if not len(layer.blobs):
            continue
        layers.add(layer.name)
        for i, blob in enumerate(layer.blobs):
            if i < len(layer.param) and layer.param[i].name:
                shape = tuple(blob.shape.dim) if blob.HasField("shape") else (
                    blob.num, blob.channels, blob.height, blob.width)
                by_name[layer.param[i].name] = np.asarray(blob.data, np.float32).reshape(shape)
    return layers, by_name


def param_names(model: str):
    """{layer name: [param names]} of a prototxt."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(model) as handle:
        text_format.Merge(handle.read(), net)
    return {layer.name: [p.name for p in layer.param] for layer in net.layer}


def load_weights(net, model: str, weights: str, trained=None):
    """Caffe's copy_from (layers by name), then the blobs of layers the
    caffemodel lacks by their param names; returns the layers still without
    weights, as "layer (param)" strings."""
    layers, by_name = trained or trained_blobs(weights)
    net.copy_from(weights)
    names = param_names(model)
    missing = []
    for layer, blobs in net.params.items():
        if layer in layers:
            continue
        wanted = names.get(layer, [])
        for i, blob in enumerate(blobs):
            name = wanted[i] if i < len(wanted) else ""
            if name in by_name and by_name[name].size == blob.data.size:
                blob.data[...] = by_name[name].reshape(blob.data.shape)
            else:
                missing.append("%s (%s)" % (layer, name or "param %d, unnamed" % i))
    return missing


class CoupledSampler:
    """The deploy nets of one trained coupled model, loaded through pycaffe."""

    def __init__(self, forward_model: str, reverse_model: str, weights: str):
        import caffe
        for path, what in ((forward_model, "forward deploy net"),
                           (reverse_model, "reverse deploy net"), (weights, "weights")):
            _check_file(path, what)
        self.forward = caffe.Net(forward_model, caffe.TEST)
        self.reverse = caffe.Net(reverse_model, caffe.TEST)
        for net, blob, path in ((self.forward, "image", forward_model),
                                (self.reverse, "label", reverse_model)):
            if blob not in net.blobs or blob not in net.inputs:
                raise SamplingError("%s has no Input blob %r (use the generator's deploy "
                                    "nets: tools/make_nets.py)" % (path, blob))
        if "prob" not in self.forward.blobs:
            raise SamplingError("%s has no \"prob\" blob (the class probabilities)"
                                % forward_model)
        # Caffe would leave layers that the caffemodel lacks at their fillers, silently
        trained = trained_blobs(weights)
        for net, path in ((self.forward, forward_model), (self.reverse, reverse_model)):
            missing = load_weights(net, path, weights, trained)
            if missing:
                raise SamplingError(
                    "%s has no weights for %s of %s: %s" % (
                        weights, ", ".join(missing), path,
                        "a discriminative (disc) model has no trained reverse net; sample an "
                        "eq21 or eq22 model" if net is self.reverse
                        else "another architecture's model?"))
        names = list(self.reverse._layer_names)
        layers = [(name, layer.type, self.reverse.top_names[name])
                  for name, layer in zip(names, self.reverse.layers)]
        self.stages = plan_stages(layers)
        self.num_classes = self.forward.blobs["prob"].data.shape[1]
        self.image_shape = self.forward.blobs["image"].data.shape[1:]

    @property
    def hidden_layers(self):
        return len(self.stages) - 1

    def _run_stage(self, i, replacement):
        net = self.reverse
        if replacement is not None:
            net.blobs[self.stages[i - 1].top].data[...] = replacement
        stage = self.stages[i]
        net.forward(start=stage.start, end=stage.end)
        return net.blobs[stage.top].data

    def draw(self, labels: Sequence[int], sample_depth: int, rng: np.random.Generator,
             image: str = "mean"):
        """Images of the given classes: (images N x C x H x W, pixel probabilities,
        the units fed to each stage after the first)."""
        labels = np.asarray(labels)
        if labels.size == 0:
            raise SamplingError("no labels to sample")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise SamplingError("labels must be in 0..%d" % (self.num_classes - 1))
        self.reverse.blobs["label"].reshape(len(labels))
        self.reverse.reshape()
        self.reverse.blobs["label"].data[...] = labels
        shown, pixels, fed = run_chain(self._run_stage, len(self.stages), sample_depth, rng,
                                       image)
        shape = (len(labels),) + tuple(self.image_shape)
        return shown.reshape(shape), pixels.reshape(shape), fed

    def classify(self, images: np.ndarray):
        """(most probable class, its probability) of each image by the forward model."""
        self.forward.blobs["image"].reshape(*images.shape)
        self.forward.reshape()
        self.forward.blobs["image"].data[...] = images
        prob = self.forward.forward()["prob"].reshape(len(images), -1)
        predicted = prob.argmax(axis=1)
        return predicted, prob[np.arange(len(images)), predicted]


@dataclass
class SampleSet:
    mode: str
    sample_depth: int
    image_mode: str
    classes: List[int]
    images: np.ndarray          # (classes x per_class) x C x H x W
    pixel_prob: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray

    def agreement(self):
        """Fraction of samples the forward model puts in the class they were drawn from."""
        return float(np.mean(self.predicted == self.labels))


def draw_samples(sampler: CoupledSampler, mode: str, classes: Sequence[int], per_class: int,
                 rng: np.random.Generator, sample_layers: Optional[int] = None,
                 image_mode: Optional[str] = None, tick: Optional[Callable[[], None]] = None,
                 ) -> SampleSet:
    depth = depth_for(mode, sampler.hidden_layers, sample_layers)
    image_mode = image_mode or default_image_mode(mode)
    images, pixels, labels = [], [], []
    for c in classes:
        shown, prob, _ = sampler.draw([c] * per_class, depth, rng, image_mode)
        images.append(shown.copy())
        pixels.append(prob.copy())
        labels.extend([c] * per_class)
        if tick:
            tick()
    images, pixels = np.concatenate(images), np.concatenate(pixels)
    predicted, probability = sampler.classify(images)
    return SampleSet(mode, depth, image_mode, list(classes), images, pixels, np.asarray(labels),
                     predicted, probability)


def sample_to_png(models: Tuple[str, str], weights: str, mode: str, path: str,
                  per_class: int = 10, seed: int = 1, classes: Optional[Sequence[int]] = None,
                  title: Optional[str] = None) -> SampleSet:
    """Draw per_class samples of each class and write the captioned grid to path."""
    sampler = CoupledSampler(models[0], models[1], weights)
    classes = list(range(sampler.num_classes)) if classes is None else list(classes)
    samples = draw_samples(sampler, mode, classes, per_class, np.random.default_rng(seed))
    grids.write_grid(samples, path, title=title)
    return samples
