"""Engine behaviour: ragged batches, per-chain steps, devices and dtypes, errors."""

import pytest
import torch

import gaussspec as gs
from gaussspec.testing import chains


class RecordingKernel(gs.GaussianKernel):
    """Records the step indices the engine passes; mean depends on t so mistakes show."""

    def __init__(self, num_steps=9):
        self.num_steps, self.event_shape, self.seen = num_steps, (1,), []

    def covariance(self, t):
        return gs.IsotropicCovariance(0.5)

    def mean(self, x, t):
        self.seen.append(t.clone())
        return 0.9 * x + 0.01 * t.to(x).unsqueeze(1)


def test_chains_are_ragged_and_target_calls_cover_unfinished_chains_only():
    target = RecordingKernel()
    draft = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=1, num_steps=9))
    x0 = torch.zeros(7, 1, dtype=torch.float64)
    result = gs.SpeculativeSampler(target, draft, 3).sample(
        x0, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    calls = [t for t in target.seen]
    assert all(int(t.max()) <= 8 for t in calls)
    assert sum(len(t) for t in calls) == result.stats.target_evaluations
    assert len({len(t) for t in calls}) > 1  # chains finish at different rounds
    assert any(len(set(t.tolist())) > 1 for t in calls)  # chains sit at different steps
    assert result.trajectory.shape == (10, 7, 1)


def test_float32_states_and_float32_kernels():
    target = chains.DoubleWellLangevinKernel(num_steps=8)
    x0 = torch.full((5, 2), 0.5, dtype=torch.float32)
    result = gs.SpeculativeSampler(target, gs.FreeDrafter(), 3).sample(
        x0, generator=torch.Generator().manual_seed(0))
    assert result.samples.dtype == torch.float32 and torch.isfinite(result.samples).all()


def test_memory_kernel_returns_final_memory():
    target = chains.AR2Kernel(num_steps=5)
    x0 = torch.zeros(3, 2, dtype=torch.float64)
    result = gs.SpeculativeSampler(target, gs.FreeDrafter(), 2).sample(
        x0, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert torch.equal(result.memory, result.trajectory[-2])  # memory = x_{K-1}


class NaNKernel(gs.GaussianKernel):
    """Coordinate 0 carries the chain id exactly (zero variance); NaN for chain 1 at step 3."""

    def __init__(self):
        self.num_steps, self.event_shape = 6, (2,)

    def covariance(self, t):
        return gs.DiagonalCovariance(torch.tensor([0.0, 1.0]))

    def evaluate(self, x, t):
        out = x.clone()
        out[(t == 3) & (x[:, 0] == 1), 1] = float("nan")
        return out

    def mean_from(self, x, t, evaluation):
        return evaluation


@pytest.mark.parametrize("runner", ["plain", "speculative"])
def test_nan_mean_names_step_and_chain(runner):
    x0 = torch.zeros(3, 2)
    x0[:, 0] = torch.arange(3)
    with pytest.raises(gs.NonFiniteMeanError, match=r"step t=3 for chain 1"):
        if runner == "plain":
            gs.sample_chain(NaNKernel(), x0, generator=torch.Generator().manual_seed(0))
        else:
            gs.SpeculativeSampler(NaNKernel(), gs.FrozenDrafter(), 2).sample(
                x0, generator=torch.Generator().manual_seed(0))


def test_kernel_with_mean_only_works_with_independent_drafter_only():
    with pytest.raises(TypeError, match="evaluate"):
        gs.SpeculativeSampler(RecordingKernel(), gs.FreeDrafter())
    with pytest.raises(TypeError, match="evaluate"):
        gs.SpeculativeSampler(RecordingKernel(), "frozen")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"draft_length": 0}, "draft_length must be an integer >= 1"),
        ({"draft_length": 2.5}, "draft_length"),
        ({"verification": "tree"}, "valid: 'block', 'token'"),
        ({"coupling": "optimal"}, "valid: 'gamma', 'reflection'"),
        ({"coupling": "reflection"}, "only with verification='token'"),
    ],
)
def test_bad_sampler_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter(), **kwargs)


def test_unknown_drafter_name_lists_valid_ones():
    with pytest.raises(ValueError, match="'frozen', 'free'"):
        gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), "stale")


def test_draft_kernel_must_match_target():
    with pytest.raises(ValueError, match="num_steps"):
        gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(num_steps=5),
                              gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(num_steps=6)))
    with pytest.raises(ValueError, match="event_shape"):
        gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(dimension=2),
                              gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=3)))


def test_x0_shape_and_generator_device_are_checked():
    sampler = gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter())
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        sampler.sample(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating"):
        sampler.sample(torch.zeros(4, 2, dtype=torch.int64))
    if torch.cuda.is_available():  # pragma: no cover - GPU only
        with pytest.raises(ValueError, match="generator"):
            sampler.sample(torch.zeros(4, 2, device="cuda"), generator=torch.Generator())


def test_stats_json_round_trip():
    import json

    result = gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter()).sample(
        torch.zeros(3, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    data = json.loads(result.stats.to_json())
    for key in ("rounds", "target_evaluations", "draft_evaluations", "block_efficiency",
                "accepted_length_histogram", "acceptance_by_position", "wall_time", "target_time"):
        assert key in data


@pytest.mark.parametrize("drafter", ["kernel", "free", "frozen"])
def test_per_chain_generators_make_chains_independent_of_their_batch(drafter):
    """With one generator per chain, a chain's output does not depend on the other chains."""
    target = chains.DoubleWellLangevinKernel(num_steps=30)
    chosen = {"kernel": gs.KernelDrafter(chains.DoubleWellLangevinKernel(num_steps=30,
                                                                         perturbation=0.5)),
              "free": gs.FreeDrafter(), "frozen": gs.FrozenDrafter()}[drafter]
    sampler = gs.SpeculativeSampler(target, chosen, 4)
    x0 = target.initial_state(6)
    whole = sampler.sample(x0, generator=gs.chain_generators(7, range(6)), return_trajectory=True)
    part = sampler.sample(x0[2:5], generator=gs.chain_generators(7, range(2, 5)),
                          return_trajectory=True)
    assert torch.equal(whole.trajectory[:, 2:5], part.trajectory)
    plain_whole = gs.sample_chain(target, x0, generator=gs.chain_generators(7, range(6)))
    plain_part = gs.sample_chain(target, x0[2:5], generator=gs.chain_generators(7, range(2, 5)))
    assert torch.equal(plain_whole.samples[2:5], plain_part.samples)


def test_wrong_number_of_generators_is_refused():
    sampler = gs.SpeculativeSampler(chains.OrnsteinUhlenbeckKernel(), gs.FreeDrafter())
    with pytest.raises(ValueError, match="one per chain"):
        sampler.sample(torch.zeros(3, 2, dtype=torch.float64), generator=gs.chain_generators(0, [0]))


class WrongFactorKernel(chains.OrnsteinUhlenbeckKernel):
    def covariance(self, t):
        return gs.DenseCovariance(torch.eye(3, dtype=torch.float64))


class WrongShapeKernel(chains.OrnsteinUhlenbeckKernel):
    def mean_from(self, x, t, evaluation):
        return super().mean_from(x, t, evaluation)[:, :1]


def test_covariance_and_mean_shape_mismatches_are_named():
    x0 = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="3 rows but states of shape"):
        gs.sample_chain(WrongFactorKernel(), x0, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="returned shape"):
        gs.SpeculativeSampler(WrongShapeKernel(), gs.FreeDrafter()).sample(
            x0, generator=torch.Generator().manual_seed(0))


def test_samples_own_their_storage():
    """The engine writes next states into its reused path grid; results must not alias it."""
    target = chains.OrnsteinUhlenbeckKernel(dimension=3, num_steps=12)
    x0 = torch.zeros(4, 3)
    sampler = gs.SpeculativeSampler(target, gs.FreeDrafter(), 3)
    result = sampler.sample(x0, generator=torch.Generator().manual_seed(0))
    samples = result.samples
    assert samples.is_contiguous()
    assert samples.untyped_storage().nbytes() == samples.numel() * samples.element_size()
