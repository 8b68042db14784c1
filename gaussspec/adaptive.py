"""Adaptive draft length: pick gamma online from measured acceptance and measured costs.

A goodput model (ALGORITHMS section 9). For ``n`` chains a speculative round with draft length
``g`` advances ``n (1 + sum_{i<=g} S_i)`` chain-steps on average, ``S_i = P(tau >= i)``, and costs

    T_spec(g) = C(n (g + 1)) [+ C(n)] + o0 + o1 g + d g             (G1)

seconds: the batched target call of ``n (g + 1)`` states (and the frozen drafter's call of ``n``
states), the engine's own time per round outside the drafting loop ``o0 + o1 g`` (timed from one
update to the next, so the policy's own work counts), and ``g`` drafting steps of ``d`` seconds.
A burst of plain steps advances ``n`` chain-steps per

    T_plain = C(n) + p0                                            (G2)

seconds, ``p0`` the engine's time per plain step of a full burst (a burst of ``k`` steps costs
``p_burst + p0 k``; the fixed part is spread over ``MAX_PLAIN_BURST`` steps). The policy picks the
``g`` in ``0 .. max_draft_length`` with the largest goodput ``steps / time``; ``g = 0`` runs a
burst of plain steps. Everything is measured online:

* G3, acceptance: ``S_i = prod_{j<=i} q_j``, the conditional acceptances ``q_j`` estimated Kaplan-
  Meier style from counts pooled over the chains that decay by ``decay`` per round (or per
  ``_DECAY_STEPS`` chain-steps when a round advances further, never to a memory under ``1 / (1 -
  decay)`` chain-rounds; plain steps fade them too). A position not drafted lately falls back
  through ``n`` pseudo-counts on the previous position's ``q`` or, when higher, the earlier
  positions' pooled; ``q_1`` on a prior 1/2 whose pseudo-count decays with the counts.
* G3b, two memories: the same counts with a long memory (``_LONG_DECAY``) give ``q_j^long``, and
  the rule uses ``w q_j + (1 - w) q_j^long`` with ``w = D^2 / (D^2 + V) * A / (A + k)``: ``D`` the
  two estimates' difference, ``V`` the recent one's sampling variance, ``A`` its at-risk count,
  ``k`` one round's worth. Noise keeps the long memory's estimate; a real change the recent one.
* G4, call costs: ``C(s)`` a decaying mean per call size (the first two observations settle on
  the smaller), interpolated between settled sizes and extended beyond them with the slope of a
  decaying fit ``a + b s`` over all calls. A size measured once is priced at most at its one
  measurement, which may have paid a one-time cost, and between settled sizes as cheap per state
  as the next larger one but no cheaper than the next smaller one's call (so the rule measures it
  again, once); a size not observed over the last ``_STALE_CALLS`` observations is priced as
  never measured.
* G4b, engine time: ``d`` a decaying mean of the drafting loop's time per step; ``o0 + o1 g`` a
  decaying least-squares fit on the rest of each round with a ridge of ``_ENGINE_RIDGE`` on
  ``o1`` (a slope that rounds no longer renew fades to 0); ``p_burst + p0 k`` likewise on plain
  bursts. A round whose draft length differs from the previous one's (a switch: fresh draws,
  buffers of another shape) prices its calls but not its drafting or engine time, except while
  fewer than two rounds are priced. A round or burst during which numba compiled is not timed;
  the first two observations of ``d`` count as their smallest, later ones at most ``_CLIP``
  times the prediction.
* G5, exploration: while plain steps win, a round at the best ``g >= 1`` is tried again once the
  plain time pays for its expected loss at ``explore_share``.
* G6, start-up: plain steps may win only after ``min_evidence`` chain-rounds, unless they beat
  rounds priced at the hopeful acceptance (each position's Wilson upper bound, ``_HOPEFUL_Z``
  standard errors up, from the long memory's counts), and only once two rounds are timed; until
  then each round drafts at least ``initial_draft_length``. While every call so far had one
  size, a start-up round that would call that size again gives way to ``_PLAIN_PROBE`` plain
  steps, which tell latency from per-state cost.
* G6b, the probe's price: a plain step priced only by hope (``C(n)`` measured once) is measured
  by two steps, unless speculation beats plain steps priced without that hope and the two steps
  would cost more than ``explore_share`` of the run left.
* G7: speculation must beat plain steps by ``plain_margin`` in the model.
* G8: while speculation wins, the last ``g`` is kept unless the best beats it by ``switch_margin
  / sqrt(n)`` (one chain's counts are noisy; ``n`` chains' pooled counts are not).
* G9: where rounds are short, a decision that repeats the last ``g`` past the start-up (never an
  exploration round) is kept for the rounds that fit in ``_DECISION_WINDOW`` (at most
  ``_MAX_HELD_ROUNDS``); their reports are folded in order before the next decision, which sees
  the estimates exactly as without the hold. A change in the number of chains, or fewer steps
  left than ``g`` needs, decides at once.

Why each rule is there, with the runs that shaped it (what went wrong without it, what it
measured to): ``docs/adaptive.md``.

Every round stays exact for any ``g`` chosen from the past, and plain steps are exact, so the
whole run keeps the target chain's law.
"""

from __future__ import annotations

import math

import attrs
import numba
import numpy as np

__all__ = ["AdaptiveDraftLength", "AdaptiveState", "CallCosts", "DecayedFit", "DecayedMean",
           "survival", "round_counts", "goodput"]

MAX_PLAIN_BURST = 64  # plain steps between two decisions, at most
_PRIOR_ACCEPTANCE = 0.5  # q_1 before any round: one pseudo-observation
_CLIP = 3.0  # a cost observation counts at most _CLIP times its prediction (preemption spikes)
_SETTLE = 2  # observations before an engine-time estimate is trusted (and averaged)
_PLAIN_PROBE = _SETTLE  # plain steps that price C(n) when no call size tells latency apart (G6)
_LONG_DECAY = 0.99  # the counts' long memory, per round (or per _DECAY_STEPS chain-steps) (G3b)
_DECAY_STEPS = 5.0  # chain-steps (per chain) over which the counts decay by ``decay`` (G3)
_DECISION_WINDOW = 0.02  # seconds of modelled rounds that keep a speculative decision (G9)
_MAX_HELD_ROUNDS = 16  # rounds one decision is kept for, at most (G9)
_ENGINE_RIDGE = 10.0  # o1's ridge, in rounds one position away from the mean g (G4b)
_STALE_CALLS = 100  # a call size not observed over this many observations is forgotten (G4)
_HOPEFUL_Z = 2.5  # standard errors of the start-up's hopeful acceptance q+ (G6)


def _positive(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _share(instance, attribute, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1), got {value!r}")


def _unit(instance, attribute, value):
    if not 0.0 < value < 1.0:
        raise ValueError(f"{attribute.name} must lie in (0, 1), got {value!r}")


@attrs.frozen
class AdaptiveDraftLength:
    """Choose the draft length each round from a goodput model.

    Args:
        max_draft_length: Largest draft length considered.
        initial_draft_length: Draft length of the first round, before acceptance is measured
            (clipped to ``max_draft_length``).
        decay: Weight of the past in the acceptance counts per speculative round, or per five
            chain-steps when a round advances the chains further, at most as fast as a memory
            of ``1 / (1 - decay)`` chain-rounds (G3).
        cost_decay: Weight of the past, per observation, in the cost fits.
        explore_share: While plain steps win, the share of time that speculative rounds at the
            best draft length may lose (G5), so that acceptance estimates stay current.
        min_evidence: Chain-rounds of speculation before plain steps may win, unless they would
            win at the hopeful acceptance (each position's Wilson upper bound, 2.5 standard
            errors; every draft accepted before any round); until then each round drafts at least
            ``initial_draft_length`` (G6). One chain's round is one observation of a skewed
            count (often 0, often every draft): a few unlucky ones must not send a whole run to
            plain steps. Many chains pass it in their first round.
        switch_margin: The share by which another draft length must beat the last one in the
            model before one chain's rule switches to it (G8); ``switch_margin / sqrt(n)`` for
            ``n`` chains, whose pooled counts are that much less noisy. Goodput is flat near its
            top, and one chain's recent counts move the modelled top by more than the flat part
            is wide: switching on such a difference chases the counts' noise. Many chains'
            counts follow real changes (a diffusion's acceptance along its steps), which a
            margin would only delay.
        plain_margin: The share by which speculation must beat plain steps in the model before
            a round is taken instead of them (G7). The model's times are a few percent off (a
            round's costs are measured, not known), and near a tie those errors would pick
            rounds that lose to plain steps; a margin caps what such a tie can cost either way.
    """

    max_draft_length: int = attrs.field(default=16, validator=_positive)
    initial_draft_length: int = attrs.field(default=4, validator=_positive)
    decay: float = attrs.field(default=0.9, validator=_unit)
    cost_decay: float = attrs.field(default=0.98, validator=_unit)
    explore_share: float = attrs.field(default=0.005, validator=_unit)
    min_evidence: int = attrs.field(default=16, validator=_positive)
    plain_margin: float = attrs.field(default=0.03, validator=_unit)
    switch_margin: float = attrs.field(default=0.02, validator=_share)

    def start(self, num_chains: int) -> "AdaptiveState":
        """Fresh per-run state."""
        return AdaptiveState(self, num_chains)


# Layouts of the estimators' state arrays (compiled updates work on these in place).
_TOTAL, _WEIGHT, _VALUE, _COUNT = range(4)  # DecayedMean
_UU, _UV, _VV, _UY, _VY, _FIT_COUNT, _C0, _C1, _RIDGE = range(9)  # DecayedFit
_SEEN = 4  # CallCosts.means: a DecayedMean per size, then the clock of its last observation


@numba.njit(nogil=True)
def _mean_add(m, decay, y):
    """:meth:`DecayedMean.add` on its state array ``m``."""
    m[_WEIGHT] = decay * m[_WEIGHT] + 1.0
    if m[_COUNT] < _SETTLE:
        m[_VALUE] = y if m[_COUNT] == 0 else min(m[_VALUE], y)
        m[_TOTAL] = m[_VALUE] * m[_WEIGHT]
    else:
        y = min(y, _CLIP * max(m[_VALUE], 1e-9))
        m[_TOTAL] = decay * m[_TOTAL] + y
        m[_VALUE] = m[_TOTAL] / m[_WEIGHT]
    m[_COUNT] += 1.0


@numba.njit(nogil=True)
def _fit_add(f, decay, u, v, y):
    """:meth:`DecayedFit.add` on its state array ``f``."""
    predicted = f[_C0] * u + f[_C1] * v
    if f[_FIT_COUNT] >= 3:
        y = min(y, _CLIP * max(predicted, 1e-9))
    elif 0 < f[_FIT_COUNT] < _SETTLE and _CLIP * y < predicted:
        for i in range(_FIT_COUNT):  # the earlier observations paid a one-time cost
            f[i] = 0.0
    f[_UU] = decay * f[_UU] + u * u
    f[_UV] = decay * f[_UV] + u * v
    f[_VV] = decay * f[_VV] + v * v
    f[_UY] = decay * f[_UY] + u * y
    f[_VY] = decay * f[_VY] + v * y
    f[_FIT_COUNT] += 1.0
    _solve_non_negative(f)


@numba.njit(nogil=True)
def _solve_non_negative(f):
    """Normal equations of a two-feature fit, falling back to one feature when singular or < 0;
    the coefficients go to ``f[_C0], f[_C1]``.

    The fit's ridge ``f[_RIDGE]`` adds ``ridge c1^2`` to the squared error (G4b). With ``u = 1``
    the intercept is free and ``c1 = S_vy / (S_vv + ridge)`` on the centred sums: a slope the
    observations no longer spread out to renew fades to 0.
    """
    uu, uv, vv, uy, vy = f[_UU], f[_UV], f[_VV] + f[_RIDGE], f[_UY], f[_VY]  # G4b
    det = uu * vv - uv * uv
    if det > 1e-9 * uu * vv:
        c0, c1 = (vv * uy - uv * vy) / det, (uu * vy - uv * uy) / det
        if c0 >= 0.0 and c1 >= 0.0:
            f[_C0], f[_C1] = c0, c1
            return
    only_u = max(uy / uu, 0.0) if uu > 0 else 0.0  # c1 = 0: the first feature alone
    only_v = max(vy / vv, 0.0) if vv > 0 else 0.0  # c0 = 0: the second feature alone
    # the better one-feature fit explains more: c^2 x'x (the projection's squared norm)
    if det > 1e-9 * uu * vv and only_v * only_v * vv > only_u * only_u * uu:
        f[_C0], f[_C1] = 0.0, only_v
    else:
        f[_C0], f[_C1] = only_u, 0.0


_TABLE_CAPACITY = 512  # call sizes remembered; beyond, new sizes are priced by the fit alone


@numba.njit(nogil=True)
def _table_index(sizes, used, size):
    """The first of the ``used`` sorted sizes that is >= ``size`` (binary search)."""
    lo, hi = 0, used
    while lo < hi:
        mid = (lo + hi) // 2
        if sizes[mid] < size:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True)
def _table_add(sizes, means, used, decay, size, seconds):
    """:meth:`CallCosts.add`: one call of ``size`` states into its size's decayed mean (G4).

    ``used`` holds the sizes in use and the table's clock (observations so far). A size last
    observed more than ``_STALE_CALLS`` observations ago starts afresh.
    """
    count, clock = used[0], used[1] + 1
    used[1] = clock
    i = _table_index(sizes, count, size)
    if i == count or sizes[i] != size:
        if count == sizes.shape[0]:
            return  # full: the fit prices this size
        for j in range(count, i, -1):  # keep the sizes sorted
            sizes[j] = sizes[j - 1]
            means[j, :] = means[j - 1, :]
        sizes[i] = size
        means[i, :] = 0.0
        used[0] = count + 1
    elif _stale(means, i, clock):
        means[i, :] = 0.0  # forgotten (G4)
    means[i, _SEEN] = clock
    _mean_add(means[i, :_SEEN], decay, seconds)  # settles on the smaller of two, then clips


@numba.njit(nogil=True)
def _calls_add(sizes, means, used, fit, decay, size, seconds, calls):
    """:meth:`CallCosts.add`: ``calls`` calls of ``size`` states, ``seconds`` each on average,
    into the size's mean (as two observations when several: settled) and the fit ``a + b s``
    (as up to four)."""
    for _ in range(min(calls, _SETTLE)):
        _table_add(sizes, means, used, decay, size, seconds)  # C(s) (G4)
    for _ in range(min(calls, 4)):
        _fit_add(fit, decay, 1.0, size, seconds)  # a + b s


@numba.njit(nogil=True)
def _table_cost(sizes, means, used, fit, size, hopeful=True):
    """``C(size)`` (G4): interpolated between settled sizes, the fit's slope beyond them.

    ``used`` is :attr:`CallCosts.used` (sizes in use, clock); stale sizes count as unmeasured.
    ``hopeful=False`` prices a size measured once as one never measured, at most its
    measurement: without the per-state optimism that sends the rule to measure it again (G6b).
    """
    a, b = fit[_C0], fit[_C1]
    count, clock = used[0], used[1]
    i = _table_index(sizes, count, size)
    lo, hi = i - 1, i
    while lo >= 0 and _live_count(means, lo, clock) < _SETTLE:
        lo -= 1
    while hi < count and _live_count(means, hi, clock) < _SETTLE:
        hi += 1
    if hi < count and sizes[hi] == size:
        return means[hi, _VALUE]  # measured: its own mean
    # measured lately, not settled (returned above): row i, found by the search above
    once = i < count and sizes[i] == size and _live_count(means, i, clock) > 0
    optimistic = once and hopeful
    if lo >= 0 and hi < count:  # between two settled sizes: linear interpolation
        w = (size - sizes[lo]) / (sizes[hi] - sizes[lo])
        cost = (1.0 - w) * means[lo, _VALUE] + w * means[hi, _VALUE]
        if optimistic:  # per state as cheap as the larger size, no cheaper than the smaller
            cost = min(cost, max(means[lo, _VALUE], means[hi, _VALUE] * size / sizes[hi]))
    elif lo >= 0:  # above them: the fit's slope
        cost = means[lo, _VALUE] + b * (size - sizes[lo])
    elif hi < count:  # below them: the fit's slope, no cheaper per state than the smallest
        upper = means[hi, _VALUE]
        cost = upper * size / sizes[hi]  # optimistic when measured once: per state as cheap as it
        if not optimistic:
            cost = max(upper - b * (sizes[hi] - size), cost)
    else:
        cost = a + b * size
    if once:
        cost = min(cost, means[i, _VALUE])  # measured once: no dearer than predicted
    return cost


@numba.njit(nogil=True)
def _identified(fit):
    """:attr:`DecayedFit.identified` on its state array."""
    uu, uv, vv = fit[_UU], fit[_UV], fit[_VV]
    return uu * vv - uv * uv > 1e-9 * uu * vv


@numba.njit(nogil=True)
def _stale(means, i, clock):
    """Whether row ``i``'s last observation is over ``_STALE_CALLS`` observations before
    ``clock`` (G4)."""
    return clock - means[i, _SEEN] > _STALE_CALLS


@numba.njit(nogil=True)
def _live_count(means, i, clock):
    """Row ``i``'s observations, or 0 when stale (G4)."""
    return 0.0 if _stale(means, i, clock) else means[i, _COUNT]


@numba.njit(nogil=True)
def _observations(sizes, means, used, size):
    """How many calls of ``size`` states the table has seen lately (their decayed-mean count; 0:
    none, or stale); ``used`` is :attr:`CallCosts.used`."""
    i = _table_index(sizes, used[0], size)
    return _live_count(means, i, used[1]) if i < used[0] and sizes[i] == size else 0.0


@numba.njit(nogil=True)
def _settled(sizes, means, used, size):
    """:meth:`CallCosts.settled` on its arrays."""
    return _observations(sizes, means, used, size) >= _SETTLE


class CallCosts:
    """A target call's seconds by its number of states, ``C(s)`` (G4).

    A decaying mean per size (the first two observations settle on the smaller), interpolated
    between settled sizes and extended with the slope of a decaying least-squares fit ``a + b s``
    (:class:`DecayedFit`) over every call. A size observed once is priced at most as predicted;
    one not observed over the last ``_STALE_CALLS`` observations is priced as never measured.

    Args:
        decay: Weight of the past per observation (per size, and in the fit).
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.fit = DecayedFit(decay)  # a + b s over every call
        self.sizes = np.zeros(_TABLE_CAPACITY, dtype=np.int64)  # sorted, the first used[0]
        self.means = np.zeros((_TABLE_CAPACITY, 5))  # a DecayedMean state per size, last seen
        self.used = np.zeros(2, dtype=np.int64)  # sizes in use; the clock (observations so far)

    def add(self, size: int, seconds: float, calls: int = 1) -> None:
        """Fold in ``calls`` calls of ``size`` states that took ``seconds`` each on average.

        Several calls count as two observations of their size (their mean is settled) and as
        up to four in the fit.
        """
        _calls_add(self.sizes, self.means, self.used, self.fit.state, self.decay, int(size),
                   float(seconds), int(calls))

    def settled(self, size: int) -> bool:
        """Whether calls of ``size`` states have been measured at least twice."""
        return bool(_settled(self.sizes, self.means, self.used, int(size)))

    def predict(self, size: int) -> float:
        """``C(size)`` in seconds."""
        return float(_table_cost(self.sizes, self.means, self.used, self.fit.state, int(size)))


class DecayedMean:
    """A decaying average that weighs its first observations fully (no start-up bias).

    Args:
        decay: Weight of the past per observation.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.state = np.zeros(4)  # total, weight, value, count (updated in place, compiled)

    total = property(lambda self: float(self.state[_TOTAL]))
    weight = property(lambda self: float(self.state[_WEIGHT]))
    value = property(lambda self: float(self.state[_VALUE]))
    count = property(lambda self: int(self.state[_COUNT]))

    def add(self, y: float) -> None:
        """Fold in one observation, clipped at ``_CLIP`` times the current mean.

        The first ``_SETTLE`` observations set the mean to their smallest (one compilation or
        preemption among them must not price a whole run); later ones are averaged.
        """
        _mean_add(self.state, self.decay, float(y))


class DecayedFit:
    """Decaying least squares ``y ~ c0 u + c1 v`` with non-negative coefficients (G4).

    Args:
        decay: Weight of the past per observation.
        ridge: Weight of the penalty ``ridge c1^2`` (G4b): with ``u = 1``, a slope that the
            observations' spread of ``v`` no longer renews fades to 0.
    """

    def __init__(self, decay: float, ridge: float = 0.0):
        self.decay = decay
        self.state = np.zeros(9)  # uu, uv, vv, uy, vy, count, c0, c1, ridge (the _UU... layout)
        self.state[_RIDGE] = ridge  # read by the compiled fit (G4b)

    count = property(lambda self: int(self.state[_FIT_COUNT]))

    @property
    def coefficients(self) -> tuple[float, float]:
        """``(c0, c1)``."""
        return float(self.state[_C0]), float(self.state[_C1])

    @property
    def identified(self) -> bool:
        """Whether the observations tell the two features apart (not all at one ratio)."""
        return bool(_identified(self.state))

    def predict(self, u: float, v: float) -> float:
        """``c0 u + c1 v``."""
        return float(self.state[_C0] * u + self.state[_C1] * v)

    def add(self, u: float, v: float, y: float) -> None:
        """Fold in one observation (clipped at ``_CLIP`` times the prediction) and refit.

        While fewer than ``_SETTLE`` observations are in, one below ``1 / _CLIP`` of the
        prediction replaces them (they paid a one-time cost).
        """
        _fit_add(self.state, self.decay, float(u), float(v), float(y))


@numba.njit(nogil=True)
def _acceptance_into(hits, at_risk, pseudo_count, prior_weight, out):
    """Fill ``out[:G]`` with the conditional acceptances ``q_1..q_G`` (G3); see :func:`survival`."""
    q, k = _PRIOR_ACCEPTANCE, prior_weight  # q_1: pseudo-counts of the prior
    pooled_hits, pooled_at_risk = prior_weight * _PRIOR_ACCEPTANCE, prior_weight
    for j in range(out.shape[0]):
        if j > 0:  # r_j: q_{j-1}, or the positions before pooled if higher (G3)
            q = max(q, pooled_hits / pooled_at_risk)
        q = (hits[j] + k * q) / (at_risk[j] + k)  # q_j, shrunk towards r_j (G3)
        pooled_hits += hits[j]
        pooled_at_risk += at_risk[j]
        k = pseudo_count
        out[j] = q


@numba.njit(nogil=True)
def _survival_into(hits, at_risk, pseudo_count, prior_weight, out):
    """Fill ``out[:G]`` with ``S_1..S_G`` (G3); see :func:`survival`."""
    _acceptance_into(hits, at_risk, pseudo_count, prior_weight, out)
    product = 1.0
    for j in range(out.shape[0]):
        product *= out[j]  # S_j = prod_{i<=j} q_i (G3)
        out[j] = product


@numba.njit(nogil=True)
def _two_memory_survival_into(hits, at_risk, long_counts, pseudo_count, prior_weight,
                              long_prior_weight, out, long_out):
    """Fill ``out[:G]`` with ``S_1..S_G`` from the recent counts' ``q_j`` shrunk towards the long
    memory's by how far the recent counts' noise explains their difference (G3b).

    ``q_j = w q_j^recent + (1 - w) q_j^long``, ``w = D^2 / (D^2 + V) * A / (A + k)``, with ``D``
    the two estimates' difference, ``A = at_risk_j`` the recent counts, ``V = q^long (1 - q^long)
    / A`` the recent estimate's sampling variance and ``k`` the pseudo-count (no recent counts:
    ``w = 0``). ``long_out`` is overwritten.
    """
    _acceptance_into(hits, at_risk, pseudo_count, prior_weight, out)
    _acceptance_into(long_counts[0], long_counts[1], pseudo_count, long_prior_weight, long_out)
    product = 1.0
    for j in range(out.shape[0]):
        recent, steady = out[j], long_out[j]
        difference = (recent - steady) ** 2  # D^2 (G3b)
        w = 0.0
        if at_risk[j] > 0.0:
            variance = steady * (1.0 - steady) / at_risk[j]  # V (G3b)
            w = difference / (difference + variance) if difference + variance > 0.0 else 1.0
            w *= at_risk[j] / (at_risk[j] + pseudo_count)  # little recent evidence (G3b)
        product *= w * recent + (1.0 - w) * steady  # S_j = prod_{i<=j} q_i (G3, G3b)
        out[j] = product


@numba.njit(nogil=True)
def _goodput_into(survive, n, call_seconds, o0, per_position, steps, seconds):
    """Fill ``steps`` and ``seconds`` for g = 1..G (G1); see :func:`goodput`.

    ``call_seconds[g - 1]``: the round's target calls at draft length g.
    """
    total = 1.0
    for g in range(1, steps.shape[0] + 1):
        total += survive[g - 1]
        steps[g - 1] = n * total  # n (1 + sum_{i<=g} S_i) (G1)
        seconds[g - 1] = max(call_seconds[g - 1] + o0 + per_position * g, 1e-12)  # T_spec(g) (G1)


@numba.njit(nogil=True)
def _fold_round(hits, at_risk, tau, lengths, decay):
    """Decay the counts and add one round's, in place, for positions j = 1..G (G3).

    ``hits_j = decay hits_j + #(tau >= j)``, ``at_risk_j = decay at_risk_j + #(lengths >= j and
    tau >= j - 1)``.
    """
    size = hits.shape[0]
    for j in range(size):
        hits[j] *= decay
        at_risk[j] *= decay
    for row in range(tau.shape[0]):
        for j in range(min(tau[row], size)):  # accepted positions 1..tau
            hits[j] += 1.0
        for j in range(min(tau[row] + 1, lengths[row], size)):  # drafted, all before accepted
            at_risk[j] += 1.0


@numba.njit(nogil=True)
def _plain_step_time(plain_fit):
    """``p0``: the engine's time per plain step of a full burst (G2), its fixed cost spread."""
    return plain_fit[_C1] + plain_fit[_C0] / MAX_PLAIN_BURST


@numba.njit(nogil=True)
def _decide(hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit, drafting,
            plain_fit, survive, long_survive, steps, seconds, call_seconds, pseudo_count,
            prior_weight, long_prior_weight, n, frozen, limit):
    """One decision's arithmetic: G1-G3 for g = 1..limit, the best g and the rates it is judged by.

    The arguments up to ``call_seconds`` are the state's arrays (:attr:`AdaptiveState._arrays`).
    Returns ``(best, best_rate, plain_rate)``: the best g's index (g - 1) and goodput, and plain
    steps' goodput (G2); ``seconds[:limit]`` holds ``T_spec(g)``.
    """
    chains = int(n)
    per_step = drafting[_VALUE]  # d
    plain_engine = _plain_step_time(plain_fit)  # p0 (G2)
    plain_call = _table_cost(sizes, means, used, calls_fit, chains)  # C(n) (G4)
    plain = n / max(plain_call + plain_engine, 1e-12)  # G2 (p0: per step of a full burst)
    for g in range(1, limit + 1):
        call_seconds[g - 1] = _table_cost(sizes, means, used, calls_fit, chains * (g + 1))
        if frozen:
            call_seconds[g - 1] += plain_call  # the frozen drafter's call at the round's start
    _two_memory_survival_into(hits, at_risk, long_counts, pseudo_count, prior_weight,
                              long_prior_weight, survive, long_survive)  # G3, G3b
    _goodput_into(survive[:limit], n, call_seconds, engine_fit[_C0], per_step + engine_fit[_C1],
                  steps[:limit], seconds[:limit])  # G1
    best, best_rate = 0, -1.0
    for g in range(limit):
        rate = steps[g] / seconds[g]
        if rate > best_rate:
            best, best_rate = g, rate
    return best, best_rate, plain


@numba.njit(nogil=True)
def _hopeful_rate(long_counts, seconds, n, limit):
    """The best goodput of g = 1..limit at the hopeful acceptances ``q_j+`` of the long memory's
    counts (G6: :func:`_acceptance_bound`), ``seconds[g - 1]`` being ``T_spec(g)`` (G1)."""
    hopeful_rate, total, survival, bound = 0.0, 1.0, 1.0, 1.0
    for g in range(limit):
        if long_counts[1, g] > 0.0:  # a position never at risk keeps the one before's (G3)
            bound = _acceptance_bound(long_counts[0, g], long_counts[1, g])  # q_j+ (G6)
        survival *= bound  # S_j+ = prod_{i<=j} q_i+
        total += survival  # 1 + sum_{i<=g} S_i+: the round's steps at the hopeful acceptance
        hopeful_rate = max(hopeful_rate, n * total / seconds[g])  # G1 with S_i+ (G6)
    return hopeful_rate


@numba.njit(nogil=True)
def _acceptance_bound(hits, at_risk):
    """``q_j+``: the Wilson upper bound, ``_HOPEFUL_Z`` standard errors up, on a position's
    conditional acceptance from its ``hits`` of ``at_risk`` drafts (G6):

    ``q+ = (p + z^2 / 2M + z sqrt(p (1 - p) / M + z^2 / 4M^2)) / (1 + z^2 / M)``, ``p = H / M``.
    """
    z2 = _HOPEFUL_Z * _HOPEFUL_Z
    p = min(hits / at_risk, 1.0)
    spread = _HOPEFUL_Z * math.sqrt(p * (1.0 - p) / at_risk + z2 / (4.0 * at_risk * at_risk))
    return min((p + z2 / (2.0 * at_risk) + spread) / (1.0 + z2 / at_risk), 1.0)  # Wilson


@numba.njit(nogil=True)
def _round_decay(decay, advance, n):
    """The counts' weight of the past over a round that advances each of ``n`` chains ``advance``
    chain-steps: ``decay``, or ``decay`` per ``_DECAY_STEPS`` chain-steps when the round advances
    further, but a memory of at least ``1 / (1 - decay)`` chain-rounds (G3)."""
    return max(decay ** max(advance / _DECAY_STEPS, 1.0), 1.0 - n * (1.0 - decay))


@numba.njit(nogil=True)
def _update_round(hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit, drafting,
                  recent_decay, long_decay, cost_decay, tau, lengths, call_states, call_time,
                  frozen_time, drafting_time, draft_steps, round_time, timed, steady=True):
    """One speculative round folded into the counts (G3) and the cost estimates (G4).

    The arguments up to ``drafting`` are the state's arrays (:attr:`AdaptiveState._arrays`);
    ``recent_decay`` and ``long_decay`` are this round's weights of the past in the recent and
    long counts (:func:`_round_decay`), ``cost_decay`` every cost estimate's. ``steady`` is False
    for a round that changed the draft length once two rounds are priced (:func:`_update`): its
    calls are priced, its drafting and engine time are not (G4).
    """
    _fold_round(hits, at_risk, tau, lengths, recent_decay)  # G3
    _fold_round(long_counts[0], long_counts[1], tau, lengths, long_decay)  # G3b, long memory
    if timed:  # a compilation holds the interpreter: the round's target calls waited on it too
        if frozen_time > 0.0:  # the frozen drafter's call: one state per chain
            _calls_add(sizes, means, used, calls_fit, cost_decay, tau.shape[0], frozen_time,
                       np.int64(1))  # C(n) (G4); int64 as CallCosts.add passes: one compilation
        if call_states > 0:
            verify_time = call_time - frozen_time
            _calls_add(sizes, means, used, calls_fit, cost_decay, call_states, verify_time,
                       np.int64(1))  # C(s) (G4)
    if timed and steady:
        if draft_steps > 0:
            _mean_add(drafting, cost_decay, drafting_time / draft_steps)  # d
        rest = max(round_time - call_time - drafting_time, 0.0)
        _fit_add(engine_fit, cost_decay, 1.0, draft_steps, rest)  # o0 + o1 g, its ridge (G4b)


def survival(hits: np.ndarray, at_risk: np.ndarray, pseudo_count: float,
             prior_weight: float = 1.0) -> np.ndarray:
    """``S_i = P(tau >= i)``, i = 1..G, from decayed counts (G3).

    ``q_j = (hits_j + k r_j) / (at_risk_j + k)``: the Kaplan-Meier conditional acceptance,
    shrunk by ``k`` pseudo-counts towards ``r_j = max(q_{j-1}, sum_{i<j} hits_i / sum_{i<j}
    at_risk_i)``, the previous position's or, when higher, the earlier positions' pooled (so a
    position not drafted lately extrapolates the measured ones, and one rejection at a rarely
    drafted position does not sink every position beyond it), and ``S_i = prod_{j<=i} q_j``;
    ``q_1`` is shrunk towards 1/2 by ``prior_weight`` pseudo-counts (which count in the pool too).

    Args:
        hits: ``[j-1]`` = decayed count of chain-rounds that accepted position j.
        at_risk: ``[j-1]`` = decayed count of chain-rounds that drafted position j and accepted
            every position before it.
        pseudo_count: k.
        prior_weight: Pseudo-counts of the prior 1/2 in ``q_1``.
    """
    out = np.empty(len(hits))
    _survival_into(np.asarray(hits, dtype=np.float64), np.asarray(at_risk, dtype=np.float64),
                   float(pseudo_count), float(prior_weight), out)
    return out


def round_counts(tau: np.ndarray, lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One round's (hits, at_risk) by position 1..size (G3).

    ``hits_j = #(tau >= j)``; ``at_risk_j = #(lengths >= j and tau >= j - 1)``, which is
    ``#(tau >= j - 1)`` less the chains that accepted all ``lengths = j - 1`` drafts.
    """
    hits, at_risk = np.zeros(size), np.zeros(size)
    _fold_round(hits, at_risk, np.asarray(tau, dtype=np.int64),
                np.asarray(lengths, dtype=np.int64), 0.0)
    return hits, at_risk


def goodput(survive, n: int, a: float, b: float, o0: float, per_position: float,
            frozen: bool) -> tuple[np.ndarray, np.ndarray]:
    """Expected chain-steps and seconds of a speculative round for g = 1..G (G1), a target
    call of ``s`` states costing ``a + b s`` seconds.

    Returns:
        ``(steps, seconds)``: ``n (1 + sum_{i<=g} S_i)`` and ``T_spec(g)``.
    """
    survive = np.asarray(survive, dtype=np.float64)
    steps, seconds = np.empty(len(survive)), np.empty(len(survive))
    g = np.arange(1, len(survive) + 1)
    call_seconds = (2.0 if frozen else 1.0) * a + b * n * (g + 1)  # C(s) = a + b s (G4)
    _goodput_into(survive, float(n), call_seconds, float(o0), float(per_position), steps,
                  seconds)
    return steps, seconds


# The state's scalars (one array, updated in place by the compiled decision and update; _LAST is
# the last draft length chosen, _LAST_WIDTH the last round's width, 0 before the first) and the
# settings they are read with.
(_ROUNDS, _EVIDENCE, _PRIOR_WEIGHT, _LONG_PRIOR_WEIGHT, _ADVANCE, _PLAIN_TIME, _LAST,
 _PLAIN_MEASURED, _LAST_WIDTH) = range(9)
(_MAX_DRAFT, _INITIAL_DRAFT, _DECAY, _COST_DECAY, _EXPLORE_SHARE, _MIN_EVIDENCE, _PLAIN_MARGIN,
 _SWITCH_MARGIN, _PSEUDO_COUNT) = range(9)


@numba.njit(nogil=True)
def _speculate(best, best_rate, steps, seconds, scalars, params, n, limit):
    """The draft length of a speculative decision: the best ``g``, or the last one while the
    best beats it by less than ``switch_margin / sqrt(n)`` in the model (G8)."""
    g, last = best + 1, int(scalars[_LAST])
    keep = 1.0 + params[_SWITCH_MARGIN] / math.sqrt(n)  # the counts' noise (G8)
    if last != g and 1 <= last <= limit and steps[last - 1] / seconds[last - 1] * keep >= (
            best_rate):
        g = last  # within the margin of the best: keep the draft length (G8)
    scalars[_LAST] = g
    return g


@numba.njit(nogil=True)
def _choose(hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit, drafting,
            plain_fit, work, scalars, params, n, frozen, remaining):
    """:meth:`AdaptiveState.choose`: ``(g, burst)``, updating ``scalars`` in place.

    ``work`` holds the decision's buffers (survival, long survival, steps, seconds, call seconds
    by g), ``scalars`` and ``params`` the state's scalars and settings (``_ROUNDS``...,
    ``_MAX_DRAFT``...).
    """
    limit = min(int(params[_MAX_DRAFT]), remaining - 1)  # tau + 1 <= remaining
    if limit < 1:
        return 0, 1
    if scalars[_ROUNDS] == 0.0:
        return min(int(scalars[_LAST]), limit), 0
    steps, seconds = work[2], work[3]
    best, best_rate, plain = _decide(
        hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit, drafting,
        plain_fit, work[0], work[1], steps, seconds, work[4], params[_PSEUDO_COUNT],
        scalars[_PRIOR_WEIGHT], scalars[_LONG_PRIOR_WEIGHT], float(n), frozen, limit)
    margin = 1.0 + params[_PLAIN_MARGIN]  # speculation must win by this much (G7)
    # every call had one size: a call of another size tells latency from per-state cost
    unpriced = scalars[_PLAIN_MEASURED] == 0.0 and not _identified(calls_fit)
    if (scalars[_EVIDENCE] < params[_MIN_EVIDENCE]
            and _hopeful_rate(long_counts, seconds, float(n), limit) > margin * plain) or (
            engine_fit[_FIT_COUNT] < _SETTLE):
        # too few rounds to give up on, unless plain steps beat rounds at the hopeful
        # acceptance (G6); and the costs decide only once two rounds are timed (one may have
        # paid a one-time cost)
        g = max(best + 1, min(int(params[_INITIAL_DRAFT]), limit))
        if unpriced and _observations(sizes, means, used, n * (g + 1)) > 0:
            return 0, _PLAIN_PROBE  # the round would not tell them apart: plain steps do
        scalars[_LAST] = g
        return g, 0
    if best_rate > margin * plain:
        if unpriced:
            return 0, _PLAIN_PROBE
        return _speculate(best, best_rate, steps, seconds, scalars, params, n, limit), 0
    if scalars[_PLAIN_MEASURED] == 0.0 or not _settled(sizes, means, used, n):
        # plain priced optimistically (p0 = 0, C(n) as predicted) wins: measure it, unless
        # speculation wins at the price the calls' slope gives C(n) too and the probe would
        # cost more than explore_share of the run left (G6b)
        plain_step = _table_cost(sizes, means, used, calls_fit, n, False) + _plain_step_time(
            plain_fit)  # C(n) not hopeful, + p0 (G2)
        run_left = n * remaining / best_rate  # seconds at the best goodput
        if (not frozen and not unpriced and best_rate > margin * n / max(plain_step, 1e-12)
                and _PLAIN_PROBE * plain_step > params[_EXPLORE_SHARE] * run_left):  # G7, G5
            return _speculate(best, best_rate, steps, seconds, scalars, params, n, limit), 0
        return 0, _PLAIN_PROBE
    # plain wins: explore at the best g once the plain time pays for its loss (G5), a round
    # counted as losing at least the margin's share of its time (G7)
    round_seconds = seconds[best]
    loss = max(round_seconds - steps[best] / plain, params[_PLAIN_MARGIN] * round_seconds)
    share = params[_EXPLORE_SHARE]
    if share * scalars[_PLAIN_TIME] >= loss:
        scalars[_LAST] = best + 1
        return best + 1, 0
    wanted = loss / share - scalars[_PLAIN_TIME]
    burst = math.ceil(wanted * plain / n)  # plain steps until the budget is met
    return 0, int(min(max(burst, 1), MAX_PLAIN_BURST))


@numba.njit(nogil=True)
def _update(hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit, drafting,
            scalars, params, tau, lengths, call_states, call_time, frozen_time, drafting_time,
            draft_steps, round_time, timed):
    """:meth:`AdaptiveState.update`: one round folded into the counts, costs and scalars.

    The round's drafting and engine time are priced only when its draft length is the previous
    round's, or while fewer than two rounds are priced (the first round, and the start-up's
    moving g: G4, G6).
    """
    decay, n = params[_DECAY], tau.shape[0]
    accepted = 0.0
    for row in range(n):
        accepted += tau[row]
    advance = 1.0 + accepted / max(n, 1)  # the round's chain-steps per chain
    recent_decay = _round_decay(decay, advance, n)  # G3
    long_decay = _round_decay(_LONG_DECAY, advance, n)  # G3b
    _update_round(hits, at_risk, long_counts, sizes, means, used, calls_fit, engine_fit,
                  drafting, recent_decay, long_decay, params[_COST_DECAY], tau, lengths,
                  call_states, call_time, frozen_time, drafting_time, draft_steps, round_time,
                  timed, scalars[_LAST_WIDTH] == draft_steps
                  or engine_fit[_FIT_COUNT] < _SETTLE)  # G3, G4 (the start-up's rounds priced)
    scalars[_LAST_WIDTH] = draft_steps
    if scalars[_ROUNDS] == 0.0:
        scalars[_ADVANCE] = advance
    else:  # chain-steps a chain-round advances, averaged as the counts decay
        scalars[_ADVANCE] += (1.0 - decay) * (advance - scalars[_ADVANCE])
    scalars[_ROUNDS] += 1.0
    scalars[_EVIDENCE] += n
    scalars[_PRIOR_WEIGHT] = max(scalars[_PRIOR_WEIGHT] * recent_decay, 1e-6)  # as the counts (G3)
    scalars[_LONG_PRIOR_WEIGHT] = max(scalars[_LONG_PRIOR_WEIGHT] * long_decay, 1e-6)
    scalars[_PLAIN_TIME] = 0.0


def _scalar(index: int, kind: type, doc: str) -> property:
    """A property reading (after the kept rounds' reports are folded, G9) and writing
    ``scalars[index]`` as ``kind``."""
    def read(self):
        if self._pending:
            self.flush()
        return kind(self.scalars[index])

    return property(read, lambda self, value: self.scalars.__setitem__(index, float(value)),
                    doc=doc)


class AdaptiveState:
    """The running estimates and decisions of one run.

    The sampler asks :meth:`choose` before each round: ``(g, burst)`` with ``g >= 1`` for a
    speculative round, or ``g = 0`` for ``burst`` plain steps; it reports speculative rounds to
    :meth:`update` and plain bursts to :meth:`update_plain`.
    """

    rounds = _scalar(_ROUNDS, int, "Speculative rounds so far.")
    evidence = _scalar(_EVIDENCE, int, "Chain-rounds of speculation so far, not decayed (G6).")
    prior_weight = _scalar(_PRIOR_WEIGHT, float,
                           "Pseudo-counts of the prior q_1 = 1/2, decayed with the counts (G3).")
    long_prior_weight = _scalar(_LONG_PRIOR_WEIGHT, float, "The prior's in the long memory.")
    advance = _scalar(_ADVANCE, float,
                      "Chain-steps a chain-round advances, averaged as the counts decay.")
    plain_time_since_round = _scalar(_PLAIN_TIME, float,
                                     "Plain time since the last speculative round (G5).")
    last = _scalar(_LAST, int, "The last draft length chosen (G8).")
    plain_measured = _scalar(_PLAIN_MEASURED, bool, "Whether a timed plain burst has run.")

    def __init__(self, config: AdaptiveDraftLength, num_chains: int):
        self.config = config
        size = config.max_draft_length
        self.hits = np.zeros(size)  # decayed counts, pooled over chains (G3)
        self.at_risk = np.zeros(size)
        self.long_counts = np.zeros((2, size))  # hits, at_risk decaying by _LONG_DECAY (G3)
        self.pseudo_count = float(num_chains)  # one round's worth of q_{j-1} in q_j (G3)
        self.calls = CallCosts(config.cost_decay)  # C(s): a call's seconds by its states (G4)
        self.drafting = DecayedMean(config.cost_decay)  # d: seconds per drafting step
        self.engine = DecayedFit(config.cost_decay, _ENGINE_RIDGE)  # o0 + o1 g (G4, G4b)
        # a burst's engine time = p_burst + p0 steps: a short burst (the probe that tells
        # latency from per-state cost) must not price every plain step at its fixed cost
        self.plain_engine = DecayedFit(config.cost_decay)  # (p_burst, p0): 0 until measured
        self.scalars = np.zeros(9)  # rounds, evidence, ... (the _ROUNDS... layout)
        self.prior_weight = self.long_prior_weight = self.advance = 1.0
        self.last = min(config.initial_draft_length, size)
        self.params = np.array([
            size, config.initial_draft_length, config.decay, config.cost_decay,
            config.explore_share, config.min_evidence, config.plain_margin, config.switch_margin,
            self.pseudo_count], dtype=np.float64)  # the _MAX_DRAFT... layout
        # the decision's buffers: survival, long survival, steps, seconds, call seconds by g
        self._work = np.zeros((5, size))
        self._survive, self._long_survive, self._steps, self._seconds, self._call_seconds = (
            self._work)
        # the compiled updates' state arrays, in their argument order (updated in place)
        self._arrays = (self.hits, self.at_risk, self.long_counts, self.calls.sizes,
                        self.calls.means, self.calls.used, self.calls.fit.state,
                        self.engine.state, self.drafting.state, self.plain_engine.state)
        self._update_arrays = (*self._arrays[:9], self.scalars, self.params)  # _update's first
        # G9: a speculative decision kept for the next rounds, and the reports of the rounds
        # run under it, folded in order before anything reads the estimates
        self._held_rounds, self._held_action, self._held_chains = 0, (0, 0), 0
        self._pending: list[tuple] = []

    def flush(self) -> None:
        """Fold the reports of the rounds run under a kept decision (G9), in order.

        While a decision is kept, :meth:`update` only keeps a round's report (a tuple appended
        to a list: the fold, run cold after every target call, cost a one-chain round more than
        the fold's work); the reports are folded before the next decision, and before any
        method or property here reads the estimates. Call it before reading the state's
        arrays (``hits``, ``calls``, ``engine``...) directly.
        """
        pending, arrays = self._pending, self._update_arrays
        for tau, lengths, states, call, frozen, drafting, width, seconds, timed in pending:
            _update(*arrays, np.asarray(tau, dtype=np.int64),
                    np.asarray(lengths, dtype=np.int64), int(states), float(call),
                    float(frozen), float(drafting), float(width), float(seconds),
                    bool(timed))  # G3, G4
        pending.clear()

    # -- decisions ---------------------------------------------------------------------------

    def rates(self, n: int, frozen: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """Plain chain-steps per second (G2); speculative steps and seconds, g = 1..G (G1).

        The two arrays are this state's buffers, overwritten by the next call.
        """
        self.flush()
        return self._decide(n, frozen, len(self._steps))[2], self._steps, self._seconds

    def survival(self) -> np.ndarray:
        """``S_i = P(tau >= i)``, i = 1..G, as the rule judges it now (a copy).

        The recent counts' curve shrunk towards the long memory's (G3, G3b): the curve the
        next decision prices rounds by, where the module's :func:`survival` gives one memory's
        curve from counts passed in.
        """
        self.flush()
        _two_memory_survival_into(self.hits, self.at_risk, self.long_counts, self.pseudo_count,
                                  self.prior_weight, self.long_prior_weight, self._survive,
                                  self._long_survive)  # G3, G3b
        return self._survive.copy()

    def _decide(self, n: int, frozen: bool, limit: int) -> tuple[int, float, float, float]:
        """:func:`_decide` on this state, with :func:`_hopeful_rate`: ``(best, best_rate,
        plain_rate, hopeful_rate)``."""
        decision = _decide(*self._arrays, self._survive, self._long_survive, self._steps,
                           self._seconds, self._call_seconds, self.pseudo_count,
                           self.prior_weight, self.long_prior_weight, float(n), bool(frozen),
                           limit)
        return (*decision, _hopeful_rate(self.long_counts, self._seconds, float(n), limit))

    def choose(self, n: int, frozen: bool, remaining: int) -> tuple[int, int]:
        """The next action for ``n`` chains with at most ``remaining`` steps left.

        Returns:
            ``(g, burst)``: a speculative round with draft length ``g >= 1``, or ``g = 0`` and
            ``burst`` plain steps.
        """
        g = self._held_action[0]
        if self._held_rounds > 0 and n == self._held_chains and g < remaining:
            self._held_rounds -= 1  # the last decision is kept (G9)
            return self._held_action
        self._held_rounds = 0  # deciding afresh: no kept decision is left over (G9)
        if self._pending:
            self.flush()  # the kept rounds' reports, before the decision reads them (G9)
        scalars = self.scalars
        last = scalars[_LAST]
        action = _choose(*self._arrays, self._work, scalars, self.params, int(n), bool(frozen),
                         int(remaining))
        g = action[0]
        if (g > 0 and g == last and scalars[_PLAIN_TIME] == 0.0 and self._seconds[g - 1] > 0.0
                and scalars[_EVIDENCE] >= self.params[_MIN_EVIDENCE]):
            # speculation won again after a round at the same g, past the start-up (G6; not an
            # exploration round, G5): kept while the rounds it expects fit in the decision
            # window (G9); a changed g is decided again after one round (a climb is not slowed)
            held = int(_DECISION_WINDOW / self._seconds[g - 1])
            self._held_rounds = min(max(held - 1, 0), _MAX_HELD_ROUNDS - 1)
            self._held_action, self._held_chains = action, n
        return action

    def _plain_step_engine(self) -> float:
        """``p0``: the engine's time per plain step of a full burst (G2), its fixed cost spread."""
        self.flush()
        return float(_plain_step_time(self.plain_engine.state))

    # -- measurements ------------------------------------------------------------------------

    def update(self, chains, tau, lengths, call_states, call_time, draft_time, draft_steps,
               round_time, drafting_time, timed=True, frozen_call_time=0.0):
        """Fold one speculative round's outcome into the estimates.

        Args:
            chains: The round's chain indices (unused: counts are pooled over chains).
            tau: Accepted lengths per chain.
            lengths: Drafted lengths per chain.
            call_states: States evaluated by the round's verifying target call.
            call_time: Seconds in target calls (the frozen drafter's call included).
            draft_time: Seconds in draft-kernel calls (part of ``drafting_time``).
            draft_steps: Sequential draft steps (the round's width).
            round_time: Seconds since the previous update returned: the round, the decision
                before it and the loop between them (what a round really costs the run).
            drafting_time: Seconds of the drafting loop (draft calls and the engine's work per
                drafted position; its set-up and the frozen drafter's target call excluded).
            timed: False when the round paid a one-time cost (a compilation): its times (target
                calls, drafting, engine) are then left out; its acceptance still counts.
            frozen_call_time: Seconds of the frozen drafter's target call (one state per
                chain), 0 for other drafters.

        While a decision is kept (G9), the report is kept and folded before the next decision
        (:meth:`flush`): ``tau`` and ``lengths`` are kept as passed, not copied, so pass arrays
        that are not written afterwards.
        """
        self._pending.append((tau, lengths, call_states, call_time, frozen_call_time,
                              drafting_time, draft_steps, round_time, timed))
        if self._held_rounds == 0:  # a decision comes next: fold (G9)
            self.flush()

    def update_plain(self, n: int, steps: int, call_time: float, burst_time: float,
                     timed: bool = True) -> None:
        """Fold in a burst of ``steps`` plain steps of ``n`` chains.

        Args:
            n: Chains stepped.
            steps: Plain steps taken (one target call each).
            call_time: Seconds in target calls.
            burst_time: Seconds since the previous update returned (as ``round_time``).
            timed: False when the burst paid a one-time cost (a compilation): its times are
                then left out; the chains still moved on.
        """
        self._held_rounds = 0
        self.flush()  # the kept rounds' reports come first (G9)
        if timed:
            self.calls.add(n, call_time / steps, steps)  # C(n) (G4): the burst's mean call
            self.plain_engine.add(1.0, float(steps), max(burst_time - call_time, 0.0))  # G2
            self.plain_measured = True
        # the chains moved on: the acceptance counts age as over rounds that advance as far (G3)
        fade = float(_round_decay(self.config.decay, self.advance, n)) ** (steps / self.advance)
        self.hits *= fade
        self.at_risk *= fade
        self.prior_weight = max(self.prior_weight * fade, 1e-6)
        self.plain_time_since_round += burst_time
