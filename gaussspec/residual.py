"""The one-dimensional weighted residual of ALGORITHMS section 3.

Along the unit gap direction ``e`` the weighted residual ``max(0, c q - p)`` reduces to the scalar
density proportional to ``c phi(s - delta) - phi(s)`` on ``s > s*``, with

    s*   = delta / 2 - ln(c) / delta                                   (ALG 3: threshold)
    R    = c Phibar(s* - delta) - Phibar(s*)                           (ALG 3: mass)
    G(s) = [c Phibar(s - delta) - Phibar(s)] / R                       (ALG 3: survival)

Computing these in floating point naively cancels catastrophically (``c`` down to 1e-300, ``delta``
from 1e-8 to 1e4). We write ``lambda(u) = phi(u) / Phibar(u)`` (the hazard) and ``g(u) = lambda(u) - u
> 0`` (smooth, slowly varying) and use the exact identity, for ``s = s* + r`` and ``A = s* - delta``::

    c Phibar(s - delta) - Phibar(s) = c Phibar(s - delta) (1 - exp(-E(s)))
    E(s*+r) = delta r + int_{A+r}^{s*+r} g(u) du                      (no cancellation: both >= 0)
    log Phibar(A + r) - log Phibar(A) = -(r A + r^2/2 + int_A^{A+r} g(u) du)

so ``log G(s* + r)`` is a sum of terms that are each accurate, and we solve ``log G = log U`` for the
offset ``r >= 0`` by bracketed Newton iterations (at most a fixed number; deterministic time, no
target call). Integrals of ``g`` use Gauss-Legendre quadrature on short intervals and the
antiderivative ``H(u) = -log Phibar(u) - u^2/2`` on long ones. All scalar work is compiled with
numba and vectorised over chains; special functions come from scipy's C implementations.
"""

from __future__ import annotations

import ctypes
import math

import numba
import numpy as np
from numba.extending import get_cython_function_address

__all__ = ["residual_log_mass", "sample_residual", "block_accept_lengths", "log_survival"]

_DOUBLE_FN = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_int)
_erfcx_c = _DOUBLE_FN(get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_1erfcx"))
_log_ndtr_c = _DOUBLE_FN(
    get_cython_function_address("scipy.special.cython_special", "__pyx_fuse_1log_ndtr")
)

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_LN2 = math.log(2.0)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(20)
_MAX_ITERATIONS = 100


@numba.njit
def _erfcx(x):
    return _erfcx_c(x, 0)


@numba.njit
def _log_survival_normal(x):
    """log Phibar(x) = log_ndtr(-x)."""
    return _log_ndtr_c(-x, 0)


@numba.njit
def _g(u):
    """g(u) = phi(u) / Phibar(u) - u, the hazard minus its asymptote (always > 0)."""
    if u < 8.0:
        return _SQRT_2_OVER_PI / _erfcx(u / _SQRT2) - u  # lambda(u) - u
    # Laplace's continued fraction: Phibar/phi = 1/(u + 1/(u + 2/(u + ...))) gives
    # g(u) = 1/(u + 2/(u + 3/(u + ...)))
    tail = u
    for k in range(60, 1, -1):
        tail = u + k / tail
    return 1.0 / tail


@numba.njit
def _antiderivative(u):
    """H(u) = -log Phibar(u) - u^2/2, so that H' = g."""
    if u >= 0.0:
        return -math.log(0.5 * _erfcx(u / _SQRT2))
    return -_log_survival_normal(u) - 0.5 * u * u


@numba.njit
def _integral_g(lower, width, nodes, weights):
    """int_{lower}^{lower + width} g(u) du for width >= 0, accurate in relative terms."""
    if width <= 0.0:
        return 0.0
    upper = lower + width
    if width <= max(1.0, min(abs(lower), abs(upper))):
        half = 0.5 * width
        total = 0.0
        for i in range(nodes.shape[0]):
            total += weights[i] * _g(lower + half * (nodes[i] + 1.0))
        return half * total
    return _antiderivative(upper) - _antiderivative(lower)


@numba.njit
def _log1mexp(x):
    """log(1 - exp(-x)) for x > 0 (Maechler's switch)."""
    if x <= 0.0:
        return -np.inf
    if x < _LN2:
        return math.log(-math.expm1(-x))
    return math.log1p(-math.exp(-x))


@numba.njit
def _log_mass(log_c, delta, nodes, weights):
    """log R(c, delta) (ALG 3: mass) for log_c <= 0, 0 < delta < inf."""
    s_star = 0.5 * delta - log_c / delta  # ALG 3: threshold
    a = -0.5 * delta - log_c / delta  # s* - delta
    e0 = _integral_g(a, delta, nodes, weights)  # E(s*) = int_{s*-delta}^{s*} g
    return log_c + _log_survival_normal(a) + _log1mexp(e0)  # log c + log Phibar(s*-delta) + log(1-e^-E)


@numba.njit
def _log_survival_offset(r, a, s_star, delta, log1mexp_e0, nodes, weights):
    """log G(s* + r) and its derivative in r."""
    if a < 0.0:  # both log Phibar values are moderate where G is representable: subtract directly
        shift = _log_survival_normal(a) - _log_survival_normal(a + r)
    else:  # -log[Phibar(A + r) / Phibar(A)] = r A + r^2/2 + int_A^{A+r} g, free of cancellation
        shift = r * a + 0.5 * r * r + _integral_g(a, r, nodes, weights)
    energy = delta * r + _integral_g(a + r, delta, nodes, weights)  # E(s* + r)
    value = -shift + _log1mexp(energy) - log1mexp_e0  # log G(s* + r)
    slope_energy = delta + _g(s_star + r) - _g(a + r)  # E'(r)
    em1 = math.expm1(energy)
    derivative = -(a + r + _g(a + r)) + (slope_energy / em1 if em1 > 0.0 else np.inf)
    return value, derivative


@numba.njit
def _sample_one(log_c, delta, log_u, nodes, weights):
    """Solve log G(s* + r) = log U for r >= 0; returns (s*, r)."""
    s_star = 0.5 * delta - log_c / delta  # ALG 3: threshold
    a = -0.5 * delta - log_c / delta  # s* - delta, without rounding s* first
    e0 = _integral_g(a, delta, nodes, weights)
    l0 = _log1mexp(e0)
    # Upper bracket (drop the integral and the 1 - exp(-E) factor): r^2/2 + r A = T.
    bound = -log_u - l0
    root = math.sqrt(a * a + 2.0 * bound)
    high = 2.0 * bound / (a + root) if a >= 0.0 else root - a
    low = 0.0
    r = 0.5 * high
    for _ in range(_MAX_ITERATIONS):
        value, derivative = _log_survival_offset(r, a, s_star, delta, l0, nodes, weights)
        excess = value - log_u
        if excess > 0.0:
            low = r
        else:
            high = r
        if abs(excess) <= 1e-15 * max(1.0, abs(log_u)) or high - low <= 4e-16 * high:
            break
        step = r - excess / derivative if derivative < 0.0 and math.isfinite(derivative) else -1.0
        r = step if low < step < high else 0.5 * (low + high)
    return s_star, r


@numba.njit
def _sample_many(log_c, delta, u, nodes, weights):
    n = log_c.shape[0]
    s_star = np.empty(n)
    offset = np.empty(n)
    for i in range(n):
        s_star[i], offset[i] = _sample_one(log_c[i], delta[i], math.log(u[i]), nodes, weights)
    return s_star, offset


@numba.njit
def _log_mass_safe(log_c, delta, nodes, weights):
    """log R(c, delta) including the limits delta = 0, delta = inf and c = 0."""
    if not delta > 0.0:  # identical kernels: R = max(c - 1, 0) = 0 for c <= 1
        return -np.inf
    if not math.isfinite(delta):  # mutually singular (ALG 6): R = c
        return log_c
    if log_c == -np.inf:
        return -np.inf
    return _log_mass(log_c, delta, nodes, weights)


@numba.njit
def _log_mass_many(log_c, delta, nodes, weights):
    out = np.empty(log_c.shape[0])
    for i in range(log_c.shape[0]):
        out[i] = _log_mass_safe(log_c[i], delta[i], nodes, weights)
    return out


def residual_log_mass(log_c, delta) -> np.ndarray:
    """log R(c, delta), vectorised (ALG 3: mass).

    Args:
        log_c: Array of ``log c`` values, ``<= 0``.
        delta: Array of whitened gaps ``>= 0``; ``inf`` marks mutually singular kernels (R = c).

    Returns:
        ``log R`` as a float64 array (``-inf`` where the residual has no mass).
    """
    log_c = np.ascontiguousarray(log_c, dtype=np.float64).ravel()
    delta = np.ascontiguousarray(delta, dtype=np.float64).ravel()
    return _log_mass_many(log_c, delta, _NODES, _WEIGHTS)


def sample_residual(log_c, delta, u) -> tuple[np.ndarray, np.ndarray]:
    """Invert the residual's survival function at ``u`` (ALG 3: G(s) = U).

    Args:
        log_c: ``log c <= 0`` per draw.
        delta: Whitened gaps, finite and ``> 0``.
        u: Uniform(0, 1) variates.

    Returns:
        ``(s_star, offset)``: the threshold ``s*`` and the offset ``r >= 0`` with ``s = s* + r``.
        Returning the offset keeps full precision when ``s*`` is huge (tiny ``c`` and ``delta``).
    """
    log_c = np.ascontiguousarray(log_c, dtype=np.float64).ravel()
    delta = np.ascontiguousarray(delta, dtype=np.float64).ravel()
    u = np.ascontiguousarray(u, dtype=np.float64).ravel()
    return _sample_many(log_c, delta, u, _NODES, _WEIGHTS)


def log_survival(log_c, delta, s_star, offset) -> np.ndarray:
    """log G(s* + offset), vectorised; for tests and diagnostics."""
    out = np.empty(len(log_c))
    for i, (lc, d, ss, r) in enumerate(zip(log_c, delta, s_star, offset)):
        a = -0.5 * d - lc / d
        l0 = _log1mexp(_integral_g(a, d, _NODES, _WEIGHTS))
        out[i] = _log_survival_offset(r, a, ss, d, l0, _NODES, _WEIGHTS)[0]
    return out


@numba.njit
def _block_lengths(log_ratio, delta, u, lengths, token, nodes, weights):
    """Accepted lengths tau per chain (ALG 4 token-wise, ALG 5 block) and log w_tau."""
    num_chains = log_ratio.shape[0]
    tau = np.zeros(num_chains, dtype=np.int64)
    log_weight_at_tau = np.zeros(num_chains)
    for b in range(num_chains):
        gamma = lengths[b]
        if token:
            length = 0
            for i in range(gamma):
                if u[b, i] > 0.0 and math.log(u[b, i]) < min(0.0, log_ratio[b, i]):
                    length += 1  # accept x_i w.p. min(1, q/p)
                else:
                    break
            tau[b] = length
            continue
        # Forward: w_i = min(1, w_{i-1} q_i / p_i) (cheap). Backward: tau = max{i : U_i <= h_i},
        # so scanning from i = gamma down stops at the first hit and the residual masses R_i
        # (the costly part) are computed only for positions above the accepted length.
        log_ws = np.empty(gamma)
        log_w = 0.0  # w_0 = 1
        for i in range(gamma):
            log_w = min(0.0, log_w + log_ratio[b, i])  # w_i = min(1, w_{i-1} q_i / p_i)
            log_ws[i] = log_w
        best = 0
        best_log_w = 0.0
        for i in range(gamma - 1, -1, -1):
            log_w = log_ws[i]
            if i < gamma - 1:
                log_r = _log_mass_safe(log_w, delta[b, i + 1], nodes, weights)  # R(w_i, delta_{i+1})
                one_minus_w = -math.expm1(log_w) if log_w < 0.0 else 0.0
                if log_r == -np.inf and one_minus_w == 0.0:
                    h = 1.0  # 0/0 := 1
                else:
                    r = math.exp(log_r)
                    h = r / (r + one_minus_w)  # h_i = R_i / (R_i + 1 - w_i)
            else:
                h = math.exp(log_w)  # h_gamma = w_gamma
            if u[b, i] <= h:
                best = i + 1  # tau = max{i : U_i <= h_i}
                best_log_w = log_w
                break
        tau[b] = best
        log_weight_at_tau[b] = best_log_w
    return tau, log_weight_at_tau


def block_accept_lengths(log_ratio, delta, u, lengths, token: bool):
    """Accepted draft lengths per chain.

    Args:
        log_ratio: ``(B, gamma)``; column ``i`` holds log q(x_{i+1}) / p(x_{i+1}).
        delta: ``(B, gamma)``; column ``i`` holds the whitened gap at draft step ``i + 1``
            (``inf`` where target and draft are mutually singular).
        u: ``(B, gamma)`` Uniform(0, 1) variates.
        lengths: ``(B,)`` draft length of each chain this round (columns past it are ignored).
        token: Token-wise (ALG 4) instead of block verification (ALG 5).

    Returns:
        ``(tau, log_w_tau)``: accepted lengths in ``0..gamma`` and ``log w_tau`` (0 for tau = 0),
        the weight ``c`` of the residual drawn when ``tau < gamma``.
    """
    return _block_lengths(
        np.ascontiguousarray(log_ratio, dtype=np.float64),
        np.ascontiguousarray(delta, dtype=np.float64),
        np.ascontiguousarray(u, dtype=np.float64),
        np.ascontiguousarray(lengths, dtype=np.int64),
        bool(token),
        _NODES,
        _WEIGHTS,
    )
