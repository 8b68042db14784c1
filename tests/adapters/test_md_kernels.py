"""Unit tests of the MD kernels on a toy force field (torch only, no OpenMM).

Each integrator's mean and noise factor must reproduce a hand-written integrator step with the
same standard-normal noise, to rounding. These are deterministic checks (no false-alarm budget).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import gaussspec as gs
from gaussspec.adapters.md import (
    ABOBAKernel,
    BAOABKernel,
    BrownianKernel,
    NonFiniteForceError,
    aboba_state,
    maxwell_boltzmann_velocities,
)
from gaussspec.adapters.md.units import BOLTZMANN_KJ_PER_MOL_K

torch.set_num_threads(1)

MASSES = torch.tensor([12.0, 1.008, 16.0, 14.0], dtype=torch.float64)
TEMPERATURE, FRICTION, DT = 300.0, 1.0, 0.002


def toy_force(x: torch.Tensor) -> torch.Tensor:
    """A harmonic tether to the origin plus a short-range pairwise repulsion (kJ/mol/nm)."""
    tether = -500.0 * x
    diff = x[:, :, None, :] - x[:, None, :, :]
    r2 = (diff**2).sum(-1) + torch.eye(x.shape[1], dtype=x.dtype)
    pair = 1.8e-5 * diff / r2[..., None] ** 4  # 1.8e-5 r^-8 (x_i - x_j)
    pair = pair * (1 - torch.eye(x.shape[1], dtype=x.dtype))[..., None]
    return tether + pair.sum(2)


def slow_part(x: torch.Tensor) -> torch.Tensor:
    return 30.0 * torch.sin(5 * x)


def full_force(x: torch.Tensor) -> torch.Tensor:
    return toy_force(x) + slow_part(x)


def _positions(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn((batch, 4, 3), generator=g, dtype=torch.float64)


def _step(kernel, x, t, noise, memory=None):
    evaluation = kernel.evaluate(x, t)
    mean = kernel.mean_from(x, t, evaluation, memory) if kernel.has_memory else kernel.mean_from(x, t, evaluation)
    cov = kernel.covariance(t)
    return mean + cov.apply(noise, kernel.event_shape), evaluation


def test_brownian_matches_hand_written_step():
    kernel = BrownianKernel(full_force, MASSES, TEMPERATURE, 5.0, DT, 10)
    x = _positions(3)
    t = torch.zeros(3, dtype=torch.int64)
    xi = torch.randn((3, 4, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got, _ = _step(kernel, x, t, xi)
    kT = BOLTZMANN_KJ_PER_MOL_K * TEMPERATURE
    m = MASSES[:, None]
    expected = x + DT / (5.0 * m) * full_force(x) + torch.sqrt(2 * kT * DT / (5.0 * m)) * xi
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_aboba_matches_hand_written_step_with_rectangular_factor():
    kernel = ABOBAKernel(full_force, MASSES, TEMPERATURE, FRICTION, DT, 10)
    x = _positions(3)
    v = maxwell_boltzmann_velocities(MASSES, TEMPERATURE, 3, torch.Generator().manual_seed(2))
    state = aboba_state(x, v)
    t = torch.zeros(3, dtype=torch.int64)
    cov = kernel.covariance(t)
    assert isinstance(cov, gs.FactorCovariance)
    assert cov.noise_shape(kernel.event_shape) == (12,)  # 3N noise for a 6N state
    xi = torch.randn((3, 12), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got, _ = _step(kernel, state, t, xi)
    # hand-written A B O B A
    kT, c, m = BOLTZMANN_KJ_PER_MOL_K * TEMPERATURE, math.exp(-FRICTION * DT), MASSES[:, None]
    xh = x + DT / 2 * v
    a = full_force(xh) / m
    vv = v + DT / 2 * a
    vv = c * vv + torch.sqrt((1 - c * c) * kT / m) * xi.reshape(3, 4, 3)
    vv = vv + DT / 2 * a
    xn = xh + DT / 2 * vv
    torch.testing.assert_close(got[:, 0], xn, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got[:, 1], vv, rtol=1e-12, atol=1e-14)


def test_baoab_matches_openmm_langevin_middle_form_and_memory():
    kernel = BAOABKernel(full_force, MASSES, TEMPERATURE, FRICTION, DT, 10)
    x = _positions(3)
    u = maxwell_boltzmann_velocities(MASSES, TEMPERATURE, 3, torch.Generator().manual_seed(2))
    t = torch.zeros(3, dtype=torch.int64)
    xi = torch.randn((3, 4, 3), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got, evaluation = _step(kernel, x, t, xi, memory=u)
    memory = kernel.next_memory(x, t, u, evaluation, got)
    # LangevinMiddleIntegrator: v += dt F/m; x += dt/2 v; v = c v + s xi; x += dt/2 v
    kT, c, m = BOLTZMANN_KJ_PER_MOL_K * TEMPERATURE, math.exp(-FRICTION * DT), MASSES[:, None]
    v = u + DT * full_force(x) / m
    xn = x + DT / 2 * v
    v = c * v + torch.sqrt((1 - c * c) * kT / m) * xi
    xn = xn + DT / 2 * v
    torch.testing.assert_close(got, xn, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(memory, v, rtol=1e-9, atol=1e-10)


def test_plain_chain_reproduces_hand_written_baoab_loop():
    """sample_chain draws xi ~ randn((B, N, 3)) per step; the same generator gives the same path."""
    u0 = maxwell_boltzmann_velocities(MASSES, TEMPERATURE, 2, torch.Generator().manual_seed(5))
    kernel = BAOABKernel(full_force, MASSES, TEMPERATURE, FRICTION, DT, 25, initial_velocities=u0)
    x0 = _positions(2)
    result = gs.sample_chain(kernel, x0, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    kT, c, m = BOLTZMANN_KJ_PER_MOL_K * TEMPERATURE, math.exp(-FRICTION * DT), MASSES[:, None]
    x, v = x0.clone(), u0.clone()
    for _ in range(25):
        xi = torch.randn((2, 4, 3), generator=g, dtype=torch.float64)
        v = v + DT * full_force(x) / m
        x = x + DT / 2 * v
        v = c * v + torch.sqrt((1 - c * c) * kT / m) * xi
        x = x + DT / 2 * v
    torch.testing.assert_close(result.samples, x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.memory, v, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("cls", [BrownianKernel, ABOBAKernel, BAOABKernel])
def test_mts_split_is_the_same_target_and_a_corrected_stale_draft(cls):
    plain = cls(full_force, MASSES, TEMPERATURE, 2.0, DT, 5)
    split = cls(full_force, MASSES, TEMPERATURE, 2.0, DT, 5, fast_force_fn=toy_force)
    x = _positions(3)
    if cls is ABOBAKernel:
        x = aboba_state(x, maxwell_boltzmann_velocities(MASSES, TEMPERATURE, 3, torch.Generator().manual_seed(1)))
    memory = torch.zeros(3, 4, 3, dtype=torch.float64) if cls is BAOABKernel else None
    t = torch.zeros(3, dtype=torch.int64)
    args = (memory,) if memory is not None else ()
    target = plain.mean_from(x, t, plain.evaluate(x, t), *args)
    torch.testing.assert_close(split.mean_from(x, t, split.evaluate(x, t), *args), target, rtol=0, atol=0)
    # a stale evaluation at x, used at y: slow part frozen, fast part fresh
    y = x + 0.01
    stale = split.mean_from(y, t, split.evaluate(x, t), *args)
    positions = (lambda s: s[:, 0] + DT / 2 * s[:, 1]) if cls is ABOBAKernel else (lambda s: s)
    reference = plain.with_forces(lambda p: toy_force(p) + slow_part(positions(x)))
    torch.testing.assert_close(stale, reference.mean_from(y, t, reference.evaluate(y, t), *args))


def test_with_forces_shares_the_covariance_object():
    kernel = ABOBAKernel(full_force, MASSES, TEMPERATURE, FRICTION, DT, 5)
    draft = kernel.with_forces(toy_force)
    t = torch.zeros(1, dtype=torch.int64)
    assert draft.covariance(t) is kernel.covariance(t)
    assert draft.force_fn is toy_force and kernel.force_fn is full_force


def test_nonfinite_force_names_step_and_chain_and_the_sampler_call_keeps_the_row():
    """``forces`` raises naming the step and chain; ``evaluate`` (the sampler's call, which also
    sees drafted states) returns the bad row as it came and the others unchanged."""
    def bad(x):
        f = toy_force(x)
        f[1, 2, 0] = float("nan")
        return f

    kernel = BrownianKernel(bad, MASSES, TEMPERATURE, FRICTION, DT, 5)
    x, t = _positions(3), torch.full((3,), 3, dtype=torch.int64)
    with pytest.raises(NonFiniteForceError, match=r"t=\[3\] of chain\(s\) \[1\]"):
        kernel.forces(x, t)
    force = kernel.evaluate(x, t)
    assert torch.isnan(force[1, 2, 0]) and int(torch.isnan(force).sum()) == 1
    torch.testing.assert_close(force[[0, 2]], toy_force(x)[[0, 2]], rtol=0, atol=0)
    with pytest.raises(gs.NonFiniteMeanError, match="BrownianKernel mean is NaN or inf at step t=0"):
        gs.sample_chain(kernel, x, generator=torch.Generator().manual_seed(0))


def _fenced(level: float):
    """``toy_force``, NaN wherever atom 0's x coordinate is beyond ``level`` nm."""
    def force(x):
        beyond = x[:, 0, 0] > level
        return torch.where(beyond[:, None, None], float("nan"), toy_force(x))
    return force


def _pushed(push: float):
    """``toy_force`` plus ``push`` kJ/mol/nm along x on atom 0: a draft that runs off."""
    def force(x):
        out = toy_force(x).clone()
        out[:, 0, 0] += push
        return out
    return force


@pytest.mark.parametrize("cls, friction, push",
                         [(BrownianKernel, 50.0, 3e4), (ABOBAKernel, FRICTION, 2e5),
                          (BAOABKernel, FRICTION, 2e5)])
def test_a_draft_running_into_undefined_forces_is_rejected_and_a_chain_reaching_them_fails(
        cls, friction, push):
    """The forces are NaN beyond x = level on atom 0 (which starts at x = 0.08 nm, moving along
    x at 1 nm/ps where there are velocities), and a draft whose force pushes atom 0 along x runs
    past that fence within a few positions. Far beyond the mass (0.6 nm; in 40 steps the plain
    chains move it by 0.01-0.08 nm), the plain chain never gets there and the speculative one
    completes, whatever it accepts (before, the force call raised on the drafted states); close
    to the start (0.081 nm, or 0.09 for the moving atom), a chain gets there and both fail, as
    plain sampling does."""
    x0 = 0.08 * torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
                             dtype=torch.float64).repeat(3, 1, 1)  # a tetrahedron, 0.23 nm sides
    velocities = torch.zeros_like(x0)
    velocities[:, 0, 0] = 1.0  # nm/ps
    extra = {"initial_velocities": velocities} if cls is BAOABKernel else {}
    if cls is ABOBAKernel:
        x0 = aboba_state(x0, velocities)
    near = 0.081 if cls is BrownianKernel else 0.09
    for level, fails in ((0.6, False), (near, True)):
        target = cls(_fenced(level), MASSES, TEMPERATURE, friction, DT, 40, **extra)
        drafted_past = []

        def watched(x, _target=target):
            force = _target.force_fn(x)
            drafted_past.append(int(torch.isnan(force).flatten(1).any(1).sum()))
            return force

        watched_target = target.with_forces(watched)
        for drafter, verification in ((gs.KernelDrafter(target.with_forces(_pushed(push))), "block"),
                                      (gs.KernelDrafter(target.with_forces(_pushed(push / 8))), "token")):
            sampler = gs.SpeculativeSampler(watched_target, drafter, 8, verification)
            run = lambda: sampler.sample(x0, generator=torch.Generator().manual_seed(1),  # noqa: E731
                                         return_trajectory=True)
            if fails:
                with pytest.raises(gs.NonFiniteMeanError, match=f"{cls.__name__} mean is NaN or inf"):
                    run()
                with pytest.raises(gs.NonFiniteMeanError, match=f"{cls.__name__} mean is NaN or inf"):
                    gs.sample_chain(target, x0, generator=torch.Generator().manual_seed(1))
            else:
                result = run()
                assert torch.isfinite(result.trajectory).all()
                positions = result.trajectory[:, :, 0] if cls is ABOBAKernel else result.trajectory
                assert float(positions[..., 0, 0].max()) < level
        if not fails:
            assert sum(drafted_past) > 0  # the verification calls did meet the fence


def test_an_mts_draft_whose_fast_force_blows_up_is_drafted_again():
    """The MTS draft's fast force runs away (a repulsion from the origin) and is NaN beyond
    x = 0.6 nm on atom 0, which its drafts reach; the target is finite everywhere. The rounds
    where a draft mean is NaN are drafted again with the draft mean replaced by the state there,
    and the run completes (it raised before; the law: tests/statistical/test_exactness.py)."""
    def fast(x):
        force = toy_force(x) + 1e6 * x  # the drafts run away from the origin
        return torch.where((x[:, 0, 0] > 0.6)[:, None, None], float("nan"), force)

    x0 = 0.08 * torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
                             dtype=torch.float64).repeat(3, 1, 1)
    kernel = BrownianKernel(toy_force, MASSES, TEMPERATURE, 50.0, DT, 40, fast_force_fn=fast)
    sampler = gs.SpeculativeSampler(kernel, gs.FreeDrafter(), 8)
    with pytest.warns(RuntimeWarning, match="draft's mean was not finite"):
        result = sampler.sample(x0, generator=torch.Generator().manual_seed(0),
                                return_trajectory=True)
    assert torch.isfinite(result.trajectory).all()
    assert result.stats.sequential_target_calls > result.stats.rounds


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"masses": None}, ValueError, "masses is missing"),
        ({"masses": [1.0, 2.0, 0.0, 1.0]}, ValueError, "mass <= 0"),
        ({"masses": [[1.0, 2.0]]}, ValueError, r"\(N,\)"),
        ({"temperature": -1.0}, ValueError, "temperature must be >= 0"),
        ({"temperature": "300 K"}, TypeError, "temperature must be a real number"),
        ({"timestep": 0.0}, ValueError, "timestep must be > 0"),
        ({"timestep": float("nan")}, ValueError, "timestep must be finite"),
        ({"friction": 0.0}, ValueError, "friction must be > 0"),  # Brownian needs friction
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"force_fn": "openmm"}, TypeError, "force_fn must be callable"),
    ],
)
def test_bad_input_is_refused_with_a_message(change, error, match):
    args = dict(force_fn=toy_force, masses=MASSES, temperature=300.0, friction=1.0, timestep=DT, num_steps=5)
    args.update(change)
    with pytest.raises(error, match=match):
        BrownianKernel(**args)


def test_timestep_in_femtoseconds_warns():
    with pytest.warns(UserWarning, match="picoseconds"):
        BAOABKernel(toy_force, MASSES, 300.0, 1.0, 2.0, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BAOABKernel(toy_force, MASSES, 300.0, 1.0, 0.002, 5)


def test_wrong_force_shape_and_state_shape():
    kernel = BAOABKernel(lambda x: x[:, :2], MASSES, 300.0, 1.0, DT, 5)
    t = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="must return forces of shape"):
        kernel.evaluate(_positions(2), t)
    with pytest.raises(ValueError, match="states must have shape"):
        kernel.evaluate(torch.zeros(2, 5, 3, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="initial_velocities must have shape"):
        BAOABKernel(toy_force, MASSES, 300.0, 1.0, DT, 5, initial_velocities=torch.zeros(3, 3))
