"""A Datum LMDB against the net that will read it: checked before training.

Caffe's Data layer takes whatever the first record's shape is and lets the
net fail (or not) further down; SoftmaxWithLoss checks its labels only in
debug builds (and on the CPU since caffe/patches/label-range-checks.patch,
without naming the file). So a runner scans its LMDBs once, before it
creates anything: one pass over the records gives the entry count (an
epoch's length), every record's shape, the label range, and a digest of
the records (keys and values) that says whether the data changed.
"""
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from . import datum_io


class DataCheckError(ValueError):
    """The data cannot be used by the net; the message names the file."""


@dataclass
class LmdbSummary:
    path: str
    entries: int
    shape: Tuple[int, int, int]           # (C, H, W) of the first record
    first_key: str
    odd_shape: Optional[Tuple[str, Tuple[int, int, int]]]  # (key, shape) of a record that differs
    label_counts: Dict[int, int] = field(default_factory=dict)
    first_key_of_label: Dict[int, str] = field(default_factory=dict)
    records_sha256: str = ""

    @property
    def label_range(self):
        return min(self.label_counts), max(self.label_counts)


def summarize(path, role="data"):
    """One pass over a Datum LMDB; DataCheckError names `path` (as given) when it
    is missing, not an LMDB, or empty. role says which input it is ("train LMDB")."""
    import lmdb
    from .datum_io import _caffe_pb2, datum_shape
    if not os.path.exists(path):
        raise DataCheckError("%s %s does not exist" % (role, path))
    if not os.path.isdir(path):
        raise DataCheckError("%s %s is a file, not an LMDB folder (one that holds data.mdb)"
                             % (role, path))
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise DataCheckError("%s %s is not an LMDB: it holds no data.mdb" % (role, path))
    datum = _caffe_pb2().Datum()
    digest = hashlib.sha256()
    entries, shape, first_key, odd_shape = 0, None, None, None
    labels, first_keys = {}, {}
    with contextlib.ExitStack() as stack:
        try:
            env = stack.enter_context(datum_io.open_readonly(path))
        except lmdb.Error as err:
            raise DataCheckError("%s %s cannot be opened as an LMDB: %s"
                                 % (role, path, err)) from None
        with env.begin() as txn:
            for key, value in txn.cursor():
                digest.update(len(key).to_bytes(8, "little") + key)
                digest.update(len(value).to_bytes(8, "little") + value)
                try:
                    datum.ParseFromString(value)
                except Exception as err:  # protobuf's DecodeError
                    raise DataCheckError("%s %s: record %r is not a Caffe Datum (%s)"
                                         % (role, path, key.decode("utf-8", "replace"),
                                            err)) from None
                name = key.decode("utf-8", "replace")
                if shape is None:
                    shape, first_key = tuple(datum_shape(datum)), name
                elif odd_shape is None and not datum.encoded and \
                        (datum.channels, datum.height, datum.width) != shape:
                    odd_shape = (name, (datum.channels, datum.height, datum.width))
                labels[datum.label] = labels.get(datum.label, 0) + 1
                first_keys.setdefault(datum.label, name)
                entries += 1
    if entries == 0:
        raise DataCheckError("%s %s holds no records" % (role, path))
    return LmdbSummary(path, entries, shape, first_key, odd_shape, labels, first_keys,
                       digest.hexdigest())


def fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def mismatches(summary, role, net_shape, num_classes, net_name="the net"):
    """Messages (empty when none) saying how the data does not fit a net with
    input (C, H, W) = net_shape and num_classes outputs; each names the file."""
    problems = []
    if summary.shape != tuple(net_shape):
        problems.append("%s %s holds %s images (record %s), but %s takes %s input"
                        % (role, summary.path, fmt_shape(summary.shape), summary.first_key,
                           net_name, fmt_shape(net_shape)))
    if summary.odd_shape is not None:
        key, shape = summary.odd_shape
        problems.append("%s %s: record %s is %s, unlike the first record %s (%s); Caffe's Data "
                        "layer needs one size" % (role, summary.path, key, fmt_shape(shape),
                                                  summary.first_key, fmt_shape(summary.shape)))
    low, high = summary.label_range
    bad = sorted(label for label in summary.label_counts if not 0 <= label < num_classes)
    if bad:
        shown = bad[-1] if bad[-1] >= num_classes else bad[0]
        problems.append("%s %s has labels %d..%d (label %d first at record %s; %d records "
                        "outside 0..%d), but %s has %d classes (0..%d)" % (
                            role, summary.path, low, high, shown,
                            summary.first_key_of_label[shown],
                            sum(summary.label_counts[label] for label in bad), num_classes - 1,
                            net_name, num_classes, num_classes - 1))
    return problems
