"""Node names for HMC visualization: ``layer`` or ``layer:channels`` as given on the
command line (python/hmc_visualize.py ``--nodes``). :class:`NodeSpec` is one such name,
:func:`parse_node_spec` reads it, and :func:`check_channels` checks its channels
against the number Caffe gives the layer (a node is one channel of a layer's output,
journal Sec. 4.6). Plain Python: nothing here needs pycaffe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .errors import NetSetupError


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


def check_channels(node: NodeSpec, n_channels: int) -> Tuple[int, ...]:
    if node.channels is None:
        return tuple(range(n_channels))
    bad = [c for c in node.channels if c >= n_channels]
    if bad:
        raise NetSetupError(f"node '{node.layer}' has {n_channels} channels (0-{n_channels - 1}); "
                            f"channel(s) {bad} do not exist")
    return node.channels

