"""Drafters: where the cheap draft means come from.

* :class:`KernelDrafter` wraps an independent cheap kernel with the target's covariance.
* :class:`FrozenDrafter` evaluates the target once at the round's start state and reuses that
  evaluation for every draft step (ALGORITHMS section 8); the first draft step then equals the
  target step. The evaluation is reused by the verification call, so it costs one extra
  sequential call per round but no extra state evaluation.
* :class:`FreeDrafter` reuses the freshest evaluation the previous round's batched call produced
  (at the parent of the new start state): no call beyond the verification pass. A chain with no
  such evaluation yet (its first round) takes one plain target step.

Self-speculative drafters need a target that splits ``evaluate``/``mean_from``.
"""

from __future__ import annotations

import abc

import attrs

from gaussspec.kernel import GaussianKernel

__all__ = ["Drafter", "KernelDrafter", "FrozenDrafter", "FreeDrafter", "DRAFTER_NAMES"]


class Drafter(abc.ABC):
    """Base class of drafters; the sampler reads ``source`` to know where evaluations come from."""

    source: str

    @abc.abstractmethod
    def check(self, target: GaussianKernel) -> None:
        """Raise a clear error if this drafter cannot draft for ``target``."""

    def kernel(self, target: GaussianKernel) -> GaussianKernel:
        """The kernel whose ``mean``/``mean_from``/``next_memory`` produce the draft."""
        return target


def _require_split(target: GaussianKernel, name: str) -> None:
    if not target.splits_evaluation:
        raise TypeError(
            f"{name} reuses target evaluations, so the target must define evaluate(x, t) and "
            f"mean_from(x, t, evaluation); {type(target).__name__} defines only mean(x, t). "
            "Use KernelDrafter(draft_kernel) instead."
        )


@attrs.frozen
class KernelDrafter(Drafter):
    """An independent cheap kernel as the draft.

    The draft kernel must have the target's ``num_steps`` and ``event_shape``; its covariance is
    never called: draft and target share the TARGET's covariance (ALGORITHMS section 1).

    Args:
        draft: The cheap kernel.
    """

    draft: GaussianKernel = attrs.field()
    source = "kernel"

    @draft.validator
    def _check_type(self, attribute, value):
        if not isinstance(value, GaussianKernel):
            raise TypeError(f"KernelDrafter needs a GaussianKernel, got {type(value).__name__}")

    def check(self, target):
        if self.draft.num_steps != target.num_steps:
            raise ValueError(
                f"draft kernel has num_steps={self.draft.num_steps}, target has "
                f"{target.num_steps}; they must match"
            )
        if tuple(self.draft.event_shape) != tuple(target.event_shape):
            raise ValueError(
                f"draft kernel event_shape {tuple(self.draft.event_shape)} differs from the "
                f"target's {tuple(target.event_shape)}"
            )
        if self.draft.has_memory and not target.has_memory:
            raise ValueError("a draft kernel with memory needs a target with the same memory")
        if self.draft.has_memory and not self.draft.splits_evaluation:
            raise TypeError("a draft kernel with memory must define evaluate and mean_from")

    def kernel(self, target):
        return self.draft


@attrs.frozen
class FrozenDrafter(Drafter):
    """Freeze the target evaluation at the round's start (one extra sequential call per round)."""

    source = "frozen"

    def check(self, target):
        _require_split(target, "FrozenDrafter")


@attrs.frozen
class FreeDrafter(Drafter):
    """Reuse the previous round's freshest target evaluation (no extra call)."""

    source = "free"

    def check(self, target):
        _require_split(target, "FreeDrafter")


DRAFTER_NAMES = {"frozen": FrozenDrafter, "free": FreeDrafter}
