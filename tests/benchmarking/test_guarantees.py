"""The guarantees read from recorded suites (benchmarks/guarantees.py and harness.paired_gap)."""

import math

import numpy as np
import pytest
from scipy import stats

from gaussspec.benchmarking import harness


@pytest.fixture(scope="module")
def guarantees(benchmark_script):
    return benchmark_script("guarantees")


def test_a_constant_ratio_under_load_drift_is_exact_when_paired():
    """Each repeat 10% slower while the machine's load triples the times: the pairs cancel the
    drift, so the interval has no width; compared unpaired the same runs would spread by 4x."""
    rule, fixed = {"wall_s_all": [1.1, 2.2, 4.4]}, {"wall_s_all": [1.0, 2.0, 4.0]}
    gap, low, high = harness.paired_gap(rule, fixed)
    assert gap == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    shuffled = {"wall_s_all": [4.4, 1.1, 2.2]}  # the same runs, paired with the wrong repeats
    _, low, high = harness.paired_gap(shuffled, fixed)
    assert high - low > 1.0


def test_the_interval_is_a_student_t_interval_on_the_log_ratios():
    ratios = np.array([1.0, 1.1, 1.3])
    logs = np.log(ratios)
    half = stats.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    gap, low, high = harness.paired_gap({"wall_s_all": list(ratios)}, {"wall_s_all": [1.0] * 3})
    assert gap == pytest.approx(math.exp(logs.mean()) - 1)
    assert (low, high) == pytest.approx((math.exp(logs.mean() - half) - 1,
                                         math.exp(logs.mean() + half) - 1))
    _, low90, high90 = harness.paired_gap({"wall_s_all": list(ratios)}, {"wall_s_all": [1.0] * 3},
                                          confidence=0.9)
    assert low < low90 < gap < high90 < high


def test_one_repeat_has_no_interval_and_unpaired_rows_are_refused():
    gap, low, high = harness.paired_gap({"wall_s_all": [1.2]}, {"wall_s_all": [1.0]})
    assert gap == pytest.approx(0.2) and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="not paired"):
        harness.paired_gap({"wall_s_all": [1.0, 1.0]}, {"wall_s_all": [1.0]})


def _row(kind, label, walls, drafter="free", case="c"):
    return {"case": case, "kind": kind, "label": label, "drafter": drafter, "wall_s_all": walls,
            "wall_s": float(np.median(walls)), "mean_draft_length": 8.0}


def test_each_adaptive_row_is_read_against_its_drafters_best_fixed_and_plain(guarantees):
    """The medians' reading misses the noisy row that the paired interval does not show slower;
    the best fixed length is the same drafter's lowest median (another drafter's faster row is
    not its reference)."""
    suite = {"suite": "s", "sections": [
        {"rows": [{"label": "summary table", "case": "c", "kind": None}]},  # no runs: skipped
        {"rows": [
            _row("plain", "plain", [3.0, 3.0, 3.0, 3.0], drafter=None),
            _row("speculative", "g=4", [1.00, 1.00, 1.30, 1.00]),
            _row("speculative", "g=8", [1.20, 1.20, 1.20, 1.20]),
            _row("speculative", "other g=4", [0.5, 0.5, 0.5, 0.5], drafter="other"),
            _row(harness.ADAPTIVE, "adaptive", [1.10, 0.95, 1.25, 1.02]),  # median 1.06: +6%
        ]}]}
    entries = guarantees.adaptive_entries(suite)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["best_fixed"] == "g=4"
    assert entry["best_median_gap"] == pytest.approx(0.06)
    ratios = np.array([1.10, 0.95, 1.25 / 1.3, 1.02])
    assert entry["best_paired_gap"] == pytest.approx(math.exp(np.log(ratios).mean()) - 1)
    assert not entry["best_medians_hold"] and entry["best_not_shown_over"]
    assert not entry["best_shown_within"]  # four noisy pairs cannot show it within 5%
    assert entry["plain_medians_hold"] and entry["plain_shown_within"]
    counts = guarantees.tally(entries)
    assert counts == {"rows": 1, "best_medians_hold": 0, "best_not_shown_over": 1,
                      "best_shown_within": 0, "plain_medians_hold": 1, "plain_not_shown_over": 1,
                      "plain_shown_within": 1}
    text = guarantees.markdown(entries, counts, ["s.json"])
    assert "| s | c | adaptive | g=4 | 4 | +6.0% |" in text
    assert "| medians' gap at most the limit (the suites' reading) | 0/1 | 1/1 |" in text


def test_synthetic_rows_are_grouped_by_cost_model_and_ratio(guarantees):
    row = {"cost_model": "latency", "cost_ratio": 30}
    assert guarantees.case_of(row) == "latency c=30"
    assert guarantees.case_of({"case": "DDPM K=250 batch 1", **row}) == "DDPM K=250 batch 1"


def test_the_best_fixed_length_is_refused_without_a_row_of_the_rules_drafter():
    rows = [_row("plain", "plain", [3.0], drafter=None), _row("speculative", "g=4", [1.0]),
            _row(harness.ADAPTIVE, "adaptive", [1.0], drafter="other")]
    with pytest.raises(ValueError, match="no fixed-length row of the drafter 'other'"):
        harness.best_fixed(rows, rows[-1])
    assert harness.best_fixed(rows, {**rows[-1], "drafter": "free"}) is rows[1]
