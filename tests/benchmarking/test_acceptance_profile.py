"""Acceptance by position (benchmarks/acceptance_profile.py) and the expected-steps replay
(benchmarks/adaptive_replay.py --expected): exact answers on counts and logs built by hand."""

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.testing import chains


@pytest.fixture(scope="module")
def profile_script(benchmark_script):
    return benchmark_script("acceptance_profile")


@pytest.fixture(scope="module")
def replay(benchmark_script):
    return benchmark_script("adaptive_replay")


def test_a_geometric_profile_reads_flat_and_a_falling_one_reads_its_slope(profile_script):
    """Counts of a chain whose every position accepts with 0.9 give q_j = 0.9 in every band and
    a zero slope; q_j falling by 0.01 a position gives -0.1 per ten positions, exactly."""
    rounds = 10000.0
    for q, slope in ((np.full(32, 0.9), 0.0), (0.95 - 0.01 * np.arange(32), -0.1)):
        survival = np.cumprod(q)
        drafted = np.full(32, rounds)
        drafted[20:] -= 3.0  # the chain's last rounds draft fewer positions
        result = profile_script.profile(survival * drafted, drafted)
        np.testing.assert_allclose(result["conditional"], q, rtol=1e-9)
        assert result["slope_per_10"] == pytest.approx(slope, abs=1e-9)
        assert result["block_efficiency"] == pytest.approx(1.0 + survival.sum())
        if slope == 0.0:
            assert all(band == pytest.approx(0.9) for band in result["bands"].values())
            assert result["slope_error_per_10"] > 0.0


def test_the_counts_are_the_samplers_own(profile_script):
    """``counts`` sums the sampler's per-position counters over the seeds' runs."""
    kernel = chains.OrnsteinUhlenbeckKernel(dimension=3, step_size=0.1, num_steps=60)
    drafter = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(
        dimension=3, step_size=0.1, num_steps=60, perturbation=0.3))

    class Setup:  # the fields of langevin_bench._Setup that counts reads
        target, x0 = kernel, torch.zeros(1, 3, dtype=torch.float64)

    accepted, drafted = profile_script.counts(Setup, drafter, 4, [1, 2])
    expected_accepted, expected_drafted = np.zeros(4), np.zeros(4)
    for seed in (1, 2):
        stats = gs.SpeculativeSampler(kernel, drafter, 4).sample(
            Setup.x0, generator=torch.Generator().manual_seed(seed)).stats
        expected_accepted += stats.accepted_by_position
        expected_drafted += stats.drafted_by_position
    np.testing.assert_array_equal(accepted, expected_accepted)
    np.testing.assert_array_equal(drafted, expected_drafted)
    assert 0 < accepted[0] < drafted[0]  # the perturbed draft is rejected sometimes


def test_the_expected_replay_credits_each_round_its_lengths_mean_advance(replay):
    """A round of g is credited 1 + sum_{j<=g} S_j steps at a + b g seconds: a run of rounds at
    the best length scores 0; one at another length scores that length's rate against the best;
    the loss splits between the first actions and the rest."""
    survival = 0.8 ** np.arange(1, 9)  # S_j, geometric
    a, b, p = 1.0, 0.1, 0.9
    steps_at = 1.0 + np.concatenate([[0.0], np.cumsum(survival)])
    rates = steps_at[1:] / (a + b * np.arange(1, 9))
    best = int(rates.argmax()) + 1
    score = replay.expected_scores([("round", best)] * 10, survival, a, b, p, 5)
    assert score["vs_best"] == pytest.approx(0.0, abs=1e-12)
    assert score["best_g"] == best and score["mean_g"] == best
    assert score["start_loss"] == pytest.approx(0.0, abs=1e-12)
    log = [("round", 1)] * 5 + [("round", best)] * 5  # five short rounds first
    score = replay.expected_scores(log, survival, a, b, p, 5)
    steps = 5 * steps_at[1] + 5 * steps_at[best]
    seconds = 5 * (a + b) + 5 * (a + b * best)
    assert score["vs_best"] == pytest.approx(steps / seconds / rates.max() - 1.0)
    ideal = steps / rates.max()
    assert score["start_loss"] == pytest.approx(5 * (a + b - steps_at[1] / rates.max()) / ideal)
    assert score["later_loss"] == pytest.approx(0.0, abs=1e-12)
    plain = replay.expected_scores([("plain", 4)], survival, a, b, p, 5)  # 4 steps at p each
    assert plain["vs_best"] == pytest.approx((1.0 / p) / rates.max() - 1.0)
    cheap = replay.expected_scores([("plain", 4)], survival, a, b, 0.1, 5)  # plain steps win
    assert cheap["best_g"] == 0 and cheap["vs_best"] == pytest.approx(0.0, abs=1e-12)
