"""Checkpoints and streamed trajectories for long runs.

A checkpoint is one safetensors file (tensors: states, step indices, memory, the free drafter's
cached evaluations, generator states) whose metadata holds JSON (statistics, settings, the
structure of the cached evaluations). It is written atomically (a temporary file, then
``os.replace``), so a crash leaves the previous checkpoint intact, and loading it never unpickles
anything.

Streamed trajectories are a ``.npy`` file opened as a memory map of shape
``(num_steps // thin + 1, num_chains, *event_shape)``: each accepted state at a step divisible by
``thin`` is written when it is produced, and the map is flushed at every checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

__all__ = ["Checkpointing", "load_trajectory"]

_FORMAT = "gaussspec-checkpoint-2"


def _positive(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen
class Checkpointing:
    """Where and how often a speculative run saves itself.

    Args:
        path: The checkpoint file (safetensors).
        every_rounds: Save after every this many rounds (and at the end).
        trajectory_path: Optional ``.npy`` file the trajectory streams into as it is produced.
        thin: Keep every ``thin``-th step in the streamed trajectory.
    """

    path: Path = attrs.field(converter=Path)
    every_rounds: int = attrs.field(default=100, validator=_positive)
    trajectory_path: Path | None = attrs.field(
        default=None, converter=lambda p: None if p is None else Path(p)
    )
    thin: int = attrs.field(default=1, validator=_positive)


def _flatten(tree, prefix: str, out: dict) -> dict:
    """Flatten an evaluation tree into ``out`` and return its JSON structure."""
    if tree is None:
        return {"kind": "none"}
    if isinstance(tree, torch.Tensor):
        key = f"{prefix}{len(out)}"
        out[key] = tree.detach().contiguous().cpu()
        return {"kind": "tensor", "key": key}
    if isinstance(tree, (tuple, list)):
        return {"kind": type(tree).__name__, "items": [_flatten(v, prefix, out) for v in tree]}
    if isinstance(tree, dict):
        return {"kind": "dict", "items": {k: _flatten(v, prefix, out) for k, v in tree.items()}}
    raise TypeError(f"cannot checkpoint a {type(tree).__name__} evaluation")


def _unflatten(structure: dict, tensors: dict, device):
    kind = structure["kind"]
    if kind == "none":
        return None
    if kind == "tensor":
        return tensors[structure["key"]].to(device)
    if kind in ("tuple", "list"):
        items = [_unflatten(v, tensors, device) for v in structure["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: _unflatten(v, tensors, device) for k, v in structure["items"].items()}
    raise ValueError(f"unknown entry {kind!r} in checkpoint structure")


def save_checkpoint(path: Path, tensors: dict, cache, memory, random_states, meta: dict) -> None:
    """Write a checkpoint atomically."""
    payload = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta)
    meta["cache_structure"] = _flatten(cache, "cache.", payload)
    meta["memory_structure"] = _flatten(memory, "memory.", payload)
    for i, state in enumerate(random_states):
        payload[f"random.{i}"] = state.contiguous().cpu()
    meta["random_states"] = len(random_states)
    meta["format"] = _FORMAT
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(payload, str(temporary), metadata={"gaussspec": json.dumps(meta)})
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: Path, device) -> tuple[dict, object, object, list, dict]:
    """Read a checkpoint: ``(tensors, cache, memory, random_states, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    if "gaussspec" not in header:
        raise ValueError(f"{path} is not a gaussspec checkpoint (no gaussspec metadata)")
    meta = json.loads(header["gaussspec"])
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {_FORMAT!r}")
    tensors = load_file(str(path))
    cache = _unflatten(meta["cache_structure"], tensors, device)
    memory = _unflatten(meta["memory_structure"], tensors, device)
    random_states = [tensors[f"random.{i}"] for i in range(meta["random_states"])]
    plain = {k: v.to(device) for k, v in tensors.items() if "." not in k}
    return plain, cache, memory, random_states, meta


def open_trajectory(path: Path, shape: tuple, dtype: torch.dtype, create: bool) -> np.memmap:
    """Create (or reopen, to resume) a streamed trajectory file."""
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if create:
        return np.lib.format.open_memmap(path, mode="w+", dtype=np_dtype, shape=shape)
    array = np.lib.format.open_memmap(path, mode="r+")
    if array.shape != shape or array.dtype != np_dtype:
        raise ValueError(f"{path} holds {array.shape} {array.dtype}, the run needs {shape} {np_dtype}")
    return array


def load_trajectory(path) -> np.ndarray:
    """Open a streamed trajectory read-only: ``(num_steps // thin + 1, num_chains, *event)``."""
    return np.load(path, mmap_mode="r")
