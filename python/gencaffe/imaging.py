"""Pictures: net inputs -> displayable images, grids, trajectory strips (HMC), the
one font and the one PNG writer of the project's figures.

Images are float arrays in [0, 1] shaped (N, H, W, C) with C = 1 or 3 until they
are written; PNGs go through atomic_write.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .atomic_io import atomic_write
from .input_space import InputTransform

DISPLAY_MODES = ("auto", "clip")


def to_display(x: np.ndarray, transform: InputTransform, mode: str = "auto",
               pixel_max: float = 255.0) -> np.ndarray:
    """Net inputs (N, C, H, W) -> display images (N, H, W, C) in [0, 1].

    ``auto`` stretches each image's own min..max to 0..1 (samples at sigma = 10 are
    far outside the data range, as in the paper's figures); ``clip`` undoes
    mean/scale and clips to the raw pixel range 0..pixel_max.
    """
    pixels = transform.to_pixels(np.asarray(x, dtype=np.float64))
    if mode == "clip":
        out = np.clip(pixels / pixel_max, 0.0, 1.0)
    elif mode == "auto":
        flat = pixels.reshape(len(pixels), -1)
        lo = flat.min(axis=1).reshape(-1, 1, 1, 1)
        span = (flat.max(axis=1) - flat.min(axis=1)).reshape(-1, 1, 1, 1)
        out = (pixels - lo) / np.where(span > 0, span, 1.0)
    else:
        raise ValueError(f"display mode must be one of {DISPLAY_MODES}, got {mode!r}")
    if out.shape[1] not in (1, 3):            # e.g. 2-channel input: show channel 0
        out = out[:, :1]
    return out.transpose(0, 2, 3, 1)


def default_upscale(height: int, target: int = 96) -> int:
    """Integer zoom so small inputs (28x28 MNIST, 5x5 conv1 nodes) are visible."""
    return max(1, target // max(1, height))


def make_grid(images: np.ndarray, n_cols: Optional[int] = None, pad: int = 2,
              upscale: int = 1, background: float = 1.0) -> np.ndarray:
    """(N, H, W, C) in [0, 1] -> one uint8 image with the N tiles in rows of n_cols."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if upscale > 1:
        images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    n_cols = n_cols or int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    grid = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), background)
    for i in range(n):
        r, col = divmod(i, n_cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_rows(rows: Sequence[np.ndarray], pad: int = 2, upscale: int = 1) -> np.ndarray:
    """Stack equally long rows of tiles (e.g. one row per class, as in paper Fig. 4)."""
    n_cols = max(len(r) for r in rows)
    tiles = []
    for r in rows:
        filler = np.ones((n_cols - len(r),) + r.shape[1:])
        tiles.append(np.concatenate([r, filler]) if len(r) < n_cols else r)
    return make_grid(np.concatenate(tiles), n_cols=n_cols, pad=pad, upscale=upscale)


def font(size: int):
    """Pillow's default font at `size` pixels (Pillow >= 10.1 with FreeType), or its
    fixed bitmap font where that is all there is."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image
    arr = image[..., 0] if image.shape[-1] == 1 else image
    with atomic_write(path, "wb") as fh:
        Image.fromarray(arr).save(fh, format="PNG")
