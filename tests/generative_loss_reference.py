"""Independent NumPy implementation of the generative loss (journal Eq. 15/19)
and its gradient (workshop Eq. 10 / journal Eq. 14), term by term, in float64.

It deliberately follows the paper's per-example form (for each example i, a
gradient 1[j == i] - W[j, y_i] in column y_i) rather than the layer's
column-mass form, so agreement between the two is evidence, not tautology.
"""
import numpy as np


def column_weights(scores, kept):
    """W[j, c] = exp F[j, c] / sum_k exp F[k, c] over kept rows (0 for others)."""
    f = np.where(kept[:, None], scores, -np.inf)
    f = f - f.max(axis=0, keepdims=True)
    e = np.exp(f)
    return e / e.sum(axis=0, keepdims=True)


def generative_loss(scores, labels, ignore_label=None, semi_supervised=False,
                    unlabeled_label=-1, unlabeled_weight=0.1, class_prior=None,
                    normalization="VALID", loss_weight=1.0):
    """Return (loss, dloss/dscores, ess_fraction, argmax_gap) as the layer defines them.

    argmax_gap is the smallest margin between the best and second-best class of
    any unlabelled example (inf if none): tests skip near-ties, where float32
    and float64 may legitimately choose different classes.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, c = scores.shape
    labels = np.asarray(labels).astype(int)
    kept = np.ones(n, bool) if ignore_label is None else labels != ignore_label
    m = kept.sum()
    prior = np.full(c, 1.0 / c) if class_prior is None else np.asarray(class_prior, float)
    prior = prior / prior.sum()
    grad_objective = np.zeros_like(scores)
    objective = 0.0
    gap = np.inf
    mass = np.zeros(c)
    if m == 0:
        return 0.0, grad_objective, 0.0, gap
    w = column_weights(scores, kept)
    # log( (1/M) sum_k exp F[k, c] ), max-subtracted
    top = scores[kept].max(axis=0)
    log_mean = top + np.log(np.exp(scores[kept] - top).sum(axis=0)) - np.log(m)
    for i in range(n):
        if not kept[i]:
            continue
        unlabeled = semi_supervised and labels[i] == unlabeled_label
        if unlabeled:
            values = scores[i] - log_mean + np.log(prior)
            order = np.sort(values)
            if c > 1:
                gap = min(gap, order[-1] - order[-2])
            y, weight = int(np.argmax(values)), unlabeled_weight
            objective += weight * values[y]
        else:
            y, weight = labels[i], 1.0
            objective += scores[i, y] - log_mean[y]
        mass[y] += weight
        # Eq. 10: d log p_y(x_i) / dF[j, y] = 1[j == i] - W[j, y]
        grad_objective[kept, y] -= weight * w[kept, y]
        grad_objective[i, y] += weight
    normalizer = {"FULL": n, "BATCH_SIZE": n, "VALID": m, "NONE": 1}[normalization]
    normalizer = max(1, normalizer)
    loss = -objective / normalizer
    grad = -loss_weight * grad_objective / normalizer
    present = mass > 0
    ess = (1.0 / (w[kept][:, present] ** 2).sum(axis=0)).mean() / m if present.any() else 0.0
    return loss, grad, ess, gap
