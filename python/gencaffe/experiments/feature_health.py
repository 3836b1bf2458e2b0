"""Whether a net's features still depend on the image: for chosen blobs of a
deploy net, over the same images, the share of dead units, how much of the
features' second moment varies from image to image, and how many
directions that variation spreads over. Says, e.g., whether a pre-training
left features that a DG tuning can start from (tools/feature_health.py).

The statistics are plain numpy functions of an N x D array (N images, D
units of one blob, flattened); pycaffe only runs the forward passes."""
from typing import Dict, List, Optional, Sequence

import numpy as np


def dead_fraction(features: np.ndarray) -> float:
    """Share of the D units that are never positive on any of the N images:
    for a blob after a ReLU, units that pass no signal and get no gradient
    (for scores without a ReLU, e.g. fc8, the number means nothing)."""
    features = np.asarray(features, dtype=np.float64)
    return float(np.mean(features.max(axis=0) <= 0.0))


def input_dependence(features: np.ndarray) -> float:
    """Share of the features' second moment that varies across the images:
    sum_j var_j / sum_j E[x_j^2], 0 when every image gives the same features,
    1 when every unit is centred; 0 also for all-zero features."""
    features = np.asarray(features, dtype=np.float64)
    second = float(np.sum(np.mean(features ** 2, axis=0)))
    if second <= 0.0:
        return 0.0
    return float(np.sum(np.var(features, axis=0))) / second


def covariance_spectrum(features: np.ndarray) -> np.ndarray:
    """The eigenvalues of the centred features' covariance (times N), largest
    first, from the N x N Gram matrix (small where D is large), which has the
    covariance's nonzero eigenvalues; rounding's tiny negatives clipped to 0."""
    centred = np.asarray(features, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(centred @ centred.T)
    return np.clip(eigenvalues, 0.0, None)[::-1]


def _participation_ratio(spectrum: np.ndarray) -> float:
    total = float(spectrum.sum())
    return 0.0 if total <= 0.0 else total ** 2 / float(np.sum(spectrum ** 2))


def _directions_for(spectrum: np.ndarray, share: float) -> int:
    total = float(spectrum.sum())
    if total <= 0.0:
        return 0
    reached = np.cumsum(spectrum) >= share * total * (1.0 - 1e-12)
    return int(np.argmax(reached)) + 1


def effective_dimension(features: np.ndarray) -> float:
    """Participation ratio of the centred features' covariance spectrum,
    (sum lambda)^2 / sum lambda^2: 1 when the images vary along one direction,
    min(N - 1, D) at most; 0 when they do not vary at all. The largest
    eigenvalue dominates it: variation_directions shows the tail."""
    return _participation_ratio(covariance_spectrum(features))


def variation_directions(features: np.ndarray, share: float = 0.9) -> int:
    """How many principal directions hold `share` of the variation across the
    images (the fewest leading covariance eigenvalues that sum to it); 0 when
    the images do not vary at all. Unlike the participation ratio it is not
    set by the largest direction alone: a net can be 1.0 by that and still
    need dozens of directions for 90 %."""
    return _directions_for(covariance_spectrum(features), share)


def statistics_of(features: np.ndarray) -> Dict[str, float]:
    spectrum = covariance_spectrum(features)   # once: an N x N eigendecomposition
    return {"units": int(np.asarray(features).shape[1]),
            "dead_fraction": dead_fraction(features),
            "input_dependence": input_dependence(features),
            "effective_dimension": _participation_ratio(spectrum),
            "directions_90": _directions_for(spectrum, 0.9)}


def blob_features(net, images: np.ndarray, blobs: Sequence[str]) -> Dict[str, np.ndarray]:
    """{blob: N x D float64} of a pycaffe net over `images` (N x C x H x W),
    in batches of the net's input size."""
    batch = net.blobs["data"].data.shape[0]
    out: Dict[str, List[np.ndarray]] = {blob: [] for blob in blobs}
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        data = np.zeros(net.blobs["data"].data.shape, dtype=np.float32)
        data[:len(part)] = part
        net.blobs["data"].data[...] = data
        net.forward()
        for blob in blobs:
            values = np.array(net.blobs[blob].data, dtype=np.float64)
            out[blob].append(values.reshape(values.shape[0], -1)[:len(part)])
    return {blob: np.concatenate(parts) for blob, parts in out.items()}


def default_blobs(net_param) -> List[str]:
    """The tops of a NetParameter's InnerProduct layers, in order."""
    return [top for layer in net_param.layer if layer.type == "InnerProduct"
            for top in layer.top]


def markdown(rows: Sequence[tuple]) -> str:
    """rows: (weights name, blob, statistics_of(...)) -> a markdown table."""
    lines = ["| weights | blob | units | dead units | input dependence | effective dimension "
             "| directions for 90 % |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, blob, stats in rows:
        lines.append("| %s | %s | %d | %.3f | %.3f | %.1f | %d |" % (
            name, blob, stats["units"], stats["dead_fraction"], stats["input_dependence"],
            stats["effective_dimension"], stats["directions_90"]))
    return "\n".join(lines)


def measure(deploy_path: str, weights: Optional[str], images: np.ndarray,
            blobs: Sequence[str], seed: int = 1) -> Dict[str, Dict[str, float]]:
    """statistics_of each blob of the deploy net with `weights` (None: the
    prototxt's fillers, drawn with Caffe's random seed `seed`)."""
    import caffe
    if weights is None:
        caffe.set_random_seed(seed)
        net = caffe.Net(deploy_path, caffe.TEST)
    else:
        net = caffe.Net(deploy_path, caffe.TEST, weights=weights)
    missing = [blob for blob in blobs if blob not in net.blobs]
    if missing:
        raise KeyError("%s has no blob %s (it has %s)" % (
            deploy_path, ", ".join(missing), ", ".join(net.blobs)))
    return {blob: statistics_of(values)
            for blob, values in blob_features(net, images, blobs).items()}
