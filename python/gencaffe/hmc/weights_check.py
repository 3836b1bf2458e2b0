"""Checks of a caffemodel against the net it is loaded into, for HMC visualization:
:func:`check_weights` raises NetSetupError where Caffe's ``CopyTrainedLayersFrom``
would abort the process (a shape or blob-count mismatch) or silently keep random
filler weights (a layer missing from the file). The caffemodel's blob shapes, V1
``layers`` included, are parsed once per file version (:func:`_weight_shapes`).
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

from .errors import NetSetupError
from .net_surgery import INPUT_LAYER_NAME, _pb2


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
