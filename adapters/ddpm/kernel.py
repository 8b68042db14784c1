"""A :class:`gaussspec.GaussianKernel` built from a diffusers denoiser and its scheduler.

Step ``k`` of the kernel is the scheduler's ``k``-th inference timestep ``t_k = timesteps[k]``::

    x_{k+1} = mean(x_k, k) + std_k * xi,     xi ~ N(0, I)

with ``mean`` and ``std`` reproducing ``scheduler.step`` (DDPMScheduler: Ho et al. 2020 eq. 6-7;
DDIMScheduler: Song et al. 2021 eq. 12 and 16). All coefficient tables are computed with the very
same float32 operations diffusers performs, so the plain chain reproduces diffusers' own loop to
rounding (bitwise in float32 when the frozen quantity is the model's native one).

The network call is :meth:`DiffusionKernel.evaluate`; :meth:`DiffusionKernel.mean_from` is the
cheap rest, so the self-speculative drafters (``FrozenDrafter``, ``FreeDrafter``) can reuse an
old evaluation. Which quantity is reused is the ``frozen_quantity`` option: the noise prediction
(``"epsilon"``), the clean-image prediction (``"sample"``) or the raw network output
(``"model_output"``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch

import gaussspec as gs

__all__ = ["DiffusionKernel", "FROZEN_QUANTITIES", "SUPPORTED_VARIANCE_TYPES"]

FROZEN_QUANTITIES = ("epsilon", "sample", "model_output")
SUPPORTED_VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")
_PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def _scheduler_kind(scheduler) -> str:
    """``"ddpm"`` or ``"ddim"`` for a diffusers scheduler; raise for anything else."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if isinstance(scheduler, DDPMScheduler):
        return "ddpm"
    if isinstance(scheduler, DDIMScheduler):
        return "ddim"
    raise TypeError(
        f"DiffusionKernel supports diffusers.DDPMScheduler and diffusers.DDIMScheduler, got "
        f"{type(scheduler).__name__}; convert with DDPMScheduler.from_config(scheduler.config)"
    )


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype | None]:
    """The device and parameter dtype of a module, or (cpu, None) for a plain callable."""
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device, parameter.dtype
    return torch.device("cpu"), None


def _event_shape_of(model, event_shape) -> tuple[int, ...]:
    if event_shape is not None:
        shape = tuple(int(s) for s in event_shape)
        if not shape or any(s <= 0 for s in shape):
            raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}")
        return shape
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "in_channels") or not hasattr(config, "sample_size"):
        raise ValueError(
            "event_shape is required when the model has no diffusers config (in_channels, "
            "sample_size); pass e.g. event_shape=(1, 8, 8)"
        )
    size = config.sample_size
    if isinstance(size, int):
        return (int(config.in_channels), size, size)
    return (int(config.in_channels), *(int(s) for s in size))


def _ddpm_tables(scheduler, timesteps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step float32 coefficients of ``DDPMScheduler.step``, computed exactly as diffusers does.

    Returns a dict of ``(K,)`` float32 tensors: ``sqrt_alpha_prod``, ``sqrt_beta_prod`` (for the
    x0 prediction, Ho et al. eq. 15), ``coef_x0``, ``coef_x`` (posterior mean, eq. 7) and ``std``.
    """
    names = ("sqrt_alpha_prod", "sqrt_beta_prod", "coef_x0", "coef_x", "coef_eps", "std")
    rows = {name: [] for name in names}
    variance_type = scheduler.config.variance_type
    for t in timesteps:
        t = int(t)
        prev_t = scheduler.previous_timestep(t)
        alpha_prod_t = scheduler.alphas_cumprod[t]
        alpha_prod_t_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t
        rows["sqrt_alpha_prod"].append(alpha_prod_t ** (0.5))
        rows["sqrt_beta_prod"].append(beta_prod_t ** (0.5))
        # posterior mean coefficients, Ho et al. 2020 eq. 7
        rows["coef_x0"].append((alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t)
        rows["coef_x"].append(current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t)
        rows["coef_eps"].append(torch.zeros((), dtype=torch.float32))
        if t > 0:
            # posterior variance beta_tilde (fixed_small) or beta (fixed_large), Ho et al. eq. 6-7
            variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
            variance = torch.clamp(variance, min=1e-20)
            if variance_type == "fixed_small":
                std = variance ** 0.5
            elif variance_type == "fixed_small_log":
                std = torch.exp(0.5 * torch.log(variance))
            else:  # fixed_large
                std = current_beta_t ** 0.5
        else:
            std = torch.zeros((), dtype=torch.float32)  # the last step adds no noise (t == 0)
        rows["std"].append(std)
    return {name: torch.stack([v.to(torch.float32) for v in values]) for name, values in rows.items()}


def _ddim_tables(scheduler, timesteps: torch.Tensor, eta: float) -> dict[str, torch.Tensor]:
    """Per-step float32 coefficients of ``DDIMScheduler.step`` (Song et al. 2021 eq. 12, 16)."""
    names = ("sqrt_alpha_prod", "sqrt_beta_prod", "coef_x0", "coef_x", "coef_eps", "std")
    rows = {name: [] for name in names}
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    for t in timesteps:
        t = int(t)
        prev_t = t - stride  # DDIMScheduler.step's own rule
        alpha_prod_t = scheduler.alphas_cumprod[t]
        alpha_prod_t_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)  # eq. 16
        std = eta * variance ** (0.5)
        direction = (1 - alpha_prod_t_prev - std**2) ** (0.5)  # eq. 12, "direction pointing to x_t"
        if not torch.isfinite(torch.as_tensor(direction)):
            raise ValueError(
                f"eta={eta} makes the DDIM noise exceed the step's variance budget at timestep {t} "
                "(1 - alpha_prev - sigma^2 < 0); use 0 <= eta <= 1"
            )
        rows["sqrt_alpha_prod"].append(alpha_prod_t ** (0.5))
        rows["sqrt_beta_prod"].append(beta_prod_t ** (0.5))
        rows["coef_x0"].append(alpha_prod_t_prev ** (0.5))
        rows["coef_x"].append(torch.zeros((), dtype=torch.float32))
        rows["coef_eps"].append(torch.as_tensor(direction))
        rows["std"].append(torch.as_tensor(std))
    return {name: torch.stack([v.to(torch.float32) for v in values]) for name, values in rows.items()}


def threshold_sample(sample: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding of an x0 prediction (Saharia et al. 2022), as in diffusers.

    Per image: ``s = clamp(quantile(|x0|, ratio), 1, max_value)``, ``x0 -> clamp(x0, -s, s) / s``.
    """
    dtype = sample.dtype
    batch = sample.shape[0]
    if dtype not in (torch.float32, torch.float64):
        sample = sample.float()
    flat = sample.reshape(batch, -1)
    s = torch.quantile(flat.abs(), ratio, dim=1)
    s = torch.clamp(s, min=1, max=max_value).unsqueeze(1)
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(sample.shape).to(dtype)


class DiffusionKernel(gs.GaussianKernel):
    """The reverse diffusion chain of a diffusers denoiser as a Gaussian kernel.

    Step ``k`` (``0 <= k < num_steps``) is the scheduler timestep ``timesteps[k]``; ``mean`` and
    ``covariance`` reproduce ``scheduler.step`` for that timestep. Covariances are isotropic and
    depend on the step only, so a draft kernel built from another network with the same scheduler
    shares them, as the engine requires.

    Args:
        unet: A diffusers ``UNet2DModel`` or any callable ``model(sample, timestep)`` returning a
            tensor, a tuple whose first item is the output, or an object with ``.sample``. It is
            called with ``sample`` of shape ``(B, *event_shape)`` in the model's dtype and a
            ``(B,)`` int64 tensor of timesteps (chains may sit at different steps).
        scheduler: A ``DDPMScheduler`` (variance types fixed_small, fixed_small_log, fixed_large)
            or a ``DDIMScheduler``. It is copied; the caller's scheduler is never modified.
        num_inference_steps: Number of denoising steps; ``set_timesteps`` is called on the copy.
            ``None`` keeps the scheduler's current timesteps (for a fresh DDPMScheduler, all
            ``num_train_timesteps`` of them).
        eta: DDIM noise weight (0 = deterministic DDIM, 1 = DDPM-like). DDIMScheduler only.
        frozen_quantity: What :meth:`evaluate` returns and hence what a Frozen/Free drafter
            reuses: ``"sample"`` (the clean-image prediction before clipping; the default, it
            accepts more in every configuration benchmarked, see docs/ddpm.md), ``"epsilon"``
            (the noise prediction) or ``"model_output"`` (the raw network output). The target's
            own chain does not depend on this choice beyond float rounding.
        use_clipped_model_output: DDIM only: re-derive the noise prediction from the clipped
            x0 prediction, as ``DDIMScheduler.step(use_clipped_model_output=True)``.
        event_shape: Shape of one image; read from ``unet.config`` when omitted.
        device: Device of the coefficient tables and states; defaults to the model's device.

    Raises:
        TypeError: For a scheduler other than DDPMScheduler/DDIMScheduler.
        ValueError: For learned variances, an unknown prediction type or frozen quantity, eta
            with a DDPM scheduler, or a bad number of steps.
    """

    has_memory = False

    def __init__(
        self,
        unet: Callable[..., Any],
        scheduler,
        num_inference_steps: int | None = None,
        eta: float | None = None,
        frozen_quantity: str = "sample",
        use_clipped_model_output: bool = False,
        event_shape: tuple[int, ...] | None = None,
        device: torch.device | str | None = None,
    ):
        if not callable(unet):
            raise TypeError(f"unet must be callable as unet(sample, timestep), got {type(unet).__name__}")
        kind = _scheduler_kind(scheduler)
        config = scheduler.config
        if kind == "ddpm" and config.variance_type not in SUPPORTED_VARIANCE_TYPES:
            raise ValueError(
                f"DDPMScheduler variance_type={config.variance_type!r} is not supported: learned "
                "variances (learned, learned_range) make the covariance depend on the network output, "
                "so draft and target no longer share it, and fixed_large_log is not a standard "
                f"deviation; use one of {SUPPORTED_VARIANCE_TYPES}"
            )
        if config.prediction_type not in _PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type={config.prediction_type!r} is not supported; use one of {_PREDICTION_TYPES}"
            )
        if frozen_quantity not in FROZEN_QUANTITIES:
            raise ValueError(f"frozen_quantity must be one of {FROZEN_QUANTITIES}, got {frozen_quantity!r}")
        if kind == "ddpm" and eta is not None:
            raise ValueError("eta applies to DDIMScheduler only; a DDPMScheduler has its noise fixed by variance_type")
        if kind == "ddpm" and use_clipped_model_output:
            raise ValueError("use_clipped_model_output applies to DDIMScheduler only")
        if kind == "ddim":
            eta = 0.0 if eta is None else float(eta)
            if not math.isfinite(eta) or eta < 0:
                raise ValueError(f"eta must be a finite number >= 0, got {eta}")
        if num_inference_steps is not None:
            if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
                raise TypeError(f"num_inference_steps must be an int or None, got {num_inference_steps!r}")
            if not 1 <= num_inference_steps <= config.num_train_timesteps:
                raise ValueError(
                    f"num_inference_steps must be in 1..{config.num_train_timesteps} "
                    f"(num_train_timesteps), got {num_inference_steps}"
                )
        elif kind == "ddim" and scheduler.num_inference_steps is None:
            raise ValueError("a DDIMScheduler needs num_inference_steps (or set_timesteps called beforehand)")

        scheduler = copy.deepcopy(scheduler)
        if num_inference_steps is not None:
            scheduler.set_timesteps(num_inference_steps)
        model_device, model_dtype = _model_device_dtype(unet)
        self.device = torch.device(device) if device is not None else model_device
        self.model_dtype = model_dtype
        self.unet = unet
        self.scheduler = scheduler
        self.kind = kind
        self.eta = eta
        self.prediction_type = config.prediction_type
        self.frozen_quantity = frozen_quantity
        self.use_clipped_model_output = bool(use_clipped_model_output)
        self.event_shape = _event_shape_of(unet, event_shape)
        self.timesteps = scheduler.timesteps.detach().to("cpu", torch.int64).clone()
        self.num_steps = int(self.timesteps.shape[0])
        tables = (
            _ddpm_tables(scheduler, self.timesteps) if kind == "ddpm" else _ddim_tables(scheduler, self.timesteps, eta)
        )
        self._tables = {name: value.to(self.device) for name, value in tables.items()}
        self._timesteps_device = self.timesteps.to(self.device)
        gs.IsotropicCovariance(self._tables["std"])  # checked once: steps use .trusted (no sync)
        self._std64 = self._tables["std"].to(torch.float64)
        self._thresholding = bool(config.thresholding)
        self._clip = bool(config.clip_sample)
        self._clip_range = float(config.clip_sample_range)

    # --- helpers -------------------------------------------------------------------------------

    def _coef(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Table ``name`` at steps ``t``, shaped to broadcast against ``like`` (B, *event)."""
        values = self._tables[name][t.to(self.device)].to(like.dtype)
        return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))

    @staticmethod
    def _work_dtype(x: torch.Tensor) -> torch.dtype:
        """Mean arithmetic runs in float64 for float64 states and float32 otherwise."""
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _clip_x0(self, x0: torch.Tensor) -> torch.Tensor:
        if self._thresholding:
            config = self.scheduler.config
            return threshold_sample(x0, config.dynamic_thresholding_ratio, config.sample_max_value)
        if self._clip:
            return x0.clamp(-self._clip_range, self._clip_range)
        return x0

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The scheduler timesteps ``timesteps[t]`` for step indices ``t`` (a ``(B,)`` int64 tensor)."""
        return self._timesteps_device[t.to(self.device)]

    def call_model(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The raw network output at states ``x`` and step indices ``t``, in float32 or float64."""
        work = self._work_dtype(x)
        inputs = x.to(self.device, self.model_dtype or work)
        with torch.no_grad():
            output = self.unet(inputs, self.model_timesteps(t))
        if hasattr(output, "sample"):
            output = output.sample
        elif isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor) or output.shape != inputs.shape:
            shape = getattr(output, "shape", type(output).__name__)
            raise ValueError(
                f"the model must return one prediction per pixel, shape {tuple(inputs.shape)}, got {shape}; "
                "models that also predict a variance (2x channels) are not supported"
            )
        return output.to(work)

    # --- GaussianKernel ------------------------------------------------------------------------

    def covariance(self, t: torch.Tensor) -> gs.IsotropicCovariance:
        """``std_k * I`` with the scheduler's standard deviation at each chain's step (0 at t=0)."""
        return gs.IsotropicCovariance.trusted(self._tables["std"][t.to(self.device)])

    def step_std(self, t: torch.Tensor) -> torch.Tensor:
        """The noise standard deviation at steps ``t`` as a float64 ``(B,)`` tensor."""
        return self._std64[t.to(self.device)]

    def evaluate(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One batched network call.

        Args:
            x: States ``(B, *event_shape)``.
            t: ``(B,)`` int64 step indices; chain ``b`` is evaluated at ``timesteps[t[b]]``.

        Returns:
            A tuple ``(frozen, output, x, t)``: ``frozen`` is the quantity a Frozen/Free drafter
            reuses (per ``frozen_quantity``: the noise prediction, the unclipped clean-image
            prediction or the raw output), ``output`` the raw network output, and ``x``/``t``
            the state and step it was taken at. Tensors are float32 (float64 for float64
            states). :meth:`mean_from` at the evaluation's own state uses ``output`` with
            diffusers' own formulas, so the target mean never depends on ``frozen_quantity``.
        """
        output = self.call_model(x, t)
        x = x.to(self.device, output.dtype)
        t = t.to(self.device)
        return self.frozen_from_output(x, t, output), output, x, t

    def frozen_from_output(self, x: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The frozen quantity at ``(x, t)`` from a raw network output taken there."""
        if self.frozen_quantity == "model_output":
            return output
        sa = self._coef("sqrt_alpha_prod", t, x)
        sb = self._coef("sqrt_beta_prod", t, x)
        if self.frozen_quantity == "epsilon":
            if self.prediction_type == "epsilon":
                return output
            if self.prediction_type == "sample":
                return (x - sa * output) / sb  # eps from x0: x_t = sqrt(abar) x0 + sqrt(1-abar) eps
            return sa * output + sb * x  # eps from v (Salimans & Ho 2022): eps = sqrt(abar) v + sqrt(1-abar) x_t
        return self._x0_from_output(x, output, sa, sb)

    def _x0_from_output(self, x, output, sa, sb):
        """Unclipped x0 prediction from a raw output (Ho et al. eq. 15; v: Salimans & Ho 2022)."""
        if self.prediction_type == "epsilon":
            return (x - sb * output) / sa  # x0 = (x_t - sqrt(1-abar) eps) / sqrt(abar)
        if self.prediction_type == "sample":
            return output
        return sa * x - sb * output  # x0 = sqrt(abar) x_t - sqrt(1-abar) v

    def _eps_from_output(self, x, output, x0, sa, sb):
        """Noise prediction from a raw output, the ``pred_epsilon`` of DDIMScheduler.step."""
        if self.prediction_type == "epsilon":
            return output
        if self.prediction_type == "sample":
            return (x - sa * x0) / sb
        return sa * output + sb * x

    def _native(self, x, sa, sb, output):
        """(x0, eps) from a raw output at its own state, exactly as scheduler.step computes them."""
        x0 = self._x0_from_output(x, output, sa, sb)
        eps = self._eps_from_output(x, output, x0, sa, sb) if self.kind == "ddim" else None
        return x0, eps

    def _from_frozen(self, x, sa, sb, frozen):
        """(x0, eps) at a new state from a quantity frozen at another state."""
        if self.frozen_quantity == "model_output":
            return self._native(x, sa, sb, frozen)
        if self.frozen_quantity == "epsilon":
            return (x - sb * frozen) / sa, frozen  # Ho et al. eq. 15
        return frozen, ((x - sa * frozen) / sb if self.kind == "ddim" else None)

    def mean_from(self, x: torch.Tensor, t: torch.Tensor, evaluation: tuple, memory: Any = None) -> torch.Tensor:
        """The mean of ``scheduler.step`` at ``(x, t)`` from an evaluation (possibly taken elsewhere).

        Chains whose evaluation was taken at their own ``(x, t)`` get the target mean from the
        raw output (bitwise diffusers' arithmetic); the others (drafts) plug the frozen quantity
        into the step at ``(x, t)``.

        Args:
            x: States ``(B, *event_shape)``.
            t: ``(B,)`` int64 step indices.
            evaluation: An output of :meth:`evaluate`.

        Returns:
            ``(B, *event_shape)`` means in float32 (float64 for float64 states).
        """
        frozen, output, x_eval, t_eval = evaluation
        work = self._work_dtype(x)
        x = x.to(self.device, work)
        t = t.to(self.device)
        sa = self._coef("sqrt_alpha_prod", t, x)
        sb = self._coef("sqrt_beta_prod", t, x)
        x0_frozen, eps_frozen = self._from_frozen(x, sa, sb, frozen.to(self.device, work))
        same = (t_eval.to(self.device) == t) & (x_eval.to(self.device, work) == x).flatten(1).all(dim=1)
        on_cpu = self.device.type == "cpu"  # elsewhere `same` is not read (a device sync)
        if on_cpu and bool(same.all()):
            x0, eps = self._native(x, sa, sb, output.to(self.device, work))
        elif on_cpu and not bool(same.any()):
            x0, eps = x0_frozen, eps_frozen
        else:  # per chain
            x0_native, eps_native = self._native(x, sa, sb, output.to(self.device, work))
            pick = same.reshape(-1, *([1] * (x.ndim - 1)))
            x0 = torch.where(pick, x0_native, x0_frozen)
            eps = None if eps_native is None else torch.where(pick, eps_native, eps_frozen)
        x0 = self._clip_x0(x0)
        if self.kind == "ddpm":
            # posterior mean mu_tilde(x_t, x0), Ho et al. 2020 eq. 7
            return self._coef("coef_x0", t, x) * x0 + self._coef("coef_x", t, x) * x
        if self.use_clipped_model_output:
            eps = (x - sa * x0) / sb  # Glide: eps re-derived from the clipped x0
        # DDIM, Song et al. 2021 eq. 12: sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps
        return self._coef("coef_x0", t, x) * x0 + self._coef("coef_eps", t, x) * eps

    def initial_state(self, num_chains: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Starting noise ``x_T ~ N(0, I)``, shape ``(num_chains, *event_shape)``, float32.

        Drawn like ``DDPMPipeline``: ``torch.randn`` on the generator's device, then moved to the
        kernel's device; with a CPU generator and a float32 model this is the pipeline's noise.
        """
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}")
        draw_device = generator.device if generator is not None else self.device
        noise = torch.randn((num_chains, *self.event_shape), generator=generator, device=draw_device,
                            dtype=torch.float32)
        return noise.to(self.device) * float(self.scheduler.init_noise_sigma)

    def __repr__(self) -> str:
        extra = f", eta={self.eta}" if self.kind == "ddim" else f", variance_type={self.scheduler.config.variance_type!r}"
        return (
            f"DiffusionKernel({self.kind}, num_steps={self.num_steps}, event_shape={self.event_shape}, "
            f"prediction_type={self.prediction_type!r}, frozen_quantity={self.frozen_quantity!r}{extra})"
        )
