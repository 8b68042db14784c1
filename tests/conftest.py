"""Test-wide settings: one thread (2 shared cores in CI), no hub downloads, fixed seeds."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(1)
settings.register_profile("ci", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("ci")
