"""Decode every image once before Caffe sees it, and name the ones that fail.

Why: upstream's convert_imageset (tools/convert_imageset.cpp) reads each file
with cv::imread (src/caffe/util/io.cpp, ReadImageToCVMat). When imread returns
no pixels (missing, zero-byte, not an image, a JPEG cut off inside its
headers) it logs "Could not open or find file PATH" and skips the file. But a
JPEG cut off inside its compressed scan is *accepted*: libjpeg prints
"Premature end of JPEG file" (without a file name) and fills the rest of the
picture with grey, and that picture goes into the LMDB. ImageData layers, in
contrast, stop the whole process on an unreadable file (CHECK "Could not
load"). Decoding each file fully with Pillow (which refuses truncated data)
finds both kinds, with a reason per file.

Pillow's draft mode lets libjpeg decode JPEGs at 1/8 scale: the whole
entropy-coded stream is still read (so truncation is still caught), at about
half the cost of a full decode.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

Reason = str


def check_image(path: str) -> Optional[Reason]:
    """None if `path` decodes completely, else a short reason."""
    from PIL import Image, UnidentifiedImageError
    try:
        size = os.path.getsize(path)
    except OSError as err:
        return "cannot read: %s" % (err.strerror or err)
    if size == 0:
        return "zero-byte file"
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
            image.load()
            if image.size[0] < 1 or image.size[1] < 1:
                return "empty image (%dx%d)" % image.size
    except UnidentifiedImageError:
        return "not an image (no known image format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        text = str(err)
        if "truncated" in text.lower() or "premature" in text.lower():
            return "truncated image data: %s" % text
        return "cannot decode: %s" % text
    return None


def _check_one(path: str) -> Tuple[str, Optional[Reason]]:
    return path, check_image(path)


def check_images(paths: Sequence[str], jobs: int = 1,
                 progress: Optional[Callable[[int], None]] = None) -> List[Tuple[str, Reason]]:
    """[(path, reason)] for the paths that do not decode, in the order of `paths`.

    ``progress(n)`` is called with the number of files just checked.
    """
    bad = {}
    if jobs > 1 and len(paths) > 200:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for path, reason in pool.imap_unordered(_check_one, paths, chunksize=64):
                if reason:
                    bad[path] = reason
                if progress:
                    progress(1)
    else:
        for path in paths:
            reason = check_image(path)
            if reason:
                bad[path] = reason
            if progress:
                progress(1)
    return [(p, bad[p]) for p in paths if p in bad]


IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff",
                    ".webp", ".jpe")


def is_image_name(name: str) -> bool:
    """Files the tree scanners take as images: by extension, case-insensitive
    (ImageNet's are .JPEG), hidden files excluded."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(folder: str) -> Iterable[str]:
    """Relative paths (with '/') of image files below folder, sorted, recursively."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(root, folder)
        for name in sorted(files):
            if is_image_name(name):
                yield name if rel == "." else rel.replace(os.sep, "/") + "/" + name
