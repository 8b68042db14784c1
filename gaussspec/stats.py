"""Counters of a sampling run and their JSON form."""

from __future__ import annotations

import json

import attrs
import numpy as np

__all__ = ["SamplingStats"]


@attrs.define
class SamplingStats:
    """What a run cost and how much speculation paid (ALGORITHMS section 9).

    Attributes:
        num_chains: Chains in the batch.
        num_steps: Transitions per chain (K).
        draft_length: The configured draft length gamma (0 for a plain chain).
        rounds: Batched verification calls (sequential rounds); a plain chain has K.
        sequential_target_calls: All sequential target calls: ``rounds`` plus the frozen drafter's
            extra evaluation at each round's start.
        target_evaluations: States at which the target was evaluated, summed over chains.
        draft_evaluations: Draft-kernel mean evaluations (drafted states), summed over chains.
        chain_rounds: Rounds summed over chains (each chain counts the rounds it took part in).
        steps: Steps advanced, summed over chains (``num_chains * num_steps`` at the end).
        accepted_length_histogram: ``histogram[k]`` counts chain-rounds that accepted ``k`` drafts.
        drafted_by_position: ``[i]`` counts chain-rounds that drafted a position ``i + 1``.
        accepted_by_position: ``[i]`` counts chain-rounds that accepted position ``i + 1``.
        wall_time: Seconds for the whole run.
        target_time: Seconds inside target calls.
        draft_time: Seconds inside draft-kernel calls.
        noise_time: Seconds the run waited for random numbers: draws in the foreground (plain
            steps, the first round's draft noise, rounds with few draws) and handing draws to
            the background thread and waiting for them (rounds with many); part of the
            engine's own time, reported separately.
    """

    num_chains: int
    num_steps: int
    draft_length: int
    rounds: int = 0
    sequential_target_calls: int = 0
    target_evaluations: int = 0
    draft_evaluations: int = 0
    chain_rounds: int = 0
    steps: int = 0
    accepted_length_histogram: list[int] = attrs.field(factory=list)
    drafted_by_position: list[int] = attrs.field(factory=list)
    accepted_by_position: list[int] = attrs.field(factory=list)
    wall_time: float = 0.0
    target_time: float = 0.0
    draft_time: float = 0.0
    noise_time: float = 0.0

    def __attrs_post_init__(self):
        if not self.accepted_length_histogram:
            self.accepted_length_histogram = [0] * (self.draft_length + 1)
            self.drafted_by_position = [0] * self.draft_length
            self.accepted_by_position = [0] * self.draft_length

    def record_round(self, accepted: np.ndarray, drafted: np.ndarray) -> None:
        """Add one round's accepted and drafted lengths (one entry per chain in the round)."""
        self.chain_rounds += len(accepted)
        self.steps += int(accepted.sum()) + len(accepted)  # each chain advances tau + 1
        size = self.draft_length + 1
        counts = np.bincount(accepted, minlength=size).tolist()
        # chain-rounds that drafted (accepted) position i + 1: a reversed cumulative count
        drafted_at = np.cumsum(np.bincount(drafted, minlength=size)[::-1])[::-1][1:].tolist()
        accepted_at = np.cumsum(counts[::-1])[::-1][1:].tolist()
        histogram = self.accepted_length_histogram
        for i in range(size):
            histogram[i] += counts[i]
        for i in range(size - 1):
            self.drafted_by_position[i] += drafted_at[i]
            self.accepted_by_position[i] += accepted_at[i]

    @property
    def block_efficiency(self) -> float:
        """Mean steps advanced per chain per round, E[tau + 1]."""
        return self.steps / self.chain_rounds if self.chain_rounds else float("nan")

    @property
    def acceptance_by_position(self) -> list[float]:
        """Fraction of drafted positions ``i + 1`` that were accepted."""
        return [
            a / d if d else float("nan")
            for a, d in zip(self.accepted_by_position, self.drafted_by_position)
        ]

    @property
    def overhead_time(self) -> float:
        """Seconds outside target and draft calls: the engine's own time."""
        return max(self.wall_time - self.target_time - self.draft_time, 0.0)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the counters and derived rates."""
        out = attrs.asdict(self)
        out["block_efficiency"] = self.block_efficiency
        out["acceptance_by_position"] = self.acceptance_by_position
        out["overhead_time"] = self.overhead_time
        out["overhead_share"] = self.overhead_time / self.wall_time if self.wall_time else 0.0
        out["noise_share"] = self.noise_time / self.wall_time if self.wall_time else 0.0
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The counters as a JSON string (NaN written as null)."""
        clean = {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in self.to_dict().items()
        }
        clean["acceptance_by_position"] = [
            None if np.isnan(v) else v for v in clean["acceptance_by_position"]
        ]
        return json.dumps(clean, indent=indent)
