"""Which row is which: class names for classifier nodes and labelled overview pictures.

A class names file has one class a line, line i naming channel i of a class
score layer: either a plain name ("zero", "sea star") or Caffe's
``synset_words.txt`` format ``n01440764 tench, Tinca tinca`` (WordNet id, then
comma-separated names; the first name is used). The ImageNet tools here write
both ``classes.txt``/``synsets.txt`` and ``synset_words.txt``.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

import numpy as np

from .. import imaging
from .errors import NetSetupError

_WNID = re.compile(r"^n\d{8}$")


def read_class_names(path: str) -> List[str]:
    """Names in label order from a class names file (see the module doc)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise NetSetupError(f"cannot read class names file {path}: {err.strerror}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            raise NetSetupError(f"{path} line {number} is empty; give one class name a line "
                                "(line i = channel i)")
        first, _, rest = text.partition(" ")
        if _WNID.match(first) and rest.strip():
            text = rest.split(",")[0].strip() or first
        names.append(text)
    if not names:
        raise NetSetupError(f"class names file {path} lists no names")
    return names


def node_label(layer: str, channel: int, class_name: Optional[str] = None) -> str:
    return f"{layer}:{channel}" + (f" {class_name}" if class_name else "")


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with '...' to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def label_rows(grid: np.ndarray, row_top: Sequence[int], row_height: int,
               labels: Sequence[Sequence[str]], max_width: int = 260) -> np.ndarray:
    """Put a white column left of ``grid`` (uint8, H x W x C) with ``labels[i]``
    (one or more lines) beside row i, which starts at pixel ``row_top[i]``."""
    from PIL import Image, ImageDraw
    font_px = int(max(11, min(18, row_height // 4)))
    font = imaging.font(font_px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    widest = max((probe.textlength(line, font=font) for lines in labels for line in lines),
                 default=0)
    width = int(min(max_width, widest)) + 2 * 6
    channels = grid.shape[2]
    mode = "L" if channels == 1 else "RGB"
    canvas = Image.new(mode, (width + grid.shape[1], grid.shape[0]),
                       255 if mode == "L" else (255, 255, 255))
    canvas.paste(Image.fromarray(grid[..., 0] if channels == 1 else grid), (width, 0))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if mode == "L" else (0, 0, 0)
    line_h = int(font_px * 1.25)
    for top, lines in zip(row_top, labels):
        lines = [_fit(draw, line, font, width - 12) for line in lines]
        y = top + max(0, (row_height - line_h * len(lines)) // 2)
        for line in lines:
            draw.text((6, y), line, fill=ink, font=font)
            y += line_h
    out = np.asarray(canvas)
    return out[..., None] if out.ndim == 2 else out
