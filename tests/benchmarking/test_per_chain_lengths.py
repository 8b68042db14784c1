"""The per-chain oracle bound (benchmarks/per_chain_lengths.py): recording, curves, allocation."""

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.testing import chains


@pytest.fixture(scope="module")
def bound(benchmark_script):
    return benchmark_script("per_chain_lengths")


def test_the_recorded_rounds_retrace_every_chains_steps(bound):
    """Each chain's recorded ``tau + 1`` add up to its steps, its t runs from 0, and every
    round drafts the forced length where the chain's end allows."""
    kernel = chains.OrnsteinUhlenbeckKernel(dimension=3, step_size=0.1, num_steps=120)
    drafter = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(
        dimension=3, step_size=0.1, num_steps=120, perturbation=0.3))
    rows, engine = bound.record(kernel, drafter, batch=3, draft_length=4, seeds=2)
    for run in (0, 1):
        for chain in range(3):
            mine = rows[(rows[:, 0] == run) & (rows[:, 2] == chain)]
            assert mine[0, 3] == 0 and (np.diff(mine[:, 1]) > 0).all()
            assert (mine[1:, 3] == mine[:-1, 3] + mine[:-1, 4] + 1).all()  # t advances tau + 1
            assert mine[-1, 3] + mine[-1, 4] + 1 == 120
    tau, drafted = rows[:, 4], rows[:, 5]
    assert (tau <= drafted).all() and drafted.max() == 4 and 0 < tau.mean() < 4
    assert engine["engine_per_round"] > 0 and engine["draft_per_position"] > 0
    assert engine["plain_engine_per_step"] > 0


def test_survival_by_band_is_kaplan_meier_within_each_band(bound):
    # band 0 (t < 50): tau 0, 2, 2 at length 2; band 1: tau 1 twice at length 1 (censored)
    rows = np.array([[0, 0, 0, 10, 0, 2], [0, 0, 1, 20, 2, 2], [0, 1, 0, 30, 2, 2],
                     [0, 2, 0, 60, 1, 1], [0, 2, 1, 70, 1, 1]])
    curves = bound.survival_by_band(rows, steps=100, bands=2, length=2)
    assert curves[0] == pytest.approx([2 / 3, 2 / 3])  # q_2 = 2/2 among the two at risk
    assert curves[1] == pytest.approx([1.0, 1.0])  # position 2 never drafted: no evidence


def test_a_length_per_chain_gains_only_on_a_throughput_bound_call(bound):
    good, bad = np.full(8, 0.95) ** np.arange(1, 9), np.full(8, 0.2) ** np.arange(1, 9)
    flat = np.full(9, 1e-3)  # latency-bound: a call costs the same for any number of states
    same = bound.best_uniform([good, bad], flat, 1e-4, 1e-5)
    assert bound.best_per_chain([good, bad], flat, 2, 1e-4, 1e-5) == pytest.approx(same)
    steep = 1e-3 * np.arange(1, 10)  # throughput-bound: C(2 (g + 1)) = (g + 1) ms
    uniform = bound.best_uniform([good, bad], steep, 1e-4, 1e-5)
    per_chain = bound.best_per_chain([good, bad], steep, 2, 1e-4, 1e-5)
    assert per_chain > 1.2 * uniform  # the bad chain stops drafting, the good one goes on
    alike = bound.best_per_chain([good, good], steep, 2, 1e-4, 1e-5)
    assert alike == pytest.approx(bound.best_uniform([good, good], steep, 1e-4, 1e-5), rel=0.05)


def test_plain_steps_are_an_option_on_both_sides(bound):
    """Where plain steps beat every round, neither choice does better than them: a chain
    drafting nothing must not count as a gain of the per-chain choice alone."""
    poor = np.full(8, 0.1) ** np.arange(1, 9)
    steep = 1e-3 * np.arange(1, 10)  # C(2 (g + 1)) = (g + 1) ms
    plain = bound.plain_goodput(2, steep, 1e-5)
    assert plain == pytest.approx(2 / (1e-3 + 1e-5))
    uniform = bound.best_uniform([poor, poor], steep, 1e-4, 1e-5, plain_engine=1e-5)
    per_chain = bound.best_per_chain([poor, poor], steep, 2, 1e-4, 1e-5, plain_engine=1e-5)
    assert uniform == pytest.approx(plain) and per_chain == pytest.approx(plain)
    without = bound.best_per_chain([poor, poor], steep, 2, 1e-4, 1e-5)  # plain left out
    assert without > bound.best_uniform([poor, poor], steep, 1e-4, 1e-5)  # one chain at 0
    assert bound.plain_goodput(2, steep, None) == 0.0
