"""The gap split (benchmarks/adaptive_gap.py): the forced rule drafts its length, the report adds up."""

import time

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.testing import chains


@pytest.fixture(scope="module")
def gap(benchmark_script):
    return benchmark_script("adaptive_gap")


def test_the_forced_rule_drafts_its_length_in_every_round_the_chain_allows(gap):
    """The rule's work runs, its choice does not: every round drafts ``forced`` (fewer only where
    the chain's end caps it), so the forced run measures the machinery at a fixed length."""
    kernel = chains.OrnsteinUhlenbeckKernel(dimension=3, step_size=0.1, num_steps=200)
    drafter = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(
        dimension=3, step_size=0.1, num_steps=200, perturbation=0.05))
    policy = gap.ForcedDraftLength(max_draft_length=16, forced=5)
    sampler = gs.SpeculativeSampler(kernel, drafter, draft_length=policy)
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    stats = sampler.sample(x0, generator=torch.Generator().manual_seed(0)).stats
    drafted = np.array(stats.drafted_by_position)
    assert drafted[5:].sum() == 0  # never beyond the forced length
    # all but the chains' last rounds and the start-up's plain probe (two steps) draft 5
    assert drafted[4] >= stats.chain_rounds - 2 * 2 - 2 * 2


class _SlowTarget(chains.OrnsteinUhlenbeckKernel):
    """The OU chain with a target call of at least 0.3 ms, so drafting pays."""

    def evaluate(self, x, t):
        end = time.perf_counter() + 3e-4
        while time.perf_counter() < end:
            pass
        return super().evaluate(x, t)


def test_the_forced_rule_keeps_its_decisions_as_the_rule_does(gap):
    """With the start-up's plain probe let through, the rule's own estimates settle and it keeps
    decisions over short rounds (G9) as in real use; forced through the probe too, it asks for
    the probe again every round and decides every round."""
    kernel = _SlowTarget(dimension=3, step_size=0.1, num_steps=1000)  # speculation pays
    drafter = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(
        dimension=3, step_size=0.1, num_steps=1000, perturbation=0.01))
    decisions = {}
    for probe in (True, False):
        policy = gap.ForcedDraftLength(max_draft_length=16, forced=8, probe=probe)
        state = policy.start(1)
        calls = {"n": 0}
        rule = gs.adaptive._choose

        def counted(*args, _rule=rule, _calls=calls):
            _calls["n"] += 1
            return _rule(*args)

        gs.adaptive._choose = counted
        try:
            sampler = gs.SpeculativeSampler(kernel, drafter, draft_length=policy)
            stats = sampler.sample(torch.zeros(1, 3, dtype=torch.float64),
                                   generator=torch.Generator().manual_seed(0)).stats
        finally:
            gs.adaptive._choose = rule
        decisions[probe] = (calls["n"], stats.rounds)
    assert decisions[False][0] >= decisions[False][1]  # a decision every round
    assert decisions[True][0] < decisions[True][1] / 2
    with pytest.raises(ValueError, match="forced must be an integer >= 1"):
        gap.ForcedDraftLength(forced=0)


def test_the_split_is_the_mean_and_median_of_paired_ratios(gap):
    ratios = gap._paired_ratios([1.1, 1.3, 2.0], [1.0, 1.0, 1.0])  # one slow run
    assert ratios["mean"] == pytest.approx(0.4667, abs=1e-4)
    assert ratios["error"] == pytest.approx(np.std([0.1, 0.3, 1.0], ddof=1) / 3 ** 0.5)
    assert ratios["median"] == pytest.approx(0.3)  # the slow run moves the mean, not the median
    result = {"posterior": "p", "drafter": "free", "fixed": 16, "steps": 10, "seeds": 2,
              "first_seed": 50,
              "rows": [{"contender": "fixed g=16", "cpu_ms": 1.0, "wall_ms": 1.0, "rounds": 3,
                        "block_efficiency": 3.3, "mean_draft_length": 16.0,
                        "cpu_us_per_round": 300.0}],
              "split": {"own_work": {"mean": 0.02, "error": 0.01, "median": 0.015},
                        "choice": {"mean": 0.03, "error": 0.02, "median": 0.03},
                        "total": {"mean": 0.05, "error": 0.02, "median": 0.04}}}
    text = gap.report(result)
    assert "| own_work | +2.0% | 1.0% | +1.5% |" in text and "| fixed g=16 | 1.0 |" in text
    assert "2 paired seeds from 50, in rotated order" in text and "own_work = " in text
    alone = dict(result, split={"total": result["split"]["total"]})  # --without-forced
    text = gap.report(alone)
    assert "| total | +5.0% | 2.0% | +4.0% |" in text and "own_work" not in text


def test_each_seed_runs_the_contenders_in_a_rotated_order(gap):
    """No contender always runs first, or always after the same one (a machine that slows as
    a seed's runs go on would otherwise weigh on one contender)."""
    keys = ["fixed", "forced", "rule"]
    orders = [gap.rotated(keys, index) for index in range(6)]
    assert orders[:3] == [keys, ["forced", "rule", "fixed"], ["rule", "fixed", "forced"]]
    assert orders[3:] == orders[:3]
    assert [order[0] for order in orders[:3]] == keys  # each starts a third of the seeds
    assert gap.rotated(["fixed", "rule"], 1) == ["rule", "fixed"]


def test_fixed_zero_puts_the_plain_chain_beside_the_rule(gap):
    """``--fixed 0``: the rule's gap to plain sampling, on paired seeds; plain takes one round a
    step, and the rule cannot be forced to plain steps."""
    result = gap.measure("kidiq", "laplace", 0, seeds=2, steps=30, max_draft_length=8,
                         first_seed=50, with_forced=False)
    plain, rule = result["rows"]
    assert plain["contender"] == "plain" and rule["contender"] == "rule"
    assert plain["rounds"] == 30 and plain["mean_draft_length"] == 0.0
    assert set(result["split"]) == {"total"} and len(plain["runs"]) == 2
    assert "Adaptive rule against the plain chain: kidiq" in gap.report(result)
    with pytest.raises(ValueError, match="0 \\(the plain chain\\) without the forced rule"):
        gap.measure("kidiq", "laplace", 0, seeds=1, steps=30, max_draft_length=8)
