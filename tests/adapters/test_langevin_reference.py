"""End to end (slow): speculative ULA reproduces posteriordb's reference means and sds.

Six posteriors, 8 chains x 20,000 kept steps (thinned by 5, after 500 warm-up steps), step size
h = 0.05 with the reference covariance as preconditioner, Laplace drafter (free drafter for eight
schools), gamma = 16. For each constrained parameter:

* mean: |mean_ULA - mean_ref| <= 4.1 se + 0.5 h sd_ref, with se combining the ULA batch-means
  standard error (160 batches) and the reference draws' (nearly independent) standard error;
  4.1 is the two-sided Bonferroni bound for a 1e-3 false-alarm budget over the ~60 parameters;
  0.5 h sd_ref allows ULA's O(h) step-size bias;
* sd: |sd_ULA / sd_ref - 1| <= h + 0.02: ULA at step h inflates a Gaussian posterior's sd by
  1 / sqrt(1 - h/2) - 1 ~ h/4 (with M = the posterior covariance), non-Gaussian posteriors by
  O(h); 0.02 is the Monte Carlo error of an sd ratio at these sample sizes.

Run with ``pytest -m slow tests/adapters/test_langevin_reference.py -s`` (prints a table);
measured numbers are recorded in docs/langevin.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaussspec.adapters import langevin

STEP_SIZE, CHAINS, STEPS, THIN, WARMUP, BATCHES = 0.05, 8, 20_000, 5, 500, 20
Z_BOUND = 4.1

CASES = [
    ("sblrc-blr", "laplace"),
    ("kidiq-kidscore_momiq", "laplace"),
    ("arK-arK", "laplace"),
    ("garch-garch11", "laplace"),
    ("low_dim_gauss_mix-low_dim_gauss_mix", "laplace"),
    ("diamonds-diamonds", "laplace"),
]


def reference_comparison(name: str, drafter: str, seed: int = 0) -> list[dict]:
    """Per-parameter comparison of a long speculative ULA run with the reference draws."""
    torch.set_num_threads(1)
    samples = langevin.sample_posterior(
        name, STEP_SIZE, STEPS // THIN, chains=CHAINS, drafter=drafter, draft_length=16,
        warmup=WARMUP, thin=THIN, seed=seed, preconditioner="reference", chunk_steps=2000,
    )
    ref = langevin.posterior(name).reference_draws()
    draws = samples.constrained
    n = draws.shape[1]
    batch_means = draws.reshape(CHAINS, BATCHES, n // BATCHES, -1).mean(2).reshape(CHAINS * BATCHES, -1)
    se = batch_means.std(0, ddof=1) / np.sqrt(CHAINS * BATCHES)
    pooled_ref = ref.draws.reshape(-1, ref.draws.shape[-1])
    pooled = draws.reshape(-1, draws.shape[-1])
    se_ref = pooled_ref.std(0, ddof=1) / np.sqrt(pooled_ref.shape[0])
    rows = []
    for j, param in enumerate(ref.names):
        sd_ref = pooled_ref[:, j].std(ddof=1)
        mean_err = abs(pooled[:, j].mean() - pooled_ref[:, j].mean())
        combined = float(np.hypot(se[j], se_ref[j]))
        rows.append({
            "posterior": name, "parameter": param,
            "mean": float(pooled[:, j].mean()), "mean_ref": float(pooled_ref[:, j].mean()),
            "z": float(mean_err / combined),
            "mean_ok": bool(mean_err <= Z_BOUND * combined + 0.5 * STEP_SIZE * sd_ref),
            "sd_ratio": float(pooled[:, j].std(ddof=1) / sd_ref),
            "sd_ok": bool(abs(pooled[:, j].std(ddof=1) / sd_ref - 1) <= STEP_SIZE + 0.02),
            "block_efficiency": samples.stats["block_efficiency"],
            "seconds": samples.stats["total_time"],
        })
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("name, drafter", CASES)
def test_long_run_matches_reference_draws(name, drafter):
    rows = reference_comparison(name, drafter)
    worst_z = max(r["z"] for r in rows)
    worst_sd = max(abs(r["sd_ratio"] - 1) for r in rows)
    print(f"\n| {name} | {drafter} | {rows[0]['block_efficiency']:.2f} | {worst_z:.2f} | "
          f"{worst_sd:.3f} | {rows[0]['seconds']:.0f} s |")
    bad = [r for r in rows if not (r["mean_ok"] and r["sd_ok"])]
    assert not bad, f"{name}: {bad}"
