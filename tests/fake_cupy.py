"""A stand-in for CuPy on a machine without a GPU, for testing code that keeps
arrays on the device: its arrays hold NumPy data but behave as CuPy's do at
the host/device boundary, only stricter:

- NumPy cannot take them implicitly (np.asarray, np.where, a NumPy ufunc:
  TypeError, as CuPy's "Implicit conversion to a NumPy array is not allowed");
- arithmetic between a device array and a host array is a TypeError;
- crossing is explicit: fake_cupy.asarray (host to device), asnumpy (back).

``transfers`` counts the crossings, so a test can check what a step costs.
Only what the HMC code uses is implemented.
"""
from __future__ import annotations

import types

import numpy as np

float32, float64, int64 = np.float32, np.float64, np.int64


class ndarray:  # noqa: N801  (CuPy's name)
    __array_ufunc__ = None          # NumPy ufuncs refuse it; a + b comes to us

    def __init__(self, data):
        assert isinstance(data, np.ndarray)
        self._data = data

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion of a (fake) device array to a NumPy array "
                        "is not allowed; use asnumpy()")

    # --- attributes and views
    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)

    def __len__(self):
        return len(self._data)

    def reshape(self, *shape):
        return ndarray(self._data.reshape(*shape))

    def astype(self, dtype, copy=True):
        return ndarray(self._data.astype(dtype, copy=copy))

    def copy(self):
        return ndarray(self._data.copy())

    def sum(self, axis=None, dtype=None):
        return ndarray(np.asarray(self._data.sum(axis=axis, dtype=dtype)))

    def mean(self, axis=None):
        return ndarray(np.asarray(self._data.mean(axis=axis)))

    # --- indexing
    def __getitem__(self, key):
        return _wrap(self._data[_plain_key(key)])

    def __setitem__(self, key, value):
        self._data[_plain_key(key)] = _operand(value)

    # --- arithmetic (device with device or scalars only)
    def _binary(self, other, op):
        return _wrap(op(self._data, _operand(other)))

    def _inplace(self, other, op):
        op(self._data, _operand(other), out=self._data)
        return self

    __add__ = lambda s, o: s._binary(o, np.add)             # noqa: E731
    __radd__ = lambda s, o: s._binary(o, np.add)            # noqa: E731
    __sub__ = lambda s, o: s._binary(o, np.subtract)        # noqa: E731
    __rsub__ = lambda s, o: _wrap(np.subtract(_operand(o), s._data))  # noqa: E731
    __mul__ = lambda s, o: s._binary(o, np.multiply)        # noqa: E731
    __rmul__ = lambda s, o: s._binary(o, np.multiply)       # noqa: E731
    __truediv__ = lambda s, o: s._binary(o, np.true_divide)  # noqa: E731
    __iadd__ = lambda s, o: s._inplace(o, np.add)           # noqa: E731
    __isub__ = lambda s, o: s._inplace(o, np.subtract)      # noqa: E731
    __imul__ = lambda s, o: s._inplace(o, np.multiply)      # noqa: E731
    __itruediv__ = lambda s, o: s._inplace(o, np.true_divide)  # noqa: E731

    def __neg__(self):
        return ndarray(-self._data)


def _wrap(value):
    return ndarray(value) if isinstance(value, np.ndarray) else ndarray(np.asarray(value))


def _operand(value):
    """A device array's data, or a Python/NumPy scalar; a host array is refused."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError("a host (NumPy) array mixed with a (fake) device array")
    return value


def _plain_key(key):
    if isinstance(key, tuple):
        return tuple(_plain_key(k) for k in key)
    if isinstance(key, np.ndarray):
        raise TypeError("a host (NumPy) array used to index a (fake) device array")
    return key._data if isinstance(key, ndarray) else key


transfers = {"to_device": 0, "to_host": 0}


def asarray(a, dtype=None):
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    transfers["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype))


def asnumpy(a):
    transfers["to_host"] += 1
    return a._data.copy() if isinstance(a, ndarray) else np.asarray(a)


def multiply(a, b, out=None):
    result = np.multiply(_operand(a), _operand(b),
                         out=None if out is None else out._data)
    return out if out is not None else _wrap(result)


def empty_like(a):
    return ndarray(np.empty_like(a._data))


def zeros(shape, dtype=float):
    return ndarray(np.zeros(shape, dtype))


def where(condition, a, b):
    return _wrap(np.where(_operand(condition), _operand(a), _operand(b)))


def as_module():
    """This file as a module object named 'cupy', for sys.modules."""
    import sys
    module = types.ModuleType("cupy")
    module.__dict__.update({k: v for k, v in sys.modules[__name__].__dict__.items()
                            if not k.startswith("__")})
    return module
