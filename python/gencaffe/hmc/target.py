"""The pycaffe side of HMC visualization (SPEC §5): f_y(x) and df_y/dx for a node y.

A node is one channel of a layer's output: a class score of the last layer, or a
channel of an intermediate (conv-style) layer. For the latter the net is cut
right after that layer and the input size is chosen from the net's geometry so
the layer's response is 1x1. Dropout layers are removed. All edits happen on an
in-memory NetParameter written to a temporary prototxt; the user's file is
never touched.

Speed: the input is fed through a ``Parameter`` layer (its blob *is* the input
and its diff is df/dx) and every other parameter gets ``lr_mult: 0``, so
``net.backward`` computes input gradients only, not weight gradients (which
``force_backward`` would also compute, ~1/3 more work on LeNet). The node top
carries ``loss_weight: 1`` so Caffe back-propagates from it; its diff is
overwritten with the one-hot of the node before every backward.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

INPUT_LAYER_NAME = "hmc_input"   # must not collide with a layer name in a caffemodel

DATA_LAYER_TYPES = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData",
                    "DummyData", "Python", "AnnotatedData", "VideoData"}

# Layers that keep the spatial size of their (first) bottom.
SAME_SIZE_TYPES = {"ReLU", "Sigmoid", "TanH", "LRN", "BatchNorm", "Scale", "Bias",
                   "Dropout", "Power", "AbsVal", "BNLL", "ELU", "PReLU", "Eltwise",
                   "Split", "Softmax", "MVN", "Exp", "Log", "Threshold", "Clip",
                   "Swish", "Concat", "Silence"}
FLATTENING_TYPES = {"InnerProduct", "Flatten", "Reshape", "ArgMax"}

# Number of parameter blobs per layer type (to give each one lr_mult: 0).
def _param_blob_count(layer) -> Optional[int]:
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        return 1 + int(layer.convolution_param.bias_term)
    if t == "InnerProduct":
        return 1 + int(layer.inner_product_param.bias_term)
    if t == "Scale":
        return 1 + int(layer.scale_param.bias_term)
    if t == "Embed":
        return 1 + int(layer.embed_param.bias_term)
    if t in ("Bias", "PReLU"):
        return 1
    if t == "BatchNorm":
        return 3
    return None


class NetSetupError(ValueError):
    """A user-facing problem with the model, weights or node (clear message, no abort)."""


def _caffe():
    import caffe  # noqa: imported lazily so the rest of gencaffe works without pycaffe
    return caffe


def _pb2():
    from caffe.proto import caffe_pb2
    return caffe_pb2


# ---------------------------------------------------------------- node names

@dataclass(frozen=True)
class NodeSpec:
    """``layer`` plus channels; ``channels`` None means every channel of the layer."""
    layer: str
    channels: Optional[Tuple[int, ...]] = None

    def __str__(self):
        if self.channels is None:
            return self.layer
        return f"{self.layer}:{','.join(map(str, self.channels))}"


def parse_node_spec(text: str) -> NodeSpec:
    """'fc8' (all channels), 'fc8:3', 'conv5:0-7,12' -> NodeSpec."""
    name, sep, chans = text.strip().partition(":")
    if not name:
        raise NetSetupError(f"empty node name in {text!r}")
    if not sep:
        return NodeSpec(name)
    channels: List[int] = []
    for part in chans.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise NetSetupError(f"bad channel list {chans!r} in node {text!r}; "
                                "use e.g. 'ip2:3' or 'conv1:0-7,12'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise NetSetupError(f"empty channel range {part!r} in node {text!r}")
        channels.extend(range(lo, hi + 1))
    return NodeSpec(name, tuple(dict.fromkeys(channels)))


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


def _test_layers(param):
    return [l for l in param.layer if _in_test_phase(l)]


@dataclass
class ImageInput:
    name: str
    shape: Tuple[int, int, int, int]   # N, C, H, W of the deploy net


def find_image_input(param, source: str = "the model") -> ImageInput:
    """The single 4-D input blob of a deploy net, or a clear error."""
    data_layers = [l.name for l in _test_layers(param) if l.type in DATA_LAYER_TYPES]
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
    for layer in _test_layers(param):
        if layer.type == "Input":
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


# ---------------------------------------------------------------- geometry

class _TooSmall(Exception):
    """A kernel does not fit: this input size is invalid for the net."""


def _axis_value(repeated, scalar_h, scalar_w, axis: int, default: int) -> int:
    if scalar_h is not None:
        return scalar_h if axis == 0 else scalar_w
    vals = list(repeated)
    if not vals:
        return default
    return vals[axis] if len(vals) > axis else vals[0]


def _conv_output(layer, size: int, axis: int) -> int:
    p = layer.convolution_param
    hw = p.HasField("kernel_h")
    k = _axis_value(p.kernel_size, p.kernel_h if hw else None, p.kernel_w, axis, 1)
    s = _axis_value(p.stride, p.stride_h if p.HasField("stride_h") else None, p.stride_w, axis, 1)
    pad = _axis_value(p.pad, p.pad_h if p.HasField("pad_h") else None, p.pad_w, axis, 0)
    d = _axis_value(p.dilation, None, None, axis, 1)
    extent = d * (k - 1) + 1
    if layer.type == "Deconvolution":
        return s * (size - 1) + extent - 2 * pad
    if size + 2 * pad < extent:
        raise _TooSmall
    return (size + 2 * pad - extent) // s + 1


def _pool_output(layer, size: int, axis: int) -> int:
    p = layer.pooling_param
    if p.global_pooling:
        return 1
    k = p.kernel_size if p.HasField("kernel_size") else (p.kernel_h if axis == 0 else p.kernel_w)
    s = (p.stride_h if axis == 0 else p.stride_w) if p.HasField("stride_h") else p.stride
    pad = (p.pad_h if axis == 0 else p.pad_w) if p.HasField("pad_h") else p.pad
    if size + 2 * pad < k:
        raise _TooSmall
    ratio = (size + 2 * pad - k) / s
    ceil_mode = p.round_mode == _pb2().PoolingParameter.CEIL
    out = (math.ceil(ratio) if ceil_mode else math.floor(ratio)) + 1
    if pad and (out - 1) * s >= size + pad:      # Caffe clips a window starting in the padding
        out -= 1
    return out


def spatial_sizes(layers, input_name: str, input_hw: Tuple[int, int]) -> Dict[str, Optional[Tuple[int, int]]]:
    """Blob name -> (height, width) for a given input size, following Caffe's shape
    arithmetic (None for blobs that are no longer spatial, e.g. after InnerProduct).
    Raises _TooSmall when a kernel does not fit and NetSetupError for unknown layers."""
    sizes: Dict[str, Optional[Tuple[int, int]]] = {input_name: tuple(input_hw)}
    for layer in layers:
        if layer.type in ("Input", "Parameter"):
            continue
        bottom = sizes.get(layer.bottom[0]) if len(layer.bottom) else None
        if bottom is None or layer.type in FLATTENING_TYPES:
            out = None
        elif layer.type in ("Convolution", "Deconvolution"):
            out = tuple(_conv_output(layer, bottom[a], a) for a in (0, 1))
        elif layer.type == "Pooling":
            out = tuple(_pool_output(layer, bottom[a], a) for a in (0, 1))
        elif layer.type in SAME_SIZE_TYPES:
            out = bottom
        else:
            raise NetSetupError(
                f"cannot compute the spatial geometry through layer '{layer.name}' of type "
                f"{layer.type}; give the input size explicitly (--input-size)")
        if out is not None and min(out) < 1:
            raise _TooSmall
        for top in layer.top:
            sizes[top] = out
    return sizes


def input_size_for_unit_response(layers, input_name: str, node_blob: str,
                                 max_size: int = 2048) -> Tuple[int, int]:
    """Smallest input (height, width) for which ``node_blob`` is 1x1: every input
    pixel then lies inside the node's receptive field (larger inputs that still
    give 1x1 only add pixels the node ignores). Axes are independent in Caffe's
    conv/pool arithmetic, so each is searched on its own."""
    found = []
    for axis in (0, 1):
        for size in range(1, max_size + 1):
            hw = (size, max_size) if axis == 0 else (max_size, size)  # other axis: roomy
            try:
                out = spatial_sizes(layers, input_name, hw)[node_blob]
            except _TooSmall:
                continue
            if out is None:
                raise NetSetupError(f"'{node_blob}' is not a spatial blob; it has no 1x1 "
                                    "input size")
            if out[axis] != 1:
                raise NetSetupError(f"no input size gives a 1x1 response at '{node_blob}' "
                                    f"(size {size} -> {out[axis]} along axis {axis})")
            found.append(size)
            break
    if len(found) == 2:
        return found[0], found[1]
    raise NetSetupError(f"no input size up to {max_size} gives a 1x1 response at '{node_blob}'")


# ---------------------------------------------------------------- net cutting

@dataclass
class CutNet:
    param: object                   # caffe_pb2.NetParameter ready to instantiate
    input_name: str
    input_shape: Tuple[int, int, int, int]
    node_layer: str
    node_blob: str


def _layer_index(layers, node: str) -> int:
    for i, layer in enumerate(layers):
        if layer.name == node:
            return i
    for i, layer in enumerate(layers):           # fall back to a top blob name
        if node in layer.top:
            return i
    names = [l.name for l in layers if l.type not in ("Input",)]
    raise NetSetupError(f"unknown node '{node}'; layers in the net: {', '.join(names)}")


def cut_net(param, node_layer: str, n_chains: int,
            input_hw: Optional[Tuple[int, int]] = None, source: str = "the model") -> CutNet:
    """In-memory copy of ``param`` ending at ``node_layer``, without Dropout, with the
    input batch = ``n_chains`` and (for spatial nodes) the input size giving a 1x1
    response. ``input_hw`` overrides the computed size."""
    pb2 = _pb2()
    image = find_image_input(param, source)
    layers = [l for l in _test_layers(param) if l.type != "Input"]
    idx = _layer_index(layers, node_layer)
    node = layers[idx]
    if node.type == "Dropout":
        raise NetSetupError(f"'{node.name}' is a Dropout layer; Dropout is removed for "
                            "visualization, name the layer before it instead")
    if node.type in ("Split", "Silence") or len(node.top) == 0:
        raise NetSetupError(f"'{node.name}' ({node.type}) has no output to visualize")
    node_blob = node.top[0]
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
        kept.append(copy)

    n, c, h, w = image.shape
    if input_hw is None:
        native = spatial_sizes(kept, image.name, (h, w))[node_blob]
        if native is not None and tuple(native) != (1, 1):
            h, w = input_size_for_unit_response(kept, image.name, node_blob)
    else:
        h, w = input_hw
        try:
            out = spatial_sizes(kept, image.name, (h, w))[node_blob]
        except _TooSmall:
            raise NetSetupError(f"input size {h}x{w} is too small for the net") from None
        if out is not None and tuple(out) != (1, 1):
            raise NetSetupError(f"input size {h}x{w} gives a {out[0]}x{out[1]} response at "
                                f"'{node_blob}', not 1x1")

    cut = pb2.NetParameter()
    cut.name = (param.name or "net") + f"_hmc_{node.name}"
    cut.force_backward = False
    inp = cut.layer.add()
    inp.name = INPUT_LAYER_NAME
    inp.type = "Parameter"
    inp.top.append(image.name)
    inp.parameter_param.shape.dim.extend([n_chains, c, h, w])
    inp.param.add().lr_mult = 1.0       # makes Caffe back-propagate down to the input
    for layer in kept:
        count = _param_blob_count(layer)
        if count is not None:
            while len(layer.param) < count:
                layer.param.add()
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
        layer.ClearField("include")
        layer.ClearField("exclude")
        cut.layer.add().CopyFrom(layer)
    last = cut.layer[-1]
    last.ClearField("loss_weight")
    for top in last.top:
        last.loss_weight.append(1.0 if top == node_blob else 0.0)
    return CutNet(cut, image.name, (n_chains, c, h, w), node.name, node_blob)


# ---------------------------------------------------------------- weights

def _blob_shape(blob) -> Tuple[int, ...]:
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _shapes_match(net_shape: Tuple[int, ...], file_shape: Tuple[int, ...], legacy: bool) -> bool:
    if not legacy:
        return tuple(net_shape) == tuple(file_shape)
    padded = (1,) * (4 - len(net_shape)) + tuple(net_shape)
    return len(net_shape) <= 4 and padded == tuple(file_shape)


def check_weights(net, weights_path: str) -> None:
    """Raise NetSetupError where Caffe's CopyTrainedLayersFrom would abort the process
    (shape or blob-count mismatch) or silently keep random filler weights (layer
    missing from the caffemodel)."""
    if not os.path.isfile(weights_path):
        raise NetSetupError(f"weights file not found: {weights_path}")
    if weights_path.endswith((".h5", ".hdf5")):
        return                                   # Caffe checks HDF5 weights itself
    model = _pb2().NetParameter()
    with open(weights_path, "rb") as fh:
        try:
            model.ParseFromString(fh.read())
        except Exception as err:  # protobuf raises DecodeError; be broad for old runtimes
            raise NetSetupError(f"{weights_path} is not a Caffe binary model: {err}") from None
    file_layers = {l.name: l for l in list(model.layer) + list(model.layers)}
    if not file_layers:
        raise NetSetupError(f"{weights_path} holds no layers; is it a .caffemodel?")
    for name, blobs in net.params.items():
        if name == INPUT_LAYER_NAME:
            continue
        if name not in file_layers:
            raise NetSetupError(f"layer '{name}' has parameters but {weights_path} has no "
                                "weights for it (wrong caffemodel for this prototxt?)")
        src = file_layers[name]
        legacy = name in {l.name for l in model.layers}
        if len(src.blobs) != len(blobs):
            raise NetSetupError(f"layer '{name}': the net has {len(blobs)} parameter blobs, "
                                f"{weights_path} has {len(src.blobs)}")
        for j, (blob, fblob) in enumerate(zip(blobs, src.blobs)):
            if not _shapes_match(blob.data.shape, _blob_shape(fblob), legacy):
                raise NetSetupError(
                    f"layer '{name}' parameter {j}: the net expects shape "
                    f"{list(blob.data.shape)}, {weights_path} has {list(_blob_shape(fblob))}")


# ---------------------------------------------------------------- the target

class NodeScore:
    """f_y(x) and df_y/dx for a batch of chains by ``net.forward`` / ``net.backward``.

    ``channels[i]`` is the node channel of chain i, so chains for different
    channels of the same layer share one forward/backward per leapfrog step.
    """

    def __init__(self, net, cut: CutNet, channels: Sequence[int]):
        self.net = net
        self.cut = cut
        self.input_shape = cut.input_shape
        batch = cut.input_shape[0]
        channels = np.asarray(channels, dtype=np.int64)
        if channels.shape != (batch,):
            raise ValueError(f"need one channel per chain ({batch}), got {channels.shape}")
        self._param_blob = net.params[INPUT_LAYER_NAME][0]
        self._node_blob = net.blobs[cut.node_blob]
        self._rows = np.arange(batch)
        self._channels = channels
        node_layer = cut.param.layer[-1]
        # An in-place node layer (e.g. a ReLU) overwrites its top diff during backward;
        # otherwise nothing writes it, so the one-hot is set once.
        self._reset_diff_each_call = cut.node_blob in node_layer.bottom
        self._set_one_hot()
        self.n_evaluations = 0

    def _set_one_hot(self):
        diff = self._node_blob.diff
        diff[...] = 0.0
        diff.reshape(len(self._rows), -1)[self._rows, self._channels] = 1.0

    def __call__(self, x: np.ndarray):
        self._param_blob.data[...] = x
        self.net.forward()
        f = self._node_blob.data.reshape(len(self._rows), -1)[self._rows, self._channels]
        if self._reset_diff_each_call:
            self._set_one_hot()
        self.net.backward()
        self.n_evaluations += 1
        return f.astype(np.float64), self._param_blob.diff.copy()


def node_channel_count(net, cut: CutNet) -> int:
    shape = net.blobs[cut.node_blob].data.shape
    if len(shape) < 2:
        raise NetSetupError(f"node blob '{cut.node_blob}' has shape {list(shape)}: no channels")
    spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if spatial != 1:
        raise NetSetupError(f"node blob '{cut.node_blob}' has shape {list(shape)}: the "
                            "response is not 1x1")
    return int(shape[1])


def check_channels(node: NodeSpec, n_channels: int) -> Tuple[int, ...]:
    if node.channels is None:
        return tuple(range(n_channels))
    bad = [c for c in node.channels if c >= n_channels]
    if bad:
        raise NetSetupError(f"node '{node.layer}' has {n_channels} channels (0-{n_channels - 1}); "
                            f"channel(s) {bad} do not exist")
    return node.channels


def instantiate(cut: CutNet, weights: Optional[str]):
    """Build the caffe.Net of a CutNet (via a temporary prototxt) and load weights."""
    from google.protobuf import text_format
    caffe = _caffe()
    known = set(caffe.layer_type_list())
    unknown = sorted({l.type for l in cut.param.layer if l.type not in known})
    if unknown:
        raise NetSetupError(f"layer type(s) {unknown} are not in this Caffe build")
    fd, path = tempfile.mkstemp(prefix="hmc_", suffix=".prototxt")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text_format.MessageToString(cut.param))
        net = caffe.Net(path, caffe.TEST)
    finally:
        os.unlink(path)
    if weights:
        check_weights(net, weights)
        net.copy_from(weights)
    return net


@dataclass
class NodeTarget:
    """Everything the sampler needs for one layer: net, score callback, geometry."""
    net: object
    cut: CutNet
    score: NodeScore
    n_channels: int


def build_node_target(model: str, weights: Optional[str], layer: str,
                      chain_channels: Sequence[int],
                      input_hw: Optional[Tuple[int, int]] = None) -> NodeTarget:
    """Cut ``model`` at ``layer``, load ``weights`` and wrap it as a score callback
    with one chain per entry of ``chain_channels``."""
    param = load_net_param(model)
    cut = cut_net(param, layer, len(chain_channels), input_hw, source=model)
    net = instantiate(cut, weights)
    n_channels = node_channel_count(net, cut)
    check_channels(NodeSpec(layer, tuple(sorted(set(int(c) for c in chain_channels)))),
                   n_channels)
    return NodeTarget(net, cut, NodeScore(net, cut, chain_channels), n_channels)


def count_node_channels(model: str, layer: str, input_hw: Optional[Tuple[int, int]] = None) -> int:
    """Number of channels of ``layer`` (builds a 1-chain cut net without weights)."""
    cut = cut_net(load_net_param(model), layer, 1, input_hw, source=model)
    return node_channel_count(instantiate(cut, None), cut)
