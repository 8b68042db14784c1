"""Checkpoint and resume: a run killed midway and resumed equals the uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.testing import chains

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    import gaussspec as gs
    from gaussspec.testing import chains

    class Slow(chains.AR2Kernel):
        def evaluate(self, x, t):
            time.sleep(0.01)
            return super().evaluate(x, t)

    torch.set_num_threads(1)
    target = Slow(num_steps=400)
    sampler = gs.SpeculativeSampler(target, gs.FreeDrafter(), 3)
    x0 = torch.zeros(5, 2, dtype=torch.float64)
    checkpoint = gs.Checkpointing(sys.argv[1], every_rounds=5, trajectory_path=sys.argv[2])
    sampler.sample(x0, generator=torch.Generator().manual_seed(3), checkpoint=checkpoint)
    """
)


def _reference():
    target = chains.AR2Kernel(num_steps=400)
    sampler = gs.SpeculativeSampler(target, gs.FreeDrafter(), 3)
    x0 = torch.zeros(5, 2, dtype=torch.float64)
    return sampler, sampler.sample(x0, generator=torch.Generator().manual_seed(3),
                                   return_trajectory=True)


def test_killed_run_resumes_to_the_same_output(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ckpt, traj = tmp_path / "run.ckpt", tmp_path / "traj.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(script), str(ckpt), str(traj)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    time.sleep(0.5)  # let it write a few more checkpoints and stream some states
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = gs.load_trajectory(traj)
    sampler, reference = _reference()
    resumed = sampler.resume(gs.Checkpointing(ckpt, every_rounds=5, trajectory_path=traj),
                             generator=torch.Generator(), return_trajectory=True)
    assert resumed.stats.rounds == reference.stats.rounds
    assert torch.equal(resumed.samples, reference.samples)
    assert torch.equal(resumed.memory, reference.memory)
    assert torch.equal(resumed.trajectory, reference.trajectory)
    assert partial.shape == (401, 5, 2)


@pytest.mark.parametrize("per_chain", [False, True])
def test_interrupted_in_process_run_resumes_exactly(tmp_path, per_chain):
    class Crashing(chains.DoubleWellLangevinKernel):
        calls = 0

        def evaluate(self, x, t):
            Crashing.calls += 1
            if Crashing.calls == 23:
                raise KeyboardInterrupt
            return super().evaluate(x, t)

    def generator():
        return gs.chain_generators(1, range(4)) if per_chain else torch.Generator().manual_seed(1)

    x0 = torch.full((4, 2), 0.5, dtype=torch.float64)
    reference = gs.SpeculativeSampler(chains.DoubleWellLangevinKernel(num_steps=120),
                                      gs.FrozenDrafter(), 4).sample(x0, generator=generator())
    sampler = gs.SpeculativeSampler(Crashing(num_steps=120), gs.FrozenDrafter(), 4)
    checkpoint = gs.Checkpointing(tmp_path / "c.ckpt", every_rounds=3,
                                  trajectory_path=tmp_path / "t.npy", thin=10)
    with pytest.raises(KeyboardInterrupt):
        sampler.sample(x0, generator=generator(), checkpoint=checkpoint)
    resumed = sampler.resume(checkpoint, generator=generator())
    assert torch.equal(resumed.samples, reference.samples)
    streamed = gs.load_trajectory(tmp_path / "t.npy")
    assert streamed.shape == (13, 4, 2)
    assert np.array_equal(streamed[-1], reference.samples.numpy())


def test_checkpoint_refuses_another_sampler(tmp_path):
    x0 = torch.zeros(3, 2, dtype=torch.float64)
    checkpoint = gs.Checkpointing(tmp_path / "c.ckpt", every_rounds=2)
    gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter(), 2).sample(
        x0, generator=torch.Generator().manual_seed(0), checkpoint=checkpoint)
    other = gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter(), 3)
    with pytest.raises(ValueError, match="draft_length"):
        other.resume(checkpoint, generator=torch.Generator())
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        other.resume(gs.Checkpointing(tmp_path / "bad.ckpt"), generator=torch.Generator())


def test_checkpointing_settings_are_validated():
    with pytest.raises(ValueError, match="every_rounds"):
        gs.Checkpointing("x.ckpt", every_rounds=0)
    with pytest.raises(ValueError, match="thin"):
        gs.Checkpointing("x.ckpt", thin=0)
