"""One call that compares a speculative sampler with the plain chain of the same kernel."""

from __future__ import annotations

import attrs
import torch

from gaussspec.sampler import SpeculativeSampler, sample_chain
from gaussspec.testing.statistics import TestResult, holm, two_sample_test

__all__ = ["ExactnessReport", "check_exactness"]


@attrs.frozen
class ExactnessReport:
    """Per-step two-sample tests of speculative against plain chains.

    Attributes:
        tests: ``{step: TestResult}`` at the checked steps.
        p_value: Holm-adjusted over the steps.
        speculative_stats, plain_stats: The two runs' statistics.
    """

    tests: dict
    p_value: float
    speculative_stats: object
    plain_stats: object

    def rejects(self, alpha: float) -> bool:
        """True when a difference is found at level ``alpha``."""
        return self.p_value < alpha

    def to_dict(self) -> dict:
        return {
            "p_value": self.p_value,
            "tests": {str(k): {"name": v.name, "p_value": v.p_value} for k, v in self.tests.items()},
            "speculative": self.speculative_stats.to_dict(),
            "plain": self.plain_stats.to_dict(),
        }


def check_exactness(
    target,
    drafter,
    x0: torch.Tensor,
    generator: torch.Generator,
    draft_length: int = 4,
    verification: str = "block",
    coupling: str = "gamma",
    num_checked_steps: int = 4,
    seed: int = 0,
) -> ExactnessReport:
    """Run speculative and plain chains from ``x0`` and test that their laws agree.

    Two-sample tests (KS on random projections and energy distance) compare the states at
    ``num_checked_steps`` evenly spaced steps, the last one included.

    Args:
        target: The kernel.
        drafter: A drafter (or ``"frozen"``/``"free"``).
        x0: ``(N, *event)`` initial states; N is the sample size of each test.
        generator: Randomness for both runs.
        draft_length, verification, coupling: The speculative sampler's settings.
        num_checked_steps: How many steps to test.
        seed: Seed of the tests' own randomness (projections, permutations).
    """
    sampler = SpeculativeSampler(target, drafter, draft_length, verification, coupling)
    speculative = sampler.sample(x0, generator=generator, return_trajectory=True)
    plain = sample_chain(target, x0, generator=generator, return_trajectory=True)
    num_steps = target.num_steps
    count = max(1, min(num_checked_steps, num_steps))
    steps = sorted({round(num_steps * (i + 1) / count) for i in range(count)})
    tests: dict[int, TestResult] = {
        step: two_sample_test(speculative.trajectory[step], plain.trajectory[step], seed=seed + step)
        for step in steps
    }
    return ExactnessReport(
        tests=tests,
        p_value=holm(t.p_value for t in tests.values()),
        speculative_stats=speculative.stats,
        plain_stats=plain.stats,
    )
