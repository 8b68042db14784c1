"""Smoke tests of ``gaussspec.benchmarking`` (``gaussspec bench``): files and keys, not speed."""

import json
import platform

import numpy as np
import pytest
import torch

import gaussspec as gs
from gaussspec.benchmarking import SUITES, main, run_suite
from gaussspec.benchmarking import harness
from gaussspec.benchmarking.allocator import PINNED
from gaussspec.benchmarking.kernels import CallCost, LinearULA, predicted_acceptance


def test_synthetic_suite_writes_json_markdown_and_figures(tmp_path):
    document = run_suite("synthetic", str(tmp_path), quick=True, repeats=1, tiny=True)
    assert set(document) >= {"suite", "meta", "summary", "notes", "sections", "figures", "files"}
    on_disk = json.loads((tmp_path / "synthetic.json").read_text())
    assert on_disk["suite"] == "synthetic"
    assert [s["title"] for s in on_disk["sections"]] == ["Dimension sweep", "Cost-ratio sweep"]
    dims = on_disk["sections"][0]["rows"]
    assert {"dimension", "predicted_acceptance", "acceptance_1_token", "block_efficiency_block",
            "speedup_block", "plain_wall_s"} <= set(dims[0])
    costs = on_disk["sections"][1]["rows"]
    assert {r["kind"] for r in costs} == {"plain", "speculative", "adaptive"}
    for row in costs:  # every speculative row sits beside its own plain chain
        assert row["plain_wall_s"] > 0 and row["speedup"] > 0 and row["repeats"] == 1
    assert on_disk["meta"]["command"].startswith("gaussspec bench synthetic")
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert on_disk["meta"]["allocator"] == (PINNED if glibc else "default")
    markdown = (tmp_path / "synthetic.md").read_text()
    assert f"C allocator: {on_disk['meta']['allocator']}." in markdown
    assert "#### Dimension sweep" in markdown and "| d |" in markdown
    for name in on_disk["figures"]:
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown
    assert len(on_disk["figures"]) == 2
    # acceptance falls with the dimension (fixed per-coordinate draft error)
    assert dims[0]["acceptance_1_token"] > dims[-1]["acceptance_1_token"]


def test_main_parses_and_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["no-such-suite"])
    assert main(["synthetic", "--out", str(tmp_path), "--repeats", "0"]) == 2
    with pytest.raises(ValueError, match="unknown suite"):
        run_suite("nope", str(tmp_path))
    with pytest.raises(ValueError, match="repeats"):
        run_suite("synthetic", str(tmp_path), repeats=0)
    with pytest.raises(ValueError, match="allocator must be 'pinned' or 'default'"):
        run_suite("synthetic", str(tmp_path), allocator="jemalloc")
    with pytest.raises(SystemExit):
        main(["synthetic", "--allocator", "jemalloc"])
    assert set(SUITES) == {"synthetic", "comparisons", "adaptive", "ddpm", "langevin", "md"}


def test_harness_interleaves_and_puts_plain_first():
    target = LinearULA(4, 0.1, 10, 0.0, CallCost())
    draft = gs.KernelDrafter(LinearULA(4, 0.1, 10, 0.1, CallCost()))
    x0 = target.initial_state(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="plain"):
        harness.measure(target, x0, [harness.speculative(target, draft, 2)], 1)
    rows = harness.measure(target, x0, [harness.plain(), harness.speculative(target, draft, 2)], 2)
    assert rows[0]["kind"] == "plain" and rows[0]["speedup"] == 1.0
    assert len(rows[1]["wall_s_all"]) == 2 and rows[1]["block_efficiency"] > 1.0
    assert len(rows[1]["cpu_s_all"]) == 2 and rows[1]["cpu_s"] == np.median(rows[1]["cpu_s_all"])


def test_paired_repeats_count_where_a_row_was_the_slower():
    """Repeats are interleaved: run r of each contender is a pair (harness.slower_in)."""
    row, other = {"wall_s_all": [1.0, 2.0, 3.0, 4.0]}, {"wall_s_all": [2.0, 1.0, 1.0, 4.0]}
    assert harness.slower_in(row, other) == (2, 4)  # equal times count as not slower
    assert harness.slower_in(other, row) == (1, 4)


def test_call_cost_and_closed_form():
    with pytest.raises(ValueError, match="latency"):
        CallCost(latency=-1.0)
    assert CallCost(latency=1e-3, per_state=1e-4).seconds(10) == pytest.approx(2e-3)
    delta, accept = predicted_acceptance(1, 0.1, 0.0)
    assert delta == 0.0 and accept == 1.0
    assert predicted_acceptance(4096, 0.1, 0.2)[1] < predicted_acceptance(64, 0.1, 0.2)[1]


def test_replace_doc_section_touches_only_its_section(tmp_path):
    from gaussspec.benchmarking.report import replace_doc_section

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## A\nold a\n\n## B\nkeep b\n")
    replace_doc_section(doc, "## A", "## A\nnew a\n")
    assert doc.read_text() == "# Benchmarks\n\n## A\nnew a\n## B\nkeep b\n"
    replace_doc_section(doc, "## C", "## C\nc\n")
    assert doc.read_text().endswith("## B\nkeep b\n\n## C\nc\n")


def test_figures_folder_may_be_the_results_folder(tmp_path):
    """``--figures-dir`` equal to ``--out``: the figures are already there (no copy onto
    themselves, which raised SameFileError after the whole suite had run)."""
    from gaussspec.benchmarking.report import SuiteResult, new_figure, save_figure, write_result

    figure, axes = new_figure(1)
    axes[0].plot([0, 1], [0, 1])
    result = SuiteResult("tiny", {"command": "test"})
    result.figures.append((save_figure(figure, tmp_path, "tiny.png"), "a line"))
    document = write_result(result, tmp_path, figures_dir=tmp_path)
    assert (tmp_path / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "tiny.json").exists() and document["figures"] == ["tiny.png"]


def _ou(num_steps=40):
    from gaussspec.testing import chains

    target = chains.OrnsteinUhlenbeckKernel(dimension=3, num_steps=num_steps)
    draft = gs.KernelDrafter(chains.OrnsteinUhlenbeckKernel(dimension=3, num_steps=num_steps,
                                                            perturbation=0.3))
    return target, draft, torch.zeros(2, 3, dtype=torch.float64)


def test_interleaved_runs_equal_whole_runs():
    """A repeat's runs advanced in waves give each run's own result: the same states and counts
    as the run made whole (the plain chain and fixed draft lengths: their paths depend on the
    seed alone)."""
    target, draft, x0 = _ou()
    contenders = [harness.plain(), harness.speculative(target, draft, 3),
                  harness.speculative(target, gs.FreeDrafter(), 5)]
    for waves in (1, 7, 64):  # 64 waves: more than the chain's 40 steps
        measured = harness._run_interleaved(contenders, [1, 2, 0], target, x0, 11, waves)
        for index, contender in enumerate(contenders):
            generator = torch.Generator().manual_seed(11)
            whole = (gs.sample_chain(target, x0, generator=generator)
                     if contender.sampler is None else contender.sampler.sample(x0, generator))
            stats, wall, cpu = measured[index]
            assert stats.rounds == whole.stats.rounds
            assert stats.sequential_target_calls == whole.stats.sequential_target_calls
            assert wall > 0 and cpu > 0
    rows = harness.measure(target, x0, contenders, 2, waves=5)
    assert rows[1]["block_efficiency"] > 1.0 and len(rows[2]["wall_s_all"]) == 2
    with pytest.raises(ValueError, match="waves must be an integer >= 0"):
        harness.measure(target, x0, contenders, 1, waves=-1)


def test_a_run_does_not_count_time_it_waits_for_its_turn():
    """Between two turns a run is suspended: its wall time, and the adaptive rule's round
    times, leave that wait out (a rule that counted it would price every round 20 ms dearer)."""
    import time

    target, draft, x0 = _ou(30)
    states = []

    class Kept(gs.AdaptiveDraftLength):
        def start(self, num_chains):
            states.append(super().start(num_chains))
            return states[-1]

    sampler = gs.SpeculativeSampler(target, draft, Kept(max_draft_length=4))
    for run in (sampler._rounds(x0, torch.Generator().manual_seed(3)),
                gs.sampler._plain_chain(target, x0, torch.Generator().manual_seed(3), False,
                                        False)):
        started, waited = time.perf_counter(), 0.0
        try:
            while True:
                next(run)
                time.sleep(0.02)  # another run's turn
                waited += 0.02
        except StopIteration as end:
            result = end.value
        elapsed = time.perf_counter() - started
        assert result.stats.wall_time < elapsed - 0.9 * waited
    _, _, seconds = states[0].rates(2, False)
    assert 0.0 < seconds.max() < 0.01  # OU rounds take well under a millisecond here


def test_waves_give_the_fastest_run_turns_of_min_turn():
    assert harness.waves_for(1.28) == 64  # 20 ms turns or longer: at most WAVES
    assert harness.waves_for(0.19) == 9  # 21 ms turns
    assert harness.waves_for(0.005) == 1  # a run shorter than a turn: whole
    assert harness.waves_for(10.0, most=16) == 16
