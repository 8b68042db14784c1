"""Couplings: the noise of the step that replaces a rejected draft.

* ``gamma``: a draw from the weighted residual ``max(0, c q - p)`` by the orthogonal decomposition
  of ALGORITHMS section 3: ``y = m_p + L (s e + w)`` with ``w`` the part of fresh noise orthogonal
  to the gap direction ``e`` and ``s`` the scalar residual draw. Valid for any ``c`` in (0, 1].
* ``reflection``: the maximal reflection coupling (``c = 1`` only, token-wise verification):
  ``y = m_q + L (xi - 2 <xi, e> e)`` from the rejected draft's own noise ``xi``.
"""

from __future__ import annotations

import numpy as np
import torch

from gaussspec.residual import sample_residual

__all__ = ["COUPLINGS", "residual_noise", "reflection_noise"]

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

