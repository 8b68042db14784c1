"""gaussspec.adapters.ddpm: speculative sampling for diffusers DDPM/DDIM models.

* :class:`DiffusionKernel` turns a diffusers denoiser (``UNet2DModel`` or any
  ``model(sample, timestep)`` callable) and a ``DDPMScheduler``/``DDIMScheduler`` into a
  :class:`gaussspec.GaussianKernel` whose plain chain reproduces ``scheduler.step``.
* :func:`speculative_generate` is the ``DDPMPipeline``-style entry point (same ``generator``,
  ``num_inference_steps``, ``output_type`` conventions) returning images and sampling stats.
* :mod:`~gaussspec.adapters.ddpm.models` holds the embedded 8x8 digits models (target UNet,
  draft UNet, classifier) and their loaders.
"""

from gaussspec.adapters.ddpm.kernel import FROZEN_QUANTITIES, SUPPORTED_VARIANCE_TYPES, DiffusionKernel
from gaussspec.adapters.ddpm.pipeline import SpeculativeImageOutput, build_sampler, speculative_generate

__all__ = [
    "DiffusionKernel",
    "FROZEN_QUANTITIES",
    "SUPPORTED_VARIANCE_TYPES",
    "SpeculativeImageOutput",
    "build_sampler",
    "speculative_generate",
]
