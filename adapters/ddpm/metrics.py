"""Sample-quality and sample-agreement metrics in the digits classifier's feature space."""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "classifier_outputs",
    "class_histogram",
    "frechet_distance",
    "frechet_permutation_test",
    "histogram_chi2_test",
]


@torch.no_grad()
def classifier_outputs(classifier, images: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(features, predicted classes)`` of images ``(B, 1, 8, 8)`` in ``[-1, 1]`` as float64 numpy."""
    feats, classes = [], []
    parameter = next(classifier.parameters())
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size].to(parameter.device, parameter.dtype)
        features = classifier.features(chunk)
        feats.append(features.double().cpu().numpy())
        classes.append(classifier.head(features).argmax(1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(classes)


def class_histogram(classes: np.ndarray, num_classes: int = 10) -> list[int]:
    """Counts of each predicted class."""
    return np.bincount(np.asarray(classes, dtype=np.int64), minlength=num_classes).tolist()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    ``FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})``, computed with
    symmetric eigendecompositions (stable for rank-deficient covariances).
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (n, d) with the same d, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T  # S_a^{1/2}
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()  # tr (.)^{1/2}
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def frechet_permutation_test(
    features_a: np.ndarray, features_b: np.ndarray, num_permutations: int, seed: int
) -> dict:
    """Permutation null of the Frechet distance between two equal-law sample sets.

    Pools both sets, re-splits them at random ``num_permutations`` times and recomputes the FD:
    the spread of FD expected from Monte Carlo noise alone at these sample sizes.

    Returns:
        ``{"observed", "null_mean", "null_std", "null_quantile_95", "p_value"}``.
    """
    observed = frechet_distance(features_a, features_b)
    pooled = np.concatenate([features_a, features_b])
    rng = np.random.default_rng(seed)
    n_a = len(features_a)
    null = []
    for _ in range(num_permutations):
        order = rng.permutation(len(pooled))
        null.append(frechet_distance(pooled[order[:n_a]], pooled[order[n_a:]]))
    null = np.asarray(null)
    return {
        "observed": observed,
        "null_mean": float(null.mean()),
        "null_std": float(null.std(ddof=1)),
        "null_quantile_95": float(np.quantile(null, 0.95)),
        "p_value": float((1 + (null >= observed).sum()) / (1 + num_permutations)),
        "num_permutations": int(num_permutations),
    }


def histogram_chi2_test(counts_a: list[int], counts_b: list[int]) -> dict:
    """Chi-square test of homogeneity of two class histograms (empty classes dropped)."""
    from scipy.stats import chi2_contingency

    table = np.asarray([counts_a, counts_b], dtype=np.float64)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return {"statistic": 0.0, "p_value": 1.0, "dof": 0}
    statistic, p_value, dof, _ = chi2_contingency(table)
    return {"statistic": float(statistic), "p_value": float(p_value), "dof": int(dof)}
