"""A node's shapes as Caffe gives them, for HMC visualization: :class:`NodeGeometry`
and :func:`resolve_geometry`. The net cut at the node (net_surgery.py) is built by
Caffe at the net's own input size and, for a node whose response there is larger
than 1x1, the input size giving a 1x1 response is searched by reshaping it
(geometry.py); a size Caffe rejects is answered with Caffe's own reason. Caffe
aborts the process on a shape it rejects, so all of this runs in a helper process
(shape_probe.py). Nothing here knows any layer type's arithmetic: any net Caffe
loads works. Results are cached per cut net and input size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from . import geometry
from .errors import NetSetupError, SizeRejected
from .net_surgery import _check_layer_types, _cut_layers, _final_param, _probe_text
from .shape_probe import ShapeProbe

SUPPORT_BATCH = 8      # random inputs whose gradients together show the receptive field


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
