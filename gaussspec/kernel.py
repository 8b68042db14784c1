"""The Gaussian transition kernel interface.

A kernel describes a chain with ``num_steps`` transitions ``t = 0 .. num_steps - 1``::

    x_{t+1} ~ N(mean(x_t, t), Sigma_t),      Sigma_t = L_t L_t^T = covariance(t)

batched over chains: ``x`` has shape ``(B, *event_shape)`` and ``t`` is a ``(B,)`` int64 tensor,
so chains in one batch may sit at different steps. The covariance depends on the step only and is
shared by a target kernel and its draft (ALGORITHMS section 1).

The engine reuses its buffers across rounds: ``x``, ``t`` and evaluations passed to a kernel may
be views that change after the call returns, so a kernel that keeps an input beyond the call
clones it. The engine may hold a returned mean until the round ends: return a new tensor, not a
buffer the kernel writes again.

Optional pieces:

* the split ``evaluate(x, t)`` (the expensive part: a network output, a gradient, forces) plus
  ``mean_from(x, t, evaluation)`` (the cheap rest), used by the self-speculative drafters
  (ALGORITHMS section 8). An evaluation is a tensor or a tuple of tensors with leading dim ``B``.
* a deterministic memory carried beside ``x`` (ALGORITHMS section 7): set ``has_memory = True``,
  define ``initial_memory(x)`` and ``next_memory(x, t, memory, evaluation, x_next)``, and take the
  memory as the last argument of ``mean_from(x, t, evaluation, memory)``. The memory at step
  ``t + 1`` may depend on ``x_t``, the memory at ``t``, the evaluation at ``x_t`` and ``x_{t+1}``,
  but not on the evaluation at ``x_{t+1}``: that keeps the target's memories along a drafted path
  a cheap scan after one batched call. Kernels with memory must split ``evaluate``/``mean_from``.
* ``initial_state(num_chains, generator)`` for the command line.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from gaussspec.covariance import Covariance

__all__ = ["GaussianKernel"]


class GaussianKernel(abc.ABC):
    """Abstract Gaussian Markov kernel ``x_{t+1} ~ N(mean(x_t, t), covariance(t))``.

    Subclasses set ``num_steps`` and ``event_shape`` (as attributes or properties) and define
    ``covariance`` and either ``mean`` or the pair ``evaluate``/``mean_from``.

    Attributes:
        num_steps: Number of transitions K; step indices run over ``0 .. K-1``.
        event_shape: Shape of one chain's state (without the batch dimension).
        has_memory: Whether a deterministic memory is carried beside ``x``.
    """

    num_steps: int
    event_shape: tuple[int, ...]
    has_memory: bool = False

    # --- required -----------------------------------------------------------------------------

    @abc.abstractmethod
    def covariance(self, t: torch.Tensor) -> Covariance:
        """The covariance of the transition at steps ``t``.

        Args:
            t: ``(B,)`` int64 step indices.

        Returns:
            A :class:`~gaussspec.covariance.Covariance` batched over the ``B`` chains.
        """

    def mean(self, x: torch.Tensor, t: torch.Tensor, memory: Any = None) -> torch.Tensor:
        """The transition mean ``m(x, t)``, shape ``(B, *event_shape)``.

        The default composes ``mean_from(x, t, evaluate(x, t))``; override it, or override the
        split pair. Kernels with memory receive it as the third argument.
        """
        if not self.splits_evaluation:
            raise NotImplementedError(
                f"{type(self).__name__} must define mean(x, t) or the pair evaluate(x, t) and "
                "mean_from(x, t, evaluation)"
            )
        evaluation = self.evaluate(x, t)
        if self.has_memory:
            return self.mean_from(x, t, evaluation, memory)
        return self.mean_from(x, t, evaluation)

    # --- optional: the expensive/cheap split ---------------------------------------------------

    def evaluate(self, x: torch.Tensor, t: torch.Tensor) -> Any:
        """The expensive part of the mean at ``(x, t)``: a tensor or tuple of ``(B, ...)`` tensors."""
        raise NotImplementedError(f"{type(self).__name__} does not split evaluate/mean_from")

    def mean_from(self, x: torch.Tensor, t: torch.Tensor, evaluation: Any, memory: Any = None):
        """The mean at ``(x, t)`` given an evaluation (possibly taken at another state)."""
        raise NotImplementedError(f"{type(self).__name__} does not split evaluate/mean_from")

    @property
    def splits_evaluation(self) -> bool:
        """Whether this kernel defines both ``evaluate`` and ``mean_from``."""
        cls = type(self)
        return (
            cls.evaluate is not GaussianKernel.evaluate
            and cls.mean_from is not GaussianKernel.mean_from
        )

    # --- optional: memory (ALGORITHMS section 7) -----------------------------------------------

    def initial_memory(self, x: torch.Tensor) -> torch.Tensor:
        """The memory that goes with initial states ``x`` (kernels with memory only)."""
        raise NotImplementedError(f"{type(self).__name__} carries no memory")

    def next_memory(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        memory: torch.Tensor,
        evaluation: Any,
        x_next: torch.Tensor,
    ) -> torch.Tensor:
        """The memory at step ``t + 1`` after moving from ``x`` (step ``t``) to ``x_next``.

        Args:
            x: States at step ``t``.
            t: Step indices.
            memory: Memory at step ``t``.
            evaluation: ``evaluate(x, t)`` of THIS kernel at ``x`` (not of another kernel).
            x_next: States at step ``t + 1``.
        """
        raise NotImplementedError(f"{type(self).__name__} carries no memory")

    # --- optional: command-line helpers --------------------------------------------------------

    def initial_state(self, num_chains: int, generator: torch.Generator | None = None):
        """Draw ``num_chains`` initial states (used by the command line)."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no initial_state(num_chains, generator); pass x0"
        )
