"""Table 3 on real ImageNet photographs: semi-supervised GG + DG tuning against
DG with few labels, AlexNet on Tiny ImageNet-200, resumably
(tools/reproduce_tiny_imagenet_semi.py).

For each labelled fraction (the paper's 50,000 / 100,000 / 300,000 of
ILSVRC-2012's 1,281,167 train images, i.e. 3.9 / 7.8 / 23.4 %: 2,342 / 4,683 /
14,050 of Tiny ImageNet's 60,000) and seed, a split of the train LMDB
(gencaffe.data.splits: uniformly at random, the paper's choice, or
class-balanced; the seed picks the subset) and three runs with the same
budget of epochs (240 iterations of 250 images each):

    dg          DG on the labelled subset alone, E epochs
                (solvers/alexnet_tiny_semi_dg.prototxt)
    semi_gg     semi-supervised GG (journal Eq. 19, lambda 0.1, rho = the
                labelled subset's class frequencies) on mixed batches, S epochs
                (solvers/alexnet_tiny_semi_gg.prototxt); evaluated on its own too
    semi_gg_dg  semi_gg's epoch-S snapshot, then DG tuning on the labelled
                subset for E - S epochs (solvers/alexnet_tiny_semi_dg_tune.prototxt,
                base_lr 0.003, -weights)

E = 9 and S = 6 unless Settings.epochs scales them. Each mixed batch holds
the subset's own share of labelled images (10, 20 and 59 of 250: the paper
drew its batches from the whole train set, so its labelled share was the
subset's), so in one epoch both Data layers read their LMDB once: labelled
240 x 10 = 2,400 reads of 2,342, unlabelled 240 x 240 = 57,600 of 57,658 (the
last 58 in the LMDB's shuffled order are not read).

Runs go one epoch per caffe process as in gencaffe.experiments.tiny_imagenet
(each process starts its Data layers at the first record and every epoch has
a fixed seed: a stopped run resumes to the same weights). The semi_gg
snapshots of every epoch are kept, for the unlabelled term's diagnostics.

Layout: splits under splits_dir/<fraction>_seed<N>/ (tools/make_semi_split.py's
outputs); runs under runs_dir/<fraction>/seed<N>/<approach>/epoch<k>/, with
deploy.prototxt and eval.5crop.json beside the epochs.
"""
import math
import os
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from . import tiny_imagenet as tiny
from .imagenet_data import DataInfo

PAPER_TRAIN_IMAGES = 1281167                    # ILSVRC-2012 train
FRACTIONS = {"50k": 50000, "100k": 100000, "300k": 300000}   # Table 3's labelled counts
PAPER_TOP1 = {"50k": {"dg": 92.2, "semi_gg_dg": 89.2}, "100k": {"dg": 78.7, "semi_gg_dg": 75.0},
              "300k": {"dg": 61.3, "semi_gg_dg": 57.7}}
APPROACHES = ("dg", "semi_gg", "semi_gg_dg")
DEFAULT_SEEDS = (1, 2)   # the minimum of 2 seeds per fraction
TITLES = {"dg": "DG, labelled subset only", "semi_gg": "semi-supervised GG alone",
          "semi_gg_dg": "semi-supervised GG + DG tuning"}
SOLVER = {"dg": "semi_dg", "semi_gg": "semi_gg", "semi_gg_dg": "semi_dg_tune"}
VARIANT = {"dg": "semi_dg", "semi_gg": "semi_gg", "semi_gg_dg": "semi_dg"}
ARCH = "alexnet"


@dataclass
class Settings(tiny.Settings):
    runs_dir: str = "runs/tiny_imagenet_semi"
    splits_dir: str = "data/tiny_imagenet/semi"
    fractions: Sequence[str] = tuple(FRACTIONS)
    semi_seeds: Sequence[int] = DEFAULT_SEEDS
    approaches: Sequence[str] = APPROACHES
    balanced: bool = False                 # the paper: "a random subset"
    labelled_share: Optional[float] = None    # None: the subset's own share of the train set
    unlabeled_weight: Optional[float] = None  # None: the generator's lambda (0.1, the paper's)
    uniform_prior: bool = False            # the paper: rho = class frequencies (here the subset's)
    diagnostic_batches: int = 20           # mixed batches per semi GG snapshot (0: none)
    archs: Sequence[str] = (ARCH,)
    seeds: Dict[str, Sequence[int]] = field(default_factory=dict)


def labelled_count(fraction: str, train_count: int) -> int:
    """Table 3's labelled share of ILSVRC-2012 applied to this train set."""
    if fraction not in FRACTIONS:
        raise tiny.TinyError("unknown fraction %r (one of %s)" % (fraction, ", ".join(FRACTIONS)))
    return int(round(train_count * FRACTIONS[fraction] / float(PAPER_TRAIN_IMAGES)))


def split_dir(settings: Settings, fraction: str, seed: int) -> str:
    return os.path.join(settings.splits_dir, "%s_seed%d" % (fraction, seed))


def make_split(settings: Settings, data: DataInfo, fraction: str, seed: int) -> dict:
    """The split of the train LMDB for (fraction, seed): made, or found current."""
    from ..data import splits
    request = splits.SplitRequest(labelled=labelled_count(fraction, data.train_count),
                                  seed=seed, balanced=settings.balanced,
                                  num_classes=data.classes)
    try:
        return splits.make_split(settings.path(data.path("train_lmdb")),
                                 settings.path(split_dir(settings, fraction, seed)), request,
                                 log=settings.log)
    except splits.SplitError as err:
        raise tiny.TinyError("split %s seed %d: %s" % (fraction, seed, err)) from None


@dataclass(frozen=True)
class SemiSchedule:
    epochs: int
    switch: int
    iters_per_epoch: int
    stepsize: int


def schedule(settings: Settings, data: DataInfo, train_batch: int) -> SemiSchedule:
    """E and S from the committed solvers (E = the DG solver's epochs = S + the
    tuning stage's, checked), scaled by Settings.epochs; the lr step stays the
    committed solver's, in epochs (a cut of the paper's schedule)."""
    load = lambda stage: tiny.load_template(settings, ARCH, SOLVER[stage])
    epochs_of = lambda stage: tiny.template_epochs(load(stage), tiny.solver_template(
        ARCH, SOLVER[stage]))
    committed, first, second = epochs_of("dg"), epochs_of("semi_gg"), epochs_of("semi_gg_dg")
    if first + second != committed:
        raise tiny.TinyError("the semi-supervised GG (%d epochs) and tuning (%d) solvers do not "
                             "add up to the DG solver's %d epochs: the approaches would not "
                             "get the same budget" % (first, second, committed))
    epochs = settings.epochs or committed
    if epochs < 2:
        raise tiny.TinyError("semi-supervised GG + DG needs at least 2 epochs, got %d" % epochs)
    switch = min(epochs - 1, max(1, int(round(epochs * first / float(committed)))))
    iters = int(math.ceil(data.train_count / float(train_batch)))
    dg = load("dg")
    step_epochs = dg.stepsize / float(dg.test_interval)   # in epochs, whatever E
    return SemiSchedule(epochs, switch, iters, max(1, int(round(step_epochs * iters))))


def net_text(settings: Settings, data: DataInfo, approach: str, fraction: str, seed: int,
             manifest: dict) -> str:
    from ..nets import semi, variants
    arch, options = tiny.net_spec(ARCH, data, settings)
    base = replace(arch.semi_data, test_source=options.data.test_source,
                   mean_file=options.data.mean_file, train_batch=options.data.train_batch,
                   test_batch=options.data.test_batch)
    share = settings.labelled_share
    if share is None:
        share = manifest["counts"]["labelled"] / float(manifest["pool"])
    try:
        net_options = semi.split_options(
            arch, split_dir(settings, fraction, seed), manifest, data=base,
            num_classes=data.classes, labelled_share=share,
            unlabeled_weight=settings.unlabeled_weight,
            uniform_prior=settings.uniform_prior or VARIANT[approach] == "semi_dg")
        return variants.prototxt(arch, VARIANT[approach], net_options,
                                 generated_by="tools/reproduce_tiny_imagenet_semi.py (the "
                                              "split's paths and class prior)")
    except ValueError as err:   # an option out of range, e.g. --labelled-share 0
        raise tiny.TinyError(str(err)) from None


def run_root(settings: Settings, fraction: str, seed: int, approach: str) -> str:
    return os.path.join(settings.runs_dir, fraction, "seed%d" % seed, approach)


def chain(settings: Settings, data: DataInfo, fraction: str, seed: int, approach: str,
          sched: SemiSchedule, manifest: dict) -> List[tiny.Chunk]:
    template = tiny.load_template(settings, ARCH, SOLVER[approach])
    net = net_text(settings, data, approach, fraction, seed, manifest)
    test_iter = int(math.ceil(data.val_count / float(tiny.batches(ARCH, data, settings)[1])))
    fingerprint = "%s split %s" % (data.fingerprint, manifest.get("sha256"))
    stage2 = approach == "semi_gg_dg"
    previous = None
    if stage2:
        previous = chain(settings, data, fraction, seed, "semi_gg", sched, manifest)[-1]
    first = sched.switch + 1 if stage2 else 1
    count = {"dg": sched.epochs, "semi_gg": sched.switch,
             "semi_gg_dg": sched.epochs - sched.switch}[approach]
    return tiny.epoch_chunks(
        settings, template, {"train_val.prototxt": net}, fingerprint, arch=ARCH,
        approach=approach, seed=seed, title="%s %s seed %d" % (fraction, TITLES[approach], seed),
        run_root=run_root(settings, fraction, seed, approach),
        epochs=range(first, first + count),
        iters_per_epoch=sched.iters_per_epoch, stepsize=sched.stepsize, test_iter=test_iter,
        previous=previous, stage2=stage2,
        keep_epochs=range(1, sched.switch + 1) if approach == "semi_gg" else ())


def full_chain(settings: Settings, data: DataInfo, fraction: str, seed: int, approach: str,
               sched: SemiSchedule, manifest: dict) -> List[tiny.Chunk]:
    """Every chunk a run's numbers rest on: the tuning's semi GG run, then its own."""
    chunks = chain(settings, data, fraction, seed, approach, sched, manifest)
    if approach == "semi_gg_dg":
        return chain(settings, data, fraction, seed, "semi_gg", sched, manifest) + chunks
    return chunks


def run_key(fraction: str, seed: int, approach: str) -> str:
    """The run's name in the ledger."""
    return "%s-seed%d-%s" % (fraction, seed, approach)


def plan(settings: Settings, data: DataInfo) -> Dict[Tuple[str, int, str], List[tiny.Chunk]]:
    """{(fraction, seed, approach): chunks}; makes (or finds) every split first."""
    batch = tiny.batches(ARCH, data, settings)[0]
    sched = schedule(settings, data, batch)
    runs = {}
    for fraction in settings.fractions:
        for seed in settings.semi_seeds:
            manifest = make_split(settings, data, fraction, seed)
            for approach in settings.approaches:
                runs[(fraction, seed, approach)] = chain(settings, data, fraction, seed, approach,
                                                         sched, manifest)
    return runs


def tasks(settings: Settings, runner: tiny.Runner, data: DataInfo):
    """Per fraction and seed: the DG run, and semi GG then its DG tuning (each
    followed by its 5-crop evaluation); the first seed of every fraction first.
    Runs the ledger holds (Settings.ledger_dir) are left out."""
    from ..data import splits
    runs = plan(settings, data)
    sched = schedule(settings, data, tiny.batches(ARCH, data, settings)[0])
    manifests = {(f, s): splits.load(settings.path(split_dir(settings, f, s)))
                 for f, s, _ in runs}
    describe = (lambda k: "%s %s seed %d" % (k[0], TITLES[k[2]], k[1]))
    work = tiny.ledger_work(
        settings, runner, data, runs,
        lambda k: full_chain(settings, data, k[0], k[1], k[2], sched, manifests[k[:2]]),
        lambda k: run_key(*k), lambda k: (k[0], k[1], "semi_gg") if k[2] == "semi_gg_dg" else None,
        describe)
    order = []
    for seed in settings.semi_seeds:
        for fraction in settings.fractions:
            for group in (("dg",), ("semi_gg", "semi_gg_dg")):
                keys = [(fraction, seed, a) for a in group if (fraction, seed, a) in runs]
                if keys:
                    order.append(keys)
    return [(", ".join(map(describe, keys)), work(keys)) for keys in order]


__all__ = ["Settings", "full_chain", "run_key", "FRACTIONS", "APPROACHES", "TITLES",
           "labelled_count", "make_split", "schedule", "plan", "tasks", "chain"]
