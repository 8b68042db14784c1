"""The decision simulation (benchmarks/adaptive_simulation.py) prices runs as its model says."""

import numpy as np
import pytest

import gaussspec as gs


@pytest.fixture(scope="module")
def simulation(benchmark_script):
    return benchmark_script("adaptive_simulation")


def test_a_fixed_draft_length_runs_at_its_expected_goodput(simulation):
    """Geometric acceptance q, draft length g: 1 + sum_{i<=g} q^i chain-steps per round at the
    round's known cost (a long run, so the ratio of means is close to its expectation)."""
    q, g = 0.8, 4
    goodput, mean_g, sd_g, switches = simulation.simulate(None, g, 0, 200_000, q, 0.0, 500)
    steps = 1 + sum(q**i for i in range(1, g + 1))
    seconds = (simulation.CALL_S + simulation.CALL_PER_STATE_S * (g + 1)
               + simulation.DRAFT_FIXED_S + simulation.DRAFT_PER_STEP_S * g
               + simulation.ENGINE_S + simulation.ENGINE_PER_POSITION_S * g)
    assert goodput == pytest.approx(steps / seconds, rel=0.01)
    # the last round may be cut short by the end of the chain
    assert mean_g == pytest.approx(g, abs=1e-3) and sd_g < 0.01 and switches < 0.01


def test_the_rule_runs_in_the_simulation_and_drafts_near_the_best_fixed_length(simulation):
    policy = gs.AdaptiveDraftLength(max_draft_length=32)
    rates = {g: simulation.simulate(None, g, 1, 4000, 0.89, 0.0, 500)[0] for g in (4, 14, 32)}
    goodput, mean_g, _, _ = simulation.simulate(policy, 0, 1, 4000, 0.89, 0.0, 500)
    assert rates[14] > max(rates[4], rates[32])
    assert 8 < mean_g < 24 and goodput > 0.9 * rates[14]
    assert np.isfinite(goodput)
