"""The node score of HMC visualization (journal Sec. 4.6, Eq. 20-22): f_y(x) and
df_y/dx of node y for a batch of chains, by one ``net.forward`` and ``net.backward``
of the net built by node_net.py. The input is that net's ``Parameter`` blob (its
diff is df/dx) and the node top's diff is the one-hot of each chain's channel;
:func:`node_channel_count` checks that the node's response is 1x1 and gives its
number of channels. The arrays are the blobs' host views or, with
:class:`~gencaffe.hmc.blob_arrays.DeviceBlobArrays`, CuPy views of their GPU
memory (blob_arrays.py says why).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .blob_arrays import HostBlobArrays
from .errors import NetSetupError
from .net_surgery import INPUT_LAYER_NAME
from .node_net import CutNet


class NodeScore:
    """f_y(x) and df_y/dx for a batch of chains by ``net.forward`` / ``net.backward``.

    ``channels[i]`` is the node channel of chain i, so chains for different
    channels of the same layer share one forward/backward per leapfrog step.
    ``arrays`` says where x, f and df/dx live (host NumPy by default; CuPy on
    the GPU with DeviceBlobArrays).
    """

    def __init__(self, net, cut: CutNet, channels: Sequence[int], arrays=HostBlobArrays):
        self.net = net
        self.arrays = arrays
        self.cut = cut
        self.input_shape = cut.input_shape
        batch = cut.input_shape[0]
        channels = np.asarray(channels, dtype=np.int64)
        if channels.shape != (batch,):
            raise ValueError(f"need one channel per chain ({batch}), got {channels.shape}")
        self._param_blob = net.params[INPUT_LAYER_NAME][0]
        self._node_blob = net.blobs[cut.node_blob]
        self._rows = arrays.from_host(np.arange(batch))
        self._channels = arrays.from_host(channels)
        self._last_layer = len(net.layers) - 1
        node_layer = cut.param.layer[-1]
        # An in-place node layer (e.g. a ReLU) overwrites its top diff during backward;
        # otherwise nothing writes it, so the one-hot is set once.
        self._reset_diff_each_call = cut.node_blob in node_layer.bottom
        self._set_one_hot()
        self.n_evaluations = 0

    def _set_one_hot(self):
        diff = self.arrays.diff(self._node_blob)
        diff[...] = 0.0
        diff.reshape(len(self._rows), -1)[self._rows, self._channels] = 1.0

    def __call__(self, x):
        arrays = self.arrays
        arrays.data(self._param_blob)[...] = x
        # Net._forward / _backward: net.forward() and net.backward() also
        # return the outputs' and inputs' host arrays, which on the GPU
        # would copy them back every step
        self.net._forward(0, self._last_layer)
        f = arrays.data(self._node_blob).reshape(len(self._rows), -1)[self._rows,
                                                                      self._channels]
        if self._reset_diff_each_call:
            self._set_one_hot()
        self.net._backward(self._last_layer, 0)
        self.n_evaluations += 1
        return f.astype(arrays.xp.float64), arrays.diff(self._param_blob).copy()


def node_channel_count(net, cut: CutNet) -> int:
    shape = net.blobs[cut.node_blob].data.shape
    if len(shape) < 2:
        raise NetSetupError(f"node blob '{cut.node_blob}' has shape {list(shape)}: no channels")
    spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if spatial != 1:
        raise NetSetupError(f"node blob '{cut.node_blob}' has shape {list(shape)}: the "
                            "response is not 1x1")
    return int(shape[1])
