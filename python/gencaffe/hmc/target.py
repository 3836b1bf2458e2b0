"""The pycaffe side of HMC visualization (journal Sec. 4.6, Eq. 20-22): f_y(x) and df_y/dx for a node y.

A node is one channel of a layer's output: a class score of the last layer, or a
channel of an intermediate layer. The net is cut right after that layer and
Dropout layers are removed (protobuf edits on an in-memory NetParameter written
to a temporary prototxt; the user's file is never touched).

Shapes come from Caffe alone. The cut net is built by Caffe at the net's own
input size and, for a node whose response there is larger than 1x1, the input
size giving a 1x1 response is searched by reshaping it (geometry.py); a size
Caffe rejects is answered with Caffe's own reason. Caffe aborts the process on
a shape it rejects, so all of this runs in a helper process (shape_probe.py).
Nothing here knows any layer type's arithmetic: any net Caffe loads works.

Speed: the input is fed through a ``Parameter`` layer (its blob *is* the input
and its diff is df/dx) and every other parameter blob (Caffe counts them when it
builds the net) gets ``lr_mult: 0``, so ``net.backward`` computes input
gradients only, not weight gradients (which ``force_backward`` would also
compute, ~1/3 more work on LeNet). The node top carries ``loss_weight: 1`` so
Caffe back-propagates from it; its diff is overwritten with the one-hot of the
node before every backward.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import geometry
from .errors import NetSetupError, SizeRejected
from .shape_probe import ShapeProbe

INPUT_LAYER_NAME = "hmc_input"   # must not collide with a layer name in a caffemodel
IMAGE_INPUT_TYPES = ("Input",)   # how a deploy net declares its image blob


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
    # A layer that makes blobs from nothing (Data, ImageData, DummyData, a Python
    # data layer, ...) other than the image Input or a learned Parameter blob.
    data_layers = [l.name for l in _test_layers(param) if not len(l.bottom) and len(l.top)
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
    for layer in _test_layers(param):
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

@dataclass(frozen=True)
class NodeGeometry:
    """What Caffe says about a node of the cut net (batch 1)."""
    input_hw: Tuple[int, int]                  # input size used for the node
    node_shape: Tuple[int, ...]                # node blob at input_hw
    native_node_shape: Tuple[int, ...]         # node blob at the net's own input size
    param_counts: Tuple[Tuple[str, int], ...]  # (layer, parameter blobs) as Caffe built them
    probes: int = 0                            # questions asked of Caffe

    @property
    def n_channels(self) -> int:
        return int(self.node_shape[1]) if len(self.node_shape) > 1 else 1

    @property
    def flat(self) -> bool:
        """A fully connected (non-spatial) node such as a class score."""
        return len(self.native_node_shape) <= 2


@dataclass
class CutNet:
    param: object                   # caffe_pb2.NetParameter ready to instantiate
    input_name: str
    input_shape: Tuple[int, int, int, int]
    node_layer: str
    node_blob: str
    geometry: Optional[NodeGeometry] = None


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
    layers = [l for l in _test_layers(param) if l.type not in IMAGE_INPUT_TYPES]
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


_GEOMETRY_CACHE: Dict[tuple, NodeGeometry] = {}


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in geometry.response(shape)) or "flat"


def resolve_geometry(param, node_layer: str, input_hw: Optional[Tuple[int, int]] = None,
                     source: str = "the model") -> NodeGeometry:
    """Ask Caffe (in a helper process) for the node's shape and the input size to
    use: ``input_hw`` if given (it must give a 1x1 response or a flat node), the
    net's own size if the node is flat or 1x1 there, else the size that makes it
    1x1 and covers its receptive field (geometry.unit_input_size). Then one
    forward and backward pass of the net the sampler will run. Results are
    cached per cut net and size."""
    from google.protobuf import text_format
    cut = _cut_layers(param, node_layer, source)
    _check_layer_types(cut.layers)
    _, c, h, w = cut.image.shape
    native_text = _probe_text(cut, (h, w))
    key = (hashlib.sha256(native_text.encode()).hexdigest(), cut.node_blob,
           None if input_hw is None else tuple(input_hw))
    if key in _GEOMETRY_CACHE:
        return _GEOMETRY_CACHE[key]
    where = f"{source} cut at '{cut.node.name}'"
    types = {l.name: l.type for l in cut.layers}

    def why(err: SizeRejected) -> str:
        if err.layer is None:
            return f"({err.reason})"
        return f"at layer '{err.layer}' ({types.get(err.layer, '?')}): {err.reason}"

    python_layers = any(l.type == "Python" for l in cut.layers)   # helper imports caffe
    with ShapeProbe(cut.image.name, cut.node_blob, full_import=python_layers) as probe:
        try:
            native_shape, params = probe.build(native_text)
        except SizeRejected as err:
            if input_hw is None:
                raise NetSetupError(f"Caffe rejects {where} at its own input size "
                                    f"{c}x{h}x{w} {why(err)}; give --input-size") from None
            native_shape = None
        if input_hw is not None:
            hw = (int(input_hw[0]), int(input_hw[1]))
            try:
                shape, params = probe.build(_probe_text(cut, hw))
            except SizeRejected as err:
                raise NetSetupError(f"input size {hw[0]}x{hw[1]}: Caffe rejects {where} "
                                    f"{why(err)}") from None
            if not geometry.is_unit(shape):
                raise NetSetupError(f"input size {hw[0]}x{hw[1]} gives a {_shape_text(shape)} "
                                    f"response at '{cut.node_blob}', not 1x1")
            native_shape = native_shape or shape
        elif geometry.is_unit(native_shape):
            hw, shape = (h, w), native_shape
        else:
            def support(size):
                net = _final_param(cut, size, SUPPORT_BATCH, params, "hmc_support",
                                   for_probe=True, random_weights=True)
                return probe.support(text_format.MessageToString(net))
            hw = geometry.unit_input_size(lambda size: probe.reshape((1, c) + tuple(size)),
                                              (h, w), cut.node_blob, support)
            try:      # a fresh build, as the caller will do, not only a reshape
                shape, params = probe.build(_probe_text(cut, hw))
            except SizeRejected as err:
                raise NetSetupError(f"input size {hw[0]}x{hw[1]} found for {where} is "
                                    f"rejected when the net is built {why(err)}") from None
        # The net the sampler runs, at batch 1: one forward and backward pass, as
        # Caffe aborts on a layer it cannot back-propagate through (ArgMax, ...).
        final = _final_param(cut, hw, 1, params, "hmc_gradient_check", for_probe=True)
        try:
            probe.gradient(text_format.MessageToString(final))
        except SizeRejected as err:
            raise NetSetupError(f"Caffe cannot compute the gradient of '{cut.node_blob}' with "
                                f"respect to the input of {where} {why(err)}") from None
        calls = probe.calls
    result = NodeGeometry(hw, tuple(shape), tuple(native_shape), tuple(sorted(params.items())),
                          calls)
    _GEOMETRY_CACHE[key] = result
    return result


SUPPORT_BATCH = 8      # random inputs whose gradients together show the receptive field


def _final_param(cut: _Cut, hw: Tuple[int, int], batch: int, param_counts: Dict[str, int],
                 name: str, for_probe: bool = False, random_weights: bool = False):
    """The NetParameter the sampler runs: a Parameter layer as the input (batch =
    chains), lr_mult 0 on every parameter blob, loss_weight 1 on the node top.
    ``for_probe``: the same for the shape probe (Caffe's own engines; zero or, with
    ``random_weights``, Xavier-random weights)."""
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


def cut_net(param, node_layer: str, n_chains: int,
            input_hw: Optional[Tuple[int, int]] = None, source: str = "the model",
            geometry_: Optional[NodeGeometry] = None, clear_fillers: bool = False) -> CutNet:
    """In-memory copy of ``param`` ending at ``node_layer``, without Dropout, with the
    input batch = ``n_chains`` and the input size from :func:`resolve_geometry`
    (or from ``geometry_`` when the caller resolved it already)."""
    cut = _cut_layers(param, node_layer, source)
    geo = geometry_ or resolve_geometry(param, node_layer, input_hw, source)
    net = _final_param(cut, geo.input_hw, n_chains, dict(geo.param_counts),
                       (param.name or "net") + f"_hmc_{cut.node.name}")
    if clear_fillers:
        for layer in net.layer:
            _clear_fillers(layer)
    return CutNet(net, cut.image.name, (n_chains,) + (cut.image.shape[1],) + tuple(geo.input_hw),
                  cut.node.name, cut.node_blob, geo)


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


_WEIGHT_SHAPES: Dict[tuple, Dict[str, Tuple[bool, List[Tuple[int, ...]]]]] = {}


def _weight_shapes(weights_path: str) -> Dict[str, Tuple[bool, List[Tuple[int, ...]]]]:
    """{layer: (legacy V1 layer, [blob shapes])} of a caffemodel, parsed once per file
    version (an AlexNet caffemodel is 240 MB; every node of a run checks it)."""
    st = os.stat(weights_path)
    key = (os.path.abspath(weights_path), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHT_SHAPES:
        model = _pb2().NetParameter()
        with open(weights_path, "rb") as fh:
            try:
                model.ParseFromString(fh.read())
            except Exception as err:  # protobuf raises DecodeError; be broad for old runtimes
                raise NetSetupError(f"{weights_path} is not a Caffe binary model: {err}") from None
        shapes = {l.name: (False, [_blob_shape(b) for b in l.blobs]) for l in model.layer}
        shapes.update({l.name: (True, [_blob_shape(b) for b in l.blobs]) for l in model.layers})
        _WEIGHT_SHAPES.clear()                    # keep one file's table, not every file's
        _WEIGHT_SHAPES[key] = shapes
    return _WEIGHT_SHAPES[key]


def check_weights(net, weights_path: str) -> None:
    """Raise NetSetupError where Caffe's CopyTrainedLayersFrom would abort the process
    (shape or blob-count mismatch) or silently keep random filler weights (layer
    missing from the caffemodel)."""
    if not os.path.isfile(weights_path):
        raise NetSetupError(f"weights file not found: {weights_path}")
    if weights_path.endswith((".h5", ".hdf5")):
        return                                   # Caffe checks HDF5 weights itself
    file_layers = _weight_shapes(weights_path)
    if not file_layers:
        raise NetSetupError(f"{weights_path} holds no layers; is it a .caffemodel?")
    for name, blobs in net.params.items():
        if name == INPUT_LAYER_NAME:
            continue
        if name not in file_layers:
            raise NetSetupError(f"layer '{name}' has parameters but {weights_path} has no "
                                "weights for it (wrong caffemodel for this prototxt?)")
        legacy, shapes = file_layers[name]
        if len(shapes) != len(blobs):
            raise NetSetupError(f"layer '{name}': the net has {len(blobs)} parameter blobs, "
                                f"{weights_path} has {len(shapes)}")
        for j, (blob, fshape) in enumerate(zip(blobs, shapes)):
            if not _shapes_match(blob.data.shape, fshape, legacy):
                raise NetSetupError(
                    f"layer '{name}' parameter {j}: the net expects shape "
                    f"{list(blob.data.shape)}, {weights_path} has {list(fshape)}")


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
    _check_layer_types(cut.param.layer)
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
    if cut.geometry is not None:
        expected = (cut.input_shape[0],) + tuple(cut.geometry.node_shape[1:])
        got = tuple(net.blobs[cut.node_blob].data.shape)
        if got != expected:          # the helper's Caffe and this one disagree
            raise NetSetupError(f"'{cut.node_blob}' has shape {list(got)} here but "
                                f"{list(expected)} in the shape probe")
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
                      input_hw: Optional[Tuple[int, int]] = None,
                      geometry_: Optional[NodeGeometry] = None) -> NodeTarget:
    """Cut ``model`` at ``layer``, load ``weights`` and wrap it as a score callback
    with one chain per entry of ``chain_channels``. ``geometry_`` (from
    :func:`resolve_node`) skips asking Caffe for the shapes again."""
    param = load_net_param(model)
    cut = cut_net(param, layer, len(chain_channels), input_hw, source=model,
                  geometry_=geometry_, clear_fillers=bool(weights))
    net = instantiate(cut, weights)
    n_channels = node_channel_count(net, cut)
    check_channels(NodeSpec(layer, tuple(sorted(set(int(c) for c in chain_channels)))),
                   n_channels)
    return NodeTarget(net, cut, NodeScore(net, cut, chain_channels), n_channels)


def resolve_node(model: str, layer: str,
                 input_hw: Optional[Tuple[int, int]] = None) -> NodeGeometry:
    """The node's geometry from Caffe (see :func:`resolve_geometry`), by file."""
    return resolve_geometry(load_net_param(model), layer, input_hw, source=model)


def count_node_channels(model: str, layer: str, input_hw: Optional[Tuple[int, int]] = None) -> int:
    """Number of channels of ``layer`` (Caffe's shape of its output)."""
    return resolve_node(model, layer, input_hw).n_channels
