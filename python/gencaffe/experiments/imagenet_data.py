"""The ImageNet-shaped data a run reads, checked: an LMDB folder as
tools/make_imagenet_lmdb.py writes it (train_lmdb, val_lmdb, mean.binaryproto,
classes.txt), the smoke run's stand-in drawn and converted into one, and a
generated net's class count against the data's. Shared by the smoke runner
(gencaffe.experiments.imagenet_smoke) and the Tiny ImageNet runners
(tiny_imagenet, tiny_imagenet_semi).

`settings` is a runner's Settings (a caffe_runs.RunSettings with lmdb_dir,
relative to the repo or absolute); prepare_data also reads the smoke
Settings' standin_dir and standin (imagenet_smoke.Settings).
"""
import json
import os
from dataclasses import dataclass

from ..data import datum_io
from .caffe_runs import file_sha256

DATA_FILES = ("train_lmdb", "val_lmdb", "mean.binaryproto", "classes.txt")


class SmokeError(RuntimeError):
    """The run cannot go on; the message says why and what to do. Raised by
    the checks here, the smoke run's plan (imagenet_smoke) and its evaluation
    (imagenet_smoke_eval); tiny_imagenet.prepare re-raises it as TinyError."""


@dataclass(frozen=True)
class DataInfo:
    lmdb_dir: str          # as the nets write it (relative to the repo, or absolute)
    classes: int
    train_count: int
    val_count: int
    fingerprint: str       # what makes runs on other data stale

    def path(self, name):
        return os.path.join(self.lmdb_dir, name)


def check_data(settings) -> DataInfo:
    """The LMDB folder's contents, checked; SmokeError naming what is wrong."""
    base = settings.path(settings.lmdb_dir)
    hint = ("make it with `make imagenet-standin` (the stand-in) or "
            "tools/make_imagenet_lmdb.py ROOT --out-dir %s" % settings.lmdb_dir)
    for name in DATA_FILES:
        path = os.path.join(base, name)
        if name.endswith("_lmdb"):
            if not os.path.isfile(os.path.join(path, "data.mdb")):
                raise SmokeError("missing LMDB: %s (no data.mdb there); %s" % (path, hint))
        elif not os.path.isfile(path):
            raise SmokeError("missing %s: %s; %s" % (name, path, hint))
    with open(os.path.join(base, "classes.txt")) as handle:
        classes = [line.split()[0] for line in handle if line.strip()]
    if not classes:
        raise SmokeError("%s lists no classes" % os.path.join(base, "classes.txt"))
    counts = {}
    for split in ("train", "val"):
        path = os.path.join(base, split + "_lmdb")
        try:
            counts[split] = datum_io.lmdb_count(path)
        except Exception as err:  # lmdb.Error and friends
            raise SmokeError("cannot read the LMDB %s: %s" % (path, err)) from None
        if counts[split] == 0:
            raise SmokeError("the LMDB %s is empty" % path)
    manifest_path = os.path.join(base, "manifest.json")
    fingerprint = None
    if os.path.isfile(manifest_path):
        with open(manifest_path) as handle:
            fingerprint = json.load(handle).get("fingerprint")
    if not fingerprint:  # not made by our data tool: whatever identifies its contents
        fingerprint = "%s %d %d %s" % (file_sha256(os.path.join(base, "classes.txt")),
                                       counts["train"], counts["val"],
                                       file_sha256(os.path.join(base, "mean.binaryproto")))
    return DataInfo(settings.lmdb_dir, len(classes), counts["train"], counts["val"], fingerprint)


def prepare_data(settings) -> DataInfo:
    """Draw the stand-in and convert it (each a no-op when current), then check."""
    if settings.standin_dir is not None:
        from ..data import imagenet, imagenet_sources, standin
        config = settings.standin or standin.StandinConfig()
        factory = settings.progress_factory
        try:
            standin.generate(settings.path(settings.standin_dir), config, force=True,
                             jobs=settings.jobs, log=settings.log,
                             progress_factory=(lambda total: factory(total, "drawing", "img"))
                             if factory else None)
            sources = imagenet_sources.resolve(settings.path(settings.standin_dir))
            imagenet.prepare(sources, settings.path(settings.lmdb_dir), imagenet.Options(),
                             repo=settings.repo, jobs=settings.jobs, log=settings.log,
                             progress_factory=factory)
        except (standin.StandinError, imagenet_sources.SourceError, imagenet.DataError) as err:
            raise SmokeError("preparing the stand-in data: %s" % err) from None
    return check_data(settings)


def net_class_count(net_param, score_blob: str) -> int:
    """num_output of the layer that writes the class scores."""
    for layer in net_param.layer:
        if score_blob in layer.top and layer.type == "InnerProduct":
            return layer.inner_product_param.num_output
    raise SmokeError("the net %s has no InnerProduct layer writing %r" % (net_param.name,
                                                                           score_blob))


def check_class_count(net_param, arch, data: DataInfo):
    count = net_class_count(net_param, arch.score)
    if count != data.classes:
        raise SmokeError("class count mismatch: the %s net %s scores %d classes (layer writing "
                         "%r) but the data %s lists %d; build the nets for the data's class "
                         "count (leave out --num-classes, or give --num-classes %d)"
                         % (arch.key, net_param.name, count, arch.score,
                            data.path("classes.txt"), data.classes, data.classes))


def checked_prototxt(arch, variant: str, options, data: DataInfo, generated_by: str) -> str:
    """The text of a generated net, its class count checked against the data's."""
    from ..nets import variants
    if variant != "deploy":
        check_class_count(variants.build(arch, variant, options), arch, data)
    return variants.prototxt(arch, variant, options, generated_by=generated_by)
