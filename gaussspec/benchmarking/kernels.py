"""Synthetic kernels with a controlled call cost, for the benchmark suites.

The cost of a kernel call is simulated: the kernel computes its (cheap) mean and then waits until
``latency + per_state * n`` seconds have passed since the call began, ``n`` being the number of
states in the call. ``per_state = 0`` models a latency-bound accelerator (a batched call costs what
one state costs); ``latency = 0`` models a saturated, throughput-bound device (cost grows with the
states evaluated, as on a CPU). Waiting sleeps and then spins for the last 0.1 ms, so simulated
costs are accurate to a few microseconds and do not load the shared cores.
"""

from __future__ import annotations

import math
import time

import attrs
import numpy as np
import torch

import gaussspec as gs

__all__ = ["CallCost", "LinearULA", "ScoreNetworkULA", "predicted_acceptance"]

_SPIN = 1e-4  # seconds spun (not slept) at the end of a wait: sleep overshoots by ~80 us


def _non_negative(instance, attribute, value):
    if not value >= 0.0:
        raise ValueError(f"{attribute.name} must be a number >= 0 (seconds), got {value!r}")


@attrs.frozen
class CallCost:
    """Simulated cost of one kernel call: ``latency + per_state * states`` seconds.

    Args:
        latency: Seconds per call, whatever its size.
        per_state: Seconds per state evaluated in the call.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    per_state: float = attrs.field(default=0.0, validator=_non_negative)

    def seconds(self, states: int) -> float:
        """The simulated duration of a call on ``states`` states."""
        return self.latency + self.per_state * states

    def wait_from(self, start: float, states: int) -> None:
        """Block until ``seconds(states)`` have passed since ``start`` (a perf_counter value)."""
        deadline = start + self.seconds(states)
        remaining = deadline - time.perf_counter()
        if remaining > _SPIN:
            time.sleep(remaining - _SPIN)
        while time.perf_counter() < deadline:
            pass


class LinearULA(gs.GaussianKernel):
    """ULA on ``N(mu, I)`` with a relative gradient error: ``x' = x - h (1 + e)(x - mu) + sqrt(2h) xi``.

    With ``e = 0`` this is the target; a draft with ``e > 0`` has a per-coordinate mean error
    ``h e (x - mu)``, so the whitened gap ``delta = e sqrt(h / 2) |x - mu|`` grows like the square
    root of the dimension (ALGORITHMS section 2).

    Args:
        dimension: State size d.
        step_size: ULA step h (in (0, 1)).
        num_steps: K.
        perturbation: Relative gradient error e.
        cost: Simulated cost of a call (``evaluate``).
    """

    def __init__(self, dimension: int, step_size: float, num_steps: int, perturbation: float = 0.0,
                 cost: CallCost = CallCost()):
        if dimension < 1 or num_steps < 1:
            raise ValueError(f"dimension and num_steps must be >= 1, got {dimension}, {num_steps}")
        if not 0.0 < step_size < 1.0:
            raise ValueError(f"step_size must lie in (0, 1), got {step_size}")
        self.num_steps, self.event_shape = int(num_steps), (int(dimension),)
        self.h, self.perturbation, self.cost = float(step_size), float(perturbation), cost
        self.mu = torch.linspace(-1.0, 1.0, dimension, dtype=torch.float64)
        self._covariance = gs.IsotropicCovariance(math.sqrt(2.0 * step_size))

    def covariance(self, t):
        return self._covariance

    def evaluate(self, x, t):
        start = time.perf_counter()
        gradient = -(1.0 + self.perturbation) * (x - self.mu.to(x))  # grad log N(mu, I), with error
        self.cost.wait_from(start, x.shape[0])
        return gradient

    def mean_from(self, x, t, gradient):
        return x + self.h * gradient  # ULA mean x + h grad

    def initial_state(self, num_chains, generator=None):
        """Draws from the target chain's stationary law ``N(mu, I / (1 - h / 2))``."""
        scale = 1.0 / math.sqrt(1.0 - self.h / 2.0)
        noise = torch.randn(num_chains, *self.event_shape, generator=generator, dtype=torch.float64)
        return self.mu + scale * noise


def predicted_acceptance(dimension: int, step_size: float, perturbation: float,
                         draws: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Token-wise acceptance ``E[2 Phi(-delta / 2)]`` of a :class:`LinearULA` draft at stationarity.

    ``delta = e sqrt(h / 2) |x - mu|`` with ``|x - mu|^2 ~ chi^2_d / (1 - h / 2)``.

    Returns:
        ``(median delta, expected acceptance)``.
    """
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.chisquare(dimension, size=draws) / (1.0 - step_size / 2.0))
    delta = perturbation * math.sqrt(step_size / 2.0) * radius  # delta = e sqrt(h/2) |x - mu|
    return float(np.median(delta)), float(np.mean(2.0 * ndtr(-delta / 2.0)))  # 2 Phi(-delta/2)


class ScoreNetworkULA(gs.GaussianKernel):
    """Langevin steps with a fixed random score network and a noise level eta.

    ``x' = x + h s(x) + eta sqrt(2h) xi`` with ``s(x) = -x + tanh(x W1) W2``: the drift is fixed
    and eta scales only the noise (like DDIM's eta), so a smaller eta means a larger whitened gap
    between a stale (free/frozen) drift and the fresh one, and lower acceptance.

    Args:
        dimension: State size d.
        hidden: Width of the network.
        step_size: h.
        noise_level: eta.
        num_steps: K.
        perturbation: Relative error of the network's output layer (for draft kernels).
        cost: Simulated cost of a call (``evaluate``).
        seed: Seed of the network weights.
    """

    def __init__(self, dimension: int = 32, hidden: int = 128, step_size: float = 0.05,
                 noise_level: float = 1.0, num_steps: int = 200, perturbation: float = 0.0,
                 cost: CallCost = CallCost(), seed: int = 0):
        if not noise_level > 0.0:
            raise ValueError(f"noise_level must be > 0, got {noise_level}")
        generator = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(dimension, hidden, generator=generator) * (2.0 / dimension**0.5)
        self.w2 = torch.randn(hidden, dimension, generator=generator) * (
            (1.0 + perturbation) * 2.0 / hidden**0.5)
        self.num_steps, self.event_shape = int(num_steps), (int(dimension),)
        self.h, self.noise_level, self.cost = float(step_size), float(noise_level), cost
        self._covariance = gs.IsotropicCovariance(noise_level * math.sqrt(2.0 * step_size))

    def covariance(self, t):
        return self._covariance

    def evaluate(self, x, t):
        start = time.perf_counter()
        score = -x + torch.tanh(x @ self.w1) @ self.w2  # s(x) = -x + tanh(x W1) W2
        self.cost.wait_from(start, x.shape[0])
        return score

    def mean_from(self, x, t, score):
        return x + self.h * score  # x + h s

    def initial_state(self, num_chains, generator=None):
        return torch.randn(num_chains, *self.event_shape, generator=generator)
