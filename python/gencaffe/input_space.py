"""The net's input space: how raw pixels become net input (mean, scale, channel order)
and back, for display and for initialising chains from an image file.

Caffe's convention (DataTransformer): net_input = (pixel - mean) * scale, with
3-channel images in BGR order. Deploy prototxts usually do not say, so the
values come from flags or from the transform_param of a train/test prototxt.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class InputTransform:
    scale: float = 1.0
    mean: Optional[np.ndarray] = None     # raw-pixel units, shape (C,), (C,H,W) or scalar
    bgr: bool = True                      # 3-channel net input is BGR (Caffe default)

    def _mean_for(self, shape) -> np.ndarray:
        """Mean broadcastable to (C, H, W); a full mean image of another size is
        reduced to its per-channel mean (conv nodes use smaller inputs)."""
        if self.mean is None:
            return np.zeros(1, dtype=np.float64)
        m = np.asarray(self.mean, dtype=np.float64)
        if m.ndim == 3:
            if tuple(m.shape[1:]) == tuple(shape[-2:]):
                return m
            m = m.mean(axis=(1, 2))
        return m.reshape(-1, 1, 1) if m.ndim == 1 else m

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """Net input (..., C, H, W) -> raw pixels in display channel order (RGB)."""
        pixels = x / self.scale + self._mean_for(x.shape)
        if self.bgr and x.shape[-3] == 3:
            pixels = pixels[..., ::-1, :, :]
        return pixels

    def to_net(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels (..., C, H, W) in RGB order -> net input."""
        if self.bgr and pixels.shape[-3] == 3:
            pixels = pixels[..., ::-1, :, :]
        return (pixels - self._mean_for(pixels.shape)) * self.scale


def load_mean(path: str) -> np.ndarray:
    """A mean image from .npy or Caffe .binaryproto, or comma-separated values."""
    if os.path.isfile(path):
        if path.endswith(".npy"):
            return np.load(path)
        from caffe.proto import caffe_pb2
        blob = caffe_pb2.BlobProto()
        with open(path, "rb") as fh:
            blob.ParseFromString(fh.read())
        shape = tuple(blob.shape.dim) if blob.HasField("shape") else (
            blob.num, blob.channels, blob.height, blob.width)
        arr = np.asarray(blob.data, dtype=np.float64).reshape(shape)
        return arr[0] if arr.ndim == 4 else arr
    try:
        return np.array([float(v) for v in path.split(",")])
    except ValueError:
        raise ValueError(f"--mean: {path!r} is neither a file nor comma-separated numbers") from None


def transform_from_prototxt(path: str) -> InputTransform:
    """Read scale / mean_value / mean_file from the transform_param of the first
    data layer of a train/test prototxt (the TEST-phase one if there are several)."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    param = caffe_pb2.NetParameter()
    with open(path) as fh:
        text_format.Merge(fh.read(), param)
    candidates = [l for l in param.layer if l.HasField("transform_param")]
    if not candidates:
        raise ValueError(f"{path} has no layer with a transform_param")
    test = [l for l in candidates if any(r.phase == caffe_pb2.TEST for r in l.include)]
    tp = (test or candidates)[0].transform_param
    mean = None
    if tp.mean_file:
        mean_path = tp.mean_file if os.path.isabs(tp.mean_file) else os.path.join(
            os.path.dirname(os.path.abspath(path)), tp.mean_file)
        mean = load_mean(mean_path if os.path.isfile(mean_path) else tp.mean_file)
    elif len(tp.mean_value):
        mean = np.asarray(tp.mean_value, dtype=np.float64)
    return InputTransform(scale=tp.scale if tp.HasField("scale") else 1.0, mean=mean)


def load_image_as_input(path: str, shape: Sequence[int], transform: InputTransform) -> np.ndarray:
    """Read an image file, resize to the net's (C, H, W) and map it to net input."""
    from PIL import Image
    c, h, w = shape
    with Image.open(path) as img:
        img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        pixels = np.asarray(img, dtype=np.float64)
    if c == 1:
        pixels = pixels[None]
    elif c == 3:
        pixels = pixels.transpose(2, 0, 1)
    else:
        raise ValueError(f"cannot initialise a {c}-channel input from an image file")
    return transform.to_net(pixels)
