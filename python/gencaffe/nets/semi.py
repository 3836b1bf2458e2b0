"""Semi-supervised nets for a split of tools/make_semi_split.py: the data
sources of its folder and the class prior rho of its manifest.

    semi_gg   labelled_lmdb + unlabelled_lmdb, mixed batches; rho = the
              labelled subset's class frequencies (split.json "class_prior")
    semi_dg   labelled_lmdb alone
"""
import os
from dataclasses import replace
from typing import Optional, Sequence

from .layers import DataSpec
from .variants import NetOptions

LABELLED = "labelled_lmdb"
UNLABELLED = "unlabelled_lmdb"


def split_data(data: DataSpec, split_dir: str) -> DataSpec:
    """`data` (an architecture's semi_data, or any DataSpec) reading the split in split_dir."""
    return replace(data, train_source=os.path.join(split_dir, LABELLED),
                   unlabelled_source=os.path.join(split_dir, UNLABELLED))


def split_prior(manifest: dict, num_classes: int) -> tuple:
    """rho_y from a split manifest (the labelled class frequencies), checked
    against the net's class count."""
    prior = tuple(float(p) for p in manifest["class_prior"])
    if len(prior) != num_classes:
        raise ValueError("the split's class prior has %d values but the net scores %d classes "
                         "(give the net the split's class count, or split with --num-classes %d)"
                         % (len(prior), num_classes, num_classes))
    return prior


def split_options(arch, split_dir: str, manifest: dict, data: Optional[DataSpec] = None,
                  num_classes: Optional[int] = None, labelled_share: Optional[float] = None,
                  unlabeled_weight: Optional[float] = None,
                  class_prior: Optional[Sequence[float]] = None, uniform_prior: bool = False,
                  engine: Optional[str] = None) -> NetOptions:
    """NetOptions of a semi_gg / semi_dg net on the split in split_dir.

    class_prior: given values win; uniform_prior: none written (the layer's
    uniform default); otherwise the split's labelled class frequencies."""
    classes = num_classes or arch.num_classes
    if class_prior:
        prior = tuple(float(p) for p in class_prior)
    elif uniform_prior:
        prior = ()
    else:
        prior = split_prior(manifest, classes)
    options = NetOptions(data=split_data(data or arch.semi_data, split_dir),
                         num_classes=num_classes, class_prior=prior, engine=engine)
    if labelled_share is not None:
        options = replace(options, labelled_share=labelled_share)
    if unlabeled_weight is not None:
        options = replace(options, unlabeled_weight=unlabeled_weight)
    return options
