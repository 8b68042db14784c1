"""Adaptive draft length: pick gamma online from measured acceptance and measured costs.

A goodput model (ALGORITHMS section 9): a round with draft length ``g`` advances each chain by
``1 + sum_{i<=g} P(tau >= i)`` steps on average and costs one batched target call on
``n (g + 1)`` states plus ``g`` sequential draft steps (plus the frozen drafter's extra call).
Acceptance by position is an exponentially weighted average per chain; call and draft costs are
fitted online (time = a + b * states for the target, an average for a draft step). Each round
takes the ``g`` in ``0 .. max_draft_length`` with the most expected steps per second; ``g = 0``
is a plain target step, chosen when speculation does not pay. Rounds stay exact for any ``g``
chosen from the past, so the whole run keeps the target chain's law.
"""

from __future__ import annotations

import attrs
import numpy as np

__all__ = ["AdaptiveDraftLength"]


def _positive(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _unit(instance, attribute, value):
    if not 0.0 < value < 1.0:
        raise ValueError(f"{attribute.name} must lie in (0, 1), got {value!r}")


@attrs.frozen
class AdaptiveDraftLength:
    """Choose the draft length each round from a goodput model.

    Args:
        max_draft_length: Largest draft length considered.
        initial_draft_length: Draft length of the first rounds, before costs are measured.
        decay: Weight of the past in the running averages (acceptance and costs).
        explore_every: While plain steps win (``g = 0``), try ``g = 1`` once every this many
            rounds so that acceptance estimates stay current.
    """

    max_draft_length: int = attrs.field(default=16, validator=_positive)
    initial_draft_length: int = attrs.field(default=4, validator=_positive)
    decay: float = attrs.field(default=0.9, validator=_unit)
    explore_every: int = attrs.field(default=25, validator=_positive)

    def start(self, num_chains: int) -> "AdaptiveState":
        """Fresh per-run state."""
        return AdaptiveState(self, num_chains)


class AdaptiveState:
    """The running estimates of one run."""

    def __init__(self, config: AdaptiveDraftLength, num_chains: int):
        self.config = config
        g = config.max_draft_length
        # P(tau >= i) per chain and position: a decaying weighted mean with one pseudo-observation
        # of 1/2 as its prior, so that the first real rounds dominate quickly.
        self.hits = np.full((num_chains, g), 0.5)
        self.weights = np.ones((num_chains, g))
        self.calls: list[tuple[int, float]] = []  # (states evaluated, seconds) of target calls
        self.draft_step_time = None
        self.overhead_time = 0.0  # engine time per round outside kernel calls (median)
        self.overheads: list[float] = []
        self.rounds = 0
        self.plain_streak = 0
        self.last = config.initial_draft_length

    def update(self, chains, tau, lengths, call_states, call_time, draft_time, draft_steps,
               round_time):
        """Fold one round's outcome into the estimates."""
        decay = self.config.decay
        if self.rounds > 0:  # the first round pays one-off costs (compilation, caches)
            self.overheads.append(max(round_time - call_time - draft_time, 0.0))
            self.overheads = self.overheads[-16:]
            self.overhead_time = float(np.median(self.overheads))  # robust to hiccups
        for i in range(int(lengths.max(initial=0))):
            drafted = lengths > i
            rows = chains[drafted]
            hit = (tau[drafted] > i).astype(float)
            self.hits[rows, i] = decay * self.hits[rows, i] + hit
            self.weights[rows, i] = decay * self.weights[rows, i] + 1.0
        if call_states > 0:
            self.calls.append((int(call_states), float(call_time)))
            self.calls = self.calls[-64:]
        if draft_steps > 0:
            per_step = draft_time / draft_steps
            self.draft_step_time = per_step if self.draft_step_time is None else (
                decay * self.draft_step_time + (1 - decay) * per_step)
        self.rounds += 1

    def _call_cost(self):
        """Fitted (a, b) of time = a + b * states; b >= 0, a >= 0."""
        states = np.array([c[0] for c in self.calls], dtype=float)
        times = np.array([c[1] for c in self.calls], dtype=float)
        if len(np.unique(states)) < 2:
            return 0.0, float(times.mean() / states.mean())  # assume cost grows with the batch
        slope, intercept = np.polyfit(states, times, 1)
        slope = max(slope, 0.0)
        return max(intercept, 0.0), slope

    def choose(self, chains: np.ndarray, frozen: bool) -> int:
        """The draft length of the next round for these chains."""
        if not self.calls or self.rounds < 2:
            return self.last
        a, b = self._call_cost()
        draft = self.draft_step_time or 0.0
        n = len(chains)
        estimate = self.hits[chains] / self.weights[chains]
        observed = self.weights[chains] > 1.5  # at least one real observation
        accepted = estimate.copy()
        for i in range(1, accepted.shape[1]):  # monotone; untried positions extrapolate
            accepted[:, i] = np.where(observed[:, i],
                                      np.minimum(estimate[:, i], accepted[:, i - 1]),
                                      accepted[:, i - 1] * accepted[:, 0])
        cumulative = np.cumsum(accepted, axis=1).sum(axis=0)  # sum_b sum_{i<=g} P(tau >= i)
        fixed = a + self.overhead_time
        best_g, best_rate = 0, n / (fixed + b * n)  # plain: n steps per call on n states
        for g in range(1, self.config.max_draft_length + 1):
            steps = n + cumulative[g - 1]
            cost = fixed + b * n * (g + 1) + g * draft + ((a + b * n) if frozen else 0.0)
            if steps / cost > best_rate:
                best_g, best_rate = g, steps / cost
        if best_g == 0:
            self.plain_streak += 1
            if self.plain_streak % self.config.explore_every == 0:
                best_g = 1  # look again: acceptance may have changed
        else:
            self.plain_streak = 0
        self.last = best_g
        return best_g
