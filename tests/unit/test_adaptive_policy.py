"""Unit tests of the adaptive draft length's goodput model (gaussspec/adaptive.py)."""

import math
import statistics
import time

import attrs
import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec import adaptive, compiled
from gaussspec.testing import chains


def test_round_counts_match_their_definition():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 7, size=200)
    tau = np.array([rng.integers(0, length + 1) for length in lengths])
    hits, at_risk = adaptive.round_counts(tau, lengths, 6)
    for j in range(1, 7):
        assert hits[j - 1] == np.sum(tau >= j)
        assert at_risk[j - 1] == np.sum((lengths >= j) & (tau >= j - 1))


def test_survival_is_kaplan_meier_and_extrapolates_untried_positions():
    q = 0.8  # geometric acceptance, drafted up to 3 by 10000 chain-rounds
    reach = 10000 * q ** np.arange(3)  # tau >= j - 1
    hits = np.array([*(reach * q), 0.0, 0.0])
    at_risk = np.array([*reach, 0.0, 0.0])
    survive = np.array(adaptive.survival(hits, at_risk, pseudo_count=8.0))
    np.testing.assert_allclose(survive[:3], q ** np.arange(1, 4), rtol=1e-3)
    np.testing.assert_allclose(survive[3:] / survive[2:4], q, rtol=1e-3)  # q_j = q_{j-1}
    assert adaptive.survival(np.zeros(2), np.zeros(2), 8.0)[0] == 0.5  # the prior


def test_a_rejection_at_a_rarely_drafted_position_does_not_sink_the_positions_beyond():
    """G3: a position past those drafted lately is shrunk towards the positions before it pooled
    when that is higher than the last one's q. One chain that drafted position 9 once and saw it
    rejected must not price every longer draft as hopeless: it would never draft there again to
    learn otherwise (a one-chain kidiq run sat at g = 10-14 for 4000 steps where 32 is best)."""
    q = 0.96
    reach = 40 * q ** np.arange(8)  # positions 1..8 drafted by 40 chain-rounds
    hits = np.array([*(reach * q), *np.zeros(8)])
    at_risk = np.array([*reach, 0.5, *np.zeros(7)])  # position 9: drafted once (decayed), rejected
    survive = adaptive.survival(hits, at_risk, pseudo_count=1.0)
    assert survive[8] / survive[7] < 0.7  # q_9 follows its one rejection
    np.testing.assert_allclose(survive[9:] / survive[8:-1], q, rtol=0.02)  # q_10..16: pooled
    decreasing = np.array([0.9, 0.8, 0.7])  # measured well: each position keeps its own q
    reach = 10000 * np.cumprod([1.0, *decreasing[:-1]])
    survive = adaptive.survival(reach * decreasing, reach, pseudo_count=1.0)
    np.testing.assert_allclose(survive, np.cumprod(decreasing), rtol=1e-3)


def test_recent_counts_give_way_to_the_long_memory_unless_their_difference_is_real():
    """G3b: the decision's q_j is the recent counts' shrunk towards the long memory's by how far
    the recent counts' noise explains their difference: one chain's ten rounds that accepted 8.5
    of 10 first drafts against a long-run 0.9 leave about the long run's q_1; 2 of 10 (the
    chain entered a region where the drafts fail) leave about the recent one."""
    for recent_hits, near in ((8.5, "long"), (2.0, "recent")):
        state = gs.AdaptiveDraftLength(max_draft_length=1).start(1)
        feed(state, np.ones(1, dtype=int), 1, call=0.002, draft_step=2e-4, engine=1e-3, n=1,
             rounds=2)  # two timed rounds, then the counts are set
        state.prior_weight = state.long_prior_weight = 0.0
        state.hits[:], state.at_risk[:] = recent_hits, 10.0
        state.long_counts[:] = [[90.0], [100.0]]
        q_1 = state.rates(1, False)[1][0] - 1.0  # n (1 + S_1), n = 1
        recent, steady = recent_hits / 10.0, 0.9
        w = (recent - steady) ** 2 / ((recent - steady) ** 2 + steady * 0.1 / 10.0) * 10 / 11
        assert q_1 == pytest.approx(w * recent + (1 - w) * steady)
        if near == "long":
            assert abs(q_1 - steady) < 0.25 * abs(recent - steady)
        else:
            assert abs(q_1 - recent) < 0.15 * abs(recent - steady)


def test_the_prior_on_the_first_acceptance_fades_with_its_weight():
    hits, at_risk = np.array([10.0]), np.array([10.0])  # one chain, every round accepted
    assert adaptive.survival(hits, at_risk, 1.0)[0] == pytest.approx(10.5 / 11)  # capped
    assert adaptive.survival(hits, at_risk, 1.0, prior_weight=0.0)[0] == 1.0
    state = gs.AdaptiveDraftLength(decay=0.9).start(1)
    feed(state, np.full(1, 4), 4, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=30)
    assert state.prior_weight == pytest.approx(0.9**30)
    assert adaptive.survival(state.hits, state.at_risk, 1.0, state.prior_weight)[0] > 0.995
    # the decision's q_1 leans on the long memory too (G3b), whose prior fades at 0.99 a round
    assert state.long_prior_weight == pytest.approx(0.99**30)
    assert state.rates(1, False)[1][0] > 1.98  # n (1 + S_1), S_1 = q_1 near 1


def test_decayed_fit_recovers_costs_and_falls_back():
    fit = adaptive.DecayedFit(0.9)
    for states in (8, 16, 72, 136, 8):
        fit.add(1.0, states, 0.002 + 1e-5 * states)  # a + b states
    np.testing.assert_allclose(fit.coefficients, (0.002, 1e-5), rtol=1e-6)
    latency = adaptive.DecayedFit(0.9)
    latency.add(1.0, 72.0, 0.003)  # one state count: all latency
    assert latency.coefficients == (0.003, 0.0)
    negative = adaptive.DecayedFit(0.9)
    for states, seconds in ((8, 0.001), (16, 0.0025), (32, 0.005)):  # intercept would be < 0
        negative.add(1.0, states, seconds)
    assert negative.coefficients[0] == 0.0 and negative.coefficients[1] > 0.0


def test_decayed_mean_settles_on_the_smallest_early_observation_then_averages_and_clips():
    mean = adaptive.DecayedMean(0.98)
    for y in (90.0, 2.0):  # a first observation that paid a compilation
        mean.add(y)
    assert mean.value == 2.0  # the smallest of the first two
    mean.add(4.0)
    weight = 0.98**2 + 0.98 + 1
    assert mean.value == pytest.approx((2.0 * (weight - 1) + 4.0) / weight)  # decayed mean
    before, weight = mean.value, mean.weight
    mean.add(1000.0)  # a preemption: counted as 3x the mean at most
    assert mean.value == pytest.approx((0.98 * weight * before + 3 * before) / (0.98 * weight + 1))


def test_engine_time_growing_with_the_draft_length_is_priced_per_position():
    """o0 + o1 g: rounds of two lengths identify the slope, which joins d in the price of g (its
    ridge, G4b, shrinks it by a few percent where the rounds keep spreading g)."""
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(8)
    for g in (4, 8, 4, 8, 4, 8):  # a round that changes g prices no engine time
        feed(state, np.full(8, g), g, call=0.002, draft_step=2e-4, engine=3e-4 + 5e-5 * g,
             rounds=20)
    o0, o1 = state.engine.coefficients
    np.testing.assert_allclose((o0, o1), (3e-4, 5e-5), rtol=0.1)
    assert o1 < 5e-5  # shrunk (about the rounds' weighted mean g)
    _, _, seconds = state.rates(8, False)
    a, b = state.calls.fit.coefficients
    np.testing.assert_allclose(seconds[9], a + b * 8 * 11 + o0 + (o1 + 2e-4) * 10)


def test_a_round_that_changes_the_draft_length_prices_no_engine_time():
    """G4: the round after a switch pays for fresh noise draws and cold buffers (130-250 us on a
    one-chain Langevin run); priced into o0 + o1 g, the draft lengths visited mostly by switching
    would look dear. Its calls still count."""
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(1)
    for g, engine in ((8, 1e-3), (8, 1e-3), (16, 3e-3), (16, 1e-3), (16, 1e-3), (8, 3e-3),
                      (8, 1e-3)):  # the first round at each new g: 2 ms dearer
        feed(state, np.full(1, g), g, call=0.002, draft_step=2e-4, engine=engine, n=1, rounds=1)
    np.testing.assert_allclose(state.engine.coefficients, (1e-3, 0.0), atol=1e-12)
    assert state.engine.count == 5 and state.calls.settled(17)  # the calls: every round


def test_start_up_rounds_settle_the_engine_fit_whatever_their_draft_lengths():
    """G4, G6: until two rounds are timed the costs do not decide and each start-up round drafts
    the best g priced so far, which moves; were its switched rounds left unpriced, the engine fit
    would not settle while g moves, and the start-up would go on (eight chains of the cheap
    target drafted 4, 6, 11, 16, 15, 11, 6, 6 before the costs decided). Once the fit has
    settled, switched rounds are left out again."""
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(8)
    for g in (4, 7):
        feed(state, np.full(8, g), g, call=2e-4, draft_step=2e-4, engine=1e-4, rounds=1)
    assert state.engine.count == 2 and state.drafting.count == 2
    feed(state, np.full(8, 12), 12, call=2e-4, draft_step=2e-4, engine=1e-4, rounds=1)
    assert state.engine.count == 2  # settled: a switch is not priced (G4)


def test_goodput_is_steps_over_seconds_of_equation_g1():
    survive = [0.9, 0.81]
    steps, seconds = adaptive.goodput(survive, 4, a=1.0, b=0.1, o0=0.2, per_position=0.5,
                                      frozen=False)
    np.testing.assert_allclose(steps, [4 * 1.9, 4 * 2.71])
    np.testing.assert_allclose(seconds, [1.0 + 0.1 * 4 * 2 + 0.2 + 0.5,
                                         1.0 + 0.1 * 4 * 3 + 0.2 + 1.0])
    _, frozen = adaptive.goodput(survive, 4, 1.0, 0.1, 0.2, 0.5, frozen=True)
    np.testing.assert_allclose(np.subtract(frozen, seconds), 1.0)  # the frozen second call


def feed(state, tau, g, call, draft_step, engine, n=8, rounds=20):
    lengths = np.full(n, g)
    for _ in range(rounds):
        state.update(np.arange(n), tau, lengths, n * (g + 1), call, draft_step * g, g,
                     call + draft_step * g + engine, draft_step * g)


def test_state_survival_is_the_curve_the_rule_prices_rounds_by():
    """``AdaptiveState.survival``: the two memories' curve (G3b) behind ``rates`` (G1), not one
    memory's: after a drop in acceptance it lies between the recent and the long counts'."""
    state = gs.AdaptiveDraftLength(max_draft_length=8).start(1)
    for _ in range(60):  # a long stretch accepting every draft
        feed(state, np.full(1, 8), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=1)
    for tau in (1, 0, 2):  # then three poor rounds
        feed(state, np.full(1, tau), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=1)
    survive = state.survival()
    recent = adaptive.survival(state.hits, state.at_risk, state.pseudo_count, state.prior_weight)
    steady = adaptive.survival(*state.long_counts, state.pseudo_count, state.long_prior_weight)
    assert np.all(recent[2:] < survive[2:]) and np.all(survive[2:] < steady[2:])
    plain, steps, seconds = state.rates(1, False)
    np.testing.assert_allclose(steps, 1.0 + np.cumsum(survive))  # n (1 + sum_{i<=g} S_i) (G1)
    kept = survive.copy()
    survive[:] = 0.0  # a copy: the state's buffers are untouched
    np.testing.assert_array_equal(state.survival(), kept)


def test_policy_drafts_long_when_calls_are_expensive_and_drafts_good():
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(8)
    assert state.choose(8, False, 400) == (4, 0)  # the initial draft length
    feed(state, np.full(8, 8), 8, call=0.006, draft_step=2e-4, engine=1e-3)  # all accepted
    feed(state, np.full(8, 16), 16, call=0.006, draft_step=2e-4, engine=1.5e-3)
    assert state.choose(8, False, 400) == (16, 0)
    assert state.choose(8, False, 5) == (4, 0)  # tau + 1 <= remaining steps
    assert state.choose(8, False, 1) == (0, 1)


def test_policy_tells_latency_from_per_state_cost_before_repeating_a_draft_length():
    state = gs.AdaptiveDraftLength(max_draft_length=8, initial_draft_length=8).start(8)
    assert state.choose(8, False, 400) == (8, 0)
    # two rounds settle the engine-time estimate
    feed(state, np.full(8, 8), 8, call=0.018, draft_step=2e-4, engine=1e-3, rounds=2)
    assert not state.calls.fit.identified
    assert state.choose(8, False, 400) == (0, 2)  # g = 8 again would teach nothing: plain steps
    state.update_plain(8, 2, 0.004, 0.0044)  # 8 states: 2 ms; 72 states: 18 ms (per-state cost)
    assert state.calls.settled(8)  # two steps: C(n) is priced as measured, not optimistically
    assert state.calls.fit.identified
    np.testing.assert_allclose(state.calls.fit.coefficients, (0.0, 0.018 / 72), atol=1e-9)
    assert state.choose(8, False, 400)[0] == 0  # plain wins on a throughput-bound target


def test_a_start_up_round_of_another_size_tells_latency_from_per_state_cost():
    """G6: while every call had one size, the next start-up round calls another size when it
    drafts another length, and that identifies C(s) without plain steps; where speculation wins by
    far on the costs so identified, no plain step runs at all (they cost three steps' time on
    eight chains of a latency-bound 600-step run, about 2 of its 46 rounds)."""
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(8)
    assert state.choose(8, False, 400) == (4, 0)
    feed(state, np.full(8, 4), 4, call=0.006, draft_step=2e-4, engine=7e-4, rounds=1)
    assert not state.calls.fit.identified
    g, burst = state.choose(8, False, 400)
    assert g > 4 and burst == 0  # all four accepted: a longer draft, which calls another size
    feed(state, np.full(8, g), g, call=0.006, draft_step=2e-4, engine=7e-4, rounds=1)
    assert state.calls.fit.identified and not state.plain_measured
    assert state.calls.predict(8) == pytest.approx(0.006)  # latency-bound: C(8) = C(40)
    for _ in range(5):
        g, burst = state.choose(8, False, 400)
        assert g >= 8 and burst == 0  # speculation wins on the measured costs: no plain probe
        feed(state, np.full(8, g), g, call=0.006, draft_step=2e-4, engine=7e-4, rounds=1)
    assert not state.plain_measured


def test_an_untimed_first_round_measures_no_size_so_the_next_round_goes_ahead():
    """G6 with a compiling first round: its call is not priced, so no size is measured yet and
    the next start-up round runs even at the same length; once that size is measured, repeating
    it gives way to the two-step probe."""
    state = gs.AdaptiveDraftLength(max_draft_length=4).start(8)
    assert state.choose(8, False, 400) == (4, 0)
    state.update(np.arange(8), np.zeros(8, dtype=int), np.full(8, 4), 40, 0.5, 0.0008, 4, 0.6,
                 0.0008, timed=False)  # compiled: nothing priced, every draft rejected
    assert state.calls.used[0] == 0
    assert state.choose(8, False, 400) == (4, 0)  # no size measured: the round tells something
    feed(state, np.zeros(8, dtype=int), 4, call=0.006, draft_step=2e-4, engine=7e-4, rounds=1)
    assert state.choose(8, False, 400) == (0, 2)  # g = 4 again would repeat 40 states: probe


def test_rounds_and_plain_bursts_share_one_compiled_call_pricing():
    """A round prices its calls inside the compiled update, a plain burst through CallCosts.add
    from Python: both with the same argument types, so a process's first plain burst compiles
    nothing (a literal count in the round's call had made it compile a second version, about
    0.2 s, in the middle of a timed run)."""
    state = gs.AdaptiveDraftLength(max_draft_length=8).start(1)
    feed(state, np.full(1, 3), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=2)
    state.update_plain(1, 2, 0.004, 0.0042)
    signatures = adaptive._calls_add.signatures
    assert len(signatures) == 1, signatures
    assert str(signatures[0][-1]) == "int64"  # the count: not a literal


def test_a_round_or_burst_that_compiled_is_not_timed():
    """A round that paid for a compilation (``timed=False``) prices neither o0, d nor C(s): a
    compilation holds the interpreter, so the target call may have waited on it too. Its
    acceptance counts. A plain burst likewise."""
    state = gs.AdaptiveDraftLength(max_draft_length=8).start(8)
    lengths = np.full(8, 8)
    state.update(np.arange(8), np.full(8, 8), lengths, 72, 0.5, 0.0016, 8, 0.6, 0.0016,
                 timed=False)
    assert state.engine.count == 0 and state.drafting.count == 0 and state.calls.fit.count == 0
    assert state.rounds == 1 and state.hits[7] == 8  # the acceptance counts
    feed(state, np.full(8, 8), 8, call=0.002, draft_step=2e-4, engine=1e-3, rounds=1)
    np.testing.assert_allclose([state.engine.predict(1, 8), state.drafting.value], [1e-3, 2e-4])
    assert state.calls.predict(72) == pytest.approx(0.002)
    state.update_plain(8, 3, 0.9, 1.0, timed=False)
    assert not state.plain_measured and state.plain_engine.count == 0
    assert state.calls.predict(8) <= 0.002  # from the timed call alone, not 0.3 s
    state.update_plain(8, 3, 0.003, 0.0033)
    assert state.plain_measured and state.calls.predict(8) == pytest.approx(0.001)


@attrs.frozen
class _CompilingPolicy(gs.AdaptiveDraftLength):
    """Records ``timed``; its first decision stands for a numba compilation (as the policy's
    own first decision is, in a fresh process)."""

    states: list = attrs.field(factory=list)

    def start(self, num_chains):
        state = super().start(num_chains)
        state.timed = []
        choose, update = state.choose, state.update

        def compiling_choose(n, frozen, remaining):
            if not state.timed:
                compiled._CompileCounter.count += 1
            return choose(n, frozen, remaining)

        def recording_update(*args, timed=True, frozen_call_time=0.0):
            state.timed.append(timed)
            update(*args, timed=timed, frozen_call_time=frozen_call_time)

        state.choose, state.update = compiling_choose, recording_update
        self.states.append(state)
        return state


def test_the_sampler_leaves_a_round_untimed_when_its_decision_compiled():
    """The round's time runs from the previous update: the decision before the round is in it,
    so a compilation there leaves the round untimed (one such round priced a one-chain run's
    rounds at 0.57 s each and sent it to plain steps for good).

    A real compilation later in the run (a path this process takes for the first time, such as
    a ragged last round, reached or not as the measured times decide) leaves its round untimed
    too: the rounds after the first may be untimed only as often as real compilations ran (none
    in most runs; the test failed about once in ten full runs when it allowed none)."""
    target = chains.OrnsteinUhlenbeckKernel(num_steps=40)
    policy = _CompilingPolicy(max_draft_length=4)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(
        chains.OrnsteinUhlenbeckKernel(num_steps=40, perturbation=0.1)), policy)
    before = compiled.compilations()
    sampler.sample(torch.zeros(2, *target.event_shape, dtype=torch.float64),
                   generator=torch.Generator().manual_seed(0))
    real = compiled.compilations() - before - 1  # less the one the policy stands in for
    timed = policy.states[0].timed
    assert timed[0] is False and len(timed) >= 2
    assert timed[1:].count(False) <= real, (timed, real)


@attrs.frozen
class _RecordingPolicy(gs.AdaptiveDraftLength):
    """Records each round's ``(drafting_time, round_time)`` as the sampler reports them."""

    reports: list = attrs.field(factory=list)

    def start(self, num_chains):
        state = super().start(num_chains)
        update = state.update

        def recording_update(chains_, tau, lengths, call_states, call_time, draft_time,
                             draft_steps, round_time, drafting_time, timed=True,
                             frozen_call_time=0.0):
            self.reports.append((drafting_time, round_time))
            update(chains_, tau, lengths, call_states, call_time, draft_time, draft_steps,
                   round_time, drafting_time, timed=timed, frozen_call_time=frozen_call_time)

        state.update = recording_update
        return state


class _SlowSetUpKernel(chains.OrnsteinUhlenbeckKernel):
    """Its covariance takes 5 ms: the round's set-up (one covariance of every slot) is slow,
    its drafting loop (L = std I: no covariance call a step) is not."""

    def covariance(self, t):
        time.sleep(0.005)
        return super().covariance(t)


def test_d_is_timed_on_the_drafting_loop_alone_not_its_set_up():
    """G4's ``d`` is a per-step time: the drafting phase's set-up, the same at any width, is in
    the rest of the round (``o0``). Timed with the loop (the mutant), its fixed part made ``d``
    grow as ``g`` shrinks and priced long drafts dear."""
    target = _SlowSetUpKernel(num_steps=60)
    policy = _RecordingPolicy(max_draft_length=4)
    sampler = gs.SpeculativeSampler(target, gs.KernelDrafter(
        chains.OrnsteinUhlenbeckKernel(num_steps=60, perturbation=0.1)), policy)
    sampler.sample(torch.zeros(1, *target.event_shape, dtype=torch.float64),
                   generator=torch.Generator().manual_seed(0))
    assert len(policy.reports) >= 2
    for _, round_time in policy.reports:
        assert round_time > 0.005  # the set-up's sleep is in the round
    # ... and not in the drafting loop: the median, as a round preempted on a loaded machine may
    # read a few ms (4.5 ms once, in four suites at once on 2 cores); the mutant's reads all > 5 ms
    assert statistics.median(drafting for drafting, _ in policy.reports) < 0.004


def test_a_slow_second_observation_does_not_stay_and_a_fast_one_replaces_a_slow_first():
    """The engine-time fit settles robustly: an observation below a third of a slow first one
    replaces it (that one paid a one-time cost)."""
    state = gs.AdaptiveDraftLength(max_draft_length=8).start(8)
    feed(state, np.full(8, 8), 8, call=0.002, draft_step=2e-4, engine=0.09, rounds=1)
    assert state.engine.predict(1, 8) == pytest.approx(0.09)
    feed(state, np.full(8, 8), 8, call=0.002, draft_step=2e-4, engine=1e-3, rounds=1)
    assert state.engine.predict(1, 8) == pytest.approx(1e-3)  # it replaced the slow one
    state.update_plain(8, 2, 0.004, 0.0042)
    assert state.choose(8, False, 400)[0] >= 1  # latency-bound, all accepted: speculation wins


def test_policy_goes_plain_then_explores_within_its_budget():
    state = gs.AdaptiveDraftLength(max_draft_length=8, explore_share=0.01).start(8)
    feed(state, np.zeros(8, dtype=int), 2, call=0.002, draft_step=2e-4, engine=1e-3)
    assert state.choose(8, False, 400) == (0, 2)  # plain (optimistic until measured) wins
    state.update_plain(8, 2, 0.004, 0.0042)
    g, burst = state.choose(8, False, 400)
    assert g == 0 and 1 <= burst <= adaptive.MAX_PLAIN_BURST
    for _ in range(200):  # plain time accrues until exploring costs 1% of it
        g, burst = state.choose(8, False, 400)
        if g:
            break
        state.update_plain(8, burst, 0.002 * burst, 0.0021 * burst)
        last_burst = burst
    assert g == 1
    plain, steps, seconds = state.rates(8, False)
    loss = seconds[0] - steps[0] / plain  # ~0.85 ms: g=1 costs ~2.95 ms, a plain step 2.1 ms
    assert 0.01 * state.plain_time_since_round >= loss > 0.0005
    assert 0.01 * (state.plain_time_since_round - 0.0021 * last_burst) < loss  # not sooner


def test_one_unlucky_first_round_of_one_chain_does_not_send_the_run_to_plain_steps():
    """G6: plain steps may win only after min_evidence chain-rounds; until then g >= initial."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=3).start(1)
    state.update_plain(1, 2, 0.004, 0.0042)  # plain priced: 2.1 ms a step
    for _ in range(2):  # every draft rejected, each round slower than a plain step
        feed(state, np.zeros(1, dtype=int), 4, call=0.002, draft_step=2e-4, engine=1e-3, n=1,
             rounds=1)
        assert state.choose(1, False, 400) == (4, 0)  # one and two chain-rounds: keep looking
    feed(state, np.zeros(1, dtype=int), 4, call=0.002, draft_step=2e-4, engine=1e-3, n=1,
         rounds=1)
    assert state.choose(1, False, 400)[0] == 0  # three: the evidence says plain


def test_by_default_four_unlucky_rounds_of_one_chain_are_not_enough_evidence():
    """The free drafter on one Langevin chain (eight_schools) accepted 1, 0, 3 and 0 drafts in
    its first rounds, then about 7 of 12 per round for the rest of the run; the default
    min_evidence keeps drafting until the counts say more."""
    state = gs.AdaptiveDraftLength(max_draft_length=32).start(1)
    state.update_plain(1, 2, 0.0006, 0.00062)  # 0.3 ms a plain step
    for tau in (1, 0, 3, 0):
        feed(state, np.full(1, tau), 4, call=3.8e-4, draft_step=2e-5, engine=3.6e-4, n=1,
             rounds=1)
    plain, steps, seconds = state.rates(1, False)
    assert (steps / seconds).max() < plain  # the point estimate says plain...
    assert state.choose(1, False, 4000)[0] >= 4  # ...on four observations: keep drafting


def test_plain_steps_win_at_once_when_they_beat_rounds_with_every_draft_accepted():
    """G6 waits for evidence only while acceptance could decide: here the costs alone do, once
    two rounds are timed (one alone may have paid a one-time cost)."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=4).start(1)
    state.update_plain(1, 2, 0.004, 0.0042)  # one state: 2 ms
    feed(state, np.full(1, 4), 4, call=0.010, draft_step=2e-4, engine=1e-3, n=1, rounds=1)
    assert state.calls.fit.identified  # five states: 10 ms, throughput-bound
    assert state.choose(1, False, 400) == (4, 0)  # one timed round: not yet
    feed(state, np.full(1, 4), 4, call=0.010, draft_step=2e-4, engine=1e-3, n=1, rounds=1)
    assert state.evidence == 2 and state.choose(1, False, 400)[0] == 0


def test_one_slow_timed_round_does_not_price_the_run_as_plain_steps():
    """G6: a first timed round that paid a one-time cost (0.5 s of engine time) prices every
    round out; the costs decide only once a second round is timed, which replaces it."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=1).start(1)
    state.update_plain(1, 2, 0.004, 0.0042)  # one state: 2 ms
    feed(state, np.full(1, 8), 8, call=0.002, draft_step=2e-4, engine=0.5, n=1, rounds=1)
    assert state.rates(1, False)[0] > (state._steps / state._seconds).max()  # plain, as priced
    assert state.choose(1, False, 400)[0] >= 4
    feed(state, np.full(1, 8), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=1)
    assert state.engine.predict(1, 8) < 0.01 and state.choose(1, False, 400)[0] == 8


def test_a_burst_fixed_cost_is_spread_over_a_full_burst_not_charged_to_each_plain_step():
    """G2: burst engine time p_burst + p0 k; one short burst must not price every plain step."""
    state = gs.AdaptiveDraftLength().start(8)
    state.update_plain(8, 1, 0.002, 0.002 + 1e-4 + 3e-5)  # one step: 100 us fixed + 30 us
    assert state._plain_step_engine() == pytest.approx(1.3e-4 / adaptive.MAX_PLAIN_BURST)
    for steps in (64, 10, 64, 30):
        state.update_plain(8, steps, 0.002 * steps, (0.002 + 3e-5) * steps + 1e-4)
    assert state.plain_engine.coefficients == pytest.approx((1e-4, 3e-5), rel=1e-6)
    assert state._plain_step_engine() == pytest.approx(3e-5 + 1e-4 / adaptive.MAX_PLAIN_BURST)


def test_speculation_must_beat_plain_steps_by_the_margin():
    """G7: a round is taken instead of plain steps only if the model has it plain_margin ahead."""
    def modelled_gain(state):
        plain, steps, seconds = state.rates(8, False)
        return float((steps / seconds).max() / plain - 1)

    gains = {}
    for engine in (3.6e-3, 3.3e-3):  # the round's own time: a near tie, then a clear win
        state = gs.AdaptiveDraftLength(max_draft_length=2, plain_margin=0.05).start(8)
        feed(state, np.full(8, 2), 2, call=0.002, draft_step=2e-4, engine=engine)
        state.update_plain(8, 4, 0.008, 0.0084)  # 2.1 ms a plain step
        gains[engine] = modelled_gain(state)
        g, _ = state.choose(8, False, 400)
        assert (g > 0) == (gains[engine] > 0.05)
    assert 0 < gains[3.6e-3] < 0.05 < gains[3.3e-3]  # both cases happened


def test_settings_are_validated():
    with pytest.raises(ValueError, match="explore_share"):
        gs.AdaptiveDraftLength(explore_share=0.0)
    with pytest.raises(ValueError, match="cost_decay"):
        gs.AdaptiveDraftLength(cost_decay=1.5)
    with pytest.raises(ValueError, match="min_evidence"):
        gs.AdaptiveDraftLength(min_evidence=0)
    with pytest.raises(ValueError, match="plain_margin"):
        gs.AdaptiveDraftLength(plain_margin=0.0)
    with pytest.raises(ValueError, match=r"switch_margin must lie in \[0, 1\)"):
        gs.AdaptiveDraftLength(switch_margin=-0.01)
    assert gs.AdaptiveDraftLength(switch_margin=0.0).switch_margin == 0.0  # 0: always switch


def test_call_costs_interpolate_settled_sizes_and_extend_them_with_the_fit_slope():
    """C(s) (G4): a call's time by size, not a straight line through small and large calls."""
    costs = adaptive.CallCosts(0.98)
    measured = {1: 3.2e-4, 5: 4.5e-4, 9: 5.7e-4, 17: 1.38e-3, 33: 2.89e-3}  # diamonds' calls
    for size, seconds in measured.items():
        for _ in range(2):
            costs.add(size, seconds)
    for size, seconds in measured.items():
        assert costs.predict(size) == pytest.approx(seconds)
    assert costs.predict(7) == pytest.approx((4.5e-4 + 5.7e-4) / 2)  # between 5 and 9
    a, b = costs.fit.coefficients
    assert a + b * 9 > 1.3 * 5.7e-4  # the straight line prices 9 states 30% too dear
    assert costs.predict(40) == pytest.approx(2.89e-3 + b * 7)  # beyond: the fit's slope
    costs.add(13, 0.5)  # measured once (a one-time setup): no dearer than interpolated
    assert costs.predict(13) == pytest.approx((5.7e-4 + 1.38e-3) / 2)
    costs.add(13, 9e-4)  # twice: the smaller observation
    assert costs.predict(13) == pytest.approx(9e-4)
    costs.add(13, 10.0)  # later: clipped at three times the mean
    assert costs.predict(13) < 4 * 9e-4


def test_a_size_measured_once_is_priced_optimistically_so_the_rule_measures_it_again():
    """G4: one cold call (16 DDPM chains' first round of 80 states: 30 ms after another sampler's
    run, 21 ms warm) must not price its draft length for the rest of the run. Measured once, a size
    costs per state as little as the next larger settled size but no less than the next smaller;
    the linear interpolation between them (the mutant) priced g = 4 at 23.5 ms for good."""
    costs = adaptive.CallCosts(0.98)
    costs.add(272, 0.070, calls=2)  # settled
    costs.add(80, 0.030)  # once, cold
    assert costs.predict(80) == pytest.approx(0.070 * 80 / 272)  # below the settled sizes
    costs.add(16, 0.008, calls=2)  # settled
    interpolated = 0.008 + (0.070 - 0.008) * (80 - 16) / (272 - 16)
    assert costs.predict(80) == pytest.approx(0.070 * 80 / 272)  # between 16 and 272
    assert costs.predict(80) < interpolated - 2e-3  # the mutant: interpolated, 23.5 ms
    costs.add(80, 0.0214)  # measured again, warm: settled on the smaller observation
    assert costs.settled(80) and costs.predict(80) == pytest.approx(0.0214)
    costs.add(48, 0.002)  # once, fast: never priced dearer than its own measurement
    assert costs.predict(48) == pytest.approx(0.002)
    costs.add(144, 0.060)  # once, slow: between settled 80 and 272
    assert costs.predict(144) == pytest.approx(max(0.0214, 0.070 * 144 / 272))


def test_a_size_not_observed_lately_is_forgotten_so_one_dear_visit_does_not_lock_the_rule_out():
    """G4: a draft length visited by a few switching rounds paid their cold calls (and any
    preemption): one eight_schools run (free drafter, seed 53) priced 12 states at 511 us from
    three calls against 333 us for 11 states from 612, every size above 11 near 500 us, and drafted
    10 for the rest of the run where 16 is best. A size not observed over ``_STALE_CALLS``
    observations is priced as never measured, and its next call starts its mean afresh; the
    mutant that keeps it (the per-size mean alone) still prices 12 states at 511 us."""
    costs = adaptive.CallCosts(0.98)
    costs.add(12, 5.11e-4, calls=2)  # settled, dear
    assert costs.predict(12) == pytest.approx(5.11e-4)
    for _ in range(adaptive._STALE_CALLS // 2):
        costs.add(11, 3.33e-4, calls=2)  # two observations each
    assert costs.settled(12)  # exactly _STALE_CALLS observations ago: still current
    costs.add(11, 3.33e-4)
    assert not costs.settled(12)  # one more: stale
    a, b = costs.fit.coefficients
    assert costs.predict(12) == pytest.approx(3.33e-4 + b * 1)  # above 11: the fit's slope
    assert costs.predict(12) < 4e-4
    costs.add(12, 3.40e-4, calls=2)  # observed again: afresh, not averaged with 511 us
    assert costs.settled(12) and costs.predict(12) == pytest.approx(3.40e-4)


def test_many_chains_forget_per_chain_steps_one_chain_per_round():
    """G3: the counts decay by ``decay`` a round, or per five chain-steps when a round advances
    further, never faster than a memory of 1 / (1 - decay) chain-rounds. 16 DDPM chains drafting
    16 cover a 250-step diffusion in about 16 rounds: a per-round memory spanned most of it while
    the late steps' acceptance fell. One chain's round is one observation and keeps its memory."""
    def factor(n, tau, g):
        state = gs.AdaptiveDraftLength(max_draft_length=16, decay=0.9).start(n)
        feed(state, np.full(n, tau), g, call=0.02, draft_step=2e-4, engine=1e-3, n=n, rounds=1)
        before = state.hits.copy()
        feed(state, np.full(n, tau), g, call=0.02, draft_step=2e-4, engine=1e-3, n=n, rounds=1)
        return (state.hits[0] - n) / before[0]  # hits_1 = d hits_1 + n

    assert factor(16, 14, 16) == pytest.approx(0.9 ** 3)  # 15 chain-steps a round
    assert factor(16, 1, 4) == pytest.approx(0.9)  # two chain-steps a round: per round
    assert factor(1, 14, 16) == pytest.approx(0.9)  # one chain: per round
    assert factor(2, 14, 16) == pytest.approx(0.8)  # a memory of ten chain-rounds at least


def test_policy_prices_rounds_by_measured_call_sizes_not_a_straight_line():
    """Convex call costs (fast up to 9 states, then slow): the best g is 8, where a straight-line
    fit through every call would price g = 8 so dear that it drafts short."""
    def call(states):  # seconds: flat-ish to 9 states, then 0.15 ms per state
        return 3e-4 + 3e-5 * states + 1.5e-4 * max(states - 9, 0)

    state = gs.AdaptiveDraftLength(max_draft_length=32).start(1)
    rng = np.random.default_rng(1)
    for g in [g for g in [32, 16, 4, 8] * 10 for _ in range(2)]:  # twice each (G4)
        tau = min(int(rng.geometric(0.1)) - 1, g)  # geometric acceptance q = 0.9
        state.update(np.arange(1), np.array([tau]), np.array([g]), g + 1, call(g + 1),
                     2e-5 * g, g, call(g + 1) + 1e-4 + 5e-5 * g, 2e-5 * g)
    state.update_plain(1, 4, 4 * call(1), 4 * (call(1) + 3e-5))
    g, _ = state.choose(1, False, 4000)
    assert 7 <= g <= 9
    # the mutant (one straight line over every call) drafts far shorter
    survive = state._survive
    steps, seconds = adaptive.goodput(survive, 1, *state.calls.fit.coefficients,
                                      *state.engine.coefficients[:1],
                                      state.drafting.value + state.engine.coefficients[1], False)
    assert int(np.argmax(steps / seconds)) + 1 <= 5


def test_plain_steps_priced_by_one_call_are_measured_in_a_short_burst_first():
    """A call size measured once is priced no dearer than predicted (G4); when that price makes
    plain steps win, two plain steps settle it before a long burst is spent on them."""
    state = gs.AdaptiveDraftLength(max_draft_length=16).start(16)
    state.update_plain(16, 1, 0.009, 0.0093)  # the free drafter's first step: 9 ms, once
    rounds = ((4, 4, 0.0195), (16, 15, 0.069), (4, 4, 0.020), (16, 15, 0.074))
    for g, tau, seconds in (r for r in rounds for _ in range(2)):  # twice each (G4)
        state.update(np.arange(16), np.full(16, tau), np.full(16, g), 16 * (g + 1), seconds,
                     5e-4, g, seconds + 1.5e-3, 5e-4)
    assert not state.calls.settled(16)
    assert state.calls.predict(16) < 0.009  # extrapolated from the settled sizes
    assert state.choose(16, False, 200) == (0, 2)
    state.update_plain(16, 2, 2 * 0.0075, 2 * 0.0077)  # in fact 7.5 ms a call
    assert state.calls.settled(16) and state.calls.predict(16) == pytest.approx(0.0075)
    assert state.choose(16, False, 198)[0] > 0  # speculation wins at the settled price


def test_a_plain_probe_waits_while_speculation_wins_at_the_price_of_the_calls_slope():
    """G6b: one DDPM chain's first plain step (the free drafter's, 8.6 ms, cold) prices C(1) per
    state as cheap as the settled 17 states (1 ms): plain steps win at that price, but rounds of
    17 states in 16.5 ms that advance 15 steps beat them at the price the calls' slope gives (at
    most the 8.6 ms measured), so the rule drafts instead of spending two plain steps on the
    probe (3% of a 250-step run); with a long run left the probe costs less than
    ``explore_share`` of it and runs, and rounds that advance nothing still send the rule to
    measure plain steps (once their draft length's calls are measured: 5 states in 11.2 ms)."""
    def state_after(tau):
        state = gs.AdaptiveDraftLength(max_draft_length=16).start(1)
        state.update_plain(1, 1, 0.0086, 0.0087)  # the free drafter's first step: once
        for g, seconds in ((4, 0.0112), (12, 0.0187), (16, 0.0165), (16, 0.0165)):
            state.update(np.arange(1), np.array([min(tau, g)]), np.array([g]), g + 1, seconds,
                         1e-3, g, seconds + 1.2e-3, 1e-3)
        return state

    def good():
        state = state_after(15)
        for _ in range(12):  # evidence past min_evidence: plain steps may win from here on
            state.update(np.arange(1), np.array([15]), np.array([16]), 17, 0.0165, 1e-3, 16,
                         0.0177, 1e-3)
        return state

    state = good()
    assert not state.calls.settled(1) and state.calls.predict(1) < 0.0012  # hopeful: 1 ms
    plain, steps, seconds = state.rates(1, False)
    assert plain > 1.03 * (steps / seconds).max()  # plain wins at the hopeful price
    g, burst = state.choose(1, False, 200)
    assert g >= 1 and burst == 0  # the mutant (always probe): (0, 2)
    # a long run left: two plain steps cost under explore_share of it, and the probe runs
    assert good().choose(1, False, 100_000) == (0, 2)  # the mutant (no budget): g >= 1
    slow = state_after(0)
    for _ in range(12):
        slow.update(np.arange(1), np.array([0]), np.array([4]), 5, 0.0112, 1e-3, 4, 0.0124, 1e-3)
    assert slow.choose(1, False, 200) == (0, 2)


def test_acceptance_counts_age_during_plain_steps_as_over_rounds_that_advance_as_far():
    """G3: a chain that ran plain steps has moved on; the rounds that sent it there weigh less."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, decay=0.9).start(1)
    feed(state, np.full(1, 1), 4, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=10)
    assert state.advance == pytest.approx(2.0)  # tau = 1: two chain-steps a round
    hits, prior = state.hits.copy(), state.prior_weight
    state.update_plain(1, 20, 0.02, 0.021)  # 20 plain steps: as far as ten rounds
    np.testing.assert_allclose(state.hits, hits * 0.9**10)
    assert state.prior_weight == pytest.approx(prior * 0.9**10)


def test_after_plain_steps_the_recent_counts_give_way_to_the_runs_long_memory():
    """G3: a bad stretch sends the rule to plain steps; as the chain moves on, the recent counts
    fade and the run's long-memory acceptance brings speculation back, long before the
    exploration budget (G5) would."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, explore_share=0.001).start(1)
    state.update_plain(1, 2, 0.002, 0.0021)  # a plain step: ~1 ms
    feed(state, np.full(1, 8), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1, rounds=60)
    feed(state, np.zeros(1, dtype=int), 8, call=0.002, draft_step=2e-4, engine=1e-3, n=1,
         rounds=10)  # a region where every draft fails
    plain_steps = 0
    while plain_steps < 1000:
        g, burst = state.choose(1, False, 4000)
        if g:
            break
        state.update_plain(1, burst, 0.001 * burst, 0.00105 * burst)
        plain_steps += burst
    assert g > 0 and 0 < plain_steps <= 200  # G5 alone would wait ~1000 plain steps


def test_the_rule_keeps_its_draft_length_unless_another_is_switch_margin_ahead():
    """G8: near the flat top of the goodput curve the last g stays; a clear gain switches. The
    margin is switch_margin for one chain and switch_margin / sqrt(n) for n chains."""
    pattern = np.array([8, 8, 8, 8, 4, 4, 2, 0])
    for n in (1, 8):
        state = gs.AdaptiveDraftLength(max_draft_length=16, switch_margin=0.02).start(n)
        for i in range(32):
            tau = pattern if n == 8 else pattern[i % 8:i % 8 + 1]
            feed(state, tau, 8, call=0.002, draft_step=5e-4, engine=1e-3, n=n, rounds=1)
        state.update_plain(n, 4, 0.008, 0.0084)  # 2.1 ms a plain step
        plain, steps, seconds = state.rates(n, False)
        ratio = steps / seconds / (steps / seconds).max()
        best = int(np.argmax(ratio)) + 1
        margin = 0.02 / np.sqrt(n)
        near = [g for g in range(1, 17) if g != best and ratio[g - 1] > 1 / (1 + margin)]
        far = [g for g in range(1, 17) if ratio[g - 1] < 1 / (1 + margin)]
        assert near and far and (steps / seconds).max() > 1.05 * plain
        state.last = near[0]
        assert state.choose(n, False, 400) == (near[0], 0)  # within the margin: kept
        state.last = far[0]
        assert state.choose(n, False, 400) == (best, 0)  # further behind: switched
        assert state.choose(n, False, 400) == (best, 0)
        if n == 8:  # within one chain's margin, outside that of 8 chains: switched
            between = [g for g in range(1, 17) if 1 / 1.02 < ratio[g - 1] < 1 / (1 + margin)]
            assert between
            state.last = between[0]
            assert state.choose(n, False, 400) == (best, 0)

def test_short_rounds_keep_a_decision_and_fold_their_reports_in_order():
    """G9: deciding every round cost a one-chain Langevin round of 1.1-1.5 ms 30-50 us (+2..+5.5%
    against a fixed length). Where the modelled rounds are short the rule keeps a winning decision
    for as many rounds as fit in the decision window, keeping their reports and folding them in
    order before the next decision: the estimates end up exactly as without decisions (a mutant
    that dropped or reordered reports would not), a decision or a property read sees every
    report, and rounds as long as the window still decide every round."""
    window = adaptive._DECISION_WINDOW

    def run(call, round_time, choose):
        state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=2).start(1)
        rng, most_held, most_kept, actions = np.random.default_rng(3), 0, 0, []
        state.update_plain(1, 2, 2 * call * 0.9, 2 * round_time)  # plain steps measured: dear
        for _ in range(60):
            if choose:
                actions.append(state.choose(1, False, 10_000))
                most_held = max(most_held, state._held_rounds)
            state.update(np.arange(1), np.array([rng.integers(0, 6)]), np.array([5]), 6, call,
                         1e-4, 5, round_time, 2e-4)
            most_kept = max(most_kept, len(state._pending))
        return state, most_held, most_kept, actions

    eager, _, most_kept, _ = run(4e-4, 1e-3, choose=False)
    assert most_kept == 0  # no decision kept: every report folded as it comes
    kept, most_held, most_kept, actions = run(4e-4, 1e-3, choose=True)
    assert most_held >= 2 and most_kept >= 2  # ~1 ms rounds: decisions kept for several rounds
    assert len(set(actions[-20:])) <= 2
    rounds = kept.rounds  # a property read folds the kept reports first
    assert not kept._pending and rounds == eager.rounds == 60
    for a, b in zip(eager._arrays, kept._arrays):
        np.testing.assert_array_equal(a, b)
    slow, most_held, most_kept, _ = run(0.6 * window, window, choose=True)
    assert most_held == 0 and most_kept == 0  # rounds as long as the window: decided each round


def test_a_changed_draft_length_is_decided_again_after_one_round():
    """G9: only a decision that repeats the last g is kept. Eight chains climbing from the
    start-up's short drafts to g = 16 (the adaptive suite's good draft, c = 30) kept each step
    of the climb for one or two more rounds with a 20 ms window: +5.7% against g = 16 where
    deciding every round gave +1.3% (12 seeds each)."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=2).start(1)
    state.update_plain(1, 2, 2 * 4e-4 * 0.9, 2e-3)  # plain steps measured: dear
    feed(state, np.full(1, 8), 8, call=4e-4, draft_step=2e-5, engine=1e-4, n=1, rounds=40)
    state.last = 3  # as if the rule had drafted 3 so far
    assert state.choose(1, False, 10_000) == (8, 0)  # every draft accepted: the longest
    assert state._held_rounds == 0  # a changed g: decided again after this round
    assert state.choose(1, False, 10_000) == (8, 0)
    assert state._held_rounds > 0  # the same g again: kept for the next rounds


def test_a_fresh_decision_leaves_no_kept_decision_behind():
    """G9: a kept decision is dropped when the rule decides afresh (the chain count or the steps
    left changed), not left to come back later."""
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=2).start(1)
    state.update_plain(1, 2, 2 * 4e-4 * 0.9, 2e-3)
    rng = np.random.default_rng(3)
    for _ in range(60):
        g, _ = state.choose(1, False, 10_000)
        if state._held_rounds > 0:
            break
        state.update(np.arange(1), np.array([rng.integers(0, 6)]), np.array([g]), g + 1, 4e-4,
                     1e-4, g, 1e-3, 2e-4)
    assert state._held_rounds > 0
    assert state.choose(1, False, 1) == (0, 1)  # one step left: a plain step, decided afresh
    assert state._held_rounds == 0


def test_the_engine_slope_has_a_ridge_and_fades_when_no_longer_renewed():
    """G4b: ``o1`` minimizes the decayed squared error plus ``ridge o1^2`` (exactly: the
    penalized normal equations), and rounds that all draft one length let a slope the start-up
    measured fade, ``o0`` taking the level at that length."""
    fit = adaptive.DecayedFit(0.9, ridge=10.0)
    data = [(g, 3e-4 + 5e-5 * g) for g in (4, 8, 4, 8, 16, 8)]
    for g, y in data:
        fit.add(1.0, g, y)
    weights = 0.9 ** np.arange(len(data))[::-1]
    design = np.array([[1.0, g] for g, _ in data])
    normal = design.T @ (weights[:, None] * design) + np.diag([0.0, 10.0])  # ridge on o1 alone
    expected = np.linalg.solve(normal, design.T @ (weights * np.array([y for _, y in data])))
    np.testing.assert_allclose(fit.coefficients, expected, rtol=1e-9)
    assert 0.0 < fit.coefficients[1] < 5e-5  # shrunk, not gone: the rounds spread g

    state = gs.AdaptiveDraftLength(max_draft_length=16).start(1)
    for g in (4, 8, 4, 8, 4, 8):  # the start-up's spread: a steep slope
        feed(state, np.full(1, g), g, call=0.002, draft_step=2e-4, engine=3e-4 + 5e-5 * g, n=1,
             rounds=2)
    assert state.engine.coefficients[1] > 2e-5
    feed(state, np.full(1, 8), 8, call=0.002, draft_step=2e-4, engine=8e-4, n=1, rounds=400)
    o0, o1 = state.engine.coefficients
    assert o1 < 1e-6  # faded: the rounds at g = 8 say nothing of the slope
    assert o0 + 8 * o1 == pytest.approx(8e-4, rel=1e-3)  # the level at the length run


def test_rounds_that_accept_nothing_give_way_to_plain_steps_before_min_evidence():
    """G6: before min_evidence, plain steps win once they beat rounds at the hopeful acceptance
    (each position's Wilson upper bound, 2.5 standard errors). One chain of gp_pois_regr with
    the Laplace drafter (1000 steps) accepts about 1% of its drafts, and a round of g = 4 costs
    1.6 plain steps: the sixteen start-up rounds that waited for rounds with every draft
    accepted to lose cost it about 1% of the run. The mutant (plain only once they beat rounds
    with every draft accepted, the rule before) drafts all sixteen."""
    state = gs.AdaptiveDraftLength(max_draft_length=32).start(1)
    assert state.config.min_evidence == 16
    state.update_plain(1, 2, 0.0012, 0.0013)  # 0.65 ms a plain step
    drafted = 0
    while (action := state.choose(1, False, 1000))[0] > 0:
        assert action == (4, 0) and drafted < 16
        feed(state, np.zeros(1, dtype=int), 4, call=6e-4, draft_step=2e-5, engine=3e-4, n=1,
             rounds=1)
        drafted += 1
    assert 6 <= drafted <= 11  # q_1+ = 6.25 / (rounds + 6.25): 0.51 after 6, 0.36 after 11


def test_hopeful_acceptance_is_the_wilson_upper_bound_of_each_position():
    """G6's q_j+ (2.5 standard errors), and a position never at risk keeps the one before's:
    the rounds' steps at the hopeful acceptance are ``1 + sum_{i<=g} S_i+``."""
    z = 2.5
    for hits, at_risk in ((0.0, 4.0), (3.0, 8.0), (9.5, 10.0), (10.0, 10.0)):
        p = hits / at_risk
        wilson = (p + z * z / (2 * at_risk) + z * math.sqrt(
            p * (1 - p) / at_risk + z * z / (4 * at_risk ** 2))) / (1 + z * z / at_risk)
        assert adaptive._acceptance_bound(hits, at_risk) == pytest.approx(min(wilson, 1.0))
    assert adaptive._acceptance_bound(0.0, 4.0) == pytest.approx(z * z / (4 + z * z))
    state = gs.AdaptiveDraftLength(max_draft_length=8, min_evidence=4).start(1)
    feed(state, np.zeros(1, dtype=int), 2, call=6e-4, draft_step=2e-5, engine=3e-4, n=1,
         rounds=3)  # position 1 at risk three times, never accepted; 2..8 never at risk
    hopeful = state._decide(1, False, 8)[3]
    q1 = adaptive._acceptance_bound(0.0, state.long_counts[1, 0])
    seconds = state._seconds[:8]
    expected = max(sum(q1 ** i for i in range(g + 1)) / seconds[g - 1]
                   for g in range(1, 9))  # q_j+ = q_1+: S_j+ = (q_1+)^j
    assert hopeful == pytest.approx(expected)
