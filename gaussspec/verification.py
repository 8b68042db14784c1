"""Verification of a drafted block: whitened gaps, log ratios and accepted lengths.

Reductions (the squared norm of the whitened gap and the inner product with the noise, sums over
the whole state) always accumulate in float64. Element-wise work is float64 too, except for
isotropic and diagonal noise with float32 (or lower) states, where it runs in float32: there each
element is as exact as the float32 states themselves, and float64 would only add memory traffic.
"""

from __future__ import annotations

import numpy as np
import torch

from gaussspec.covariance import Covariance
from gaussspec.residual import block_accept_lengths

__all__ = ["VERIFICATIONS", "whitened_gaps", "log_ratios", "accepted_lengths", "range_tolerance"]

VERIFICATIONS = ("block", "token")


def range_tolerance(dtype: torch.dtype) -> float:
    """Relative size below which a gap off the noise factor's range counts as rounding."""
    return 64.0 * torch.finfo(dtype).eps


def whitened_gaps(
    covariance: Covariance,
    target_mean: torch.Tensor,
    draft_mean: torch.Tensor,
    range_rtol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitened mean gaps ``Delta = L^+ (m_q - m_p)`` and their norms (ALGORITHMS sections 2, 6).

    Returns:
        ``(Delta, delta)``: ``(n, *noise)`` (float64, or float32 on the element-wise fast path)
        and ``(n,)`` float64, ``delta = inf`` where the gap leaves the range of ``L`` (mutually
        singular kernels).
    """
    if covariance.elementwise and target_mean.dtype != torch.float64 and covariance.full_range():
        gap = (target_mean - draft_mean).to(torch.float32)
        whitened, _ = covariance._whiten(gap)  # Delta = L^-1 (m_q - m_p), element-wise
        flat = whitened.reshape(whitened.shape[0], -1)
        return whitened, (flat * flat).sum(1, dtype=torch.float64).sqrt()  # delta = |Delta|
    gap = (target_mean - draft_mean).to(torch.float64)  # near-equal means subtract exactly
    if covariance.full_range():
        whitened, _ = covariance._whiten(gap)
        delta = whitened.reshape(whitened.shape[0], -1).norm(dim=1)  # delta = |Delta|
        return whitened, delta
    flat = lambda m: m.reshape(m.shape[0], -1).to(torch.float64).norm(dim=1)  # noqa: E731
    scale = flat(target_mean) + flat(draft_mean)
    whitened, in_range = covariance.whiten(gap, scale, range_rtol)
    delta = whitened.reshape(whitened.shape[0], -1).norm(dim=1)  # delta = |Delta|
    delta = torch.where(in_range, delta, torch.full_like(delta, float("inf")))
    return whitened, delta


def log_ratios(noise: torch.Tensor, whitened: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``log q(y) - log p(y) = <xi, Delta> - delta^2 / 2`` for drafts ``y = m_p + L xi`` (ALG 2).

    ``-inf`` where the kernels are mutually singular (the draft has no target density).
    """
    flat_noise = noise.reshape(noise.shape[0], -1).to(whitened.dtype)
    inner = (flat_noise * whitened.reshape(whitened.shape[0], -1)).sum(1, dtype=torch.float64)
    finite = torch.isfinite(delta)
    if delta.device.type == "cpu" and bool(finite.all()):  # elsewhere: no host read (a sync)
        return inner - 0.5 * delta**2  # ALG 2: <xi, Delta> - delta^2 / 2
    safe_delta = torch.where(finite, delta, torch.zeros_like(delta))
    value = inner - 0.5 * safe_delta**2  # ALG 2: <xi, Delta> - delta^2 / 2
    return torch.where(finite, value, torch.full_like(value, -float("inf")))


def accepted_lengths(
    log_ratio: np.ndarray,
    delta: np.ndarray,
    uniforms: np.ndarray,
    lengths: np.ndarray,
    verification: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Accepted lengths and the residual weight ``log w_tau`` (ALGORITHMS sections 4 and 5)."""
    return block_accept_lengths(log_ratio, delta, uniforms, lengths, verification == "token")
