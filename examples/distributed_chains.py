"""Many chains across processes (torchrun); the output does not depend on the number of ranks.

    torchrun --nproc_per_node=2 examples/distributed_chains.py --chains 64 --out samples.npz
"""

import argparse

import numpy as np
import torch

import gaussspec as gs
from gaussspec.distributed import sample_distributed
from gaussspec.testing.chains import DoubleWellLangevinKernel

parser = argparse.ArgumentParser()
parser.add_argument("--chains", type=int, default=64)
parser.add_argument("--steps", type=int, default=500)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default=None)
args = parser.parse_args()
torch.set_num_threads(1)

kernel = DoubleWellLangevinKernel(dimension=2, step_size=0.02, num_steps=args.steps)
sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=8)
x0 = kernel.initial_state(args.chains)
result = sample_distributed(sampler, kernel, x0, seed=args.seed)
if torch.distributed.is_initialized():
    rank = torch.distributed.get_rank()
    torch.distributed.destroy_process_group()  # a clean exit for gloo's threads
    if rank != 0:
        raise SystemExit(0)
print(f"{args.chains} chains: {result.stats.rounds} rounds, block efficiency "
      f"{result.stats.block_efficiency:.2f}, {result.stats.wall_time:.2f} s")
if args.out:
    np.savez(args.out, samples=result.samples.numpy())
