"""Statistical tests of exactness.

Every test returns a :class:`TestResult` with a p-value already corrected for the multiple
comparisons inside it (Holm), so one ``p_value < alpha`` decision per call keeps the false-alarm
rate of that call at ``alpha``.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch
from scipy import stats as sps

__all__ = [
    "TestResult",
    "PathLaw",
    "path_law",
    "path_law_test",
    "ks_projection_test",
    "energy_distance_test",
    "two_sample_test",
    "acceptance_rate_test",
    "holm",
]


@attrs.frozen
class TestResult:
    """A test's verdict.

    Attributes:
        name: What was tested.
        p_value: Holm-adjusted p-value over ``components``.
        components: ``{name: raw p-value}`` of the individual tests.
    """

    __test__ = False  # not a pytest class

    name: str
    p_value: float
    components: dict = attrs.field(factory=dict)

    def rejects(self, alpha: float) -> bool:
        """True when the test finds a difference at level ``alpha``."""
        return self.p_value < alpha


def holm(p_values) -> float:
    """The smallest Holm-adjusted p-value (the family rejects iff it is below alpha)."""
    p = np.sort(np.asarray(list(p_values), dtype=float))
    if p.size == 0:
        return 1.0
    m = p.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p))
    return float(adjusted[0])


@attrs.frozen
class PathLaw:
    """The Gaussian law of a stacked path ``(x_1, ..., x_K)`` flattened to ``K * D``."""

    mean: np.ndarray  # (K, D)
    covariance: np.ndarray  # (K*D, K*D)


def path_law(kernel, x0) -> PathLaw:
    """Closed-form law of the path of a linear chain from a fixed start ``x0``.

    ``kernel.linear_coefficients(step)`` returns ``(A, C, b, L)`` with
    ``x_{t+1} = A x_t + C x_{t-1} + b + L xi_t`` (``C`` may be None; ``x_{-1} = x_0``).
    """
    x0 = np.asarray(x0, dtype=float).ravel()
    dim, steps = x0.size, kernel.num_steps
    coefficients = [kernel.linear_coefficients(s) for s in range(steps)]
    noise_sizes = [np.atleast_2d(c[3]).shape[1] for c in coefficients]
    offsets = np.concatenate([[0], np.cumsum(noise_sizes)])
    mean_prev, mean = x0.copy(), x0.copy()
    load_prev = np.zeros((dim, offsets[-1]))
    load = np.zeros((dim, offsets[-1]))
    means, loads = [], []
    for s, (a, c, b, factor) in enumerate(coefficients):
        new_mean = a @ mean + b  # mu_{t+1} = A mu_t + C mu_{t-1} + b
        new_load = a @ load  # M_{t+1} = A M_t + C M_{t-1} + L E_t
        if c is not None:
            new_mean = new_mean + c @ mean_prev
            new_load = new_load + c @ load_prev
        new_load[:, offsets[s]: offsets[s + 1]] += np.atleast_2d(factor)
        mean_prev, load_prev, mean, load = mean, load, new_mean, new_load
        means.append(mean)
        loads.append(load)
    stacked = np.concatenate(loads, axis=0)
    return PathLaw(mean=np.stack(means), covariance=stacked @ stacked.T)


def _whitener(covariance: np.ndarray, rtol: float = 1e-10):
    values, vectors = np.linalg.eigh(covariance)
    keep = values > rtol * max(values.max(), 1e-300)
    return vectors[:, keep] / np.sqrt(values[keep]), vectors[:, ~keep]


def _gaussian_tests(z: np.ndarray, prefix: str, generator: np.random.Generator, projections: int):
    """Tests that rows of ``z`` are iid N(0, I): mean, scale, norm law, random projections."""
    n, r = z.shape
    out = {}
    out[f"{prefix}mean"] = sps.chi2.sf(n * float((z.mean(0) ** 2).sum()), r)  # n |zbar|^2 ~ chi2(r)
    total = float((z**2).sum())  # sum |z|^2 ~ chi2(n r)
    cdf = sps.chi2.cdf(total, n * r)
    out[f"{prefix}scale"] = 2 * min(cdf, 1 - cdf)
    out[f"{prefix}norms"] = sps.kstest((z**2).sum(1), sps.chi2(r).cdf).pvalue
    directions = generator.normal(size=(r, projections))
    directions /= np.linalg.norm(directions, axis=0)
    for j in range(projections):
        out[f"{prefix}projection{j}"] = sps.kstest(z @ directions[:, j], sps.norm.cdf).pvalue
    return out


def path_law_test(paths, law: PathLaw, seed: int = 0, projections: int = 8,
                  null_atol: float = 1e-6) -> TestResult:
    """Joint chi-square test of whitened paths plus per-step tests against a closed-form law.

    Args:
        paths: ``(N, K, *event)`` sampled paths ``x_1..x_K`` (a trajectory without ``x_0``,
            chains first).
        law: From :func:`path_law`.
        seed: Seed of the random projection directions.
        projections: Random 1-D projections tested per block.
        null_atol: Directions of zero variance (zero-variance steps, rectangular factors) must
            match the law's mean to this absolute tolerance; a violation gives p = 0.

    Returns:
        The Holm-adjusted result over the joint and per-step components.
    """
    paths = torch.as_tensor(paths).detach().cpu().double().numpy()
    n, steps = paths.shape[0], paths.shape[1]
    flat = paths.reshape(n, -1)
    centred = flat - law.mean.reshape(1, -1)
    generator = np.random.default_rng(seed)
    whitener, null = _whitener(law.covariance)
    components = _gaussian_tests(centred @ whitener, "joint_", generator, projections)
    if null.shape[1] and np.abs(centred @ null).max() > null_atol * (1 + np.abs(law.mean).max()):
        components["joint_null_space"] = 0.0
    dim = flat.shape[1] // steps
    for k in range(steps):
        block = slice(k * dim, (k + 1) * dim)
        w_k, _ = _whitener(law.covariance[block, block])
        if w_k.shape[1] == 0:
            continue
        components.update(_gaussian_tests(centred[:, block] @ w_k, f"step{k + 1}_", generator, 2))
    return TestResult("path law", holm(components.values()), components)


def ks_projection_test(samples_a, samples_b, num_projections: int = 16, seed: int = 0) -> TestResult:
    """Two-sample KS tests on random 1-D projections (and each coordinate), Holm-corrected."""
    a = torch.as_tensor(samples_a).detach().cpu().double().numpy().reshape(len(samples_a), -1)
    b = torch.as_tensor(samples_b).detach().cpu().double().numpy().reshape(len(samples_b), -1)
    scale = np.concatenate([a, b]).std(0)
    scale[scale == 0] = 1.0
    a, b = a / scale, b / scale
    generator = np.random.default_rng(seed)
    directions = generator.normal(size=(a.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0)
    if a.shape[1] <= 16:
        directions = np.concatenate([np.eye(a.shape[1]), directions], axis=1)
    components = {
        f"projection{j}": sps.ks_2samp(a @ directions[:, j], b @ directions[:, j]).pvalue
        for j in range(directions.shape[1])
    }
    return TestResult("KS on random projections", holm(components.values()), components)


def energy_distance_test(samples_a, samples_b, num_permutations: int = 200, seed: int = 0,
                         max_samples: int = 1000) -> TestResult:
    """Energy-distance two-sample test with a permutation p-value (Szekely and Rizzo).

    Coordinates are standardised on the pooled sample; at most ``max_samples`` per side are used.
    """
    a = torch.as_tensor(samples_a).detach().cpu().double().reshape(len(samples_a), -1)[:max_samples]
    b = torch.as_tensor(samples_b).detach().cpu().double().reshape(len(samples_b), -1)[:max_samples]
    pooled = torch.cat([a, b])
    scale = pooled.std(0)
    pooled = pooled / torch.where(scale > 0, scale, torch.ones_like(scale))
    distances = torch.cdist(pooled, pooled)
    total, n_a, n_b = len(pooled), len(a), len(b)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(total, num_permutations + 1, dtype=torch.float64)
    labels[:n_a, 0] = 1.0  # column 0: the observed split; then random relabellings
    for j in range(1, num_permutations + 1):
        labels[torch.randperm(total, generator=generator)[:n_a], j] = 1.0
    in_a, in_b = labels, 1.0 - labels
    d_a, d_b = distances @ in_a, distances @ in_b
    s_ab = (in_a * d_b).sum(0) / (n_a * n_b)
    s_aa = (in_a * d_a).sum(0) / (n_a * n_a)
    s_bb = (in_b * d_b).sum(0) / (n_b * n_b)
    energy = 2 * s_ab - s_aa - s_bb  # E-statistic for every labelling
    p = float(((energy[1:] >= energy[0]).sum() + 1) / (num_permutations + 1))
    return TestResult("energy distance", p, {"energy": p})


def two_sample_test(samples_a, samples_b, seed: int = 0, num_projections: int = 16,
                    num_permutations: int = 200) -> TestResult:
    """KS on random projections and energy distance together, Holm-corrected."""
    ks = ks_projection_test(samples_a, samples_b, num_projections, seed)
    energy = energy_distance_test(samples_a, samples_b, num_permutations, seed)
    components = {**ks.components, **energy.components}
    return TestResult("two-sample", holm([ks.p_value, energy.p_value]), components)


def acceptance_rate_test(accepted: int, trials: int, delta: float) -> TestResult:
    """Binomial test of an empirical token-wise acceptance count against ``2 Phi(-delta / 2)``."""
    expected = 2.0 * sps.norm.cdf(-delta / 2.0)  # ALG 2: P(accept) = 1 - TV
    p = sps.binomtest(int(accepted), int(trials), min(max(expected, 0.0), 1.0)).pvalue
    return TestResult("acceptance 2 Phi(-delta/2)", float(p), {"acceptance": float(p),
                                                             "expected": expected,
                                                             "observed": accepted / trials})


def first_step_delta(target, draft, x0) -> float:
    """Whitened gap at step 0 between two kernels at a single start state ``x0``."""
    x = torch.as_tensor(x0).unsqueeze(0)
    t = torch.zeros(1, dtype=torch.int64)
    gap = (target.mean(x, t) - draft.mean(x, t)).double()
    whitened, _ = target.covariance(t).whiten(gap, torch.ones(1, dtype=torch.float64), math.inf)
    return float(whitened.norm())
