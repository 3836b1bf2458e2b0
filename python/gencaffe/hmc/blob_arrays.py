"""Where HMC's chains live: arrays over a pycaffe blob's memory, on the host or
on the GPU.

pycaffe shows a blob as host arrays (``blob.data``, ``blob.diff``); in GPU
mode every read copies the device memory to the host and every write back, so
a leapfrog step of 64 AlexNet chains moved ~80 MB across the bus twice and the
host, not the net, set HMC's pace (results/gpu_bench.md). A GPU build of
pycaffe also has ``blob._gpu_data_ptr`` / ``_gpu_diff_ptr`` (upstream's, the
device addresses behind ``mutable_gpu_data()`` / ``mutable_gpu_diff()``);
:class:`DeviceBlobArrays` wraps them as CuPy arrays without copying, so the
positions, momenta and gradients stay on the GPU and only one energy per chain
crosses per trajectory. CuPy is used because the GPU machines have it and its
arrays speak NumPy's API, so the sampler is one code for both places.

Caffe runs its kernels on the legacy default stream and CuPy uses it too
unless told otherwise, so the two are ordered without explicit syncs.
"""
from __future__ import annotations

import sys

import numpy as np


def array_module(a):
    """numpy for host arrays, cupy for CuPy arrays (without importing CuPy
    where nothing made one)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy
    return np


def to_host(a) -> np.ndarray:
    """A host (NumPy) copy or view of ``a``, wherever it lives."""
    xp = array_module(a)
    return a if xp is np else xp.asnumpy(a)


class HostBlobArrays:
    """pycaffe's own host views: what HMC always used (the CPU path)."""

    xp = np
    where = "host"

    @staticmethod
    def data(blob):
        return blob.data

    @staticmethod
    def diff(blob):
        return blob.diff

    @staticmethod
    def from_host(a: np.ndarray) -> np.ndarray:
        return a


class DeviceBlobArrays:
    """CuPy views of a blob's device memory (float32, the blob's shape).

    Each view marks the device copy as the current one (mutable_gpu_*), which
    is what a write needs and what a read after a GPU forward/backward pass
    already is. Views are made afresh per call: a reshape may move the memory.
    """

    where = "device"

    def __init__(self, cupy_module=None):
        if cupy_module is None:
            import cupy as cupy_module
        self.xp = cupy_module

    def _view(self, blob, pointer):
        cp = self.xp
        shape = tuple(blob.shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * 4
        memory = cp.cuda.UnownedMemory(pointer, nbytes, blob)
        return cp.ndarray(shape, dtype=cp.float32,
                          memptr=cp.cuda.MemoryPointer(memory, 0))

    def data(self, blob):
        return self._view(blob, blob._gpu_data_ptr)

    def diff(self, blob):
        return self._view(blob, blob._gpu_diff_ptr)

    def from_host(self, a: np.ndarray):
        return self.xp.asarray(a)


CHAINS_ON = ("auto", "host", "device")


def device_arrays_unavailable() -> str:
    """Why chains cannot live on the GPU here ('' if they can)."""
    import caffe
    if not hasattr(caffe._caffe.Blob, "_gpu_data_ptr"):
        return "this pycaffe is a CPU-only build (its blobs have no _gpu_data_ptr)"
    try:
        import cupy  # noqa: F401
    except ImportError as err:
        return "CuPy is not installed (%s)" % err
    return ""


def chain_arrays(chains_on: str, gpu):
    """The arrays for --chains-on: 'host' (pycaffe's host views), 'device'
    (CuPy on the GPU; an error says why it cannot be), or 'auto' (the device
    when running on a GPU and it can be, else the host)."""
    if chains_on not in CHAINS_ON:
        raise ValueError("chains_on must be one of %s, got %r" % (", ".join(CHAINS_ON), chains_on))
    if chains_on == "host" or (chains_on == "auto" and gpu is None):
        return HostBlobArrays
    if gpu is None:
        raise ValueError("--chains-on device needs --gpu: on the CPU the chains are on the host")
    why = device_arrays_unavailable()
    if why:
        if chains_on == "auto":
            return HostBlobArrays
        raise ValueError("--chains-on device: " + why)
    return DeviceBlobArrays()


def synchronize(arrays) -> None:
    """Wait for the GPU's queued work (for timings); nothing on the host."""
    if arrays.where == "device":
        arrays.xp.cuda.Device().synchronize()
