"""The embedded digits models: a DDPM target UNet, a smaller draft UNet and a digits classifier.

All three are trained by :mod:`gaussspec.adapters.ddpm.training.train_digits` on scikit-learn's
8x8 ``load_digits`` images (scaled to ``[-1, 1]``), and shipped as safetensors + JSON configs in
``adapters/ddpm/weights/``. Nothing is downloaded.

Typical use::

    from gaussspec.adapters.ddpm.models import load_digits_pipeline, load_draft_unet
    pipeline = load_digits_pipeline()          # a diffusers DDPMPipeline (unet + DDPMScheduler)
    draft = load_draft_unet()                  # an independent, smaller UNet2DModel
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "WEIGHTS_DIR",
    "IMAGE_SIZE",
    "TARGET_UNET_CONFIG",
    "DRAFT_UNET_CONFIG",
    "SCHEDULER_CONFIG",
    "CLASSIFIER_CONFIG",
    "DigitsClassifier",
    "build_unet",
    "digits_dataset",
    "load_classifier",
    "load_digits_pipeline",
    "load_draft_unet",
    "load_scheduler",
    "load_target_unet",
    "save_module",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
IMAGE_SIZE = 8

# The target: a three-level UNet with self-attention at the coarsest (2x2) level, ~1.1M parameters.
TARGET_UNET_CONFIG = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 8,
}

# The independent draft: two levels, no attention, ~0.16M parameters, trained the same way.
DRAFT_UNET_CONFIG = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}

# DDPM training schedule: 1000 timesteps, linear betas, epsilon prediction (diffusers defaults).
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "variance_type": "fixed_small",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "prediction_type": "epsilon",
}

CLASSIFIER_CONFIG = {"image_size": IMAGE_SIZE, "num_classes": 10, "feature_dim": 64}


def digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(images, labels)``: ``(1797, 1, 8, 8)`` float32 in ``[-1, 1]``.

    The raw pixels are integers 0..16; they map to ``x / 8 - 1``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    return images, labels


class DigitsClassifier(nn.Module):
    """A small CNN for 8x8 digits in ``[-1, 1]`` with a penultimate feature layer.

    Args:
        num_classes: Number of output classes.
        feature_dim: Width of the penultimate layer used for Frechet distances.
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 64, image_size: int = IMAGE_SIZE):
        super().__init__()
        if image_size != IMAGE_SIZE:
            raise ValueError(f"DigitsClassifier is built for {IMAGE_SIZE}x{IMAGE_SIZE} images, got {image_size}")
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 2x2
            nn.Flatten(),
            nn.Linear(64 * 4, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape ``(B, feature_dim)``, for images ``(B, 1, 8, 8)``."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(B, num_classes)``."""
        return self.head(self.features(images))


def build_unet(config: dict):
    """A freshly initialised ``diffusers.UNet2DModel`` from a config dict."""
    from diffusers import UNet2DModel

    return UNet2DModel.from_config(dict(config))


def save_module(module: nn.Module, config: dict, directory: Path, name: str) -> None:
    """Write ``name.safetensors`` (float32 state dict) and ``name.json`` (the config) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float32).contiguous() for key, value in module.state_dict().items()}
    save_file(state, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _load_state(module: nn.Module, directory: Path, name: str) -> nn.Module:
    from safetensors.torch import load_file

    path = Path(directory) / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; train the embedded models with "
            "`python -m gaussspec.adapters.ddpm.training.train_digits`"
        )
    module.load_state_dict(load_file(str(path)))
    return module.eval().requires_grad_(False)


def _read_config(directory: Path, name: str) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; train the embedded models with "
            "`python -m gaussspec.adapters.ddpm.training.train_digits`"
        )
    return json.loads(path.read_text())


def load_target_unet(directory: Path | str = WEIGHTS_DIR, dtype: torch.dtype = torch.float32):
    """The embedded DDPM target, a ``UNet2DModel`` in eval mode (epsilon prediction, 8x8x1)."""
    unet = _load_state(build_unet(_read_config(directory, "target_unet")), directory, "target_unet")
    return unet if dtype == torch.float32 else unet.to(dtype)


def load_draft_unet(directory: Path | str = WEIGHTS_DIR, dtype: torch.dtype = torch.float32):
    """The embedded independent draft, a smaller ``UNet2DModel`` trained the same way."""
    unet = _load_state(build_unet(_read_config(directory, "draft_unet")), directory, "draft_unet")
    return unet if dtype == torch.float32 else unet.to(dtype)


def load_scheduler(directory: Path | str = WEIGHTS_DIR):
    """The ``DDPMScheduler`` the embedded models were trained with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(_read_config(directory, "scheduler_config"))


def load_classifier(directory: Path | str = WEIGHTS_DIR) -> DigitsClassifier:
    """The embedded digits classifier (eval mode), with ``.features`` for Frechet distances."""
    config = _read_config(directory, "classifier")
    model = DigitsClassifier(
        num_classes=config["num_classes"], feature_dim=config["feature_dim"], image_size=config["image_size"]
    )
    return _load_state(model, directory, "classifier")


def load_digits_pipeline(directory: Path | str = WEIGHTS_DIR, dtype: torch.dtype = torch.float32):
    """The embedded digits model as a ``diffusers.DDPMPipeline`` (target UNet + DDPMScheduler)."""
    from diffusers import DDPMPipeline

    return DDPMPipeline(unet=load_target_unet(directory, dtype), scheduler=load_scheduler(directory))
