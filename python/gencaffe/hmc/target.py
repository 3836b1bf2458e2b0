"""The pycaffe side of HMC visualization (journal Sec. 4.6, Eq. 20-22), assembled:
:func:`build_node_target` turns a deploy prototxt, a caffemodel and a node's layer
into a :class:`NodeTarget` (the net and the score callback f_y(x), df_y/dx the
sampler runs), and :func:`resolve_node` / :func:`count_node_channels` give a
node's shapes from Caffe by file name; these are what python/gencaffe/hmc/visualize.py
and tools/bench_hmc.py call. The parts live in node_spec.py (node names),
net_surgery.py (prototxt edits), node_geometry.py (shapes from Caffe, via
shape_probe.py and geometry.py), weights_check.py (caffemodel checks), node_net.py
(the cut net in pycaffe) and node_score.py (the score callback).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .blob_arrays import HostBlobArrays
from .net_surgery import load_net_param
from .node_geometry import NodeGeometry, resolve_geometry
from .node_net import CutNet, cut_net, instantiate
from .node_score import NodeScore, node_channel_count
from .node_spec import NodeSpec, check_channels


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
                      geometry_: Optional[NodeGeometry] = None,
                      arrays=HostBlobArrays) -> NodeTarget:
    """Cut ``model`` at ``layer``, load ``weights`` and wrap it as a score callback
    with one chain per entry of ``chain_channels``. ``geometry_`` (from
    :func:`resolve_node`) skips asking Caffe for the shapes again; ``arrays``
    says where the chains live (blob_arrays.py)."""
    param = load_net_param(model)
    cut = cut_net(param, layer, len(chain_channels), input_hw, source=model,
                  geometry_=geometry_, clear_fillers=bool(weights))
    net = instantiate(cut, weights)
    n_channels = node_channel_count(net, cut)
    check_channels(NodeSpec(layer, tuple(sorted(set(int(c) for c in chain_channels)))),
                   n_channels)
    return NodeTarget(net, cut, NodeScore(net, cut, chain_channels, arrays), n_channels)


def resolve_node(model: str, layer: str,
                 input_hw: Optional[Tuple[int, int]] = None) -> NodeGeometry:
    """The node's geometry from Caffe (see :func:`resolve_geometry`), by file."""
    return resolve_geometry(load_net_param(model), layer, input_hw, source=model)


def count_node_channels(model: str, layer: str, input_hw: Optional[Tuple[int, int]] = None) -> int:
    """Number of channels of ``layer`` (Caffe's shape of its output)."""
    return resolve_node(model, layer, input_hw).n_channels
