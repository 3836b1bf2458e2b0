"""One architecture, every variant: the DG, GG and semi-supervised GG
train_val nets and the deploy net, as NetParameter messages and as prototxt
text with a header that says where they come from.

    dg        Data -> body -> SoftmaxWithLoss (+ TEST accuracy)
    gg        Data -> body -> GenerativeLoss with its ESS top (loss weight 0)
    semi_gg   labelled + unlabelled Data, concatenated -> body ->
              GenerativeLoss in semi-supervised mode (Eq. 19, lambda 0.1)
    semi_dg   DG on the labelled subset of a semi-supervised split alone:
              the dg net reading the split's labelled LMDB (DG tuning after
              semi-supervised GG, and the DG baseline; journal Sec. 5.2)
    deploy    Input -> body -> Softmax "prob"; force_backward for HMC

Data paths, batch sizes and the class count are parameters (DataSpec,
num_classes), so a run writes its own nets with its own paths and the
committed models/ files are just the default parameters.
"""
import re
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple

from .layers import (DataSpec, accuracy_layers, deploy_input, deploy_prob, dg_loss,
                     dummy_data, gg_loss, set_engine, test_data_layer, train_data)

WHOLE_FLOAT = re.compile(r"^(\s*\w+: -?\d+)\.0$", re.M)
VARIANTS = ("dg", "gg", "semi_gg", "semi_dg", "deploy")
VARIANT_TITLES = {
    "dg": "DG: discriminative gradient, SoftmaxWithLoss (the usual softmax over classes).",
    "gg": ("GG: generative gradient, GenerativeLoss (a softmax down the batch for each\n"
           "class column); tops at loss weight 0 log the importance weights' effective\n"
           "sample size as a fraction of the batch (ess), within each class (ess_within,\n"
           "its sd ess_within_sd) and the weight on other classes' examples (cross_weight)."),
    "semi_gg": ("semi-supervised GG: GenerativeLoss with semi_supervised (journal Eq. 19,\n"
                "lambda = unlabeled_weight); each TRAIN batch concatenates labelled examples\n"
                "and unlabelled ones (label -1, the layer's unlabeled_label)."),
    "semi_dg": ("DG on the labelled subset of a semi-supervised split: SoftmaxWithLoss, the\n"
                "TRAIN data is the split's labelled LMDB (tools/make_semi_split.py); DG tuning\n"
                "after semi-supervised GG (-weights), and the DG baseline (journal Sec. 5.2)."),
    "deploy": ("deploy: Input \"data\" -> class scores -> Softmax \"prob\"; force_backward\n"
               "so that pycaffe's net.backward() gives d(score)/d(data) (HMC)."),
}
# Semi-supervised batches: the labelled share of each TRAIN batch when the
# caller gives none (docs/semi_supervised.md). The paper's batches
# were random draws of the whole train set, so their labelled share was the
# subset's: about 4, 8 and 23 % for 50k, 100k and 300k ImageNet labels (journal
# Sec. 5.2), while with 100 labels among 50,000 MNIST images a random batch of
# 64 holds a labelled image in one batch of 8 and Eq. 19's labelled term
# vanishes from the others. A fixed
# share keeps labelled images in every batch; 1/8 (8 of 64, 32 of 256) lies
# inside the paper's range and keeps the unlabelled images the bulk of each
# batch, as they were there. Measured on held-out train images (seed 1, k = 100
# and 1000, results/mnist_semi_pilot/): 1/8 and 1/4 gave the same error after
# DG tuning within a seed's spread, 1/2 a worse one.
DEFAULT_LABELLED_SHARE = 0.125
DEFAULT_UNLABELED_WEIGHT = 0.1   # lambda, journal Sec. 4.5 / 5.2


@dataclass(frozen=True)
class Architecture:
    key: str                       # file-system name: models/<key>/
    name: str                      # the net's name: field
    body: Callable                 # body(n, num_classes) -> the score Top
    score: str                     # name of the class-score blob
    num_classes: int
    deploy_shape: Tuple[int, ...]  # Input shape of the deploy net
    accuracy_top_k: Tuple[int, ...]
    data: DataSpec                 # the committed DG/GG nets' data
    semi_data: DataSpec            # the committed semi-supervised net's data
    files: Dict[str, str]          # variant -> file name under models/<key>/
    about: str                     # header lines
    # input size -> the body's keyword arguments for it (what a resolution
    # forces, e.g. AlexNet's conv1 stride); None: the body takes none
    resolution: Optional[Callable[[int], Dict[str, int]]] = None

    @property
    def input_size(self):
        return self.deploy_shape[2]

    def body_options(self) -> Dict[str, int]:
        return self.resolution(self.input_size) if self.resolution else {}

    def at_input_size(self, size: int, **changes) -> "Architecture":
        """The same net for size x size input crops: the deploy shape and the
        data layers' crop_size, and whatever the body's `resolution` rule
        changes at that size; `changes` replace other fields (key, data, ...)."""
        if self.resolution is None:
            raise ValueError("%s has no input-size option (its definition fixes the input)"
                             % self.name)
        if size < 1:
            raise ValueError("input size must be positive, got %d" % size)
        shape = self.deploy_shape[:2] + (size, size)
        arch = replace(self, deploy_shape=shape, data=self.data.with_crop(size),
                       semi_data=self.semi_data.with_crop(size))
        return replace(arch, **changes)


IMAGENET_DATA = DataSpec(
    # tools/make_imagenet_lmdb.py writes these (docs/imagenet.md)
    train_source="data/imagenet/train_lmdb",
    test_source="data/imagenet/val_lmdb",
    mean_file="data/imagenet/mean.binaryproto",
    # Caffe's ImageNet example (models/bvlc_alexnet/train_val.prototxt):
    # batch 256 ("a batch size of 256", journal Sec. 5.1), val batch 50
    # (1000 test iterations = the 50,000 val images), random mirror in TRAIN
    train_batch=256, test_batch=50, mirror=True,
)
# the labelled subset and the rest, unlabelled (the semi-supervised split tool)
IMAGENET_SEMI_DATA = replace(IMAGENET_DATA, train_source="data/imagenet/semi/labelled_lmdb",
                             unlabelled_source="data/imagenet/semi/unlabelled_lmdb")
# the file names of the ImageNet nets' variants under models/<key>/ (upstream's
# models/bvlc_alexnet naming: train_val + deploy)
IMAGENET_FILES = {"dg": "train_val_dg.prototxt", "gg": "train_val_gg.prototxt",
                  "semi_gg": "train_val_semi_gg.prototxt",
                  "semi_dg": "train_val_semi_dg.prototxt", "deploy": "deploy.prototxt"}


# Tiny ImageNet (tools/make_imagenet_lmdb.py on tiny-imagenet-200 -> data/tiny_imagenet):
# 200 classes, 64x64 images; the nets crop 56 (the paper's 224 of 256 scaled:
# 0.875 of the image side) and halve conv1's stride (alexnet.py, zf.py).
TINY_IMAGENET_CLASSES = 200
TINY_IMAGENET_CROP = 56
TINY_IMAGENET_DATA = DataSpec(
    train_source="data/tiny_imagenet/train_lmdb",
    test_source="data/tiny_imagenet/val_lmdb",
    mean_file="data/tiny_imagenet/mean.binaryproto",
    # batch 250, not the paper's 256: it divides the 60,000 (and the full set's
    # 100,000) train images, so every epoch ends on a batch boundary and a run
    # resumed at an epoch's end reads exactly the batches an uninterrupted run
    # reads (Caffe's Data layer restarts at the first record); val batch 50
    # (200 x 50 = the 10,000 val images)
    train_batch=250, test_batch=50, mirror=True,
)
TINY_IMAGENET_SEMI_DATA = replace(TINY_IMAGENET_DATA,
                                  train_source="data/tiny_imagenet/semi/labelled_lmdb",
                                  unlabelled_source="data/tiny_imagenet/semi/unlabelled_lmdb")


def tiny_imagenet(arch: Architecture, about: str) -> Architecture:
    """`arch` for Tiny ImageNet: 56x56 crops, 200 classes, data/tiny_imagenet/,
    committed under models/<key>_tiny/."""
    return arch.at_input_size(
        TINY_IMAGENET_CROP, key=arch.key + "_tiny", num_classes=TINY_IMAGENET_CLASSES,
        data=TINY_IMAGENET_DATA.with_crop(TINY_IMAGENET_CROP),
        semi_data=TINY_IMAGENET_SEMI_DATA.with_crop(TINY_IMAGENET_CROP), about=about)


def semi_data(data: DataSpec, labelled_share: float) -> DataSpec:
    """The data of a semi-supervised net: the batch of `data` split into a
    labelled and an unlabelled part (each at least 1 example)."""
    if not 0 < labelled_share < 1:
        raise ValueError("labelled share must be in (0, 1), got %r" % labelled_share)
    total = data.train_batch + data.unlabelled_batch if data.unlabelled_batch else data.train_batch
    labelled = min(total - 1, max(1, int(round(total * labelled_share))))
    return replace(data, train_batch=labelled, unlabelled_batch=total - labelled)


@dataclass(frozen=True)
class NetOptions:
    """Everything a generated net depends on besides its architecture."""
    data: Optional[DataSpec] = None          # None: the architecture's default
    num_classes: Optional[int] = None        # None: the architecture's
    labelled_share: float = DEFAULT_LABELLED_SHARE
    unlabeled_weight: float = DEFAULT_UNLABELED_WEIGHT
    class_prior: Tuple[float, ...] = ()      # rho_y; empty = uniform
    engine: Optional[str] = None             # "CAFFE" / "CUDNN" for every layer that has one


def build(arch: Architecture, variant: str, options: NetOptions = NetOptions()):
    """The NetParameter of one variant."""
    import caffe
    if variant not in VARIANTS:
        raise ValueError("unknown variant %r (one of %s)" % (variant, ", ".join(VARIANTS)))
    num_classes = options.num_classes or arch.num_classes
    if num_classes < 1:
        raise ValueError("num_classes must be >= 1, got %d" % num_classes)
    n = caffe.NetSpec()
    if variant == "deploy":
        deploy_input(n, arch.deploy_shape)
        score = arch.body(n, num_classes, **arch.body_options())
        deploy_prob(n, score)
        net = n.to_proto()
        net.force_backward = True
        net.name = arch.name
        return set_engine(net, options.engine) if options.engine else net

    semi = variant == "semi_gg"
    data = options.data or (arch.semi_data if variant in ("semi_gg", "semi_dg") else arch.data)
    if variant == "semi_dg":
        data = replace(data, unlabelled_source=None, unlabelled_batch=0)
    if semi:
        if not data.unlabelled_source:
            raise ValueError("the semi-supervised net needs an unlabelled data source")
        data = semi_data(data, options.labelled_share)
    if data.dummy:
        dummy_data(n, data, arch.deploy_shape[1:])
    else:
        train_data(n, data, semi_supervised=semi)
    score = arch.body(n, num_classes, **arch.body_options())
    accuracy_layers(n, score, tuple(k for k in arch.accuracy_top_k if k <= num_classes))
    if variant in ("dg", "semi_dg"):
        dg_loss(n, score)
    else:
        gg_loss(n, score, semi_supervised=semi, unlabeled_weight=options.unlabeled_weight,
                class_prior=options.class_prior)
    net = n.to_proto()
    if not data.dummy:
        # the TEST Data layer goes right after the TRAIN data layers
        first_body = next(i for i, layer in enumerate(net.layer)
                          if not (layer.include and layer.include[0].phase == caffe.TRAIN))
        layers = list(net.layer)
        layers.insert(first_body, test_data_layer(data))
        del net.layer[:]
        net.layer.extend(layers)
    net.name = "%s_%s" % (arch.name, variant.upper())
    return set_engine(net, options.engine) if options.engine else net


def header(arch: Architecture, variant: str, generated_by: str) -> str:
    lines = ["Generated by %s: do not edit (tests/test_nets.py regenerates" % generated_by,
             "and compares). Definition: python/gencaffe/nets/%s.py." % arch.key]
    lines += arch.about.splitlines()
    lines += VARIANT_TITLES[variant].splitlines()
    return "".join("# %s\n" % line if line else "#\n" for line in lines)


def prototxt(arch: Architecture, variant: str, options: NetOptions = NetOptions(),
             generated_by="tools/make_nets.py") -> str:
    from google.protobuf import text_format
    text = text_format.MessageToString(build(arch, variant, options))
    # whole-number float fields as Caffe's own prototxt write them: "lr_mult: 1"
    text = WHOLE_FLOAT.sub(r"\1", text)
    return header(arch, variant, generated_by) + text
