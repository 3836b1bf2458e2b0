"""What the unlabelled term of journal Eq. 19 does over a semi-supervised GG
run: for each snapshot of a semi_gg run (gencaffe.experiments.semi_runs), the
class scores of fixed mixed batches (the first batches the run's two Data
layers give: labelled records cycled, unlabelled records in key order) from a
pycaffe forward pass, and from them, per snapshot:

* pseudo_accuracy: how often the term's class, argmax_y [log p_y(x) + log rho_y]
  with log p_y(x_j) = F[j, y] - log sum_k exp F[k, y] (the batch estimate),
  is the unlabelled record's true label (read from the split's source LMDB);
* classifier_accuracy: the same for the net's own prediction argmax_y F[j, y];
* agreement: how often the two pick the same class;
* class_share: the share of the unlabelled records whose term goes to each
  class (its largest entry and normalised entropy say whether the term
  collapses onto a few classes);
* ess: the layer's ESS top (mean over the classes present of ESS_c / n);
* loss, labelled_term, unlabelled_term: the layer's loss and its two parts.

And for the final snapshot, the test accuracy of two classifiers made of the
same scores: the net's argmax_y f_y(x) (what Caffe's Accuracy layer reports),
and the generative model's own Bayes rule argmax_y [f_y(x) - log Z_y + log
rho_y], with Z_y = mean over unlabelled train images of exp f_y (journal Sec.
4.1: p_y(x) = exp(f_y(x)) q(x) / Z_y). GG's loss and gradient do not change
when a constant is added to one class's scores, so GG never learns the
per-class offsets that the first rule depends on; the second rule does not
depend on them.

The images are Caffe's: a Data layer reads each LMDB with the run's own
transform_param in the TEST phase (mean, scale, centre crop, no mirror), so
the net sees what its test passes see; records are in key order and the
labelled ones cycle, as in training. The net is LeNet's deploy net (MNIST) or
the caller's (deploy_text, e.g. AlexNet for Tiny ImageNet); the scores are the
GenerativeLoss layer's first bottom.

The arg-max is recomputed here in NumPy (the layer does not output it), so
every snapshot's first batch is also run through Caffe's own GenerativeLoss
layer and the loss and ESS computed here must match Caffe's to 1e-4 (else
DiagnosticsError): the arg-max is then the layer's, since the loss sums the
maximised terms.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..atomic_io import atomic_write
from ..pycaffe_net import net_from_param
from .feature_health import blob_features

DIAGNOSTICS_NAME = "diagnostics.json"
FORMAT_VERSION = 2


class DiagnosticsError(RuntimeError):
    pass


# ------------------------------------------------------------------ the math

def column_logsumexp(scores: np.ndarray) -> np.ndarray:
    top = scores.max(axis=0)
    return top + np.log(np.exp(scores - top).sum(axis=0))


def eq19_batch(scores: np.ndarray, labels: np.ndarray, log_prior: np.ndarray,
               unlabeled_weight: float, unlabeled_label: int = -1) -> Dict[str, object]:
    """The semi-supervised GenerativeLoss of one batch (every example kept,
    normalisation VALID, as the generated nets use it): loss, ESS top, the
    unlabelled examples' target classes and the two terms (per example)."""
    scores = np.asarray(scores, dtype=np.float64)
    n, classes = scores.shape
    lse = column_logsumexp(scores)
    log_p = scores - lse + np.log(n)             # log p_y(x_j), batch estimate
    unlabelled = labels == unlabeled_label
    targets = labels.astype(np.int64).copy()
    targets[unlabelled] = np.argmax(log_p[unlabelled] + log_prior, axis=1)
    rows = np.arange(n)
    labelled_terms = log_p[rows[~unlabelled], targets[~unlabelled]]
    unlabelled_terms = (log_p + log_prior)[rows[unlabelled], targets[unlabelled]]
    objective = labelled_terms.sum() + unlabeled_weight * unlabelled_terms.sum()
    weights = np.exp(scores - lse)               # softmax down the batch, per column
    mass = np.bincount(targets[~unlabelled], minlength=classes).astype(np.float64)
    mass += unlabeled_weight * np.bincount(targets[unlabelled], minlength=classes)
    present = mass > 0
    ess = (1.0 / (weights ** 2).sum(axis=0))[present].mean() / n if present.any() else 0.0
    return {"loss": -objective / n, "ess": ess, "targets": targets, "unlabelled": unlabelled,
            "labelled_term": labelled_terms.mean() if len(labelled_terms) else float("nan"),
            "unlabelled_term": unlabelled_terms.mean() if len(unlabelled_terms)
            else float("nan")}


def normalised_entropy(shares: np.ndarray) -> float:
    shares = np.asarray(shares, dtype=np.float64)
    nonzero = shares[shares > 0]
    return float(-(nonzero * np.log(nonzero)).sum() / np.log(len(shares)))


# ------------------------------------------------------------------ data

@dataclass
class Batches:
    images: List[np.ndarray]      # per batch: N x C x H x W float32, as the Data layer gives
    labels: List[np.ndarray]      # per batch: N labels as the loss sees them (-1 = unlabelled)
    truth: List[np.ndarray]       # per batch: N true labels


def _keys_labels(db_path: str, count: int, cycle: bool):
    """The first `count` (key, label) of db_path in key order; with `cycle`,
    wrapping around to the first record as Caffe's Data layer does."""
    from caffe.proto import caffe_pb2
    from ..data.splits import readonly_env
    out = []
    with readonly_env(db_path) as env, env.begin() as txn:
        while len(out) < count:
            before = len(out)
            for key, value in txn.cursor():
                if len(out) >= count:
                    break
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                out.append((key.decode("utf-8", "replace"), datum.label))
            if not cycle or len(out) == before:
                break
    return out


def reader_net(db_path: str, transform_param, batch: int, repo: Optional[str] = None):
    """A pycaffe net of one Data layer: db_path through transform_param (a
    caffe_pb2.TransformationParameter; mirror off, a relative mean_file taken
    relative to repo) in the TEST phase, `batch` records per forward pass."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="data", type="Data", top=["data", "label"])
    layer.data_param.source = db_path
    layer.data_param.batch_size = batch
    layer.data_param.backend = caffe_pb2.DataParameter.LMDB
    if transform_param is not None:
        layer.transform_param.CopyFrom(transform_param)
    layer.transform_param.mirror = False
    mean = layer.transform_param.mean_file
    if mean and repo and not os.path.isabs(mean):
        layer.transform_param.mean_file = os.path.join(repo, mean)
    return net_from_param(net)


def caffe_images(db_path: str, transform_param, count: int, batch: int = 100,
                 repo: Optional[str] = None) -> np.ndarray:
    """The first `count` images of db_path as Caffe's Data layer gives them
    (reader_net), wrapping around to the first record like it."""
    reader = reader_net(db_path, transform_param, batch, repo)
    parts, have = [], 0
    while have < count:
        reader.forward()
        parts.append(np.array(reader.blobs["data"].data[:count - have], dtype=np.float32))
        have += len(parts[-1])
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def true_labels(source_lmdb: str, keys: Sequence[str]) -> Dict[str, int]:
    from caffe.proto import caffe_pb2
    from ..data.splits import readonly_env
    found = {}
    with readonly_env(source_lmdb) as env, env.begin() as txn:
        for key in keys:
            value = txn.get(key.encode("utf-8"))
            if value is None:
                raise DiagnosticsError("key %s is not in the split's source %s"
                                       % (key, source_lmdb))
            datum = caffe_pb2.Datum()
            datum.ParseFromString(value)
            found[key] = datum.label
    return found


def mixed_batches(split_dir: str, manifest: dict, labelled_batch: int, unlabelled_batch: int,
                  count: int, transform_param=None, repo: Optional[str] = None) -> Batches:
    """The first `count` TRAIN batches of the semi_gg net on this split: its
    labelled Data layer cycles through labelled_lmdb, the unlabelled one reads
    unlabelled_lmdb in key order; concatenated labelled first."""
    labelled_db = os.path.join(split_dir, "labelled_lmdb")
    unlabelled_db = os.path.join(split_dir, "unlabelled_lmdb")
    labelled = _keys_labels(labelled_db, labelled_batch * count, True)
    unlabelled = _keys_labels(unlabelled_db, unlabelled_batch * count, False)
    if len(unlabelled) < unlabelled_batch * count:
        count = len(unlabelled) // unlabelled_batch
        unlabelled = unlabelled[:unlabelled_batch * count]
    labelled = labelled[:labelled_batch * count]
    images_l = caffe_images(labelled_db, transform_param, len(labelled), labelled_batch, repo)
    images_u = caffe_images(unlabelled_db, transform_param, len(unlabelled), unlabelled_batch,
                            repo)
    truth = true_labels(manifest["source"]["path"], [key for key, _ in unlabelled])
    batches = Batches([], [], [])
    for b in range(count):
        part_l = labelled[b * labelled_batch:(b + 1) * labelled_batch]
        part_u = unlabelled[b * unlabelled_batch:(b + 1) * unlabelled_batch]
        batches.images.append(np.concatenate([
            images_l[b * labelled_batch:(b + 1) * labelled_batch],
            images_u[b * unlabelled_batch:(b + 1) * unlabelled_batch]]))
        batches.labels.append(np.array([label for _, label in part_l + part_u], dtype=np.int64))
        batches.truth.append(np.array([label for _, label in part_l] +
                                      [truth[key] for key, _ in part_u], dtype=np.int64))
    return batches


# ------------------------------------------------------------------ Caffe

def caffe_loss_net(batch: int, classes: int, unlabeled_weight: float, prior: Sequence[float]):
    """A pycaffe net: Input scores and labels -> Caffe's semi-supervised GenerativeLoss."""
    import caffe
    from caffe import layers as L
    n = caffe.NetSpec()
    n.scores = L.Input(input_param=dict(shape=dict(dim=[batch, classes])))
    n.label = L.Input(input_param=dict(shape=dict(dim=[batch])))
    param = dict(semi_supervised=True, unlabeled_weight=unlabeled_weight)
    if prior:
        param["class_prior"] = list(prior)
    n.loss, n.ess = L.GenerativeLoss(n.scores, n.label, ntop=2, loss_weight=[1, 0],
                                     generative_loss_param=param)
    return net_from_param(n.to_proto())


def deploy_net(batch: int, deploy_text: Optional[str] = None):
    """A deploy prototxt file for `batch` images: deploy_text's (its first
    layer an Input) or, without it, LeNet's (the generator's); the caller
    removes the file."""
    import tempfile
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    if deploy_text is None:
        from ..nets import catalog, variants
        net = variants.build(catalog.architecture("lenet"), "deploy")
    else:
        net = text_format.Merge(deploy_text, caffe_pb2.NetParameter())
    if not net.layer or net.layer[0].type != "Input":
        raise DiagnosticsError("the deploy net must start with an Input layer (it starts with "
                               "%s)" % (net.layer[0].type if net.layer else "nothing"))
    net.layer[0].input_param.shape[0].dim[0] = batch
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text_format.MessageToString(net))
        return handle.name


def lmdb_images(db_path: str, limit: int, transform_param=None, batch: int = 100,
                repo: Optional[str] = None):
    """(images N x C x H x W float32 as the Data layer gives them, labels) of
    the first `limit` records of db_path."""
    records = _keys_labels(db_path, limit, False)
    images = caffe_images(db_path, transform_param, len(records), batch, repo)
    return images, np.array([label for _, label in records], dtype=np.int64)


def scores_of(net, images: np.ndarray, blob: str = "ip2") -> np.ndarray:
    return blob_features(net, images, [blob])[blob]


def generative_classifier(net, reference: np.ndarray, test_images: np.ndarray,
                          test_labels: np.ndarray, log_prior: np.ndarray,
                          blob: str = "ip2") -> Dict[str, float]:
    """Test accuracy of argmax f_y and of the Bayes rule with log Z_y estimated
    on the reference (unlabelled train) images."""
    log_z = column_logsumexp(scores_of(net, reference, blob)) - np.log(len(reference))
    scores = scores_of(net, test_images, blob)
    return {"classifier_test_accuracy": float((scores.argmax(axis=1) == test_labels).mean()),
            "generative_test_accuracy": float(((scores - log_z + log_prior).argmax(axis=1)
                                               == test_labels).mean()),
            "reference_images": int(len(reference)), "test_images": int(len(test_images))}


def analyse(run_dir: str, snapshots: Dict[int, str], split_dir: str, manifest: dict,
            net_param, batches_count: int = 20, test_lmdb: Optional[str] = None,
            reference_images: int = 10000, deploy_text: Optional[str] = None,
            repo: Optional[str] = None) -> dict:
    """Per-snapshot statistics (the module docstring) of one semi_gg run.

    net_param: the run's train net (NetParameter), for its batch sizes, data
    transformation, lambda, class prior and score blob; deploy_text: its
    deploy net (default LeNet's); repo: what relative paths in the net
    (mean_file) are relative to."""
    import caffe
    caffe.set_mode_cpu()
    data_layers = [l for l in net_param.layer if l.type == "Data" and l.include
                   and l.include[0].phase == caffe.TRAIN]
    labelled_batch, unlabelled_batch = (l.data_param.batch_size for l in data_layers)
    transform = data_layers[0].transform_param
    loss = next(l for l in net_param.layer if l.type == "GenerativeLoss")
    blob = loss.bottom[0]
    lam = loss.generative_loss_param.unlabeled_weight
    prior = list(loss.generative_loss_param.class_prior)
    batch = labelled_batch + unlabelled_batch
    batches = mixed_batches(split_dir, manifest, labelled_batch, unlabelled_batch,
                            batches_count, transform, repo)
    classes = manifest["classes"]
    log_prior = np.log(np.asarray(prior) / np.sum(prior)) if prior else \
        np.full(classes, -np.log(classes))
    deploy_path = deploy_net(batch, deploy_text)
    checker = caffe_loss_net(batch, classes, lam, prior)
    rows = []
    try:
        for iteration in sorted(snapshots):
            net = caffe.Net(deploy_path, caffe.TEST, weights=snapshots[iteration])
            per = {"pseudo": [], "classifier": [], "agree": [], "loss": [], "ess": [],
                   "labelled_term": [], "unlabelled_term": [], "targets": []}
            for index, (images, labels, truth) in enumerate(zip(batches.images, batches.labels,
                                                                batches.truth)):
                net.blobs["data"].data[...] = images
                net.forward()
                scores = np.array(net.blobs[blob].data, dtype=np.float64).reshape(batch, -1)
                result = eq19_batch(scores, labels, log_prior, lam)
                if index == 0:
                    check_against_caffe(checker, scores, labels, result)
                u = result["unlabelled"]
                predicted = np.argmax(scores, axis=1)
                per["pseudo"].append(result["targets"][u] == truth[u])
                per["classifier"].append(predicted[u] == truth[u])
                per["agree"].append(predicted[u] == result["targets"][u])
                per["targets"].append(result["targets"][u])
                for name in ("loss", "ess", "labelled_term", "unlabelled_term"):
                    per[name].append(result[name])
            targets = np.concatenate(per["targets"])
            share = np.bincount(targets, minlength=classes) / float(len(targets))
            rows.append({
                "iteration": iteration,
                "pseudo_accuracy": float(np.concatenate(per["pseudo"]).mean()),
                "classifier_accuracy": float(np.concatenate(per["classifier"]).mean()),
                "agreement": float(np.concatenate(per["agree"]).mean()),
                "class_share": share.tolist(),
                "largest_class_share": float(share.max()),
                "class_entropy": normalised_entropy(share),
                **{name: float(np.mean(per[name])) for name in
                   ("loss", "ess", "labelled_term", "unlabelled_term")}})
        final = None
        if test_lmdb and snapshots:
            net = caffe.Net(deploy_path, caffe.TEST, weights=snapshots[max(snapshots)])
            reference, _ = lmdb_images(os.path.join(split_dir, "unlabelled_lmdb"),
                                       reference_images, transform, batch, repo)
            test_images, test_labels = lmdb_images(test_lmdb, 10 ** 9, transform, batch, repo)
            final = dict(generative_classifier(net, reference, test_images, test_labels,
                                               log_prior, blob), iteration=max(snapshots))
    finally:
        os.unlink(deploy_path)
    return {"format_version": FORMAT_VERSION, "run_dir": run_dir, "batches": len(batches.images),
            "labelled_batch": labelled_batch, "unlabelled_batch": unlabelled_batch,
            "unlabeled_weight": lam, "snapshots": rows, "final": final}


def check_against_caffe(checker, scores, labels, result, tolerance=1e-4):
    checker.blobs["scores"].data[...] = scores
    checker.blobs["label"].data[...] = labels
    out = checker.forward()
    for name in ("loss", "ess"):
        caffe_value = float(out[name])
        ours = float(result[name])
        if abs(caffe_value - ours) > tolerance * max(1.0, abs(caffe_value)):
            raise DiagnosticsError("the diagnostic's %s %.6g differs from Caffe's "
                                   "GenerativeLoss %.6g on the same batch: the NumPy "
                                   "recomputation of Eq. 19 is not the layer's"
                                   % (name, ours, caffe_value))


def read(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def cached(path: str, weights_sha256: str, batches: int) -> Optional[dict]:
    """The diagnostics at path if they were made for these final weights, this
    batch count and this module's format; else None (compute them again)."""
    found = read(path)
    if found and found.get("weights_sha256") == weights_sha256 and \
            found.get("batches_requested") == batches and \
            found.get("format_version") == FORMAT_VERSION:
        return found
    return None


def save(path: str, result: dict, weights_sha256: str, batches: int) -> dict:
    """Write result with what `cached` checks; returns it."""
    result = dict(result, weights_sha256=weights_sha256, batches_requested=batches)
    write(path, result)
    return result


def write(path: str, result: dict) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
        handle.write("\n")
