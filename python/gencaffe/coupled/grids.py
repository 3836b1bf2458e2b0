"""PNG grids of reverse-model samples as in Flach et al.'s Fig. 2: a row per
class, labelled at its left with the class drawn from, and above each image
the forward model's most probable class and its probability. Written
atomically."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .. import imaging

CAPTION_PX = 14
PAD = 4
ROW_LABEL_PX = 56     # the left column naming each row's class


def caption(predicted: int, probability: float, class_names: Optional[Sequence[str]] = None):
    """The text above a sample: the forward model's class and its probability."""
    name = class_names[predicted] if class_names else str(predicted)
    return "%s %.2f" % (name, probability)


def tile_layout(n_rows: int, n_cols: int, tile: int, title_px: int = 0, label_px: int = 0):
    """(width, height, [(x, y) of each tile's image, row-major]) of a grid whose
    tiles each have a caption band of CAPTION_PX above them, after a left
    column of label_px for the row labels."""
    cell_w, cell_h = tile + PAD, tile + CAPTION_PX + PAD
    width = label_px + n_cols * cell_w + PAD
    height = title_px + n_rows * cell_h + PAD
    positions = [(label_px + PAD + c * cell_w, title_px + PAD + CAPTION_PX + r * cell_h)
                 for r in range(n_rows) for c in range(n_cols)]
    return width, height, positions


def render(images: np.ndarray, captions: Sequence[str], n_cols: int, upscale: int = 3,
           title: Optional[str] = None,
           row_labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """images (N x 1 x H x W or N x H x W, values in [0, 1], ink = 1) -> uint8
    grey picture, dark ink on white, caption above each tile, row_labels (one
    a row) in a column at the left."""
    from PIL import Image, ImageDraw
    images = np.asarray(images, dtype=np.float64).reshape(len(images), *images.shape[-2:])
    if len(captions) != len(images):
        raise ValueError("%d captions for %d images" % (len(captions), len(images)))
    height, width = images.shape[1:]
    tile = max(height, width) * upscale
    n_rows = int(np.ceil(len(images) / n_cols))
    title_px = 18 if title else 0
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError("%d row labels for %d rows" % (len(row_labels), n_rows))
    label_px = ROW_LABEL_PX if row_labels is not None else 0
    total_w, total_h, positions = tile_layout(n_rows, n_cols, tile, title_px, label_px)
    canvas = Image.new("L", (total_w, total_h), 255)
    draw = ImageDraw.Draw(canvas)
    font = imaging.font(11)
    if title:
        draw.text((PAD, 2), title, fill=0, font=imaging.font(13))
    for image, text, (x, y) in zip(images, captions, positions):
        pixels = (255 - np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        pixels = pixels.repeat(upscale, axis=0).repeat(upscale, axis=1)
        canvas.paste(Image.fromarray(pixels), (x, y))
        draw.text((x + 1, y - CAPTION_PX + 1), text, fill=0, font=font)
    for row, label in enumerate(row_labels or ()):
        x, y = positions[row * n_cols]
        draw.text((PAD, y + tile // 2 - 6), label, fill=0, font=imaging.font(12))
    return np.asarray(canvas)


def write_grid(samples, path: str, title: Optional[str] = None, upscale: int = 3,
               class_names: Optional[List[str]] = None) -> None:
    """A row per class of a sampling.SampleSet, labelled with the class drawn
    from, each image captioned with the forward model's class."""
    per_class = len(samples.labels) // len(samples.classes)
    captions = [caption(int(p), float(q), class_names)
                for p, q in zip(samples.predicted, samples.probability)]
    rows = ["class %s" % (class_names[c] if class_names else c) for c in samples.classes]
    imaging.save_png(render(samples.images, captions, per_class, upscale, title, rows), path)
