"""A pipeline-style entry point: speculative DDPM/DDIM generation for diffusers users.

::

    from gaussspec.adapters.ddpm import speculative_generate
    from gaussspec.adapters.ddpm.models import load_digits_pipeline

    pipe = load_digits_pipeline()                       # any DDPMPipeline / DDIMPipeline works
    out = speculative_generate(pipe, batch_size=16, generator=torch.Generator().manual_seed(0),
                               num_inference_steps=1000, output_type="np")
    out.images              # like DDPMPipeline(...).images (PIL list, numpy or torch)
    out.stats.block_efficiency, out.stats.sequential_target_calls

The images have exactly the law of ``pipe(batch_size, generator, num_inference_steps)``'s; only
the sequence of random draws differs, so the same seed gives different (equally distributed)
images from the plain pipeline.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import torch

import gaussspec as gs
from gaussspec.adapters.ddpm.kernel import DiffusionKernel

__all__ = ["SpeculativeImageOutput", "speculative_generate", "to_output_type", "build_sampler"]

OUTPUT_TYPES = ("pil", "np", "pt")
DRAFTER_CHOICES = ("free", "frozen", "none")


@attrs.frozen
class SpeculativeImageOutput:
    """Result of :func:`speculative_generate`.

    Attributes:
        images: The images in ``output_type`` form (a list of PIL images, a ``(B, H, W, C)``
            numpy array in ``[0, 1]`` or a ``(B, C, H, W)`` tensor in ``[0, 1]``).
        samples: The raw final states ``(B, C, H, W)`` (model space, usually ``[-1, 1]``).
        stats: The run's :class:`gaussspec.SamplingStats`.
    """

    images: Any
    samples: torch.Tensor
    stats: gs.SamplingStats


def _split_model(model) -> tuple[Callable, Any]:
    """``(unet, scheduler)`` from a diffusers pipeline or a ``(unet, scheduler)`` pair."""
    if isinstance(model, (tuple, list)):
        if len(model) != 2:
            raise ValueError(f"pass a pipeline or a (unet, scheduler) pair, got a sequence of length {len(model)}")
        return model[0], model[1]
    if hasattr(model, "unet") and hasattr(model, "scheduler"):
        return model.unet, model.scheduler
    raise TypeError(
        "model must be a diffusers DDPMPipeline/DDIMPipeline (with .unet and .scheduler) or a "
        f"(unet, scheduler) pair, got {type(model).__name__}"
    )


def to_output_type(samples: torch.Tensor, output_type: str):
    """Map model-space samples in ``[-1, 1]`` to ``DDPMPipeline``'s output conventions."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    images = (samples / 2 + 0.5).clamp(0, 1)  # as DDPMPipeline
    if output_type == "pt":
        return images
    images = images.cpu().permute(0, 2, 3, 1).float().numpy()
    if output_type == "np":
        return images
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.numpy_to_pil(images)


def build_sampler(
    kernel: DiffusionKernel,
    drafter: str | gs.Drafter | Callable = "free",
    draft_length: int = 4,
    verification: str = "block",
    coupling: str = "gamma",
) -> gs.SpeculativeSampler | None:
    """A :class:`gaussspec.SpeculativeSampler` for ``kernel``, or None for ``drafter="none"``.

    Args:
        kernel: The target :class:`DiffusionKernel`.
        drafter: ``"free"``, ``"frozen"``, ``"none"`` (plain chain), a :class:`gaussspec.Drafter`,
            a :class:`DiffusionKernel` (wrapped in ``KernelDrafter``) or a draft network
            (``UNet2DModel`` or callable), which gets the target's scheduler and settings.
        draft_length: Draft steps per round (gamma).
        verification: ``"block"`` or ``"token"``.
        coupling: ``"gamma"`` or ``"reflection"`` (token verification only).
    """
    if isinstance(drafter, str):
        if drafter not in DRAFTER_CHOICES:
            raise ValueError(f"drafter must be one of {DRAFTER_CHOICES}, a gaussspec Drafter or a draft model; got {drafter!r}")
        if drafter == "none":
            return None
        drafter = gs.FreeDrafter() if drafter == "free" else gs.FrozenDrafter()
    elif isinstance(drafter, DiffusionKernel):
        drafter = gs.KernelDrafter(drafter)
    elif not isinstance(drafter, gs.Drafter):
        if not callable(drafter):
            raise TypeError(f"drafter must be a name, a gaussspec Drafter or a draft model, got {type(drafter).__name__}")
        drafter = gs.KernelDrafter(draft_kernel_like(kernel, drafter))
    return gs.SpeculativeSampler(kernel, drafter, draft_length=draft_length, verification=verification,
                                 coupling=coupling)


def draft_kernel_like(kernel: DiffusionKernel, draft_model: Callable) -> DiffusionKernel:
    """A :class:`DiffusionKernel` for ``draft_model`` with the target kernel's scheduler and options."""
    return DiffusionKernel(
        draft_model,
        kernel.scheduler,
        None,
        eta=kernel.eta if kernel.kind == "ddim" else None,
        frozen_quantity=kernel.frozen_quantity,
        use_clipped_model_output=kernel.use_clipped_model_output,
        event_shape=kernel.event_shape,
        device=kernel.device,
    )


def _device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The generator itself if it lives on ``device``, else a device generator seeded from it."""
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def speculative_generate(
    model,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    num_inference_steps: int = 1000,
    output_type: str = "pil",
    drafter: str | gs.Drafter | Callable = "free",
    draft_length: int = 4,
    verification: str = "block",
    coupling: str = "gamma",
    eta: float | None = None,
    frozen_quantity: str = "sample",
    progress: bool = True,
) -> SpeculativeImageOutput:
    """Generate images like ``DDPMPipeline.__call__`` (or ``DDIMPipeline``'s) with speculative sampling.

    Args:
        model: A ``DDPMPipeline``/``DDIMPipeline`` or a ``(unet, scheduler)`` pair.
        batch_size: Number of images.
        generator: Source of all randomness (initial noise included), as in diffusers.
        num_inference_steps: Denoising steps (the chain length K).
        output_type: ``"pil"``, ``"np"`` or ``"pt"``, as in diffusers.
        drafter: ``"free"`` (default; no extra network call), ``"frozen"``, ``"none"`` (the
            plain chain, for comparison), a :class:`gaussspec.Drafter`, or a draft network.
        draft_length: Draft steps per round (gamma).
        verification: ``"block"`` (default) or ``"token"``.
        coupling: ``"gamma"`` (default) or ``"reflection"`` (token verification only).
        eta: DDIM noise weight (DDIMScheduler only; DDIMPipeline's default is 0, which leaves
            no noise to speculate with).
        frozen_quantity: What the free/frozen drafter reuses: ``"sample"`` (clean-image
            prediction, the default) or ``"epsilon"`` (noise prediction).
        progress: Show a progress bar.

    Returns:
        A :class:`SpeculativeImageOutput` with ``images``, ``samples`` and ``stats``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    unet, scheduler = _split_model(model)
    kernel = DiffusionKernel(unet, scheduler, num_inference_steps, eta=eta, frozen_quantity=frozen_quantity)
    sampler = build_sampler(kernel, drafter, draft_length, verification, coupling)
    x0 = kernel.initial_state(batch_size, generator)
    run_generator = _device_generator(generator, x0.device)
    if sampler is None:
        result = gs.sample_chain(kernel, x0, generator=run_generator, progress=progress)
    else:
        result = sampler.sample(x0, generator=run_generator, progress=progress)
    return SpeculativeImageOutput(
        images=to_output_type(result.samples, output_type), samples=result.samples, stats=result.stats
    )
