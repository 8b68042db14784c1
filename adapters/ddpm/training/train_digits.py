"""Train the embedded digits models: DDPM target UNet, draft UNet and a classifier.

Run::

    OMP_NUM_THREADS=1 python -m gaussspec.adapters.ddpm.training.train_digits [--out DIR]

Data: scikit-learn's ``load_digits`` (1797 images, 8x8, shipped with scikit-learn, no download),
scaled to ``[-1, 1]``. Both UNets learn epsilon prediction under the 1000-step linear-beta DDPM
schedule of :data:`~gaussspec.adapters.ddpm.models.SCHEDULER_CONFIG`; the weights kept are an
exponential moving average. The classifier is trained on 80% of the digits (with one-pixel
shifts and light noise as augmentation) and its held-out accuracy is logged.

Everything is seeded (``--seed``) and runs on one CPU thread by default; with the default step
counts the whole script takes about 10 minutes. Outputs (in ``--out``, default the package's
``weights/`` folder): ``{target_unet,draft_unet,classifier}.{safetensors,json}``,
``scheduler_config.json`` and ``training_log.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gaussspec.adapters.ddpm.models import (
    CLASSIFIER_CONFIG,
    DRAFT_UNET_CONFIG,
    SCHEDULER_CONFIG,
    TARGET_UNET_CONFIG,
    WEIGHTS_DIR,
    DigitsClassifier,
    build_unet,
    digits_dataset,
    save_module,
)

__all__ = ["main", "train_unet", "train_classifier"]


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of the peak learning rate."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters()):
        ema_param.lerp_(param, 1.0 - decay)


def train_unet(
    config: dict,
    images: torch.Tensor,
    steps: int,
    batch_size: int,
    peak_lr: float,
    seed: int,
    log_every: int = 200,
    name: str = "unet",
):
    """Train a ``UNet2DModel`` for epsilon prediction under the DDPM schedule.

    The loss is ``E |eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)|^2`` with
    ``t`` uniform on ``0..999`` (Ho et al. 2020, eq. 14).

    Args:
        config: ``UNet2DModel`` config.
        images: Training images ``(N, 1, H, W)`` in ``[-1, 1]``.
        steps: Optimiser steps.
        batch_size: Images per step.
        peak_lr: Peak AdamW learning rate.
        seed: Seed of the initialisation and of all training randomness.
        log_every: Print the running loss every this many steps.
        name: Label for the printed log.

    Returns:
        ``(ema_model, log)``: the exponential-moving-average model and a dict of loss history.
    """
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float32)
    torch.manual_seed(seed)
    model = build_unet(config)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed + 1)
    num_train = scheduler.config.num_train_timesteps
    history = []
    running = 0.0
    start = time.time()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, peak_lr, warmup=min(200, steps // 10 + 1))
        index = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        x0 = images[index]
        t = torch.randint(0, num_train, (batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        abar = alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise  # q(x_t | x_0), Ho et al. eq. 4
        loss = F.mse_loss(model(noisy, t).sample, noise)  # Ho et al. eq. 14
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, model, decay=min(0.999, (1.0 + step) / (10.0 + step)))
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            count = log_every if (step + 1) % log_every == 0 else (step + 1) % log_every
            history.append({"step": step + 1, "loss": running / count, "seconds": time.time() - start})
            print(f"[{name}] step {step + 1}/{steps} loss {running / count:.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
            running = 0.0
    return ema.eval(), {"steps": steps, "batch_size": batch_size, "peak_lr": peak_lr,
                        "seed": seed, "seconds": time.time() - start, "history": history}


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random one-pixel shifts (with -1 = background fill) and light Gaussian noise."""
    padded = F.pad(images, (1, 1, 1, 1), value=-1.0)
    size = images.shape[-1]
    out = torch.empty_like(images)
    offsets = torch.randint(0, 3, (images.shape[0], 2), generator=generator)
    for i in range(images.shape[0]):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy:dy + size, dx:dx + size]
    return out + 0.1 * torch.randn(out.shape, generator=generator)


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int
) -> tuple[DigitsClassifier, dict]:
    """Train :class:`DigitsClassifier` on a seeded 80/20 split; return it and its log."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=generator)
    cut = int(0.8 * images.shape[0])
    train_idx, test_idx = order[:cut], order[cut:]
    torch.manual_seed(seed)
    model = DigitsClassifier(
        num_classes=CLASSIFIER_CONFIG["num_classes"], feature_dim=CLASSIFIER_CONFIG["feature_dim"]
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    start = time.time()
    batch_size = 64
    steps_per_epoch = math.ceil(cut / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for epoch in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(cut, generator=generator)]
        for begin in range(0, cut, batch_size):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, 2e-3, warmup=50)
            index = perm[begin:begin + batch_size]
            loss = F.cross_entropy(model(_augment(images[index], generator)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[test_idx]).argmax(1) == labels[test_idx]).float().mean().item()
    print(f"[classifier] {epochs} epochs, held-out accuracy {accuracy:.4f} "
          f"({time.time() - start:.0f} s)", flush=True)
    return model.requires_grad_(False), {
        "epochs": epochs, "seed": seed, "held_out_accuracy": accuracy,
        "train_size": cut, "test_size": images.shape[0] - cut, "seconds": time.time() - start,
    }


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output folder (default: package weights/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target-steps", type=int, default=2400)
    parser.add_argument("--draft-steps", type=int, default=1500)
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--only", choices=["all", "target", "draft", "classifier"], default="all")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Train and save the models selected by ``--only`` (all three by default)."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    images, labels = digits_dataset()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    log["data"] = {"source": "sklearn.datasets.load_digits", "num_images": int(images.shape[0]),
                   "image_size": list(images.shape[1:]), "scaling": "pixel / 8 - 1"}
    log["torch_version"] = torch.__version__
    (out / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2, sort_keys=True) + "\n")
    if args.only in ("all", "target"):
        model, entry = train_unet(TARGET_UNET_CONFIG, images, args.target_steps, args.batch_size,
                                  2e-3, args.seed, name="target")
        save_module(model, TARGET_UNET_CONFIG, out, "target_unet")
        log["target_unet"] = entry
    if args.only in ("all", "draft"):
        model, entry = train_unet(DRAFT_UNET_CONFIG, images, args.draft_steps, args.batch_size,
                                  3e-3, args.seed + 100, name="draft")
        save_module(model, DRAFT_UNET_CONFIG, out, "draft_unet")
        log["draft_unet"] = entry
    if args.only in ("all", "classifier"):
        model, entry = train_classifier(images, labels, args.classifier_epochs, args.seed + 200)
        save_module(model, CLASSIFIER_CONFIG, out, "classifier")
        log["classifier"] = entry
    log_path.write_text(json.dumps(log, indent=2) + "\n")
    print(f"wrote models to {out}", flush=True)


if __name__ == "__main__":
    main()
