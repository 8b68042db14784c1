"""A user's own kernel, accelerated and checked: ULA on a banana-shaped density.

Run: python examples/custom_kernel.py
Or:  gaussspec check --target examples/custom_kernel.py:make_target --drafter free --chains 2000
"""
import torch
import gaussspec as gs


class BananaULA(gs.GaussianKernel):
    """x' ~ N(x + h grad log pi(x), 2h I) with log pi = -x1^2/2 - (x2 - x1^2)^2 / 2 (ULA)."""

    def __init__(self, step_size=0.05, num_steps=400):
        self.h, self.num_steps, self.event_shape = step_size, num_steps, (2,)

    def covariance(self, t):
        return gs.IsotropicCovariance((2 * self.h) ** 0.5)

    def evaluate(self, x, t):  # the expensive part: the gradient of log pi
        x1, x2 = x[:, 0], x[:, 1]
        return torch.stack([-x1 + 2 * x1 * (x2 - x1**2), -(x2 - x1**2)], dim=1)

    def mean_from(self, x, t, gradient):  # the cheap rest
        return x + self.h * gradient

    def initial_state(self, num_chains, generator=None):
        return torch.zeros(num_chains, 2, dtype=torch.float64)


def make_target():
    return BananaULA()


if __name__ == "__main__":
    kernel, g = make_target(), torch.Generator().manual_seed(0)
    x0 = kernel.initial_state(4)
    fast = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), draft_length=8).sample(x0, generator=g)
    plain = gs.sample_chain(kernel, x0, generator=g)
    print("target calls:", fast.stats.sequential_target_calls, "vs", plain.stats.sequential_target_calls)
