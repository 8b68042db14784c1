"""Couplings: the noise of the step that replaces a rejected draft.

* ``gamma``: a draw from the weighted residual ``max(0, c q - p)`` by the orthogonal decomposition
  of ALGORITHMS section 3: ``y = m_p + L (s e + w)`` with ``w`` the part of fresh noise orthogonal
  to the gap direction ``e`` and ``s`` the scalar residual draw. Valid for any ``c`` in (0, 1].
* ``reflection``: the maximal reflection coupling (``c = 1`` only, token-wise verification):
  ``y = m_q + L (xi - 2 <xi, e> e)`` from the rejected draft's own noise ``xi``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from gaussspec.residual import sample_residual

__all__ = ["COUPLINGS", "residual_noise", "reflection_noise", "fused_next_states",
           "TARGET_DRAW", "RESIDUAL_DRAW", "REFLECTION"]

#: How :func:`fused_next_states` makes a chain's next state.
TARGET_DRAW, RESIDUAL_DRAW, REFLECTION = 0, 1, 2

COUPLINGS = ("gamma", "reflection")


def _direction(whitened: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    flat = whitened.reshape(whitened.shape[0], -1)
    norm = delta.clamp_min(torch.finfo(torch.float64).tiny).to(flat.dtype).unsqueeze(1)
    return flat / norm  # e = Delta / delta


def residual_noise(
    whitened: torch.Tensor,
    delta: torch.Tensor,
    log_weight: np.ndarray,
    uniforms: np.ndarray,
    fresh_noise: torch.Tensor,
) -> torch.Tensor:
    """Noise-space residual draw ``s e + w`` measured from the draft mean (ALGORITHMS section 3).

    Args:
        whitened: ``(n, *noise)`` whitened gaps ``Delta``; finite ``delta > 0``.
        delta: ``(n,)`` norms of ``Delta``.
        log_weight: ``(n,)`` ``log c`` (0 token-wise, ``log w_tau`` in block verification).
        uniforms: ``(n,)`` Uniform(0, 1) variates for the scalar inversion.
        fresh_noise: ``(n, *noise)`` standard normal noise ``zeta`` for the orthogonal part.

    Returns:
        ``(n, *noise)`` noise ``s e + w`` in the dtype of ``whitened``.
    """
    e = _direction(whitened, delta)
    zeta = fresh_noise.reshape(fresh_noise.shape[0], -1).to(e.dtype)
    s_star, offset = sample_residual(log_weight, delta.cpu().numpy(), uniforms)
    s = torch.as_tensor(s_star + offset, dtype=torch.float64, device=e.device)  # s = s* + r
    along = torch.linalg.vecdot(zeta, e)  # <zeta, e>
    # s e + w with w = zeta - <zeta, e> e, i.e. zeta + (s - <zeta, e>) e
    return torch.addcmul(zeta, (s - along).to(e.dtype).unsqueeze(1), e).reshape(whitened.shape)


def reflection_noise(noise: torch.Tensor, whitened: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``xi - 2 <xi, e> e``, the reflection of the rejected draft's noise (measured from m_q)."""
    e = _direction(whitened, delta)
    xi = noise.reshape(noise.shape[0], -1)
    return (xi - 2.0 * (xi * e).sum(1, keepdim=True) * e).reshape(noise.shape)  # reflection


@numba.njit(fastmath={"reassoc", "contract", "nsz"}, nogil=True)  # no nnan/ninf: NaN propagates
def _next_states(target, draft, noise, fresh, tau, mode, shift, std, out):
    n, d = fresh.shape
    total = 0.0
    for b in range(n):
        k = tau[b]
        if mode[b] == TARGET_DRAW:  # bonus step or a target draw: m_q + std zeta
            for j in range(d):
                value = np.float64(target[b, k, j]) + std[b] * np.float64(fresh[b, j])
                out[b, j] = value
                total += value
            continue
        norm2 = 0.0
        for j in range(d):
            gap = np.float64(target[b, k, j]) - np.float64(draft[b, k, j])
            norm2 += gap * gap
        inverse = 1.0 / np.sqrt(norm2)  # e = gap / |gap| (= Delta / delta for L = std I)
        along = 0.0
        source = fresh[b] if mode[b] == RESIDUAL_DRAW else noise[b, k]
        for j in range(d):
            gap = np.float64(target[b, k, j]) - np.float64(draft[b, k, j])
            along += np.float64(source[j]) * gap * inverse  # <zeta, e> or <xi, e>
        if mode[b] == RESIDUAL_DRAW:  # m_p + std (s e + zeta - <zeta, e> e)  (ALG 3)
            coefficient = shift[b] - along
            for j in range(d):
                gap = np.float64(target[b, k, j]) - np.float64(draft[b, k, j])
                value = np.float64(draft[b, k, j]) + std[b] * (
                    np.float64(fresh[b, j]) + coefficient * gap * inverse)
                out[b, j] = value
                total += value
        else:  # reflection: m_q + std (xi - 2 <xi, e> e)
            for j in range(d):
                gap = np.float64(target[b, k, j]) - np.float64(draft[b, k, j])
                value = np.float64(target[b, k, j]) + std[b] * (
                    np.float64(noise[b, k, j]) - 2.0 * along * gap * inverse)
                out[b, j] = value
                total += value
    return total


def fused_next_states(
    target_means: torch.Tensor,
    draft_means: torch.Tensor,
    noise: torch.Tensor,
    fresh: torch.Tensor,
    tau: np.ndarray,
    mode: np.ndarray,
    shift: np.ndarray,
    std: np.ndarray,
) -> tuple[torch.Tensor, bool]:
    """Every chain's next state in one compiled pass, for ``L = std I`` on CPU.

    The fast path of the round's last step (ALGORITHMS sections 3 and 4) when the gaps were
    verified by :func:`gaussspec.verification.fused_gap_statistics`: per chain ``b`` with
    accepted length ``k = tau[b]``,

    * ``TARGET_DRAW``: ``m_q(x_k) + std zeta`` (all drafts accepted, or a zero gap);
    * ``RESIDUAL_DRAW``: ``m_p(x_k) + std (s e + zeta - <zeta, e> e)`` with ``s = shift[b]``;
    * ``REFLECTION``: ``m_q(x_k) + std (xi_k - 2 <xi_k, e> e)``;

    with ``e`` the unit gap direction ``(m_q - m_p) / |m_q - m_p|`` (whitening by a scalar
    leaves directions unchanged). Arithmetic is float64 per element.

    Args:
        target_means: ``(n, w + 1, *event)`` target means along each path (contiguous).
        draft_means: ``(n, w, *event)`` draft means (contiguous; unused rows may be anything).
        noise: ``(n, w, *event)`` the drafts' standard noise.
        fresh: ``(n, *event)`` fresh standard noise.
        tau: ``(n,)`` accepted lengths.
        mode: ``(n,)`` one of ``TARGET_DRAW``, ``RESIDUAL_DRAW``, ``REFLECTION``.
        shift: ``(n,)`` residual offsets ``s = s* + r`` (read for ``RESIDUAL_DRAW`` rows only).
        std: ``(n,)`` std of the step each chain takes now.

    Returns:
        ``(next_states, finite)``: ``(n, *event)`` in the states' dtype, and False when any
        value is NaN or inf.
    """
    n = target_means.shape[0]
    out = torch.empty_like(fresh)
    width = max(draft_means.shape[1], 1) if draft_means is not None else 1
    empty = np.zeros((n, width, 1), dtype=out.numpy().dtype)
    flat = lambda tensor, *lead: tensor.detach().reshape(*lead, -1).numpy()  # noqa: E731
    total = _next_states(
        flat(target_means, n, target_means.shape[1]),
        empty if draft_means is None else flat(draft_means, n, width),
        empty if noise is None else flat(noise, n, width),
        flat(fresh, n), np.ascontiguousarray(tau, dtype=np.int64),
        np.ascontiguousarray(mode, dtype=np.int64), np.ascontiguousarray(shift, dtype=np.float64),
        np.ascontiguousarray(std, dtype=np.float64), flat(out, n),
    )
    return out, bool(np.isfinite(total))
