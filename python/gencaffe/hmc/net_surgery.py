"""Prototxt surgery for HMC visualization: protobuf edits on an in-memory
NetParameter (the user's file is never touched). It reads a deploy prototxt
(:func:`load_net_param`) and its single image input (:func:`find_image_input`),
cuts the net right after a node's layer keeping the TEST-phase layers with Dropout
removed (:func:`_cut_layers`), and writes the two nets made from a cut: the shape
probe's, with an ``Input`` layer, zero fillers and Caffe's own engines
(:func:`_probe_text`; node_geometry.py asks Caffe about it), and the one the
sampler runs, fed through a ``Parameter`` layer (:func:`_final_param`). Nothing
here knows any layer type's arithmetic; :func:`_check_layer_types` only asks the
Caffe build which types it has.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .errors import NetSetupError

INPUT_LAYER_NAME = "hmc_input"   # must not collide with a layer name in a caffemodel
IMAGE_INPUT_TYPES = ("Input",)   # how a deploy net declares its image blob


def _caffe():
    import caffe  # noqa: imported lazily so the rest of gencaffe works without pycaffe
    return caffe


def _pb2():
    from caffe.proto import caffe_pb2
    return caffe_pb2


# ---------------------------------------------------------------- prototxt I/O

def load_net_param(path: str):
    from google.protobuf import text_format
    if not os.path.isfile(path):
        raise NetSetupError(f"model prototxt not found: {path}")
    param = _pb2().NetParameter()
    with open(path) as fh:
        try:
            text_format.Merge(fh.read(), param)
        except text_format.ParseError as err:
            raise NetSetupError(f"cannot parse {path} as a Caffe NetParameter: {err}") from None
    if len(param.layers):
        raise NetSetupError(f"{path} uses the legacy V1 'layers' format; convert it with "
                            "Caffe's upgrade_net_proto_text tool first")
    return param


def _in_test_phase(layer) -> bool:
    """Caffe's phase rule check (stages/levels are left to Caffe)."""
    test = _pb2().TEST

    def met(rule):
        return not rule.HasField("phase") or rule.phase == test
    if len(layer.include):
        return any(met(r) for r in layer.include)
    return not any(met(r) and r.HasField("phase") for r in layer.exclude)


def test_phase_layers(param):
    """The layers of a NetParameter that Caffe builds in the TEST phase."""
    return [l for l in param.layer if _in_test_phase(l)]


@dataclass
class ImageInput:
    name: str
    shape: Tuple[int, int, int, int]   # N, C, H, W of the deploy net


def find_image_input(param, source: str = "the model") -> ImageInput:
    """The single 4-D input blob of a deploy net, or a clear error."""
    # A layer that makes blobs from nothing (Data, ImageData, DummyData, a Python
    # data layer, ...) other than the image Input or a learned Parameter blob.
    data_layers = [l.name for l in test_phase_layers(param) if not len(l.bottom) and len(l.top)
                   and l.type not in IMAGE_INPUT_TYPES + ("Parameter",)]
    if data_layers:
        raise NetSetupError(
            f"{source} reads its input from data layer(s) {data_layers}; give a deploy "
            "prototxt whose input is an image blob (an 'Input' layer or 'input:' field)")
    inputs: List[Tuple[str, Tuple[int, ...]]] = []
    for i, name in enumerate(param.input):
        if len(param.input_shape) > i:
            shape = tuple(param.input_shape[i].dim)
        elif len(param.input_dim) >= 4 * (i + 1):
            shape = tuple(param.input_dim[4 * i:4 * i + 4])
        else:
            shape = ()
        inputs.append((name, shape))
    for layer in test_phase_layers(param):
        if layer.type in IMAGE_INPUT_TYPES:
            shapes = list(layer.input_param.shape)
            for j, top in enumerate(layer.top):
                shape = shapes[j] if len(shapes) > j else (shapes[0] if shapes else None)
                inputs.append((top, tuple(shape.dim) if shape is not None else ()))
    if not inputs:
        raise NetSetupError(f"{source} has no input blob; a deploy prototxt needs an "
                            "'Input' layer or an 'input:' field with its shape")
    if len(inputs) > 1:
        raise NetSetupError(f"{source} has several inputs {[n for n, _ in inputs]}; "
                            "HMC visualization needs exactly one image input")
    name, shape = inputs[0]
    if len(shape) != 4 or min(shape) < 1:
        raise NetSetupError(f"input '{name}' of {source} has shape {list(shape)}; an image "
                            "blob must be 4-D (num, channels, height, width)")
    return ImageInput(name, tuple(int(d) for d in shape))



# ---------------------------------------------------------------- net cutting

@dataclass
class _Cut:
    image: ImageInput
    layers: list                    # LayerParameter copies from the input to the node
    node: object
    node_blob: str


def _layer_index(layers, node: str) -> int:
    for i, layer in enumerate(layers):
        if layer.name == node:
            return i
    for i, layer in enumerate(layers):           # fall back to a top blob name
        if node in layer.top:
            return i
    names = [l.name for l in layers]
    raise NetSetupError(f"unknown node '{node}'; layers in the net: {', '.join(names)}")


def _cut_layers(param, node_layer: str, source: str) -> _Cut:
    """The layers from the input to ``node_layer`` (copies), Dropout removed."""
    pb2 = _pb2()
    image = find_image_input(param, source)
    layers = [l for l in test_phase_layers(param) if l.type not in IMAGE_INPUT_TYPES]
    idx = _layer_index(layers, node_layer)
    node = layers[idx]
    if node.type == "Dropout":
        raise NetSetupError(f"'{node.name}' is a Dropout layer; Dropout is removed for "
                            "visualization, name the layer before it instead")
    if len(node.top) == 0:
        raise NetSetupError(f"'{node.name}' ({node.type}) has no output to visualize")
    kept = []
    renames: Dict[str, str] = {}
    for layer in layers[:idx + 1]:
        copy = pb2.LayerParameter()
        copy.CopyFrom(layer)
        for j, b in enumerate(copy.bottom):
            copy.bottom[j] = renames.get(b, b)
        if copy.type == "Dropout":
            # identity at test time; a non-in-place Dropout's top becomes its bottom
            if copy.top[0] != copy.bottom[0]:
                renames[copy.top[0]] = copy.bottom[0]
            continue
        copy.ClearField("include")
        copy.ClearField("exclude")
        kept.append(copy)
    return _Cut(image, kept, node, node.top[0])


def _singular_messages(layer):
    """(name, value) of the layer's set sub-messages that are not repeated
    (convolution_param, inner_product_param, ...)."""
    for fdesc, value in layer.ListFields():
        repeated = getattr(fdesc, "is_repeated", None)
        if repeated is None:                      # protobuf < 5
            repeated = fdesc.label == fdesc.LABEL_REPEATED
        if fdesc.type == fdesc.TYPE_MESSAGE and not repeated:
            yield fdesc.name, value


def _clear_fillers(layer) -> None:
    """Drop weight/bias fillers (they only fill values, never shapes): Caffe then
    fills with zeros, fast, where the values are not needed or are loaded."""
    for _, value in _singular_messages(layer):
        for sub, _ in value.ListFields():
            if sub.name.endswith("_filler"):
                value.ClearField(sub.name)


def _random_fillers(layer) -> None:
    """Give every filler of the layer (weight_filler, bias_filler, filler, ...) a
    Xavier filler, so the net has random weights scaled to its fan-in."""
    for _, value in _singular_messages(layer):
        for fdesc in value.DESCRIPTOR.fields:
            if fdesc.name.endswith("_filler") or fdesc.name == "filler":
                if fdesc.type == fdesc.TYPE_MESSAGE:
                    filler = getattr(value, fdesc.name)
                    filler.Clear()
                    filler.type = "xavier"


def _caffe_engine(layer) -> None:
    """Ask for Caffe's own implementation wherever a layer has an engine choice
    (shapes are the same; the shape probe runs on the CPU with no GPU)."""
    for _, value in _singular_messages(layer):
        engine = value.DESCRIPTOR.fields_by_name.get("engine")
        if engine is not None and "CAFFE" in engine.enum_type.values_by_name:
            value.engine = engine.enum_type.values_by_name["CAFFE"].number


def _probe_text(cut: _Cut, hw: Tuple[int, int]) -> str:
    """Prototxt of the cut net with an Input layer of batch 1 at input size ``hw``."""
    from google.protobuf import text_format
    net = _pb2().NetParameter()
    net.name = "hmc_probe"
    inp = net.layer.add()
    inp.name = INPUT_LAYER_NAME
    inp.type = "Input"
    inp.top.append(cut.image.name)
    inp.input_param.shape.add().dim.extend([1, cut.image.shape[1], int(hw[0]), int(hw[1])])
    for layer in cut.layers:
        copy = net.layer.add()
        copy.CopyFrom(layer)
        _clear_fillers(copy)
        _caffe_engine(copy)
    return text_format.MessageToString(net)


def _check_layer_types(layers) -> None:
    known = set(_caffe().layer_type_list())
    unknown = sorted({l.type for l in layers if l.type not in known})
    if unknown:
        raise NetSetupError(f"layer type(s) {unknown} are not in this Caffe build")


def _final_param(cut: _Cut, hw: Tuple[int, int], batch: int, param_counts: Dict[str, int],
                 name: str, for_probe: bool = False, random_weights: bool = False):
    """The NetParameter the sampler runs: a Parameter layer as the input (batch =
    chains), lr_mult 0 on every parameter blob, loss_weight 1 on the node top.
    ``for_probe``: the same for the shape probe (Caffe's own engines; zero or, with
    ``random_weights``, Xavier-random weights).

    Speed: the ``Parameter`` layer's blob *is* the input and its diff is df/dx, and
    every other parameter blob (``param_counts``: Caffe counts them when it builds
    the net) gets ``lr_mult: 0``, so ``net.backward`` computes input gradients only,
    not weight gradients (which ``force_backward`` would also compute, ~1/3 more
    work on LeNet). The node top's ``loss_weight: 1`` makes Caffe back-propagate
    from it; node_score.py overwrites its diff with the one-hot of the node."""
    net = _pb2().NetParameter()
    net.name = name
    net.force_backward = False
    inp = net.layer.add()
    inp.name = INPUT_LAYER_NAME
    inp.type = "Parameter"
    inp.top.append(cut.image.name)
    inp.parameter_param.shape.dim.extend([batch, cut.image.shape[1], int(hw[0]), int(hw[1])])
    inp.param.add().lr_mult = 1.0       # makes Caffe back-propagate down to the input
    for layer in cut.layers:
        copy = net.layer.add()
        copy.CopyFrom(layer)
        count = param_counts.get(copy.name, 0)
        while len(copy.param) < count:
            copy.param.add()
        if count:
            for spec in copy.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
        if for_probe:
            if random_weights:
                _random_fillers(copy)
            else:
                _clear_fillers(copy)
            _caffe_engine(copy)
    last = net.layer[-1]
    last.ClearField("loss_weight")
    for top in last.top:
        last.loss_weight.append(1.0 if top == cut.node_blob else 0.0)
    return net
