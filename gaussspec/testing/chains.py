"""Reference chains with known laws, and drafts for them.

Linear chains ``x_{t+1} = A_t x_t + C_t x_{t-1} + b_t + L_t xi_t`` (``C`` only for AR(2), through
the memory mechanism) expose ``linear_coefficients(step)``; :func:`gaussspec.testing.path_law` turns
them into the closed-form law of the whole stacked path. Each kernel computes its mean its own way
(a gradient, a denoiser, forces), so the path-law test checks the kernel code too.

Every kernel takes ``perturbation``: a relative error put into its expensive part, which makes a
draft kernel of the same family (``KernelDrafter``) that disagrees with the target.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gaussspec.covariance import (
    DenseCovariance,
    DiagonalCovariance,
    FactorCovariance,
    IsotropicCovariance,
)
from gaussspec.kernel import GaussianKernel

__all__ = [
    "OrnsteinUhlenbeckKernel",
    "GaussianDataDDPMKernel",
    "AR2Kernel",
    "HarmonicABOBAKernel",
    "DoubleWellLangevinKernel",
]

_F64 = torch.float64


class OrnsteinUhlenbeckKernel(GaussianKernel):
    """ULA on a Gaussian N(mu, Sigma): ``x' = x + h grad log pi(x) + sqrt(2h) L xi`` (AR(1)/OU).

    Args:
        dimension: State size d.
        step_size: ULA step h.
        num_steps: K.
        covariance_kind: ``"isotropic"`` (Sigma = I) or ``"dense"`` (a fixed correlated Sigma,
            noise with a dense Cholesky factor, preconditioned ULA).
        perturbation: Relative error of the gradient (for draft kernels).
    """

    def __init__(self, dimension=2, step_size=0.3, num_steps=12, covariance_kind="isotropic",
                 perturbation=0.0):
        self.num_steps, self.event_shape = num_steps, (dimension,)
        self.h, self.kind, self.perturbation = step_size, covariance_kind, perturbation
        self.mu = torch.linspace(-1.0, 1.0, dimension, dtype=_F64)
        if covariance_kind == "dense":
            rng = np.random.default_rng(7)
            q = rng.normal(size=(dimension, dimension)) / math.sqrt(dimension)
            self.precond = torch.tensor(np.eye(dimension) + 0.5 * q @ q.T)  # preconditioner M
        else:
            self.precond = torch.eye(dimension, dtype=_F64)
        self.chol = torch.linalg.cholesky(2.0 * step_size * self.precond)

    def covariance(self, t):
        if self.kind == "dense":
            return DenseCovariance(self.chol)
        return IsotropicCovariance(math.sqrt(2.0 * self.h))

    def evaluate(self, x, t):
        return -(1.0 + self.perturbation) * (x - self.mu.to(x))  # grad log N(mu, I)

    def mean_from(self, x, t, evaluation):
        return x + self.h * evaluation @ self.precond.to(x).T  # x + h M grad

    def linear_coefficients(self, step):
        d = self.event_shape[0]
        a = np.eye(d) - self.h * self.precond.numpy() * (1.0 + self.perturbation)
        b = self.h * (1.0 + self.perturbation) * self.precond.numpy() @ self.mu.numpy()
        return a, None, b, self.chol.numpy()

    def initial_state(self, num_chains, generator=None):
        return torch.zeros(num_chains, *self.event_shape, dtype=_F64)


class GaussianDataDDPMKernel(GaussianKernel):
    """Ancestral DDPM sampling when the data are N(mu, diag(s^2)): the exact denoiser is linear.

    Step ``t`` goes from diffusion time ``tau = K - t`` to ``tau - 1``; the last step
    (``tau = 1``) has zero variance (DDPM's final step). ``evaluate`` is the noise prediction
    (``frozen_quantity="epsilon"``) or the clean-image prediction (``"sample"``).
    """

    def __init__(self, dimension=3, num_steps=10, perturbation=0.0, frozen_quantity="epsilon"):
        self.num_steps, self.event_shape = num_steps, (dimension,)
        self.perturbation, self.frozen_quantity = perturbation, frozen_quantity
        betas = torch.linspace(0.02, 0.4, num_steps, dtype=_F64)
        self.alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=_F64), self.alpha_bar[:-1]])
        self.betas = betas
        self.mu = torch.linspace(-1.0, 2.0, dimension, dtype=_F64)
        self.s2 = torch.linspace(0.2, 1.5, dimension, dtype=_F64) ** 2
        self.std = torch.sqrt(betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar))  # fixed_small

    def _tau(self, t):
        return (self.num_steps - 1 - t).long()  # index of diffusion time tau = K - t

    def _clean(self, x, tau):
        ab = self.alpha_bar[tau].unsqueeze(-1).to(x)
        s2 = self.s2.to(x) * (1.0 + self.perturbation)
        gain = s2 * ab.sqrt() / (ab * s2 + 1 - ab)  # E[x0 | x_tau] for Gaussian data
        return self.mu.to(x) + gain * (x - ab.sqrt() * self.mu.to(x))

    def evaluate(self, x, t):
        tau = self._tau(t)
        clean = self._clean(x, tau)
        if self.frozen_quantity == "sample":
            return clean
        ab = self.alpha_bar[tau].unsqueeze(-1).to(x)
        return (x - ab.sqrt() * clean) / (1 - ab).sqrt()  # epsilon prediction

    def mean_from(self, x, t, evaluation):
        tau = self._tau(t)
        ab = self.alpha_bar[tau].unsqueeze(-1).to(x)
        if self.frozen_quantity == "sample":
            clean = evaluation
        else:
            clean = (x - (1 - ab).sqrt() * evaluation) / ab.sqrt()
        abp = self.alpha_bar_prev[tau].unsqueeze(-1).to(x)
        beta = self.betas[tau].unsqueeze(-1).to(x)
        alpha = self.alphas[tau].unsqueeze(-1).to(x)
        c0 = abp.sqrt() * beta / (1 - ab)  # DDPM posterior mean coefficients
        ct = alpha.sqrt() * (1 - abp) / (1 - ab)
        return c0 * clean + ct * x

    def covariance(self, t):
        return IsotropicCovariance(self.std[self._tau(t)])

    def linear_coefficients(self, step):
        tau = self.num_steps - 1 - step
        ab, abp = float(self.alpha_bar[tau]), float(self.alpha_bar_prev[tau])
        beta, alpha = float(self.betas[tau]), float(self.alphas[tau])
        s2, mu = self.s2.numpy() * (1 + self.perturbation), self.mu.numpy()
        gain = s2 * math.sqrt(ab) / (ab * s2 + 1 - ab)
        c0, ct = math.sqrt(abp) * beta / (1 - ab), math.sqrt(alpha) * (1 - abp) / (1 - ab)
        a = np.diag(c0 * gain + ct)
        b = c0 * (mu - gain * math.sqrt(ab) * mu)
        return a, None, b, float(self.std[tau]) * np.eye(self.event_shape[0])

    def initial_state(self, num_chains, generator=None):
        return torch.randn(num_chains, *self.event_shape, generator=generator, dtype=_F64)


class AR2Kernel(GaussianKernel):
    """``x_{t+1} ~ N(a x_t + b x_{t-1}, s^2)`` through the memory mechanism (memory: x_{t-1}).

    The memory starts as ``x_{-1} = x_0``.
    """

    has_memory = True

    def __init__(self, dimension=2, a=0.6, b=0.3, std=0.7, num_steps=12, perturbation=0.0):
        self.num_steps, self.event_shape = num_steps, (dimension,)
        self.a, self.b, self.std = a * (1 + perturbation), b, std

    def covariance(self, t):
        return IsotropicCovariance(self.std)

    def evaluate(self, x, t):
        return self.a * x

    def mean_from(self, x, t, evaluation, memory):
        return evaluation + self.b * memory  # a x_t + b x_{t-1}

    def initial_memory(self, x):
        return x.clone()

    def next_memory(self, x, t, memory, evaluation, x_next):
        return x.clone()

    def linear_coefficients(self, step):
        d = self.event_shape[0]
        return self.a * np.eye(d), self.b * np.eye(d), np.zeros(d), self.std * np.eye(d)

    def initial_state(self, num_chains, generator=None):
        return torch.zeros(num_chains, *self.event_shape, dtype=_F64)


class HarmonicABOBAKernel(GaussianKernel):
    """ABOBA Langevin dynamics of unit-mass harmonic oscillators (ALGORITHMS section 7).

    State ``(2, d)``: row 0 positions, row 1 velocities. Only the new velocity is random and the
    new position is an affine function of it, so the noise factor is rectangular ``(2d, d)``.
    ``evaluate`` is the force at the half-step position.
    """

    def __init__(self, dimension=2, stiffness=1.0, friction=1.0, timestep=0.4, temperature=1.0,
                 num_steps=12, perturbation=0.0):
        self.num_steps, self.event_shape = num_steps, (2, dimension)
        self.k = torch.linspace(0.5, 1.5, dimension, dtype=_F64) * stiffness * (1 + perturbation)
        self.dt = timestep
        self.c = math.exp(-friction * timestep)
        self.sigma_v = math.sqrt((1 - self.c**2) * temperature)
        eye = torch.eye(dimension, dtype=_F64)
        self.factor = torch.cat([0.5 * timestep * self.sigma_v * eye, self.sigma_v * eye])

    def covariance(self, t):
        return FactorCovariance(self.factor)

    def evaluate(self, state, t):
        x_half = state[:, 0] + 0.5 * self.dt * state[:, 1]  # A: half drift
        return -self.k.to(state) * x_half  # force at x_half

    def mean_from(self, state, t, force):
        x_half = state[:, 0] + 0.5 * self.dt * state[:, 1]
        kick = 0.5 * self.dt * force
        v_new = self.c * (state[:, 1] + kick) + kick  # B O B (noise-free part)
        return torch.stack([x_half + 0.5 * self.dt * v_new, v_new], dim=1)  # A

    def linear_coefficients(self, step):
        d, dt, c = self.event_shape[1], self.dt, self.c
        k = np.diag(self.k.numpy())
        eye = np.eye(d)
        xh = np.hstack([eye, 0.5 * dt * eye])  # x_half in terms of (x, v)
        force = -k @ xh
        v_new = c * (np.hstack([0 * eye, eye]) + 0.5 * dt * force) + 0.5 * dt * force
        x_new = xh + 0.5 * dt * v_new
        return np.vstack([x_new, v_new]), None, np.zeros(2 * d), self.factor.numpy()

    def initial_state(self, num_chains, generator=None):
        return torch.zeros(num_chains, *self.event_shape, dtype=_F64)


class DoubleWellLangevinKernel(GaussianKernel):
    """ULA on the double well ``pi(x) ∝ exp(-sum (x_i^2 - 1)^2)``: a nonlinear chain."""

    def __init__(self, dimension=2, step_size=0.05, num_steps=20, perturbation=0.0):
        self.num_steps, self.event_shape = num_steps, (dimension,)
        self.h, self.perturbation = step_size, perturbation

    def covariance(self, t):
        return IsotropicCovariance(math.sqrt(2.0 * self.h))

    def evaluate(self, x, t):
        return -4.0 * x * (x * x - 1.0) * (1.0 + self.perturbation)  # grad log pi

    def mean_from(self, x, t, evaluation):
        return x + self.h * evaluation

    def initial_state(self, num_chains, generator=None):
        return torch.full((num_chains, *self.event_shape), 0.5, dtype=_F64)
