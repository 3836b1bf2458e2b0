"""A small ImageNet-shaped stand-in data set, drawn procedurally.

No registry ships ImageNet, so the ImageNet pipeline (data tools, AlexNet/ZF
training, 5-crop evaluation) is exercised here on a generated tree with the
same layout as ILSVRC-2012 plus Caffe's ilsvrc12 aux files:

    <out>/train/<wnid>/<wnid>_<k>.JPEG      k = 1..train_per_class (+ corrupt extras)
    <out>/val/STANDIN_val_<8 digits>.JPEG   classes interleaved, as ILSVRC2012_val_*
    <out>/val.txt                           "NAME LABEL" per val image (Caffe's aux val.txt)
    <out>/train.txt                         "<wnid>/<file> LABEL" per train image (aux train.txt)
    <out>/synsets.txt                       the sorted wnids: line i = class of label i
    <out>/synset_words.txt                  "<wnid> <name>", as Caffe's aux file
    <out>/standin_manifest.json             options, classes, counts, corrupt files, digest

Classes are shape x texture (e.g. "striped star", "dotted ring"): the class is
the outline of one large object and the pattern it is filled with. Within a
class the object's colours, size, aspect, position and rotation, the texture's
scale, angle and second colour, the background (gradient, smooth noise or
clutter of small strokes and blobs), lighting, noise, image size (default
256-400 px a side) and JPEG quality all vary, and every class draws them from
the same distributions, so no pixel statistic (mean colour, brightness, size)
tells the classes apart: a net has to see shape and texture.

That makes the default set hard for a net trained from scratch: AlexNet and
ZF with the committed solvers stay on their initial plateau for the few
hundred CPU iterations a smoke run has. `colour_cue` (0..1) adds one
class-dependent statistic so that short runs can show learning: the
object's base colour takes its hue from a band around hue label/C, the
band 1 - colour_cue of the whole circle wide (1: each class its own 1/C
band; 0, the default: uniform, the set above, byte for byte). Shapes,
textures and everything else are drawn as before.

A few deliberately corrupt files are added (a JPEG cut off mid-scan that OpenCV
still decodes into a partly grey picture, a zero-byte file, a text file named
.JPEG); they are listed in the manifest so tests can check that the data
tools name them. They come on top of the clean counts, and the val ones are in
val.txt like any other val image.

Everything derives from the seed: image (split, class, k) uses its own
generator seeded by (seed, split, class, k), so the output is identical
whatever the number of worker processes. The tree is built under a temporary
name beside the output folder and renamed into place when complete; a second
run with the same options finds the manifest and does nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import staging as staging_io

GENERATOR_VERSION = 1
MANIFEST_NAME = "standin_manifest.json"
TOOL_ID = "gencaffe.data.standin"

SHAPES = ("ellipse", "triangle", "rectangle", "star", "cross", "ring")
TEXTURES = ("plain", "striped", "checkered", "dotted")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)
CORRUPT_KINDS = ("truncated", "zero-byte", "not-an-image")
WNID_BASE = 99000000   # "n99000000", ...: the wnid format, outside WordNet's noun range
SPLIT_IDS = {"train": 1, "val": 2}


class StandinError(RuntimeError):
    """The options or the output folder are not usable; the message says why."""


@dataclasses.dataclass(frozen=True)
class StandinConfig:
    classes: int = 16
    train_per_class: int = 100
    val_per_class: int = 20
    min_size: int = 256
    max_size: int = 400
    corrupt: int = 4
    seed: int = 1
    colour_cue: float = 0.0

    def validate(self):
        if not 2 <= self.classes <= MAX_CLASSES:
            raise StandinError("--classes must be between 2 and %d (%d shapes x %d textures), got %d"
                               % (MAX_CLASSES, len(SHAPES), len(TEXTURES), self.classes))
        if self.train_per_class < 1 or self.val_per_class < 1:
            raise StandinError("--train-per-class and --val-per-class must be >= 1, got %d and %d"
                               % (self.train_per_class, self.val_per_class))
        if not 16 <= self.min_size <= self.max_size:
            raise StandinError("image sizes need 16 <= min-size <= max-size, got %d-%d"
                               % (self.min_size, self.max_size))
        if self.corrupt < 0:
            raise StandinError("--corrupt must be >= 0, got %d" % self.corrupt)
        if not 0.0 <= self.colour_cue <= 1.0:
            raise StandinError("--colour-cue must be between 0 and 1, got %g" % self.colour_cue)

    def as_dict(self):
        """The options; colour_cue only when set, so that manifests of the
        default set are unchanged."""
        options = dataclasses.asdict(self)
        if not self.colour_cue:
            del options["colour_cue"]
        return options

    def hue_band(self, label: int) -> Optional[Tuple[float, float]]:
        """(centre, width) of the object hue for class `label`, or None (uniform)."""
        if not self.colour_cue:
            return None
        return (label / float(self.classes),
                max(1.0 / self.classes, 1.0 - self.colour_cue * (1.0 - 1.0 / self.classes)))


# ---------------------------------------------------------------- classes

def class_table(n_classes: int) -> List[Dict[str, str]]:
    """[{wnid, shape, texture, name}] for labels 0..n-1.

    The (shape, texture) pairs are taken along diagonals so that the first
    len(SHAPES) classes have six different shapes and textures vary between
    them: a small data set is not all one shape.
    """
    pairs = []
    for diagonal in range(len(TEXTURES)):
        for s in range(len(SHAPES)):
            pairs.append((SHAPES[s], TEXTURES[(s + diagonal) % len(TEXTURES)]))
    table = []
    for label, (shape, texture) in enumerate(pairs[:n_classes]):
        table.append({"wnid": "n%08d" % (WNID_BASE + label), "shape": shape, "texture": texture,
                      "name": "%s %s" % (texture, shape)})
    return table


# ---------------------------------------------------------------- drawing

def _random_colour(rng, lo=0.25, hi=1.0, hue_band=None) -> np.ndarray:
    """A saturated-ish colour, RGB 0..255, hue uniform (or uniform in the
    band (centre, width); the same draws either way)."""
    import colorsys
    h = rng.random()
    if hue_band is not None:
        h = (hue_band[0] + (h - 0.5) * hue_band[1]) % 1.0
    s = rng.uniform(0.35, 1.0)
    v = rng.uniform(lo, hi)
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def _distinct_colour(rng, other, min_distance=90.0, tries=20, hue_band=None) -> np.ndarray:
    colour = _random_colour(rng, hue_band=hue_band)
    for _ in range(tries):
        if np.linalg.norm(colour - other) >= min_distance:
            break
        colour = _random_colour(rng, hue_band=hue_band)
    return colour


def _smooth_noise(rng, h, w, cells) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid, bilinearly upsampled."""
    from PIL import Image
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid).resize((w, h), Image.BILINEAR)
    return np.asarray(up, dtype=np.float32) / 255.0


def _background(rng, h, w) -> np.ndarray:
    """(h, w, 3) float: a gradient, smooth noise, or either with clutter on top."""
    from PIL import Image, ImageDraw
    c1, c2 = _random_colour(rng, 0.15, 1.0), _random_colour(rng, 0.15, 1.0)
    kind = rng.integers(0, 2)
    if kind == 0:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    else:          # smooth blotches
        t = _smooth_noise(rng, h, w, int(rng.integers(2, 6)))
    image = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    n_clutter = int(rng.integers(0, 7))
    if n_clutter:
        canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        scale = min(h, w)
        for _ in range(n_clutter):
            colour = tuple(int(v) for v in _random_colour(rng, 0.1, 1.0))
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            if rng.random() < 0.5:  # a stroke
                length = rng.uniform(0.1, 0.4) * scale
                a = rng.uniform(0, 2 * math.pi)
                draw.line([(x0, y0), (x0 + length * math.cos(a), y0 + length * math.sin(a))],
                          fill=colour, width=max(1, int(rng.uniform(0.005, 0.02) * scale)))
            else:                   # a small blob
                r = rng.uniform(0.02, 0.07) * scale
                draw.ellipse([x0 - r, y0 - r * rng.uniform(0.5, 1.0), x0 + r, y0 + r], fill=colour)
        image = np.asarray(canvas, dtype=np.float32)
    return image.astype(np.float32)


def _unit_polygons(shape: str, rng) -> List[Tuple[np.ndarray, int]]:
    """[(points (K, 2) in about [-1, 1], fill 255 or 0)] drawn in order (0 = a hole)."""
    def circle(r, k=64):
        t = np.linspace(0, 2 * math.pi, k, endpoint=False)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)

    if shape == "ellipse":
        return [(circle(1.0), 255)]
    if shape == "ring":
        return [(circle(1.0), 255), (circle(rng.uniform(0.45, 0.62)), 0)]
    if shape == "triangle":
        t = np.radians(np.array([90.0, 210.0, 330.0]) + rng.uniform(-12, 12, 3))
        return [(np.stack([np.cos(t), np.sin(t)], axis=1), 255)]
    if shape == "rectangle":
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.8, 255)]
    if shape == "star":
        inner = rng.uniform(0.38, 0.5)
        t = np.radians(90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return [(np.stack([r * np.cos(t), r * np.sin(t)], axis=1), 255)]
    if shape == "cross":
        a = rng.uniform(0.22, 0.34)  # half the arm width
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1),
               (-a, a), (-1, a), (-1, -a), (-a, -a)]
        return [(np.array(pts, dtype=np.float64), 255)]
    raise ValueError("unknown shape %r" % shape)


def _shape_mask(rng, shape, h, w) -> np.ndarray:
    """(h, w) float in [0, 1]: the object, anti-aliased (drawn at 2x, box-filtered)."""
    from PIL import Image, ImageDraw
    side = min(h, w)
    radius = rng.uniform(0.2, 0.36) * side
    sx, sy = radius * rng.uniform(0.75, 1.0), radius * rng.uniform(0.75, 1.0)
    margin = 0.7 * radius
    cx = rng.uniform(margin, w - margin)
    cy = rng.uniform(margin, h - margin)
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    mask = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(mask)
    for points, fill in _unit_polygons(shape, rng):
        xy = (points * np.array([sx, sy])) @ rot.T + np.array([cx, cy])
        draw.polygon([(2 * x, 2 * y) for x, y in xy], fill=fill)
    mask = mask.resize((w, h), Image.BOX)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _texture(rng, texture, h, w, c1, c2) -> np.ndarray:
    """(h, w, 3) float: the fill pattern in colours c1 (base) and c2."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, 100)
    v = -xx * math.sin(angle) + yy * math.cos(angle) + rng.uniform(0, 100)
    period = max(4.0, rng.uniform(0.03, 0.065) * min(h, w))
    if texture == "plain":
        # one colour with a soft shading, so "plain" is not "perfectly flat"
        t = 0.15 * _smooth_noise(rng, h, w, 3)
        return c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    if texture == "striped":
        duty = rng.uniform(0.35, 0.6)
        on = (np.mod(u, period) < duty * period)
    elif texture == "checkered":
        on = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif texture == "dotted":
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        on = du * du + dv * dv < (rng.uniform(0.22, 0.34) * period) ** 2
    else:
        raise ValueError("unknown texture %r" % texture)
    on = on.astype(np.float32)[..., None]
    return c2[None, None, :] * on + c1[None, None, :] * (1 - on)


def render(rng, shape: str, texture: str, width: int, height: int,
           hue_band=None) -> np.ndarray:
    """One picture of class (shape, texture): (height, width, 3) uint8 RGB;
    hue_band: StandinConfig.hue_band of the class (the object's base colour)."""
    background = _background(rng, height, width)
    c1 = _distinct_colour(rng, background[height // 2, width // 2], hue_band=hue_band)
    c2 = _distinct_colour(rng, c1)
    mask = _shape_mask(rng, shape, height, width)[..., None]
    fill = _texture(rng, texture, height, width, c1, c2)
    image = background * (1 - mask) + fill * mask
    # lighting: a gentle brightness ramp across the whole picture
    light = 1.0 + rng.uniform(-0.2, 0.2) * (_smooth_noise(rng, height, width, 2) - 0.5) * 2
    image = image * light[..., None] + rng.normal(0, rng.uniform(0, 8), image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def truncate_jpeg(data: bytes) -> bytes:
    """Cut a JPEG halfway through its entropy-coded scan: the headers stay whole, so
    OpenCV (libjpeg) still decodes it, with a warning and a grey lower part."""
    sos = data.find(b"\xff\xda")
    if sos < 0:
        raise ValueError("not a baseline JPEG (no SOS marker)")
    return data[:sos + (len(data) - sos) // 2]


NOT_AN_IMAGE = b"This is not an image: a stand-in for a mislabelled download.\n"


# ---------------------------------------------------------------- the plan

@dataclasses.dataclass(frozen=True)
class Item:
    split: str         # "train" or "val"
    label: int
    index: int         # k within (split, class); corrupt extras continue the numbering
    relpath: str       # relative to the output root
    corrupt: str = ""  # "" or one of CORRUPT_KINDS


def plan(config: StandinConfig) -> List[Item]:
    """Every file to write, in a fixed order (train by class, then val by name)."""
    table = class_table(config.classes)
    items: List[Item] = []
    corrupt = [(CORRUPT_KINDS[i % len(CORRUPT_KINDS)], "train" if i % 2 == 0 else "val",
                (7 * i + 3) % config.classes) for i in range(config.corrupt)]
    for label, cls in enumerate(table):
        extras = [kind for kind, split, c in corrupt if split == "train" and c == label]
        for k in range(1, config.train_per_class + 1 + len(extras)):
            kind = extras[k - config.train_per_class - 1] if k > config.train_per_class else ""
            items.append(Item("train", label, k, "train/%s/%s_%d.JPEG" % (cls["wnid"], cls["wnid"], k),
                              kind))
    val = [(label, k, "") for label in range(config.classes)
           for k in range(1, config.val_per_class + 1)]
    extra_count = {}
    for kind, split, c in corrupt:
        if split == "val":
            extra_count[c] = extra_count.get(c, 0) + 1
            val.append((c, config.val_per_class + extra_count[c], kind))
    order = np.random.default_rng([config.seed, 99]).permutation(len(val))
    for number, position in enumerate(order, start=1):
        label, k, kind = val[position]
        items.append(Item("val", label, k, "val/STANDIN_val_%08d.JPEG" % number, kind))
    return items


def _image_rng(seed, item: Item):
    return np.random.default_rng([seed, SPLIT_IDS[item.split], item.label, item.index])


def file_bytes(config: StandinConfig, item: Item) -> bytes:
    """The exact bytes of one file of the plan."""
    if item.corrupt == "zero-byte":
        return b""
    if item.corrupt == "not-an-image":
        return NOT_AN_IMAGE
    rng = _image_rng(config.seed, item)
    cls = class_table(config.classes)[item.label]
    width = int(rng.integers(config.min_size, config.max_size + 1))
    height = int(rng.integers(config.min_size, config.max_size + 1))
    pixels = render(rng, cls["shape"], cls["texture"], width, height,
                    config.hue_band(item.label))
    data = encode_jpeg(pixels, int(rng.integers(75, 96)))
    return truncate_jpeg(data) if item.corrupt == "truncated" else data


def _write_item(args) -> Tuple[str, str]:
    config, item, root = args
    data = file_bytes(config, item)
    with open(os.path.join(root, item.relpath), "wb") as handle:
        handle.write(data)
    return item.relpath, hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- output

def _label_files(config: StandinConfig, items: Sequence[Item]) -> Dict[str, str]:
    table = class_table(config.classes)
    train = ["%s %d" % (i.relpath[len("train/"):], i.label) for i in items if i.split == "train"]
    val = ["%s %d" % (i.relpath[len("val/"):], i.label) for i in items if i.split == "val"]
    return {
        "train.txt": "\n".join(train) + "\n",
        "val.txt": "\n".join(val) + "\n",
        "synsets.txt": "".join(c["wnid"] + "\n" for c in table),
        "synset_words.txt": "".join("%s %s\n" % (c["wnid"], c["name"]) for c in table),
    }


def read_manifest(out_dir: str) -> Optional[dict]:
    return staging_io.read_manifest(out_dir, MANIFEST_NAME, TOOL_ID)


def _is_current(out_dir: str, config: StandinConfig) -> bool:
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get("config") != config.as_dict() \
            or manifest.get("generator_version") != GENERATOR_VERSION:
        return False
    counts = manifest.get("files", {})
    for split in ("train", "val"):
        found = sum(len(files) for _, _, files in os.walk(os.path.join(out_dir, split)))
        if found != counts.get(split):
            return False
    return True


def generate(out_dir: str, config: StandinConfig = StandinConfig(), force: bool = False,
             jobs: int = 1, log: Callable[[str], None] = print,
             progress_factory: Optional[Callable[[int], object]] = None) -> bool:
    """Write the stand-in tree to out_dir; return False if it was already there.

    out_dir must not exist, or hold a tree this generator wrote: one made with
    the same config is left alone (no-op), another is replaced only with force.
    Anything else at out_dir is refused. ``progress_factory(total)`` may return a
    tqdm-like object (``update(n)``, ``close()``).
    """
    config.validate()
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir):
            raise StandinError("%s exists and is not a folder; choose another --out-dir" % out_dir)
        manifest = read_manifest(out_dir)
        if manifest is None:
            raise StandinError("%s exists but was not written by this generator (no %s); "
                               "choose a new --out-dir or remove it yourself"
                               % (out_dir, MANIFEST_NAME))
        if _is_current(out_dir, config):
            log("%s is up to date (same options, %s); nothing to do" % (out_dir, MANIFEST_NAME))
            return False
        if not force:
            raise StandinError("%s holds a stand-in tree made with other options (%s) or "
                               "changed since; pass --force to replace it"
                               % (out_dir, json.dumps(manifest.get("config"), sort_keys=True)))
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temporaries(parent, os.path.basename(out_dir))
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".tmp-", dir=parent)
    try:
        os.chmod(staging, 0o755)
        items = plan(config)
        table = class_table(config.classes)
        for cls in table:
            os.makedirs(os.path.join(staging, "train", cls["wnid"]))
        os.makedirs(os.path.join(staging, "val"))
        log("drawing %d images (%d classes, %d train + %d val per class, %d corrupt) into %s"
            % (len(items), config.classes, config.train_per_class, config.val_per_class,
               config.corrupt, out_dir))
        digests = _write_all(config, items, staging, jobs, progress_factory)
        for name, text in _label_files(config, items).items():
            with open(os.path.join(staging, name), "w") as handle:
                handle.write(text)
        digest = hashlib.sha256("".join("%s %s\n" % (p, digests[p])
                                        for p in sorted(digests)).encode()).hexdigest()
        manifest = {
            "tool": TOOL_ID,
            "generator_version": GENERATOR_VERSION,
            "config": config.as_dict(),
            "classes": table,
            "files": {s: sum(1 for i in items if i.split == s) for s in ("train", "val")},
            "clean_counts": {"train": config.classes * config.train_per_class,
                             "val": config.classes * config.val_per_class},
            "corrupt": [{"path": i.relpath, "split": i.split, "label": i.label, "kind": i.corrupt}
                        for i in items if i.corrupt],
            "label_files": {"train": "train.txt", "val": "val.txt", "classes": "synsets.txt",
                            "names": "synset_words.txt"},
            "sha256_of_file_list": digest,
        }
        with open(os.path.join(staging, MANIFEST_NAME), "w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
        _replace_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log("done: %s (%d train, %d val files; manifest %s)"
        % (out_dir, manifest["files"]["train"], manifest["files"]["val"], MANIFEST_NAME))
    return True


def _write_all(config, items, root, jobs, progress_factory) -> Dict[str, str]:
    bar = progress_factory(len(items)) if progress_factory else None
    digests = {}
    tasks = [(config, item, root) for item in items]
    try:
        if jobs > 1 and len(items) > 50:
            import multiprocessing
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for relpath, digest in pool.imap_unordered(_write_item, tasks, chunksize=8):
                    digests[relpath] = digest
                    if bar:
                        bar.update(1)
        else:
            for task in tasks:
                relpath, digest = _write_item(task)
                digests[relpath] = digest
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    return digests


def _remove_stale_temporaries(parent, base):
    for entry in os.listdir(parent):
        if entry.startswith("." + base + ".tmp-") or entry.startswith("." + base + ".old-"):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _replace_directory(src, dst):
    """Rename src to dst; an old dst (checked to be ours by the caller) is moved aside first."""
    old = None
    if os.path.lexists(dst):
        old = os.path.join(os.path.dirname(dst), ".%s.old-%d" % (os.path.basename(dst), os.getpid()))
        os.rename(dst, old)
    os.rename(src, dst)
    if old:
        shutil.rmtree(old, ignore_errors=True)
