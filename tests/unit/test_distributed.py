"""Rank invariance: 2 gloo processes give exactly the samples of 1 process."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import gaussspec as gs
from gaussspec.distributed import sample_distributed, shard
from gaussspec.testing.chains import DoubleWellLangevinKernel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distributed_chains.py"


def test_shards_cover_all_chains_once():
    for chains in (1, 7, 64):
        for world in (1, 2, 3, 5):
            ids = [i for r in range(world) for i in shard(chains, r, world)]
            assert ids == list(range(chains))


def test_two_gloo_processes_match_one_process(tmp_path):
    out = tmp_path / "two.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--standalone", str(EXAMPLE), "--chains", "9", "--steps", "60",
               "--out", str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    kernel = DoubleWellLangevinKernel(dimension=2, step_size=0.02, num_steps=60)
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=8)
    single = sample_distributed(sampler, kernel, kernel.initial_state(9), seed=0)
    assert np.array_equal(np.load(out)["samples"], single.samples.numpy())
