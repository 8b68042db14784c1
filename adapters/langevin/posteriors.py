"""Eight posteriordb posteriors as batched torch log densities on an unconstrained space.

Each model maps a ``(B, d)`` unconstrained tensor to ``(B,)`` log densities (up to a constant),
including the log-Jacobian of the map to the constrained parameters (posteriordb's ``MODELS.md``):

* positive ``s = exp(u)``: ``+ u``;
* interval ``s = logistic(u)``: ``+ log s + log(1 - s)``;
* ordered pair ``mu1 = a, mu2 = a + exp(b)``: ``+ b``;
* upper bound depending on another parameter ``beta1 = (1 - alpha1) logistic(u)``:
  ``+ log(1 - alpha1) + log l + log(1 - l)`` with ``l = logistic(u)``.

The data and the posteriordb reference draws are read from the ``data/`` folder next to this file
(a copy with posteriordb's BSD-3 licence; see ``data/README.md``), never from anywhere else.

Use :func:`posterior` to get a ready :class:`Posterior`.
"""

from __future__ import annotations

import functools
import json
import math
import zipfile
from pathlib import Path
from typing import Callable

import attrs
import numpy as np
import torch

__all__ = ["Posterior", "ReferenceDraws", "posterior", "posterior_names"]

_F64 = torch.float64
_DATA_DIR = Path(__file__).resolve().parent / "data"
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


# --- log densities of standard distributions (all constants kept) ------------------------------


def _normal_lpdf(x, loc, scale):
    """log N(x | loc, scale) with scale a standard deviation."""
    z = (x - loc) / scale
    return -0.5 * z * z - torch.log(torch.as_tensor(scale, dtype=x.dtype)) - 0.5 * _LOG_2PI


def _half_normal_lpdf(x, scale):
    """log half-Normal(x | 0, scale) on x > 0: the normal density times 2."""
    return _normal_lpdf(x, 0.0, scale) + _LOG_2


def _half_cauchy_lpdf(x, scale):
    """log half-Cauchy(x | 0, scale) on x > 0: 2 / (pi scale (1 + (x/scale)^2))."""
    return _LOG_2 - math.log(math.pi * scale) - torch.log1p((x / scale) ** 2)


def _student_t_lpdf(x, nu, loc, scale):
    """log Student-t(x | nu, loc, scale)."""
    const = (
        math.lgamma((nu + 1.0) / 2.0)
        - math.lgamma(nu / 2.0)
        - 0.5 * math.log(nu * math.pi)
        - math.log(scale)
    )
    z = (x - loc) / scale
    return const - 0.5 * (nu + 1.0) * torch.log1p(z * z / nu)


def _gamma_lpdf(x, shape, rate):
    """log Gamma(x | shape, rate)."""
    const = shape * math.log(rate) - math.lgamma(shape)
    return const + (shape - 1.0) * torch.log(x) - rate * x


def _beta_lpdf_logit(u, a, b):
    """log Beta(logistic(u) | a, b) computed stably from the logit u."""
    const = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return const + (a - 1.0) * torch.nn.functional.logsigmoid(u) + (b - 1.0) * torch.nn.functional.logsigmoid(-u)


def _log_jacobian_logistic(u):
    """log of d logistic(u) / du = log s + log(1 - s), s = logistic(u)."""
    return torch.nn.functional.logsigmoid(u) + torch.nn.functional.logsigmoid(-u)


# --- data loading ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _read_data(data_name: str) -> dict:
    with zipfile.ZipFile(_DATA_DIR / "data" / f"{data_name}.json.zip") as archive:
        (member,) = archive.namelist()
        return json.loads(archive.read(member))


def _tensor(values, dtype=_F64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=dtype)


def _convert(value, dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def _to_dtype(model, dtype):
    """A copy of an attrs model with every floating tensor field cast to ``dtype``."""
    changes = {
        field.name.lstrip("_"): _convert(getattr(model, field.name), dtype)
        for field in attrs.fields(type(model))
        if isinstance(getattr(model, field.name), torch.Tensor)
    }
    return attrs.evolve(model, **changes)


def _subsample_rows(model, index: torch.Tensor, names: tuple[str, ...]):
    """A copy of a model keeping the data rows ``index`` of the fields ``names``, rescaled."""
    full = getattr(model, names[0]).shape[0]
    changes = {name: getattr(model, name)[index] for name in names}
    # The subsample's likelihood is rescaled by N / n (its expectation is the full likelihood).
    changes["weight"] = model.weight * full / index.numel()
    return attrs.evolve(model, **changes)


# --- the eight models -----------------------------------------------------------------------------


@attrs.frozen
class _Sblrc:
    """sblrc-blr: beta_i ~ N(0, 10), sigma ~ half-N(0, 10), y ~ N(X beta, sigma)."""

    X: torch.Tensor
    y: torch.Tensor
    weight: float = 1.0
    data_fields = ("X", "y")

    @classmethod
    def load(cls):
        data = _read_data("sblrc")
        return cls(X=_tensor(data["X"]), y=_tensor(data["y"]))

    names = tuple(f"beta[{i}]" for i in range(1, 6)) + ("sigma",)
    unconstrained = tuple(f"beta[{i}]" for i in range(1, 6)) + ("log_sigma",)

    def log_density(self, x):
        beta, log_sigma = x[:, :5], x[:, 5]
        sigma = torch.exp(log_sigma)
        prior = _normal_lpdf(beta, 0.0, 10.0).sum(-1) + _half_normal_lpdf(sigma, 10.0)
        mean = beta @ self.X.T
        loglik = _normal_lpdf(self.y, mean, sigma[:, None]).sum(-1)
        return prior + self.weight * loglik + log_sigma  # + log-Jacobian of sigma = exp(u)

    def constrain(self, x):
        return torch.cat([x[:, :5], torch.exp(x[:, 5:6])], dim=1)

    def unconstrain(self, c):
        return torch.cat([c[:, :5], torch.log(c[:, 5:6])], dim=1)


@attrs.frozen
class _Kidiq:
    """kidiq-kidscore_momiq: flat beta, sigma ~ half-Cauchy(0, 2.5), kid ~ N(b1 + b2 iq, sigma)."""

    mom_iq: torch.Tensor
    kid_score: torch.Tensor
    weight: float = 1.0
    data_fields = ("mom_iq", "kid_score")
    names = ("beta[1]", "beta[2]", "sigma")
    unconstrained = ("beta[1]", "beta[2]", "log_sigma")

    @classmethod
    def load(cls):
        data = _read_data("kidiq")
        return cls(mom_iq=_tensor(data["mom_iq"]), kid_score=_tensor(data["kid_score"]))

    def log_density(self, x):
        log_sigma = x[:, 2]
        sigma = torch.exp(log_sigma)
        mean = x[:, :1] + x[:, 1:2] * self.mom_iq
        loglik = _normal_lpdf(self.kid_score, mean, sigma[:, None]).sum(-1)
        return _half_cauchy_lpdf(sigma, 2.5) + self.weight * loglik + log_sigma  # + log-Jacobian

    def constrain(self, x):
        return torch.cat([x[:, :2], torch.exp(x[:, 2:3])], dim=1)

    def unconstrain(self, c):
        return torch.cat([c[:, :2], torch.log(c[:, 2:3])], dim=1)


@attrs.frozen
class _EightSchools:
    """eight_schools_noncentered: theta = mu + tau theta_trans, tau ~ half-Cauchy(0, 5)."""

    y: torch.Tensor
    sigma: torch.Tensor
    weight: float = 1.0
    data_fields = ()
    names = tuple(f"theta[{j}]" for j in range(1, 9)) + ("mu", "tau")
    unconstrained = tuple(f"theta_trans[{j}]" for j in range(1, 9)) + ("mu", "log_tau")

    @classmethod
    def load(cls):
        data = _read_data("eight_schools")
        return cls(y=_tensor(data["y"]), sigma=_tensor(data["sigma"]))

    def log_density(self, x):
        theta_trans, mu, log_tau = x[:, :8], x[:, 8], x[:, 9]
        tau = torch.exp(log_tau)
        theta = mu[:, None] + tau[:, None] * theta_trans
        prior = (
            _normal_lpdf(theta_trans, 0.0, 1.0).sum(-1)
            + _normal_lpdf(mu, 0.0, 5.0)
            + _half_cauchy_lpdf(tau, 5.0)
        )
        loglik = _normal_lpdf(self.y, theta, self.sigma).sum(-1)
        return prior + loglik + log_tau  # + log-Jacobian of tau = exp(u)

    def constrain(self, x):
        mu, tau = x[:, 8:9], torch.exp(x[:, 9:10])
        return torch.cat([mu + tau * x[:, :8], mu, tau], dim=1)

    def unconstrain(self, c):
        mu, tau = c[:, 8:9], c[:, 9:10]
        return torch.cat([(c[:, :8] - mu) / tau, mu, torch.log(tau)], dim=1)


@attrs.frozen
class _GaussMix:
    """low_dim_gauss_mix: ordered mu, sigma ~ half-N(0, 2), theta ~ Beta(5, 5), two-normal mixture."""

    y: torch.Tensor
    weight: float = 1.0
    data_fields = ("y",)
    names = ("mu[1]", "mu[2]", "sigma[1]", "sigma[2]", "theta")
    unconstrained = ("mu[1]", "log_mu_gap", "log_sigma[1]", "log_sigma[2]", "logit_theta")

    @classmethod
    def load(cls):
        return cls(y=_tensor(_read_data("low_dim_gauss_mix")["y"]))

    def log_density(self, x):
        mu1 = x[:, 0]
        mu2 = mu1 + torch.exp(x[:, 1])  # ordered pair, log-Jacobian + x[:, 1]
        log_sigma = x[:, 2:4]
        sigma = torch.exp(log_sigma)
        logit_theta = x[:, 4]
        prior = (
            _half_normal_lpdf(sigma, 2.0).sum(-1)
            + _normal_lpdf(mu1, 0.0, 2.0)
            + _normal_lpdf(mu2, 0.0, 2.0)
            + _beta_lpdf_logit(logit_theta, 5.0, 5.0)
        )
        log_theta = torch.nn.functional.logsigmoid(logit_theta)[:, None]
        log_1m_theta = torch.nn.functional.logsigmoid(-logit_theta)[:, None]
        first = log_theta + _normal_lpdf(self.y, mu1[:, None], sigma[:, :1])
        second = log_1m_theta + _normal_lpdf(self.y, mu2[:, None], sigma[:, 1:2])
        loglik = torch.logaddexp(first, second).sum(-1)
        jacobian = x[:, 1] + log_sigma.sum(-1) + _log_jacobian_logistic(logit_theta)
        return prior + self.weight * loglik + jacobian

    def constrain(self, x):
        mu1 = x[:, 0:1]
        mu2 = mu1 + torch.exp(x[:, 1:2])
        return torch.cat([mu1, mu2, torch.exp(x[:, 2:4]), torch.sigmoid(x[:, 4:5])], dim=1)

    def unconstrain(self, c):
        theta = c[:, 4:5]
        return torch.cat(
            [c[:, 0:1], torch.log(c[:, 1:2] - c[:, 0:1]), torch.log(c[:, 2:4]), torch.log(theta) - torch.log1p(-theta)],
            dim=1,
        )


@attrs.frozen
class _ArK:
    """arK: AR(5) regression, alpha, beta ~ N(0, 10), sigma ~ half-Cauchy(0, 2.5)."""

    lags: torch.Tensor  # (T - K, K): lags[i, k - 1] = y[K + i - k] (0-based), the y_{t-k}
    target: torch.Tensor  # (T - K,): y[K:]
    weight: float = 1.0
    data_fields = ("lags", "target")
    names = ("alpha",) + tuple(f"beta[{k}]" for k in range(1, 6)) + ("sigma",)
    unconstrained = ("alpha",) + tuple(f"beta[{k}]" for k in range(1, 6)) + ("log_sigma",)

    @classmethod
    def load(cls):
        data = _read_data("arK")
        order, length = int(data["K"]), int(data["T"])
        y = np.asarray(data["y"], dtype=np.float64)
        lags = np.stack([y[order - k : length - k] for k in range(1, order + 1)], axis=1)
        return cls(lags=_tensor(lags), target=_tensor(y[order:]))

    def log_density(self, x):
        alpha, beta, log_sigma = x[:, 0], x[:, 1:6], x[:, 6]
        sigma = torch.exp(log_sigma)
        prior = (
            _normal_lpdf(alpha, 0.0, 10.0)
            + _normal_lpdf(beta, 0.0, 10.0).sum(-1)
            + _half_cauchy_lpdf(sigma, 2.5)
        )
        mean = alpha[:, None] + beta @ self.lags.T  # mu_t = alpha + sum_k beta_k y_{t-k}
        loglik = _normal_lpdf(self.target, mean, sigma[:, None]).sum(-1)
        return prior + self.weight * loglik + log_sigma  # + log-Jacobian

    def constrain(self, x):
        return torch.cat([x[:, :6], torch.exp(x[:, 6:7])], dim=1)

    def unconstrain(self, c):
        return torch.cat([c[:, :6], torch.log(c[:, 6:7])], dim=1)


def _linear_recurrence(drive: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """Solve s_t = drive_t + decay * s_{t-1} (s_0 = 0) along the last axis by doubling.

    A Hillis-Steele scan: after the stage with offset k, s_t holds sum_{j < 2k} decay^j drive_{t-j}.
    log2(T) vectorised stages instead of T sequential ones, and autograd goes through it.

    Args:
        drive: ``(B, T)``.
        decay: ``(B, 1)``.
    """
    state, power, offset, length = drive, decay, 1, drive.shape[-1]
    while offset < length:
        shifted = torch.nn.functional.pad(state[:, :-offset], (offset, 0))
        state = state + power * shifted  # s_t += decay^k s_{t-k}
        power = power * power
        offset *= 2
    return state


@attrs.frozen
class _Garch:
    """garch11: flat priors; sigma_t^2 = alpha0 + alpha1 (y_{t-1} - mu)^2 + beta1 sigma_{t-1}^2."""

    y: torch.Tensor
    sigma1: float
    weight: float = 1.0
    data_fields = ()
    names = ("mu", "alpha0", "alpha1", "beta1")
    unconstrained = ("mu", "log_alpha0", "logit_alpha1", "logit_beta1_scaled")

    @classmethod
    def load(cls):
        data = _read_data("garch")
        return cls(y=_tensor(data["y"]), sigma1=float(data["sigma1"]))

    def log_density(self, x):
        mu, log_alpha0, logit_alpha1, logit_beta1 = x.unbind(-1)
        alpha0 = torch.exp(log_alpha0)
        alpha1 = torch.sigmoid(logit_alpha1)
        beta1 = (1.0 - alpha1) * torch.sigmoid(logit_beta1)
        innovation = (self.y[:-1] - mu[:, None]) ** 2
        drive = alpha0[:, None] + alpha1[:, None] * innovation  # alpha0 + alpha1 (y_{t-1} - mu)^2
        first = torch.full_like(drive[:, :1], self.sigma1**2)
        variance = _linear_recurrence(torch.cat([first, drive], dim=1), beta1[:, None])
        loglik = (
            -0.5 * (self.y - mu[:, None]) ** 2 / variance - 0.5 * torch.log(variance) - 0.5 * _LOG_2PI
        ).sum(-1)
        jacobian = (
            log_alpha0
            + _log_jacobian_logistic(logit_alpha1)
            + torch.nn.functional.logsigmoid(-logit_alpha1)  # log(1 - alpha1), the bound's scale
            + _log_jacobian_logistic(logit_beta1)
        )
        return loglik + jacobian

    def constrain(self, x):
        alpha1 = torch.sigmoid(x[:, 2:3])
        beta1 = (1.0 - alpha1) * torch.sigmoid(x[:, 3:4])
        return torch.cat([x[:, 0:1], torch.exp(x[:, 1:2]), alpha1, beta1], dim=1)

    def unconstrain(self, c):
        alpha1 = c[:, 2:3]
        scaled = c[:, 3:4] / (1.0 - alpha1)
        return torch.cat(
            [c[:, 0:1], torch.log(c[:, 1:2]), torch.log(alpha1) - torch.log1p(-alpha1),
             torch.log(scaled) - torch.log1p(-scaled)],
            dim=1,
        )


@attrs.frozen
class _GpPoisRegr:
    """gp_pois_regr: f = chol(K) f_tilde, K squared-exponential + 1e-10 I, k ~ Poisson(exp f)."""

    x: torch.Tensor
    k: torch.Tensor
    jitter: float = 1e-10
    weight: float = 1.0
    data_fields = ()
    names = ("rho", "alpha") + tuple(f"f[{i}]" for i in range(1, 12))
    unconstrained = ("log_rho", "log_alpha") + tuple(f"f_tilde[{i}]" for i in range(1, 12))

    @classmethod
    def load(cls):
        data = _read_data("gp_pois_regr")
        return cls(x=_tensor(data["x"]), k=_tensor(data["k"]))

    def _cholesky(self, log_rho, log_alpha):
        rho, alpha = torch.exp(log_rho), torch.exp(log_alpha)
        sq = (self.x[:, None] - self.x[None, :]) ** 2
        eye = torch.eye(self.x.shape[0], dtype=self.x.dtype)
        # K_ij = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + jitter on the diagonal
        cov = alpha[:, None, None] ** 2 * torch.exp(-sq / (2.0 * rho[:, None, None] ** 2)) + self.jitter * eye
        factor, info = torch.linalg.cholesky_ex(cov)
        return factor, info

    def log_density(self, x):
        log_rho, log_alpha, f_tilde = x[:, 0], x[:, 1], x[:, 2:]
        factor, info = self._cholesky(log_rho, log_alpha)
        f = (factor @ f_tilde[:, :, None]).squeeze(-1)
        prior = (
            _gamma_lpdf(torch.exp(log_rho), 25.0, 4.0)
            + _half_normal_lpdf(torch.exp(log_alpha), 2.0)
            + _normal_lpdf(f_tilde, 0.0, 1.0).sum(-1)
        )
        loglik = (self.k * f - torch.exp(f) - torch.lgamma(self.k + 1.0)).sum(-1)  # Poisson(k | e^f)
        value = prior + loglik + log_rho + log_alpha  # + log-Jacobians
        # A failed factorisation (K numerically singular) is -inf, never a silent wrong value.
        return torch.where(info == 0, value, torch.full_like(value, -math.inf))

    def constrain(self, x):
        factor, _ = self._cholesky(x[:, 0], x[:, 1])
        f = (factor @ x[:, 2:, None]).squeeze(-1)
        return torch.cat([torch.exp(x[:, :2]), f], dim=1)

    def unconstrain(self, c):
        log_rho, log_alpha = torch.log(c[:, 0]), torch.log(c[:, 1])
        factor, _ = self._cholesky(log_rho, log_alpha)
        f_tilde = torch.linalg.solve_triangular(factor, c[:, 2:, None], upper=False).squeeze(-1)
        return torch.cat([log_rho[:, None], log_alpha[:, None], f_tilde], dim=1)


@attrs.frozen
class _Diamonds:
    """diamonds: b ~ N(0, 1), Intercept ~ t(3, 8, 10), sigma ~ half-t(3, 0, 10), Y ~ N(Int + Xc b, sigma)."""

    Xc: torch.Tensor  # columns 2..K of X, centred
    Y: torch.Tensor
    weight: float = 1.0
    data_fields = ("Xc", "Y")
    names = tuple(f"b[{i}]" for i in range(1, 25)) + ("Intercept", "sigma")
    unconstrained = tuple(f"b[{i}]" for i in range(1, 25)) + ("Intercept", "log_sigma")

    @classmethod
    def load(cls):
        data = _read_data("diamonds")
        X = np.asarray(data["X"], dtype=np.float64)[:, 1:]
        return cls(Xc=_tensor(X - X.mean(axis=0)), Y=_tensor(data["Y"]))

    def log_density(self, x):
        b, intercept, log_sigma = x[:, :24], x[:, 24], x[:, 25]
        sigma = torch.exp(log_sigma)
        prior = (
            _normal_lpdf(b, 0.0, 1.0).sum(-1)
            + _student_t_lpdf(intercept, 3.0, 8.0, 10.0)
            + _student_t_lpdf(sigma, 3.0, 0.0, 10.0)
            + _LOG_2  # half-Student-t: restricted to sigma > 0 and renormalised
        )
        mean = intercept[:, None] + b @ self.Xc.T
        loglik = _normal_lpdf(self.Y, mean, sigma[:, None]).sum(-1)
        return prior + self.weight * loglik + log_sigma  # + log-Jacobian

    def constrain(self, x):
        return torch.cat([x[:, :25], torch.exp(x[:, 25:26])], dim=1)

    def unconstrain(self, c):
        return torch.cat([c[:, :25], torch.log(c[:, 25:26])], dim=1)


_MODELS = {
    "sblrc-blr": _Sblrc,
    "kidiq-kidscore_momiq": _Kidiq,
    "eight_schools-eight_schools_noncentered": _EightSchools,
    "low_dim_gauss_mix-low_dim_gauss_mix": _GaussMix,
    "arK-arK": _ArK,
    "garch-garch11": _Garch,
    "gp_pois_regr-gp_pois_regr": _GpPoisRegr,
    "diamonds-diamonds": _Diamonds,
}

# Short forms: the part after the dash (the Stan model name), plus the data name where unambiguous.
_SHORT = {
    "sblrc": "sblrc-blr",
    "blr": "sblrc-blr",
    "kidiq": "kidiq-kidscore_momiq",
    "kidscore_momiq": "kidiq-kidscore_momiq",
    "eight_schools": "eight_schools-eight_schools_noncentered",
    "eight_schools_noncentered": "eight_schools-eight_schools_noncentered",
    "low_dim_gauss_mix": "low_dim_gauss_mix-low_dim_gauss_mix",
    "gauss_mix": "low_dim_gauss_mix-low_dim_gauss_mix",
    "ark": "arK-arK",
    "arK": "arK-arK",
    "garch": "garch-garch11",
    "garch11": "garch-garch11",
    "gp_pois_regr": "gp_pois_regr-gp_pois_regr",
    "diamonds": "diamonds-diamonds",
}


def posterior_names() -> tuple[str, ...]:
    """The posteriordb names of the built-in posteriors."""
    return tuple(_MODELS)


def _resolve(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"posterior name must be a str, got {type(name).__name__}")
    if name in _MODELS:
        return name
    if name in _SHORT:
        return _SHORT[name]
    known = ", ".join(_MODELS)
    shorts = ", ".join(sorted(set(_SHORT)))
    raise ValueError(
        f"unknown posterior {name!r}; known posteriors: {known} (short forms: {shorts})"
    )


@attrs.frozen
class ReferenceDraws:
    """posteriordb reference draws of one posterior.

    Attributes:
        names: Constrained parameter names, in :attr:`Posterior.parameter_names` order.
        draws: ``(chain, draw, parameter)`` float64 array (stored as float32).
    """

    names: tuple[str, ...]
    draws: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        """The ``(chain, draw)`` draws of one parameter."""
        return self.draws[..., self.names.index(name)]


@functools.lru_cache(maxsize=None)
def _load_reference(name: str, order: tuple[str, ...]) -> ReferenceDraws:
    with np.load(_DATA_DIR / "reference_draws" / f"{name}.npz") as archive:
        stored = [str(n) for n in archive["names"]]
        draws = archive["draws"].astype(np.float64)
    missing = set(order) - set(stored)
    if missing:
        raise RuntimeError(f"reference draws of {name} lack parameters {sorted(missing)}")
    columns = [stored.index(n) for n in order]
    return ReferenceDraws(names=order, draws=draws[..., columns])


@attrs.frozen(eq=False)
class Posterior:
    """A ready Langevin target: a posteriordb posterior on an unconstrained space.

    Attributes:
        name: The posteriordb name, e.g. ``"eight_schools-eight_schools_noncentered"``.
        parameter_names: Constrained parameter names, as in the reference draws (``beta[1]``...).
        unconstrained_names: Names of the unconstrained coordinates (``log_sigma``...).
    """

    name: str
    parameter_names: tuple[str, ...]
    unconstrained_names: tuple[str, ...]
    _model: object = attrs.field(repr=False)

    @property
    def dimension(self) -> int:
        """Number of unconstrained coordinates ``d``."""
        return len(self.unconstrained_names)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Log density (with log-Jacobian) at unconstrained ``x`` of shape ``(B, d)``; returns ``(B,)``."""
        return self._model.log_density(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_density(x)

    def log_density_as(self, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        """The same log density computed in ``dtype`` (data cast once); takes and returns ``dtype``.

        Used by the low-precision draft (``torch.float32``).
        """
        return _to_dtype(self._model, dtype).log_density

    def constrain(self, x: torch.Tensor) -> torch.Tensor:
        """Constrained parameters ``(..., p)`` (order :attr:`parameter_names`) from ``(..., d)``."""
        flat = x.reshape(-1, x.shape[-1])
        return self._model.constrain(flat).reshape(*x.shape[:-1], -1)

    def unconstrain(self, values: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`constrain`: ``(..., p)`` constrained values to ``(..., d)``."""
        flat = values.reshape(-1, values.shape[-1])
        return self._model.unconstrain(flat).reshape(*values.shape[:-1], -1)

    # --- reference draws ------------------------------------------------------------------

    def reference_draws(self) -> ReferenceDraws:
        """posteriordb's reference draws (10 chains x 1000 draws), constrained."""
        return _load_reference(self.name, self.parameter_names)

    def reference_draws_unconstrained(self) -> torch.Tensor:
        """The reference draws mapped to the unconstrained space, ``(chain, draw, d)`` float64."""
        return _unconstrained_reference(self)

    def reference_covariance(self) -> torch.Tensor:
        """Covariance ``(d, d)`` of the unconstrained reference draws (a natural preconditioner)."""
        flat = self.reference_draws_unconstrained().reshape(-1, self.dimension)
        return torch.cov(flat.T)

    def initial_point(self) -> torch.Tensor:
        """A central starting point ``(d,)``: the mean of the unconstrained reference draws."""
        return self.reference_draws_unconstrained().reshape(-1, self.dimension).mean(0)

    def initial_state(self, num_chains: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_chains, d)`` distinct reference draws picked at random (chains start near stationarity)."""
        if not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
        flat = self.reference_draws_unconstrained().reshape(-1, self.dimension)
        if num_chains > flat.shape[0]:
            raise ValueError(f"num_chains must be at most {flat.shape[0]}, got {num_chains}")
        pick = torch.randperm(flat.shape[0], generator=generator)[:num_chains]
        return flat[pick].clone()

    # --- data subsampling (regression-type posteriors) -----------------------------------

    @property
    def data_size(self) -> int | None:
        """Number of data rows that can be subsampled, or None when the posterior does not allow it."""
        fields = self._model.data_fields
        return None if not fields else int(getattr(self._model, fields[0]).shape[0])

    def subsampled_log_density(
        self, size: int, generator: torch.Generator | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The log density with the likelihood over a fixed random subsample, rescaled by N / size.

        Args:
            size: Number of data rows kept, ``1 <= size <= data_size``.
            generator: Randomness for choosing the rows.

        Raises:
            ValueError: if this posterior has no exchangeable data rows (eight schools, GARCH, GP)
                or ``size`` is out of range.
        """
        total = self.data_size
        if total is None:
            supported = ", ".join(n for n, m in _MODELS.items() if m.data_fields)
            raise ValueError(
                f"posterior {self.name} does not support data subsampling; posteriors that do: {supported}"
            )
        if not isinstance(size, int) or not 1 <= size <= total:
            raise ValueError(f"subsample size must be an int in [1, {total}], got {size!r}")
        index = torch.randperm(total, generator=generator)[:size].sort().values
        return _subsample_rows(self._model, index, self._model.data_fields).log_density


@functools.lru_cache(maxsize=None)
def _unconstrained_reference_cached(name: str) -> torch.Tensor:
    post = posterior(name)
    draws = torch.as_tensor(post.reference_draws().draws, dtype=_F64)
    return post.unconstrain(draws)


def _unconstrained_reference(post: Posterior) -> torch.Tensor:
    return _unconstrained_reference_cached(post.name).clone()


@functools.lru_cache(maxsize=None)
def _build(name: str) -> Posterior:
    model_cls = _MODELS[name]
    model = model_cls.load()
    return Posterior(
        name=name,
        parameter_names=tuple(model_cls.names),
        unconstrained_names=tuple(model_cls.unconstrained),
        model=model,
    )


def posterior(name: str) -> Posterior:
    """A built-in posteriordb posterior as a ready Langevin target.

    Args:
        name: A posteriordb name (``"eight_schools-eight_schools_noncentered"``) or a short form
            (``"eight_schools_noncentered"``, ``"eight_schools"``, ``"diamonds"``...).

    Returns:
        The :class:`Posterior` (log density, dimension, names, constrain map, reference draws).

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return _build(_resolve(name))
