"""Labelled/unlabelled splits of a Datum LMDB for semi-supervised training
(tools/make_semi_split.py; journal Sec. 5.2: "a random subset of examples in
the train set are used as labeled examples, while all the other examples in
the train set are treated as unlabeled examples").

From a labelled train LMDB (MNIST's, or one of tools/make_imagenet_lmdb.py;
raw or encoded Datums) choose k records, seeded: uniformly at random (the
paper) or class-balanced (k/C per class, the remainder to randomly chosen
classes). Output folder:

    labelled_lmdb/       the k chosen records, byte for byte (DG trains on it)
    unlabelled_lmdb/     every other record of the pool, its label rewritten to
                         the loss layer's unlabelled marker (-1); nothing else
                         in the record changes
    holdout_lmdb/        only with `holdout`: the records after the first
                         `pool` ones, byte for byte (a validation set)
    labelled_keys.txt    the chosen keys, one a line, in key order
    split.json           the request, the source, counts, the labelled class
                         counts and the class prior rho derived from them
                         (written last: the stamp)

Keys are the source's, so Caffe's Data layer reads each output in the
source's order. Everything is built in a staging folder inside the output
folder, verified (counts, keys, every label read back) and renamed into
place; the manifest comes last. A second request with the same source
(entries, size and mtime of data.mdb) and the same options does nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import staging as staging_io
from ..atomic_io import atomic_write
from . import datum_io

TOOL_ID = "gencaffe.data.splits"
FORMAT_VERSION = 1
MANIFEST_NAME = "split.json"
KEYS_NAME = "labelled_keys.txt"
STAGING_PREFIX = ".staging-"
LMDB_OUTPUTS = ("labelled_lmdb", "unlabelled_lmdb", "holdout_lmdb")
OUTPUTS = LMDB_OUTPUTS + (KEYS_NAME,)
UNLABELED_LABEL = -1     # GenerativeLossParameter.unlabeled_label's default
COMMIT_EVERY = 1000

ProgressFactory = Callable[[int, str, str], object]  # (total, description, unit) -> tqdm-like


class SplitError(RuntimeError):
    """The split cannot be made; the message says why. Nothing was left half-written."""


@dataclasses.dataclass(frozen=True)
class SplitRequest:
    labelled: int                    # k, the number of labelled records
    seed: int = 1
    balanced: bool = False           # k/C per class instead of uniformly at random
    pool: Optional[int] = None       # split only the first `pool` records (key order)
    holdout: bool = False            # write the records after the pool as holdout_lmdb
    unlabeled_label: int = UNLABELED_LABEL
    num_classes: Optional[int] = None   # None: the largest label + 1

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Source:
    """What a scan of the source LMDB found."""
    path: str
    keys: List[bytes]
    labels: np.ndarray               # int64, one per record, key order
    encoded: int                     # how many records hold encoded images
    stamp: Dict[str, int]            # entries, size and mtime of data.mdb

    @property
    def count(self):
        return len(self.keys)


# ---------------------------------------------------------------- reading

def _caffe_pb2():
    from caffe.proto import caffe_pb2  # late: needs the built pycaffe (its proto module)
    return caffe_pb2


# py-lmdb refuses to open an environment that is already open in the process,
# so threads (a runner's workers) take turns: every open here holds this lock
# until the environment is closed again.
_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def readonly_env(path: str):
    """datum_io.open_readonly(path), with a SplitError naming the folder when it
    is not an LMDB (one at a time per process)."""
    import lmdb
    if not os.path.isdir(path):
        raise SplitError("%s is not a folder; expected an LMDB folder (with data.mdb) of "
                         "Caffe Datums" % path)
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise SplitError("%s has no data.mdb: not an LMDB folder" % path)
    with _ENV_LOCK:
        try:
            with datum_io.open_readonly(path, readahead=False) as env:
                yield env
        except lmdb.Error as err:
            raise SplitError("cannot read the LMDB %s: %s" % (path, err)) from None


def source_stamp(path: str) -> Dict[str, int]:
    """What identifies the source's contents for the no-op check: its entry
    count and data.mdb's size and mtime (reading it is not writing it)."""
    with readonly_env(path) as env:
        entries = int(env.stat()["entries"])
    st = os.stat(os.path.join(path, "data.mdb"))
    return {"entries": entries, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def parse_datum(key: bytes, value: bytes, path: str):
    """value as a Caffe Datum, checked to be one with an image and a label."""
    from google.protobuf.message import DecodeError
    datum = _caffe_pb2().Datum()
    shown = key.decode("utf-8", "replace")
    try:
        datum.ParseFromString(value)
    except DecodeError as err:
        raise SplitError("record %r of %s is not a Caffe Datum (%s); the tool needs an LMDB of "
                         "Datums as convert_imageset or tools/make_mnist_lmdb.py write them"
                         % (shown, path, err)) from None
    if datum.encoded:
        has_image = bool(datum.data)
    else:
        size = datum.channels * datum.height * datum.width
        has_image = size > 0 and (len(datum.data) == size or len(datum.float_data) == size)
    if not has_image:
        raise SplitError("record %r of %s is not a Caffe Datum with an image (channels %d, "
                         "height %d, width %d, %d data bytes, encoded %s); the tool needs an "
                         "LMDB of Datums as convert_imageset or tools/make_mnist_lmdb.py write "
                         "them" % (shown, path, datum.channels, datum.height, datum.width,
                                   len(datum.data), datum.encoded))
    if not datum.HasField("label"):
        raise SplitError("record %r of %s has no label: the source must be a labelled LMDB "
                         "(every Datum with its class)" % (shown, path))
    return datum


def scan(path: str, progress_factory: Optional[ProgressFactory] = None) -> Source:
    """Keys and labels of every record, each record checked to be a labelled Datum."""
    stamp = source_stamp(path)
    keys, labels, encoded = [], [], 0
    bar = progress_factory(stamp["entries"], "reading labels", "rec") if progress_factory else None
    try:
        with readonly_env(path) as env, env.begin() as txn:
            for key, value in txn.cursor():
                datum = parse_datum(key, value, path)
                if datum.label < 0:
                    raise SplitError(
                        "record %r of %s has label %d: the source must be fully labelled "
                        "(labels >= 0; is it the unlabelled LMDB of an earlier split?)"
                        % (key.decode("utf-8", "replace"), path, datum.label))
                keys.append(bytes(key))
                labels.append(datum.label)
                encoded += bool(datum.encoded)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not keys:
        raise SplitError("the LMDB %s is empty" % path)
    return Source(path, keys, np.asarray(labels, dtype=np.int64), encoded, stamp)


# ---------------------------------------------------------------- choosing

def class_count(labels: np.ndarray, num_classes: Optional[int] = None) -> int:
    largest = int(labels.max())
    if num_classes is None:
        return largest + 1
    if largest >= num_classes:
        raise SplitError("the source has label %d, outside the %d classes given"
                         % (largest, num_classes))
    return num_classes


def choose(labels: np.ndarray, k: int, seed: int, balanced: bool = False,
           num_classes: Optional[int] = None) -> np.ndarray:
    """Sorted indices of the k labelled records among `labels` (the pool).

    Uniform: a seeded random permutation's first k. Balanced: k // C of each
    class, the k % C left over to as many classes drawn at random, each
    class's records drawn at random."""
    n = len(labels)
    if k < 1:
        raise SplitError("the number of labelled examples must be at least 1, got %d" % k)
    if k >= n:
        raise SplitError("%d labelled examples requested, but the set has only %d records "
                         "(the labelled subset must leave at least one unlabelled record)"
                         % (k, n))
    rng = np.random.RandomState(seed)
    if not balanced:
        return np.sort(rng.permutation(n)[:k])
    classes = class_count(labels, num_classes)
    if k < classes:
        raise SplitError("a class-balanced subset needs at least one example of each of the %d "
                         "classes, but only %d labelled examples were requested (drop "
                         "--balanced, or ask for at least %d)" % (classes, k, classes))
    quota = np.full(classes, k // classes, dtype=np.int64)
    quota[rng.permutation(classes)[:k % classes]] += 1
    chosen = []
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        if len(members) < quota[c]:
            raise SplitError("class %d has %d records in the set, fewer than the %d a "
                             "class-balanced subset of %d needs" % (c, len(members), quota[c], k))
        chosen.append(rng.choice(members, int(quota[c]), replace=False))
    return np.sort(np.concatenate(chosen))


def class_prior(counts: Sequence[int]) -> Tuple[List[float], Optional[str]]:
    """rho_y from the labelled class counts: the class frequencies (journal
    Sec. 4.5, "rho_y = class prior"); when a class has no labelled example,
    add-one smoothed, since the loss layer needs every rho_y > 0."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts > 0).all():
        return (counts / counts.sum()).tolist(), None
    return ((counts + 1) / (counts.sum() + len(counts))).tolist(), "add-one"


# ---------------------------------------------------------------- output folder

def read_manifest(out_dir: str) -> Optional[dict]:
    return staging_io.read_manifest(out_dir, MANIFEST_NAME, TOOL_ID)


def check_output_folder(out_dir: str) -> Optional[dict]:
    """The manifest of our earlier split there, None for a new or empty folder;
    anything else is refused (nothing of someone else's is overwritten)."""
    if not os.path.lexists(out_dir):
        return None
    if not os.path.isdir(out_dir):
        raise SplitError("output path %s exists and is not a folder; choose another --out-dir"
                         % out_dir)
    manifest = read_manifest(out_dir)
    others = sorted(n for n in os.listdir(out_dir) if not n.startswith(STAGING_PREFIX))
    if manifest is None and others:
        raise SplitError("output folder %s exists and was not written by this tool (no %s of "
                         "%s; it holds %s); choose an empty or new --out-dir"
                         % (out_dir, MANIFEST_NAME, TOOL_ID, ", ".join(others[:5])))
    return manifest


def is_current(out_dir: str, manifest: Optional[dict], source_path: str,
               request: SplitRequest) -> bool:
    """True when out_dir holds a finished split of this source and request."""
    if not manifest or manifest.get("state") != "complete":
        return False
    try:
        if manifest["request"] != request.as_dict():
            return False
        if manifest["source"]["stamp"] != source_stamp(source_path):
            return False
        for name, count in manifest["counts"].items():
            if datum_io.lmdb_count(os.path.join(out_dir, name + "_lmdb")) != count:
                return False
        return os.path.isfile(os.path.join(out_dir, KEYS_NAME))
    except (SplitError, KeyError, TypeError, OSError):
        return False


# ---------------------------------------------------------------- writing

def _map_size(source_path: str) -> int:
    """LMDB map_size for an output: an address-space reservation, not disk:
    room for the whole source with margin."""
    size = os.path.getsize(os.path.join(source_path, "data.mdb"))
    return max(64 << 20, int(size * 1.5) + (64 << 20))


class _Writer:
    def __init__(self, path: str, map_size: int):
        import lmdb
        os.makedirs(path)
        self.env = lmdb.open(path, map_size=map_size, subdir=True, lock=True)
        self.txn = self.env.begin(write=True)
        self.count = 0

    def put(self, key: bytes, value: bytes):
        if not self.txn.put(key, value, overwrite=False):
            raise SplitError("duplicate key %r" % key)
        self.count += 1
        if self.count % COMMIT_EVERY == 0:
            self.txn.commit()
            self.txn = self.env.begin(write=True)

    def close(self):
        self.txn.commit()
        self.env.sync(True)
        self.env.close()


def _write_outputs(source: Source, pool: int, chosen: np.ndarray, request: SplitRequest,
                   staging: str, progress_factory) -> Dict[str, str]:
    """Copy every record into its output LMDB in one pass; sha256 of each output's
    (key, value) stream, for the manifest."""
    caffe_pb2 = _caffe_pb2()
    is_labelled = np.zeros(source.count, dtype=bool)
    is_labelled[chosen] = True
    map_size = _map_size(source.path)
    names = ["labelled_lmdb", "unlabelled_lmdb"] + (["holdout_lmdb"] if request.holdout else [])
    writers = {name: _Writer(os.path.join(staging, name), map_size) for name in names}
    digests = {name: hashlib.sha256() for name in names}
    total = source.count if request.holdout else pool
    bar = progress_factory(total, "writing split", "rec") if progress_factory else None
    try:
        with readonly_env(source.path) as env, env.begin() as txn:
            for index, (key, value) in enumerate(txn.cursor()):
                if index >= total:
                    break
                if bytes(key) != source.keys[index]:
                    raise SplitError("the source %s changed while it was read (key %d)"
                                     % (source.path, index))
                if index >= pool:
                    name = "holdout_lmdb"
                elif is_labelled[index]:
                    name = "labelled_lmdb"
                else:
                    name = "unlabelled_lmdb"
                    datum = caffe_pb2.Datum()
                    datum.ParseFromString(value)
                    datum.label = request.unlabeled_label
                    value = datum.SerializeToString()
                writers[name].put(bytes(key), bytes(value))
                digests[name].update(bytes(key) + b"\0" + hashlib.sha256(value).digest())
                if bar is not None:
                    bar.update(1)
    finally:
        for writer in writers.values():
            writer.close()
        if bar is not None:
            bar.close()
    return {name: digest.hexdigest() for name, digest in digests.items()}


def verify(out_dir: str, source: Source, pool: int, chosen: np.ndarray,
           request: SplitRequest, progress_factory=None) -> Dict[str, int]:
    """Read every output back: the keys each must hold, in order, and every
    label (the source's for labelled and holdout records, the marker for
    unlabelled ones). Returns the counts; raises SplitError on any mismatch."""
    is_labelled = np.zeros(pool, dtype=bool)
    is_labelled[chosen] = True
    expected = {
        "labelled_lmdb": [(source.keys[i], int(source.labels[i])) for i in chosen],
        "unlabelled_lmdb": [(source.keys[i], request.unlabeled_label)
                            for i in range(pool) if not is_labelled[i]],
    }
    if request.holdout:
        expected["holdout_lmdb"] = [(source.keys[i], int(source.labels[i]))
                                    for i in range(pool, source.count)]
    counts = {}
    for name, want in expected.items():
        path = os.path.join(out_dir, name)
        bar = progress_factory(len(want), "verifying %s" % name, "rec") if progress_factory \
            else None
        try:
            with readonly_env(path) as env, env.begin() as txn:
                got = 0
                for (key, value), (want_key, want_label) in zip(txn.cursor(), want):
                    datum = parse_datum(key, value, path)
                    if bytes(key) != want_key or datum.label != want_label:
                        raise SplitError("verification failed: %s record %d is %r with label "
                                         "%d, expected %r with label %d"
                                         % (path, got, key, datum.label, want_key, want_label))
                    got += 1
                    if bar is not None:
                        bar.update(1)
                entries = int(env.stat()["entries"])
        finally:
            if bar is not None:
                bar.close()
        if got != len(want) or entries != len(want):
            raise SplitError("verification failed: %s holds %d records, expected %d"
                             % (path, entries, len(want)))
        counts[name[:-len("_lmdb")]] = entries
    return counts


def _promote(staging: str, out_dir: str, manifest: dict) -> None:
    """Move the verified outputs into out_dir, the manifest last (staging.promote);
    meanwhile the manifest says "replacing", so a run stopped half-way is never
    taken for a finished split."""
    staging_io.promote(staging, out_dir, OUTPUTS, MANIFEST_NAME, manifest, {
        "tool": TOOL_ID, "format_version": FORMAT_VERSION,
        "state": "replacing outputs (a run stopped here: rerun to rebuild)"})


def make_split(source_path: str, out_dir: str, request: SplitRequest,
               log: Callable[[str], None] = print,
               progress_factory: Optional[ProgressFactory] = None) -> dict:
    """Write (or find current) the split of source_path into out_dir; returns
    its manifest. Raises SplitError with a message saying what is wrong."""
    source_path = os.path.abspath(source_path)
    previous = check_output_folder(out_dir)
    if is_current(out_dir, previous, source_path, request):
        log("split in %s is current (%s): nothing to do" % (out_dir, describe(previous)))
        return previous
    started = time.time()
    source = scan(source_path, progress_factory)
    pool = source.count if request.pool is None else request.pool
    if pool < 1 or pool > source.count:
        raise SplitError("pool of %d records requested, but %s holds %d"
                         % (pool, source_path, source.count))
    if request.holdout and pool == source.count:
        raise SplitError("--holdout needs --pool smaller than the %d records of %s (the "
                         "holdout set is the records after the pool)" % (source.count, source_path))
    chosen = choose(source.labels[:pool], request.labelled, request.seed, request.balanced,
                    request.num_classes)
    classes = class_count(source.labels, request.num_classes)
    labelled_counts = np.bincount(source.labels[chosen], minlength=classes).tolist()
    pool_counts = np.bincount(source.labels[:pool], minlength=classes).tolist()
    prior, smoothing = class_prior(labelled_counts)

    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):   # left by a run that was stopped
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir)
    try:
        digests = _write_outputs(source, pool, chosen, request, staging, progress_factory)
        counts = verify(staging, source, pool, chosen, request, progress_factory)
        with atomic_write(os.path.join(staging, KEYS_NAME), "w") as handle:
            for index in chosen:
                handle.write(source.keys[index].decode("utf-8", "replace") + "\n")
        manifest = {
            "tool": TOOL_ID, "format_version": FORMAT_VERSION, "state": "complete",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "request": request.as_dict(),
            "source": {"path": source_path, "stamp": source.stamp, "records": source.count,
                       "encoded_records": source.encoded},
            "pool": pool, "classes": classes,
            "counts": counts,
            "labelled_share_of_pool": request.labelled / float(pool),
            "class_counts": {"labelled": labelled_counts, "pool": pool_counts},
            "class_prior": prior, "class_prior_smoothing": smoothing,
            "unlabeled_label": request.unlabeled_label,
            "sha256": digests,
            "seconds": round(time.time() - started, 1),
        }
        _promote(staging, out_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log("split written to %s (%s)" % (out_dir, describe(manifest)))
    return manifest


def describe(manifest: dict) -> str:
    counts = manifest["counts"]
    request = manifest["request"]
    text = "%d labelled (%s, seed %d), %d unlabelled" % (
        counts["labelled"], "class-balanced" if request["balanced"] else "uniform",
        request["seed"], counts["unlabelled"])
    if "holdout" in counts:
        text += ", %d held out" % counts["holdout"]
    return text


def summary(manifest: dict, out_dir: str) -> str:
    """A few lines for the terminal."""
    lines = [describe(manifest) + " from %s" % manifest["source"]["path"],
             "labelled per class: %s" % " ".join(str(c) for c in
                                                 manifest["class_counts"]["labelled"]),
             "class prior rho (labelled frequencies%s): %s" % (
                 ", add-one smoothed: a class has no labelled example"
                 if manifest.get("class_prior_smoothing") else "",
                 " ".join("%.4g" % p for p in manifest["class_prior"])),
             "outputs in %s: %s, %s, %s" % (out_dir, ", ".join(
                 name + "_lmdb" for name in manifest["counts"]), KEYS_NAME, MANIFEST_NAME)]
    return "\n".join(lines)


def load(out_dir: str) -> dict:
    """The manifest of a finished split, or SplitError saying how to make one."""
    manifest = read_manifest(out_dir)
    if not manifest or manifest.get("state") != "complete":
        raise SplitError("%s holds no finished split (no complete %s); make one with "
                         "tools/make_semi_split.py" % (out_dir, MANIFEST_NAME))
    return manifest


__all__ = ["SplitError", "SplitRequest", "make_split", "choose", "class_prior", "load", "scan",
           "summary", "UNLABELED_LABEL"]
