"""Multi-crop evaluation math (plain NumPy; tools/eval_crops.py feeds it pycaffe outputs).

The papers test "by classifying the center and the four corner crops of the
input images" (journal Sec. 5.1): each 256x256 val image (mean already
subtracted, as Caffe's Data layer does with mean_file) gives five 227x227
crops, the net's class probabilities are averaged over them, and the averaged
distribution is scored. Ten-crop adds the five horizontal mirrors
(Krizhevsky et al. 2012).

Crop positions follow Caffe: the centre crop is at ((H-c)/2, (W-c)/2) with
integer division, as DataTransformer takes it in the TEST phase; corners are
flush with the borders. Mirroring flips the width axis, as Caffe's mirror.

Top-k uses the rule of Caffe's Accuracy layer: an image counts as correct when
fewer than k classes have a probability strictly greater than the true class's
(ties count in the image's favour).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

CROP_NAMES = ("center", "top-left", "top-right", "bottom-left", "bottom-right")


def crop_offsets(height: int, width: int, crop_h: int, crop_w: int = None) -> List[Tuple[int, int]]:
    """(y, x) of the centre, top-left, top-right, bottom-left, bottom-right crops."""
    crop_w = crop_h if crop_w is None else crop_w
    if crop_h > height or crop_w > width:
        raise ValueError("crop %dx%d is larger than the image %dx%d" % (crop_h, crop_w, height, width))
    dy, dx = height - crop_h, width - crop_w
    return [(dy // 2, dx // 2), (0, 0), (0, dx), (dy, 0), (dy, dx)]


def crop_views(images: np.ndarray, crop_h: int, crop_w: int = None, mirror: bool = False
               ) -> np.ndarray:
    """(N, C, H, W) -> (N, K, C, ch, cw): the 5 crops of each image (then their mirrors)."""
    crop_w = crop_h if crop_w is None else crop_w
    n, c, h, w = images.shape
    crops = [images[:, :, y:y + crop_h, x:x + crop_w] for y, x in crop_offsets(h, w, crop_h, crop_w)]
    if mirror:
        crops += [view[..., ::-1] for view in crops]
    return np.stack(crops, axis=1)


def crops_per_image(mirror: bool) -> int:
    return 10 if mirror else 5


def average_over_crops(outputs: np.ndarray, n_images: int) -> np.ndarray:
    """(N*K, C[, 1, 1]) net outputs, image-major -> (N, C) mean over each image's K crops."""
    flat = np.asarray(outputs, dtype=np.float64).reshape(outputs.shape[0], -1)
    if flat.shape[0] % n_images:
        raise ValueError("%d outputs do not split into %d images" % (flat.shape[0], n_images))
    return flat.reshape(n_images, flat.shape[0] // n_images, flat.shape[1]).mean(axis=1)


def topk_correct(probs: np.ndarray, labels: Sequence[int], k: int) -> np.ndarray:
    """(N,) bool: fewer than k classes score strictly above the true class."""
    probs = np.asarray(probs)
    labels = np.asarray(labels, dtype=np.int64)
    true = probs[np.arange(len(labels)), labels]
    better = (probs > true[:, None]).sum(axis=1)
    return better < k


class Tally:
    """Running top-k error counts over batches."""

    def __init__(self, ks: Sequence[int] = (1, 5)):
        self.ks = tuple(ks)
        self.n = 0
        self.correct: Dict[int, int] = {k: 0 for k in self.ks}

    def add(self, probs: np.ndarray, labels: Sequence[int]) -> None:
        for k in self.ks:
            self.correct[k] += int(topk_correct(probs, labels, k).sum())
        self.n += len(labels)

    def error(self, k: int) -> float:
        """Top-k error in percent."""
        return 100.0 * (1.0 - self.correct[k] / self.n) if self.n else float("nan")
