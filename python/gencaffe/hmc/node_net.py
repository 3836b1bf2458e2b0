"""The caffe.Net that HMC visualization samples a node with: :func:`cut_net` cuts the
user's NetParameter at the node (net_surgery.py) and sizes its input by the node's
geometry from Caffe (node_geometry.py), giving a :class:`CutNet` with one input per
chain; :func:`instantiate` builds it in pycaffe from a temporary prototxt, checks
and loads the weights (weights_check.py), and checks that Caffe here gives the node
the shape the shape probe saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..pycaffe_net import net_from_param
from .errors import NetSetupError
from .net_surgery import _caffe, _check_layer_types, _clear_fillers, _cut_layers, _final_param
from .node_geometry import NodeGeometry, resolve_geometry
from .weights_check import check_weights


@dataclass
class CutNet:
    param: object                   # caffe_pb2.NetParameter ready to instantiate
    input_name: str
    input_shape: Tuple[int, int, int, int]
    node_layer: str
    node_blob: str
    geometry: Optional[NodeGeometry] = None


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


def instantiate(cut: CutNet, weights: Optional[str]):
    """Build the caffe.Net of a CutNet (via a temporary prototxt) and load weights."""
    from google.protobuf import text_format
    caffe = _caffe()
    _check_layer_types(cut.param.layer)
    net = net_from_param(text_format.MessageToString(cut.param), caffe.TEST, prefix="hmc_")
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
