"""The scalar weighted residual against a 60-digit mpmath reference (ALGORITHMS section 3)."""

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaussspec.residual import residual_log_mass, sample_residual

mp.mp.dps = 60


def _survival_mp(log_c, delta, s_star_offset):
    c, d = mp.exp(mp.mpf(log_c)), mp.mpf(delta)
    s_star = d / 2 - mp.mpf(log_c) / d
    s = s_star + mp.mpf(float(s_star_offset))

    def tail(x):
        return mp.ncdf(-x)

    mass = c * tail(s_star - d) - tail(s_star)
    return (c * tail(s - d) - tail(s)) / mass, mass


log_c_strategy = st.one_of(st.just(0.0), st.floats(min_value=-690.7, max_value=-1e-12))
delta_strategy = st.floats(min_value=1e-8, max_value=1e4)
uniform_strategy = st.floats(min_value=1e-12, max_value=1 - 1e-12)


@given(log_c=log_c_strategy, delta=delta_strategy, u=uniform_strategy)
def test_survival_at_the_draw_equals_the_uniform(log_c, delta, u):
    s_star, offset = sample_residual([log_c], [delta], [u])
    assert offset[0] >= 0.0
    survival, _ = _survival_mp(log_c, delta, offset[0])
    assert abs(float(survival) - u) <= 1e-10


@given(log_c=log_c_strategy, delta=delta_strategy)
def test_log_mass_matches_high_precision(log_c, delta):
    _, mass = _survival_mp(log_c, delta, 0.0)
    got = residual_log_mass([log_c], [delta])[0]
    assert abs(got - float(mp.log(mass))) <= 1e-10 * max(1.0, abs(got))


@given(delta=st.floats(min_value=1e-6, max_value=50.0))
def test_token_mass_is_total_variation(delta):
    from scipy.stats import norm

    expected = 2 * norm.cdf(delta / 2) - 1  # R(1, delta) = TV = 2 Phi(delta/2) - 1
    assert math.isclose(math.exp(residual_log_mass([0.0], [delta])[0]), expected, rel_tol=1e-9)


def test_mass_limits():
    assert residual_log_mass([-0.1], [0.0])[0] == -np.inf  # delta -> 0: max(c - 1, 0) = 0
    assert residual_log_mass([-0.1], [np.inf])[0] == -0.1  # mutually singular: R = c


@given(delta=st.floats(min_value=1e-3, max_value=20.0), u=uniform_strategy)
def test_token_residual_draws_lie_on_the_target_side(delta, u):
    s_star, offset = sample_residual([0.0], [delta], [u])
    # c = 1: the residual lives where q > p, i.e. beyond the bisecting hyperplane s = delta / 2
    assert s_star[0] == pytest.approx(delta / 2) and s_star[0] + offset[0] >= delta / 2
