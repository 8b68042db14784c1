"""The compiled CPU path of a round's verification and last step, for isotropic noise.

When the shared covariance is ``L = std I`` (a std per chain and step) and states live on the CPU,
everything after the batched target call is a few passes over three arrays, which numba runs in
one call (:func:`fused_step`) instead of some forty small tensor operations:

* :func:`fused_verify`: per drafted slot the gap ``m_q - m_p`` (the draft mean read off the drafted
  state, ``m_p = x' - std xi``) gives ``delta = |gap| / std`` and
  ``log q/p = <xi, gap> / std - delta^2 / 2`` (ALGORITHMS section 2; float64 sums, the whitened
  gaps are never stored); then the accepted lengths (sections 4, 5) and, for each rejection, the
  scalar residual draw ``s = s* + r`` (section 3);
* :func:`fused_next_states`: every chain's next state, ``m_q + std zeta`` (bonus or target draw),
  ``m_p + std (s e + zeta - <zeta, e> e)`` (weighted residual) or ``m_q + std (xi - 2 <xi, e> e)``
  (reflection), with ``e = gap / |gap|`` (whitening by a scalar keeps directions).

Both read the same random numbers the general path reads, in the same order, so the two paths give
the same draws up to rounding (tested). The general torch path (any covariance, any device) stays
the reference.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from gaussspec.residual import _NODES, _WEIGHTS, _block_lengths, _sample_one

__all__ = ["fused_step", "fused_verify", "fused_next_states", "gather_rows", "host_grid", "FusedVerification",
           "TARGET_DRAW", "RESIDUAL_DRAW", "REFLECTION", "compilations"]

#: How :func:`fused_next_states` makes a chain's next state.
TARGET_DRAW, RESIDUAL_DRAW, REFLECTION = 0, 1, 2

_FAST = {"reassoc", "contract", "nsz"}  # vectorised sums; no nnan/ninf: NaN and inf propagate


@numba.njit(fastmath=_FAST, nogil=True)
def _gap_sums(target, path, noise, lengths, std, squares, inner):
    """``sum (m_q - m_p)^2`` and ``sum xi (m_q - m_p)`` per drafted slot, float64 sums.

    The draft mean is read off the drafted state, ``m_p = x_{i+1} - std xi`` (ALGORITHMS 1), so the
    draft means are never stored: the states were just read by the target call (still cached).
    """
    n, _, d = noise.shape
    for row in range(n):
        for position in range(lengths[row]):
            scale = std[row, position]
            sum_squares = 0.0
            sum_inner = 0.0
            for j in range(d):
                xi = np.float64(noise[row, position, j])
                draft = np.float64(path[row, position + 1, j]) - scale * xi  # m_p = x' - std xi
                gap = np.float64(target[row, position, j]) - draft
                sum_squares += gap * gap  # |m_q - m_p|^2
                sum_inner += xi * gap  # <xi, m_q - m_p>
            squares[row, position] = sum_squares
            inner[row, position] = sum_inner


@numba.njit(nogil=True)
def _verify(target, path, noise, lengths, std, uniforms, residual_uniforms, token, reflection,
            nodes, weights):
    n = noise.shape[0]
    width = max(noise.shape[1], 1)
    delta = np.zeros((n, width))
    log_ratio = np.zeros((n, width))
    tau = np.zeros(n, dtype=np.int64)
    log_w = np.zeros(n)
    mode = np.zeros(n, dtype=np.int64)
    shift = np.zeros(n)
    for row in range(n):
        for position in range(lengths[row]):
            if not std[row, position] > 0.0:
                return tau, log_w, mode, shift, delta, log_ratio, 2  # singular: general path
    _gap_sums(target, path, noise, lengths, std, delta, log_ratio)
    for row in range(n):
        for position in range(lengths[row]):
            scale = 1.0 / std[row, position]
            gap_norm = math.sqrt(delta[row, position]) * scale  # delta = |L^-1 (m_q - m_p)|
            ratio = log_ratio[row, position] * scale - 0.5 * gap_norm * gap_norm  # ALG 2
            if not math.isfinite(ratio):
                return tau, log_w, mode, shift, delta, log_ratio, 1  # a non-finite mean
            delta[row, position] = gap_norm
            log_ratio[row, position] = ratio
    tau, log_w = _block_lengths(log_ratio, delta, uniforms, lengths, token, nodes, weights)
    for row in range(n):
        k = tau[row]
        if k < lengths[row] and delta[row, k] > 0.0:  # a rejection: residual or reflection
            if reflection:
                mode[row] = REFLECTION
            else:
                s_star, offset = _sample_one(log_w[row], delta[row, k],
                                             math.log(residual_uniforms[row]), nodes, weights)
                mode[row] = RESIDUAL_DRAW
                shift[row] = s_star + offset  # s = s* + r  (ALG 3)
    return tau, log_w, mode, shift, delta, log_ratio, 0


class FusedVerification:
    """What :func:`fused_verify` found: accepted lengths and how each chain steps next.

    Attributes:
        tau: ``(n,)`` accepted lengths.
        log_weight: ``(n,)`` ``log w_tau`` of block verification (0 token-wise).
        mode: ``(n,)`` ``TARGET_DRAW``, ``RESIDUAL_DRAW`` or ``REFLECTION``.
        shift: ``(n,)`` residual draws ``s`` (``RESIDUAL_DRAW`` rows).
        delta: ``(n, width)`` whitened gap norms per drafted slot.
        log_ratio: ``(n, width)`` ``log q / p`` per drafted slot.
        status: 0 done; 1 a non-finite mean among the drafted slots; 2 a zero std at a drafted
            slot (mutually singular kernels: use the general path).
    """

    __slots__ = ("tau", "log_weight", "mode", "shift", "delta", "log_ratio", "status")

    def __init__(self, tau, log_weight, mode, shift, delta, log_ratio, status):
        self.tau, self.log_weight, self.mode, self.shift = tau, log_weight, mode, shift
        self.delta, self.log_ratio, self.status = delta, log_ratio, status


def host_grid(tensor: torch.Tensor | None, rows: int, columns: int | None = None) -> np.ndarray:
    """A CPU tensor as a float array ``(rows, columns, features)`` (or ``(rows, features)``).

    A view for contiguous tensors. ``None`` (nothing drafted) gives an empty placeholder.
    """
    if tensor is None:
        return np.zeros((rows, 1, 1), dtype=np.float64)
    lead = (rows,) if columns is None else (rows, columns)
    array = tensor.detach().numpy() if tensor.requires_grad else tensor.numpy()
    return array.reshape(*lead, -1)


def fused_verify(
    target: np.ndarray,
    path: np.ndarray,
    noise: np.ndarray,
    lengths: np.ndarray,
    std: np.ndarray,
    uniforms: np.ndarray,
    residual_uniforms: np.ndarray,
    token: bool,
    reflection: bool,
) -> FusedVerification:
    """Verify a drafted grid and draw the residual scalars, in one compiled call.

    Args:
        target: ``(n, w + 1, d)`` target means along each path (see :func:`host_grid`).
        path: ``(n, w + 1, d)`` the drafted paths, ``path[:, i + 1] = m_p + std xi_i``; the draft
            means are read off them (slots past ``lengths`` are ignored).
        noise: ``(n, w, d)`` the drafts' standard noise.
        lengths: ``(n,)`` int64 drafted lengths.
        std: ``(n, w + 1)`` float64 std of the step leaving each slot.
        uniforms: ``(n, max(w, 1))`` float64 acceptance uniforms.
        residual_uniforms: ``(n,)`` float64 uniforms of the residual inversion.
        token: Token-wise verification instead of block verification.
        reflection: The reflection coupling instead of the weighted residual.
    """
    return FusedVerification(*_verify(target, path, noise, lengths, std, uniforms,
                                      residual_uniforms, token, reflection, _NODES, _WEIGHTS))


@numba.njit(fastmath=_FAST, nogil=True)
def _next_states(target, path, noise, fresh, tau, mode, shift, std, out):
    n, d = fresh.shape
    total = 0.0  # NaN or inf anywhere poisons the sum
    for b in range(n):
        k = tau[b]
        scale = std[b, k]
        if mode[b] == TARGET_DRAW:  # bonus step or a target draw: m_q + std zeta
            for j in range(d):
                value = np.float64(target[b, k, j]) + scale * np.float64(fresh[b, j])
                out[b, j] = value
                total += value
            continue
        # the rejected slot's gap m_q - m_p, with m_p = x_{k+1} - std xi_k (ALGORITHMS 1)
        gap = np.empty(d)
        draft = np.empty(d)
        norm2 = 0.0
        for j in range(d):
            draft[j] = np.float64(path[b, k + 1, j]) - scale * np.float64(noise[b, k, j])
            gap[j] = np.float64(target[b, k, j]) - draft[j]
            norm2 += gap[j] * gap[j]
        inverse = 1.0 / np.sqrt(norm2)  # e = gap / |gap| (= Delta / delta for L = std I)
        along = 0.0
        source = fresh[b] if mode[b] == RESIDUAL_DRAW else noise[b, k]
        for j in range(d):
            along += np.float64(source[j]) * gap[j] * inverse  # <zeta, e> or <xi, e>
        if mode[b] == RESIDUAL_DRAW:  # m_p + std (s e + zeta - <zeta, e> e)  (ALG 3)
            coefficient = shift[b] - along
            for j in range(d):
                value = draft[j] + scale * (np.float64(fresh[b, j]) + coefficient * gap[j] * inverse)
                out[b, j] = value
                total += value
        else:  # reflection: m_q + std (xi - 2 <xi, e> e)
            for j in range(d):
                value = np.float64(target[b, k, j]) + scale * (
                    np.float64(noise[b, k, j]) - 2.0 * along * gap[j] * inverse)
                out[b, j] = value
                total += value
    return math.isfinite(total)


def fused_next_states(
    target: np.ndarray,
    path: np.ndarray,
    noise: np.ndarray,
    fresh: np.ndarray,
    tau: np.ndarray,
    mode: np.ndarray,
    shift: np.ndarray,
    std: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Every chain's next state in one compiled pass (see the module docstring).

    Args:
        target: ``(n, w + 1, d)`` target means along each path.
        path: ``(n, w + 1, d)`` the drafted paths (the draft means are read off them, as in
            :func:`fused_verify`).
        noise: ``(n, w, d)`` the drafts' standard noise.
        fresh: ``(n, d)`` fresh standard noise.
        tau: ``(n,)`` int64 accepted lengths.
        mode: ``(n,)`` int64, one of ``TARGET_DRAW``, ``RESIDUAL_DRAW``, ``REFLECTION``.
        shift: ``(n,)`` residual offsets ``s = s* + r`` (read for ``RESIDUAL_DRAW`` rows only).
        std: ``(n, w + 1)`` float64 std of the step leaving each slot (slot ``tau`` is used).
        out: ``(n, d)`` where the next states are written (it may be ``path[:, 0]``: only slots
            past 0 are read).

    Returns:
        False when any written value is NaN or inf.
    """
    return _next_states(target, path, noise, fresh, tau, mode, shift, std, out)


@numba.njit(nogil=True)
def _step(target, path, noise, fresh, lengths, std, uniforms, residual_uniforms, token, reflection,
          nodes, weights, out, source, flat_index, gathered):
    tau, log_w, mode, shift, delta, log_ratio, status = _verify(
        target, path, noise, lengths, std, uniforms, residual_uniforms, token, reflection, nodes,
        weights)
    finite = False
    if status == 0:
        finite = _next_states(target, path, noise, fresh, tau, mode, shift, std, out)
        if gathered.shape[0]:
            _gather_rows(source, flat_index, tau, gathered)
    return tau, log_w, mode, shift, delta, log_ratio, status, finite


_NO_GATHER = (np.zeros((0, 1)), np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1)))


def fused_step(
    target: np.ndarray,
    path: np.ndarray,
    noise: np.ndarray,
    fresh: np.ndarray,
    lengths: np.ndarray,
    std: np.ndarray,
    uniforms: np.ndarray,
    residual_uniforms: np.ndarray,
    token: bool,
    reflection: bool,
    out: np.ndarray,
    gather: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[FusedVerification, bool]:
    """:func:`fused_verify`, then (if it succeeded) :func:`fused_next_states` and
    :func:`gather_rows`, in one compiled call.

    The round's hot path; the parts stay public for tests and planted mutants.

    Args:
        gather: ``(source, flat_index, out)`` for :func:`gather_rows` (each chain's target
            evaluation at its accepted slot), or None.

    Returns:
        ``(found, finite)``: what :func:`fused_verify` found and whether every next state written
        to ``out`` is finite (False, with nothing written, when ``found.status != 0``).
    """
    *found, finite = _step(target, path, noise, fresh, lengths, std, uniforms, residual_uniforms,
                           token, reflection, _NODES, _WEIGHTS, out, *(gather or _NO_GATHER))
    return FusedVerification(*found), finite


@numba.njit(nogil=True)
def _gather_rows(source, flat_index, tau, out):
    for b in range(out.shape[0]):
        out[b, :] = source[flat_index[b, tau[b]]]


def gather_rows(source: np.ndarray, flat_index: np.ndarray, tau: np.ndarray, out: np.ndarray) -> None:
    """``out[b] = source[flat_index[b, tau[b]]]``: each chain's row at its accepted slot.

    Args:
        source: ``(rows, features)`` the flat rows (a target call's output).
        flat_index: ``(n, w + 1)`` int64 flat row of each grid slot.
        tau: ``(n,)`` int64 accepted lengths.
        out: ``(n, features)`` where the rows are written (same dtype as ``source``).
    """
    _gather_rows(source, flat_index, tau, out)


class _CompileCounter(numba.core.event.Listener):
    """Counts numba compilations in this process (any function, ours or not)."""

    count = 0

    def on_start(self, event):
        pass

    def on_end(self, event):
        _CompileCounter.count += 1


numba.core.event.register("numba:compile", _CompileCounter())


def compilations() -> int:
    """How many numba compilations this process has finished so far.

    A round during which this number grows paid for a compilation (about 0.1 s per function, once
    per process and array type); the adaptive policy does not time such rounds.
    """
    return _CompileCounter.count
