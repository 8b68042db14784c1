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
    assert {k: v for k, v in counts.items() if "perfect" not in k and "false" not in k} == {
        "rows": 1, "best_medians_hold": 0, "best_not_shown_over": 1, "best_shown_within": 0,
        "plain_medians_hold": 1, "plain_not_shown_over": 1, "plain_shown_within": 1}
    assert counts["best_expected_false_misses"] == pytest.approx(entry["best_false_miss"])
    assert counts["perfect_passes_all"] == pytest.approx(
        (1 - entry["best_false_miss"]) * (1 - entry["plain_false_miss"]))
    text = guarantees.markdown(entries, counts, ["s.json"])
    assert "| s | c | adaptive | wall | g=4 | 4 | 1 | +6.0% |" in text
    assert "| medians' gap at most the limit (the suites' reading) | 0/1 | 1/1 |" in text


def _timed(kind, label, walls, cpus, drafter="free"):
    return {**_row(kind, label, walls, drafter), "cpu_s_all": cpus,
            "cpu_s": float(np.median(cpus))}


def test_the_cpu_clock_reads_computing_suites_by_cpu_time_and_simulated_ones_by_wall(guarantees):
    """Another process held the core during the rule's runs (wall +20%, CPU time as its
    neighbours'): read by CPU time the rule holds, by wall-clock it misses; the suites whose
    kernels sleep (``adaptive``, ``synthetic``) stay on wall-clock, and a record without CPU
    times per run is refused for the CPU reading."""
    rows = [_timed("plain", "plain", [3.0] * 4, [3.0] * 4, drafter=None),
            _timed("speculative", "g=4", [1.0] * 4, [1.0] * 4),
            _timed("speculative", "g=8", [1.1] * 4, [0.98] * 4),  # the best by CPU time
            _timed(harness.ADAPTIVE, "adaptive", [1.2, 1.21, 1.19, 1.2], [1.0, 1.01, 0.99, 1.0])]
    suite = {"suite": "langevin", "sections": [{"rows": rows}]}
    wall, = guarantees.adaptive_entries(suite)
    cpu, = guarantees.adaptive_entries(suite, clock="cpu")
    assert (wall["clock"], wall["best_fixed"], wall["best_medians_hold"]) == ("wall", "g=4", False)
    assert (cpu["clock"], cpu["best_fixed"], cpu["best_medians_hold"]) == ("cpu", "g=8", True)
    assert cpu["best_median_gap"] == pytest.approx(1.0 / 0.98 - 1.0)
    assert cpu["best_paired_gap"] == pytest.approx(1.0 / 0.98 - 1.0, abs=1e-3)
    simulated, = guarantees.adaptive_entries({**suite, "suite": "synthetic"}, clock="cpu")
    assert simulated["clock"] == "wall" and simulated["best_fixed"] == "g=4"
    without = [{k: v for k, v in row.items() if not k.startswith("cpu")} for row in rows]
    with pytest.raises(ValueError, match="no cpu_s_all"):
        guarantees.adaptive_entries({"suite": "md", "sections": [{"rows": without}]}, clock="cpu")
    with pytest.raises(ValueError, match="clock must be one of"):
        harness.paired_gap(rows[3], rows[1], clock="process")


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


def test_a_perfect_rule_without_noise_is_never_missed_whatever_the_rule_measured(guarantees):
    """The false-miss rate is about a rule as fast as the case's best contender: the recorded
    rule's own runs (10% slower here) only lend their noise, and without noise nothing misses."""
    plain = {"wall_s_all": [3.0] * 5}
    fixed = [{"wall_s_all": [1.0] * 5}, {"wall_s_all": [1.2] * 5}]
    rule = {"wall_s_all": [1.1] * 5}
    assert guarantees.false_miss_rates(plain, fixed, rule) == (0.0, 0.0)
    assert all(map(math.isnan, guarantees.false_miss_rates(
        {"wall_s_all": [3.0]}, [{"wall_s_all": [1.0]}], {"wall_s_all": [1.1]})))


def test_false_misses_follow_the_noise_of_two_medians_and_the_minimum_of_ties(guarantees):
    """Normal log-noise of sd 8% (runs at the normal quantiles, each contender's in another
    order): the perfect rule's median against one clear best fixed length's misses 5% about as
    often as the difference of two medians of R normal draws exceeds log 1.05; a second fixed
    length tied with the best makes misses more frequent (the lowest of two medians is biased
    low), and the same noise over more repeats makes them rarer (recorded or simulated)."""
    sd = 0.08

    def runs(level, repeats, order, tiles=1):
        z = stats.norm.ppf((np.arange(repeats) + 0.5) / repeats)
        z = np.tile(np.random.default_rng(order).permutation(sd * z / z.std()), tiles)
        return {"wall_s_all": list(np.exp(level + z))}

    def case(repeats, tiles=1, tie=False, scale=1):
        plain, best = runs(np.log(3.0), repeats, 0, tiles), runs(0.0, repeats, 1, tiles)
        other = runs(0.0 if tie else np.log(2.0), repeats, 2, tiles)
        return guarantees.false_miss_rates(plain, [best, other], runs(0.05, repeats, 3, tiles),
                                           scale_repeats=scale)

    p_best, p_plain = case(15)
    model = np.random.default_rng(4).standard_normal((20000, 2, 15)) * sd
    medians = np.median(model, axis=2)
    expected = np.mean(medians[:, 0] - medians[:, 1] > np.log(1.05))
    assert 0.05 < expected < 0.15
    assert p_best == pytest.approx(expected, abs=0.04) and p_plain == 0.0
    assert case(15, tie=True)[0] > p_best + 0.03
    assert case(5)[0] > case(5, tiles=3)[0] + 0.05
    assert case(5, scale=3)[0] < case(5)[0] - 0.05  # simulated: three times the repeats


def _record(scale, code="abc", rule=(1.05, 1.00, 1.20)):
    """A one-case record whose runs are ``scale`` times a reference machine's."""
    rows = [_row("plain", "plain", [2.0 * scale] * 3, drafter=None),
            _row("speculative", "g=4", [1.0 * scale, 1.1 * scale, 1.0 * scale]),
            _row(harness.ADAPTIVE, "adaptive", [t * scale for t in rule])]
    return {"suite": "s", "meta": {"code": code, "date": f"x{scale}"}, "sections": [{"rows": rows}]}


def test_records_of_the_same_code_pool_in_units_of_each_records_plain_median(guarantees):
    """A second record on a machine 2.5x slower reads as a repeat of the first: the pooled
    medians' gap is the first record's (+5%), the paired gap too, on twice the repeats. Pooled
    in seconds instead, the slow record's runs would set the medians (+2.8%)."""
    alone = guarantees.adaptive_entries(_record(1.0))[0]
    pooled_suite = guarantees.pool([_record(1.0), _record(2.5)])
    entry = guarantees.adaptive_entries(pooled_suite)[0]
    assert entry["records"] == 2 and entry["repeats"] == 6
    assert entry["best_median_gap"] == pytest.approx(0.05)
    assert entry["best_median_gap"] == pytest.approx(alone["best_median_gap"])
    assert entry["best_paired_gap"] == pytest.approx(alone["best_paired_gap"])
    assert entry["best_high"] - entry["best_low"] < alone["best_high"] - alone["best_low"]
    plain = next(r for r in pooled_suite["sections"][0]["rows"] if r["kind"] == "plain")
    assert plain["wall_s_all"] == pytest.approx([1.0] * 6)  # each record's plain median is 1
    seconds = np.array([1.05, 1.0, 1.2, 2.625, 2.5, 3.0])  # the mutant: pooled in seconds
    assert np.median(seconds) / np.median([1.0, 1.1, 1.0, 2.5, 2.75, 2.5]) - 1 == pytest.approx(
        0.0278, abs=1e-4)
    assert guarantees.pool([_record(1.0)]) == _record(1.0)  # one record: as it is


def test_records_of_different_code_or_cases_are_not_pooled(guarantees):
    with pytest.raises(ValueError, match="same code"):
        guarantees.pool([_record(1.0), _record(1.0, code="def")])
    old = _record(1.0)
    del old["meta"]["code"]  # recorded before the digest existed
    with pytest.raises(ValueError, match="same code"):
        guarantees.pool([_record(1.0), old])
    other = _record(1.0)
    other["sections"][0]["rows"][1]["label"] = "g=8"
    with pytest.raises(ValueError, match="different cases or contenders"):
        guarantees.pool([_record(1.0), other])


def test_the_code_digest_changes_with_the_code_and_only_with_it(monkeypatch, tmp_path):
    """The digest reads the code of every file of :func:`report.code_files`: a changed statement
    changes it; a changed docstring, comment or line layout does not."""
    from gaussspec.benchmarking import report

    files = [tmp_path / "a.py", tmp_path / "b.py"]
    source = '"""Module."""\n\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n'
    for path in files:
        path.write_text(source)
    monkeypatch.setattr(report, "code_files", lambda: files)
    first = report.code_digest()
    assert report.code_digest() == first and len(first) == 16
    files[1].write_text('"""Other words."""\ndef f(x):\n    """More."""\n\n    return (x\n'
                        '            + 1)  # two\n')
    assert report.code_digest() == first
    files[1].write_text(source.replace("x + 1", "x + 2"))
    assert report.code_digest() != first
    files[1].write_text(source.replace('    """Doc."""\n', ""))  # a function without docstring
    assert report.code_digest() == first


def test_the_code_digest_covers_the_engine_the_rule_the_adapters_and_the_harness():
    from gaussspec.benchmarking import report

    names = {(path.parent.name, path.name) for path in report.code_files()}
    for wanted in [("gaussspec", "sampler.py"), ("gaussspec", "adaptive.py"),
                   ("benchmarking", "harness.py"), ("langevin", "kernel.py"),
                   ("ddpm", "pipeline.py"), ("md", "kernels.py")]:
        assert wanted in names
    assert ("benchmarking", "report.py") not in names  # writes reports: not what is timed


def test_a_gzipped_record_reads_as_the_json_one(guarantees, tmp_path):
    import gzip
    import json

    record = _record(1.0)
    (tmp_path / "s.json").write_text(json.dumps(record))
    with gzip.open(tmp_path / "s.json.gz", "wt", encoding="utf-8") as stream:
        json.dump(record, stream)
    assert guarantees.read_record(tmp_path / "s.json.gz") == guarantees.read_record(
        tmp_path / "s.json") == record
