"""Stein's identity for the eight built-in posteriors.

For a density pi on R^d that vanishes fast enough at infinity, E_pi[grad log pi(X)] = 0. At the
posteriordb reference draws (10 chains x 1000 nearly independent draws, mapped to the unconstrained
space) the mean gradient of our Jacobian-corrected log density must be zero within Monte Carlo error.

Test: per coordinate, split each chain into 10 batches of 100 draws (100 batch means, which absorbs
any leftover autocorrelation) and compute a one-sample t statistic (99 degrees of freedom).
False-alarm budget: 1e-3 for the whole family of 74 coordinates over the 8 posteriors (Bonferroni,
two-sided), so each coordinate is rejected when |t| > t_{99}(1 - 1e-3 / (2 * 74)) ~ 4.4.
The planted mutants (a dropped log-Jacobian) shift one gradient coordinate by a constant; the same
test must reject them. A dropped ``+log sigma`` is only visible where the posterior pins sigma
well enough (the shift is 1 and the standard error of the mean must be below ~1/4.4), so the
mutants are planted in the posteriors where the test has that power.
"""

from __future__ import annotations

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from gaussspec.adapters import langevin

FAMILY_ALPHA = 1e-3
NUM_COORDINATES = 74  # sum of the eight dimensions
NUM_BATCHES = 100
THRESHOLD = scipy.stats.t.ppf(1.0 - FAMILY_ALPHA / (2 * NUM_COORDINATES), NUM_BATCHES - 1)


def _stein_statistics(log_density, draws: torch.Tensor) -> torch.Tensor:
    """t statistics of the mean gradient per coordinate from (chain, draw, d) draws."""
    chains, num_draws, dim = draws.shape
    grads = []
    for chunk in draws.reshape(-1, dim).split(1000):
        x = chunk.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_density(x).sum(), x)
        grads.append(grad)
    per_chain_batches = NUM_BATCHES // chains
    batch_means = (
        torch.cat(grads)
        .reshape(chains, per_chain_batches, num_draws // per_chain_batches, dim)
        .mean(2)
        .reshape(NUM_BATCHES, dim)
    )
    return batch_means.mean(0) / (batch_means.std(0) / NUM_BATCHES**0.5)


def test_total_dimension_matches_budget():
    assert sum(langevin.posterior(n).dimension for n in langevin.posterior_names()) == NUM_COORDINATES


@pytest.mark.parametrize("name", langevin.posterior_names())
def test_stein_identity_at_reference_draws(name):
    torch.set_num_threads(1)
    post = langevin.posterior(name)
    draws = post.reference_draws_unconstrained()
    assert draws.shape == (10, 1000, post.dimension)
    t = _stein_statistics(post.log_density, draws)
    worst = int(t.abs().argmax())
    assert t.abs().max() < THRESHOLD, (
        f"{name}: mean gradient of {post.unconstrained_names[worst]} is {float(t[worst]):.2f} "
        f"standard errors from 0 (threshold {THRESHOLD:.2f})"
    )


def _drop(post, term):
    return lambda x: post.log_density(x) - term(x)


MUTANTS = {
    # name: (posterior, the log-Jacobian term removed)
    "sblrc without +log sigma": ("sblrc-blr", lambda x: x[:, 5]),
    "eight schools without +log tau": ("eight_schools_noncentered", lambda x: x[:, 9]),
    "garch without +log alpha0": ("garch11", lambda x: x[:, 1]),
    "garch without log(1 - alpha1), the scale of beta1's bound": (
        "garch11",
        lambda x: F.logsigmoid(-x[:, 2]),
    ),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_stein_rejects_dropped_jacobian(mutant):
    torch.set_num_threads(1)
    name, term = MUTANTS[mutant]
    post = langevin.posterior(name)
    t = _stein_statistics(_drop(post, term), post.reference_draws_unconstrained())
    assert t.abs().max() > THRESHOLD, f"{mutant}: the Stein test missed it (max |t| {float(t.abs().max()):.2f})"


def test_reference_draws_round_trip():
    for name in langevin.posterior_names():
        post = langevin.posterior(name)
        ref = post.reference_draws()
        assert ref.names == post.parameter_names
        back = post.constrain(post.reference_draws_unconstrained())
        assert torch.allclose(back, torch.as_tensor(ref.draws), rtol=1e-9, atol=1e-9), name
