"""ImageNet-style tree -> Caffe LMDBs, mean and class map (tools/make_imagenet_lmdb.py).

Output folder (default data/imagenet, where models/alexnet and models/zf look):

    train_lmdb/          shuffled train Datums, resized (default 256x256), raw or JPEG-encoded
    val_lmdb/            the same for val
    mean.binaryproto     compute_image_mean over train_lmdb (1 x 3 x H x W, BGR)
    classes.txt          line i = the class (wnid) of label i
    synset_words.txt     "wnid words" in label order, when the words are known
    train_list.txt       the lists convert_imageset was given (shuffled, unreadable
    val_list.txt           files left out), paths relative to the split's folder
    skipped.txt          every file left out, with its split and the reason
    logs/                the tools' full output
    manifest.json        counts, classes, options, sources, skipped files, timings,
                         and the inputs' fingerprint (written last: the stamp)

The work is upstream's: convert_imageset writes the LMDBs, compute_image_mean the
mean. Around them: the inputs are checked first (gencaffe.data.imagenet_sources),
every image is decoded once so that unreadable and truncated files are named
and left out (gencaffe.data.image_check: convert_imageset would store a
truncated JPEG silently), the tools' logs feed progress bars, their skip
messages are collected, and each LMDB's entry count is checked against its
list. Everything is built in a staging folder inside the output folder and
renamed into place only when all of it succeeded; the manifest comes last. A
second run whose inputs (every file's path, label, size and mtime, the class
list, the options) have the same fingerprint does nothing.

An output folder that exists must be empty or hold a manifest.json of this
tool: nothing else is ever overwritten.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import staging as staging_io
from . import caffe_convert, datum_io, image_check, imagenet_sources
from .imagenet_sources import Sources, Split, quote_some

TOOL_ID = "gencaffe.data.imagenet"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
STAGING_PREFIX = ".staging-"
OUTPUTS = ("train_lmdb", "val_lmdb", "mean.binaryproto", "classes.txt", "synset_words.txt",
           "train_list.txt", "val_list.txt", "skipped.txt", "logs")
SPLITS = ("train", "val")


class DataError(RuntimeError):
    """The data could not be converted; the message says why. Nothing was left half-written."""


@dataclasses.dataclass(frozen=True)
class Options:
    height: int = 256
    width: int = 256
    encoded: bool = False
    encode_type: str = "jpg"     # with encoded: every Datum re-encoded as this ("" = keep by extension)
    seed: int = 1                # shuffle seed for both lists
    check: bool = True           # decode every image first and leave out the bad ones

    def validate(self):
        if self.height < 1 or self.width < 1:
            raise DataError("--size must be positive, got %dx%d" % (self.height, self.width))

    def as_dict(self):
        return dataclasses.asdict(self)


# Tiny ImageNet's images are 64x64 (CS231n's README): written at that size they
# are stored as they are; the nets crop 56 from them (gencaffe.nets.variants)
TINY_IMAGENET_SIZE = (64, 64)


def default_size(sources: Sources) -> Tuple[int, int]:
    """The size written when the user gives none: Caffe's ImageNet 256x256, or
    64x64 for a Tiny ImageNet tree (no resampling of its 64x64 images)."""
    tiny = os.path.basename(sources.classes_source) == imagenet_sources.TINY_CLASSES
    return TINY_IMAGENET_SIZE if tiny else (Options.height, Options.width)


ProgressFactory = Callable[[int, str, str], object]  # (total, description, unit) -> tqdm-like


# ---------------------------------------------------------------- fingerprint / manifest

def fingerprint(sources: Sources, options: Options) -> str:
    """sha256 over the options, the classes and each input file's path, label, size, mtime."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "options": options.as_dict(),
                              "classes": sources.classes, "words": sources.words},
                             sort_keys=True).encode())
    for split in (sources.train, sources.val):
        digest.update(("\n[%s] %s\n" % (split.name, split.root)).encode())
        for rel, label in split.entries:
            try:
                st = os.stat(os.path.join(split.root, rel))
                stamp = "%d %d" % (st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = "missing"
            digest.update(("%s\t%d\t%s\n" % (rel, label, stamp)).encode("utf-8", "replace"))
    return digest.hexdigest()


def read_manifest(out_dir: str) -> Optional[dict]:
    return staging_io.read_manifest(out_dir, MANIFEST_NAME, TOOL_ID)


def outputs_match(out_dir: str, manifest: dict) -> bool:
    """True when the LMDBs hold the counts the manifest says and the mean file exists."""
    try:
        for split in SPLITS:
            db = os.path.join(out_dir, split + "_lmdb")
            if datum_io.lmdb_count(db) != manifest["counts"][split]["written"]:
                return False
        return os.path.getsize(os.path.join(out_dir, "mean.binaryproto")) > 0
    except Exception:  # missing DB, unreadable manifest fields: not current
        return False


def check_output_folder(out_dir: str) -> Optional[dict]:
    """The manifest of our earlier run there, None for a new/empty folder; refuse anything else."""
    if not os.path.lexists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise DataError("output path %s exists and is not a folder; choose another --out-dir"
                        % out_dir)
    manifest = read_manifest(out_dir)
    others = [n for n in os.listdir(out_dir) if not n.startswith(STAGING_PREFIX)]
    if manifest is None and others:
        raise DataError("output folder %s exists and was not written by this tool (no %s of %s; "
                        "it holds %s); choose an empty or new --out-dir"
                        % (out_dir, MANIFEST_NAME, TOOL_ID, quote_some(sorted(others), 5)))
    return manifest


# ---------------------------------------------------------------- steps

def shuffled(entries: Sequence[Tuple[str, int]], seed: int, split: str) -> List[Tuple[str, int]]:
    """A reproducible shuffle (convert_imageset's --shuffle is seeded from /dev/urandom)."""
    out = list(entries)
    random.Random("%d:%s" % (seed, split)).shuffle(out)
    return out


def write_list(path: str, entries: Sequence[Tuple[str, int]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for rel, label in entries:
            handle.write("%s %d\n" % (rel, label))


def raw_lmdb_bytes(count: int, height: int, width: int, channels: int = 3) -> int:
    """Disk an LMDB of raw Datums needs: each value fills whole 4 KiB overflow pages."""
    record = channels * height * width + 64
    return count * ((record + 4095) // 4096 + 1) * 4096


def _bar(progress_factory, total, desc, unit="img"):
    return progress_factory(total, desc, unit) if progress_factory else None


class _Counter:
    """Feeds a tqdm-like bar from running totals (convert_imageset's "Processed N")."""

    def __init__(self, bar):
        self.bar, self.seen = bar, 0

    def __call__(self, running_total):
        if self.bar and running_total > self.seen:
            self.bar.update(running_total - self.seen)
            self.seen = running_total


def check_split_images(split: Split, jobs: int, progress_factory) -> List[Dict[str, str]]:
    paths = [os.path.join(split.root, rel) for rel, _ in split.entries]
    bar = _bar(progress_factory, len(paths), "checking %s images" % split.name)
    try:
        bad = image_check.check_images(paths, jobs=jobs, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    prefix = len(os.path.join(split.root, ""))
    return [{"split": split.name, "path": path[prefix:], "reason": reason} for path, reason in bad]


# ---------------------------------------------------------------- pipeline

def prepare(sources: Sources, out_dir: str, options: Options = Options(),
            tools_dir: Optional[str] = None, repo: Optional[str] = None, jobs: int = 1,
            force: bool = False, log: Callable[[str], None] = print,
            progress_factory: Optional[ProgressFactory] = None) -> Tuple[dict, bool]:
    """Build the outputs; return (manifest, True), or (the existing manifest, False) when
    the folder already holds the outputs of the same inputs."""
    options.validate()
    out_dir = os.path.abspath(out_dir)
    previous = check_output_folder(out_dir)
    for split in (sources.train, sources.val):
        for warning in split.warnings:
            log("warning: " + warning)
    log("fingerprinting %d train + %d val input files ..."
        % (len(sources.train.entries), len(sources.val.entries)))
    inputs_print = fingerprint(sources, options)
    if previous is not None and not force and previous.get("fingerprint") == inputs_print \
            and outputs_match(out_dir, previous):
        log("%s is up to date (same inputs and options: %s); nothing to do"
            % (out_dir, MANIFEST_NAME))
        return previous, False
    convert_tool = caffe_convert.find_tool(caffe_convert.CONVERT_IMAGESET, tools_dir, repo)
    mean_tool = caffe_convert.find_tool(caffe_convert.COMPUTE_IMAGE_MEAN, tools_dir, repo)

    created_out_dir = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for entry in os.listdir(out_dir):  # left behind by a killed run
        if entry.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(out_dir, entry), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir)
    try:
        manifest = _build(sources, options, staging, out_dir, convert_tool, mean_tool, jobs,
                          log, progress_factory)
        manifest["fingerprint"] = inputs_print
        _promote(staging, out_dir, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_out_dir:
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)  # only if empty
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return manifest, True


def _build(sources, options, staging, out_dir, convert_tool, mean_tool, jobs, log,
           progress_factory) -> dict:
    timings = {}
    skipped: List[Dict[str, str]] = []
    warnings = [w for s in (sources.train, sources.val) for w in s.warnings]

    # 1. decode every image once
    if options.check:
        started = time.time()
        for split in (sources.train, sources.val):
            skipped.extend(check_split_images(split, jobs, progress_factory))
        timings["check_s"] = round(time.time() - started, 2)
        if skipped:
            log("%d unreadable or corrupt file(s) will be left out (listed in skipped.txt)"
                % len(skipped))
    bad = {(s["split"], s["path"]) for s in skipped}

    # 2. lists: shuffled, bad files left out
    lists = {}
    for split in (sources.train, sources.val):
        good = [(rel, label) for rel, label in split.entries if (split.name, rel) not in bad]
        lists[split.name] = shuffled(good, options.seed, split.name)
        write_list(os.path.join(staging, split.name + "_list.txt"), lists[split.name])
    _check_classes_left(sources, lists["train"], skipped)

    if not options.encoded:
        need = sum(raw_lmdb_bytes(len(v), options.height, options.width) for v in lists.values())
        free = shutil.disk_usage(staging).free
        if free < need:
            raise DataError("not enough disk space in %s: raw %dx%d LMDBs of %d images need about "
                            "%.1f GB, %.1f GB free (use --encoded for ~10x smaller LMDBs)"
                            % (out_dir, options.height, options.width,
                               sum(len(v) for v in lists.values()), need / 1e9, free / 1e9))

    # 3. convert_imageset per split
    counts = {}
    jpeg_warnings = 0
    os.makedirs(os.path.join(staging, "logs"))
    for split in (sources.train, sources.val):
        entries = lists[split.name]
        db = os.path.join(staging, split.name + "_lmdb")
        bar = _bar(progress_factory, len(entries), "convert_imageset %s" % split.name)
        started = time.time()
        try:
            result = caffe_convert.convert_imageset(
                convert_tool, split.root, os.path.join(staging, split.name + "_list.txt"), db,
                options.height, options.width, encoded=options.encoded,
                encode_type=options.encode_type if options.encoded else "",
                log_path=os.path.join(staging, "logs", "convert_%s.log" % split.name),
                progress=_Counter(bar))
        except caffe_convert.ToolError as err:
            raise DataError("writing the %s LMDB: %s" % (split.name, err)) from None
        finally:
            if bar:
                bar.close()
        timings["convert_%s_s" % split.name] = round(time.time() - started, 2)
        prefix = os.path.join(split.root, "")
        for printed in result.unreadable:
            rel = printed[len(prefix):] if printed.startswith(prefix) else printed
            skipped.append({"split": split.name, "path": rel,
                            "reason": "OpenCV could not read it (convert_imageset skipped it)"})
        jpeg_warnings += result.premature_jpeg
        written = datum_io.lmdb_count(db)
        expected = len(entries) - len(result.unreadable)
        if written != expected or result.total != len(entries):
            raise DataError("convert_imageset wrote %d records to the %s LMDB, expected %d (%d "
                            "listed, %d reported unreadable; it read %d list lines); see its log"
                            % (written, split.name, expected, len(entries),
                               len(result.unreadable), result.total))
        if written == 0:
            raise DataError("no %s image could be converted (all %d unreadable?)"
                            % (split.name, len(entries)))
        counts[split.name] = {"listed": len(split.entries), "written": written,
                              "skipped": sum(1 for s in skipped if s["split"] == split.name)}
    if jpeg_warnings:
        message = ("libjpeg warned %d time(s) 'Premature end of JPEG file': truncated JPEGs were "
                   "decoded with grey fill and are IN the LMDBs (Caffe does not name them)"
                   % jpeg_warnings)
        if options.check:
            message += "; the decode check passed them, so see the convert logs"
        else:
            message += "; rerun without --no-check to find and leave them out"
        warnings.append(message)  # printed by summary()

    # 4. the mean of the train images
    bar = _bar(progress_factory, counts["train"]["written"], "compute_image_mean")
    started = time.time()
    try:
        channel_means = caffe_convert.compute_image_mean(
            mean_tool, os.path.join(staging, "train_lmdb"),
            os.path.join(staging, "mean.binaryproto"),
            log_path=os.path.join(staging, "logs", "compute_mean.log"), progress=_Counter(bar))
    except caffe_convert.ToolError as err:
        raise DataError("computing the mean of the train LMDB: %s" % err) from None
    finally:
        if bar:
            bar.close()
    timings["mean_s"] = round(time.time() - started, 2)

    # 5. class map, skipped list
    with open(os.path.join(staging, "classes.txt"), "w", encoding="utf-8") as handle:
        handle.writelines(c + "\n" for c in sources.classes)
    if sources.words:
        with open(os.path.join(staging, "synset_words.txt"), "w", encoding="utf-8") as handle:
            handle.writelines("%s %s\n" % (c, sources.words.get(c, "")) for c in sources.classes)
    with open(os.path.join(staging, "skipped.txt"), "w", encoding="utf-8") as handle:
        handle.write("# files left out of the LMDBs: split<TAB>path (relative to the split's "
                     "folder)<TAB>reason\n")
        handle.writelines("%s\t%s\t%s\n" % (s["split"], s["path"], s["reason"]) for s in skipped)

    return {
        "tool": TOOL_ID,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": options.as_dict(),
        "sources": {"train": sources.train.source, "val": sources.val.source,
                    "classes": sources.classes_source},
        "classes": len(sources.classes),
        "counts": counts,
        "skipped": skipped,
        "warnings": warnings,
        "mean": {"file": "mean.binaryproto", "shape": [3, options.height, options.width],
                 "channel_means_bgr": channel_means},
        "outputs": {"train": "train_lmdb", "val": "val_lmdb", "mean": "mean.binaryproto",
                    "classes": "classes.txt", "lists": ["train_list.txt", "val_list.txt"],
                    "skipped": "skipped.txt", "logs": "logs"},
        "timings_s": timings,
        "caffe_tools": {"convert_imageset": convert_tool, "compute_image_mean": mean_tool},
    }


def _check_classes_left(sources: Sources, train_list, skipped):
    present = {label for _, label in train_list}
    emptied = [sources.classes[i] for i in range(len(sources.classes)) if i not in present]
    if emptied:
        raise DataError("after leaving out %d unreadable file(s), %d class(es) have no train image "
                        "left: %s (see the reasons below)\n%s"
                        % (len(skipped), len(emptied), quote_some(emptied),
                           "\n".join("  %s %s: %s" % (s["split"], s["path"], s["reason"])
                                     for s in skipped[:20])))


def _promote(staging: str, out_dir: str, manifest: dict) -> None:
    """Move the finished outputs into out_dir, the manifest last (staging.promote);
    meanwhile the manifest says "replacing" and has no fingerprint: the folder
    stays ours, but is not current."""
    staging_io.promote(staging, out_dir, OUTPUTS, MANIFEST_NAME, manifest, {
        "tool": TOOL_ID, "format_version": FORMAT_VERSION, "fingerprint": None,
        "state": "replacing outputs (a run stopped here: rerun to rebuild)"})


# ---------------------------------------------------------------- report

def summary(manifest: dict, out_dir: str, max_skipped: int = 50) -> str:
    """A few lines for the terminal: counts, every skipped file (up to max_skipped), outputs."""
    counts = manifest["counts"]
    lines = ["%s: %d written, %d skipped (of %d listed)"
             % (s, counts[s]["written"], counts[s]["skipped"], counts[s]["listed"])
             for s in SPLITS]
    skipped = manifest.get("skipped", [])
    if skipped:
        lines.append("left out (unreadable or corrupt; all in %s):"
                     % os.path.join(out_dir, "skipped.txt"))
        for s in skipped[:max_skipped]:
            lines.append("  %-5s %s: %s" % (s["split"], s["path"], s["reason"]))
        if len(skipped) > max_skipped:
            lines.append("  ... %d more" % (len(skipped) - max_skipped))
    for warning in manifest.get("warnings", []):
        lines.append("warning: " + warning)
    lines.append("outputs in %s: train_lmdb, val_lmdb, mean.binaryproto (3x%dx%d), classes.txt "
                 "(%d classes), train_list.txt, val_list.txt, skipped.txt, logs/, %s"
                 % (out_dir, manifest["options"]["height"], manifest["options"]["width"],
                    manifest["classes"], MANIFEST_NAME))
    return "\n".join(lines)
