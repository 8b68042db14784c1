"""The adaptive rule's guarantees, read from recorded suites: the medians' gaps and paired intervals.

Issue 6 asks that the adaptive draft length be within 5% of the best fixed draft length, and never
more than 5% slower than plain sampling, on every benchmark case. Each suite's summary judges
that by two medians of runs whose paths and machine load differ, and takes the best fixed length
as the lowest of several such medians (a minimum of noisy numbers, biased low). This script reads
the JSON that ``gaussspec bench`` wrote and puts beside each adaptive row's medians' gap its
paired gap: the geometric mean of the per-repeat ratios (the repeats of one suite share their
seed and the machine's state, contender by contender) with a Student-t interval. A reader can
then tell a gap the repeats show from one that one draw of the noise made:

* ``medians``: the medians' gap is at most the limit (what the suites' summaries report);
* ``not shown over``: the interval reaches down to the limit (the repeats do not show the rule
  slower than the limit);
* ``shown within``: the whole interval lies at or below the limit.

It re-times nothing: the verdicts are those of the recorded runs. It also says how often the
medians' reading would call a row a miss by noise alone (``false_miss_rates``): a rule exactly as
fast as the best contender of its case (the best fixed length, or plain where plain wins),
measured with the case's own noise, repeats and contenders, resampled from the recorded runs.
Summed over the rows, that is the number of misses a record of this design shows for a perfect
rule, and the product of the rows' pass rates how often such a record shows none.

With ``--clock cpu`` the suites whose targets compute (``ddpm``, ``md``, ``langevin`` on the CPU)
are read by the process's CPU time instead of wall-clock: every run is one thread, so CPU time is
its work, without the time other work on a shared machine held the core. The suites of
simulated kernels (``adaptive``, ``synthetic``) sleep through their simulated latency, so they are
read by wall-clock whatever the flag says.

Several records of one suite can be read as one (``--results A B``): the repeats of records
that measured the same code (the ``code`` digest ``gaussspec bench`` writes into each record's
meta, :func:`gaussspec.benchmarking.report.code_digest`) are pooled, case by case, each record's
runs in units of its own plain chain's median for that case (records made on machines of
different speeds then read alike; every reading is a ratio). A repeat stays paired with the
repeat of the same record, so the paired intervals narrow as records accumulate, and a row
misread by one record's noise is read again on more repeats without one long run. Records of
different code are refused.

    python benchmarks/guarantees.py [--results benchmarks/results/bench [more records...]]
                                    [--suites ddpm langevin] [--clock wall|cpu]

A folder may hold ``<suite>.json`` or ``<suite>.json.gz`` (the records kept in
``benchmarks/records/``). Writes ``guarantees.json`` and ``guarantees.md`` (``guarantees_cpu.*``
with ``--clock cpu``) into the first results folder.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
from pathlib import Path

import numpy as np

from gaussspec.benchmarking import harness
from gaussspec.benchmarking.report import Column, markdown_table

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("ddpm", "adaptive", "synthetic", "md", "langevin")
LIMIT = 0.05  # issue 6: within 5% of the best fixed length and of plain sampling
CONFIDENCE = 0.95
DRAWS = 4000  # simulated records per row for the false-miss rates
MORE_REPEATS = (2, 4)  # records simulated with these times the repeats
SIMULATED = ("adaptive", "synthetic")  # suites whose kernels sleep: read by wall-clock only


def case_of(row: dict) -> str:
    """The case a row belongs to (the synthetic suite names its cases by cost model and ratio)."""
    if "case" in row:
        return row["case"]
    return f"{row['cost_model']} c={row['cost_ratio']}"


def _measured(rows: list[dict]) -> list[dict]:
    """The per-run rows of a suite (summary tables have no runs)."""
    return [r for r in rows if "wall_s_all" in r and "kind" in r]


def clock_of(suite: str, clock: str) -> str:
    """The clock a suite is read by: ``clock``, except wall-clock for the simulated kernels."""
    return "wall" if suite in SIMULATED else clock


def false_miss_rates(plain: dict, fixed: list[dict], rule: dict, limit: float = LIMIT,
                     draws: int = DRAWS, seed: int = 0, scale_repeats: int = 1,
                     clock: str = "wall") -> tuple[float, float]:
    """How often the medians' reading calls a perfect rule a miss, by the case's own noise.

    The case's runs (plain, the rule's drafter's fixed lengths and the rule; ``R`` repeats
    each) are split two ways on the log scale, ``log t_kr = mu_k + a_r + e_kr``: a contender's
    level, the repeat's (the machine's state, shared by the contenders of one repeat) and the
    rest. A perfect rule has the level of the best contender, ``min_k mu_k`` over plain and the
    fixed lengths. Each simulated record draws ``R`` repeat effects from the ``a_r`` and every
    run's rest from the pooled ``e_kr`` (scaled by ``sqrt(K R / ((K - 1)(R - 1)))``, their
    degrees of freedom), with replacement, and reads it as the suites do: the rule's median
    against the lowest fixed length's median and against plain's. The levels are the recorded
    means, so the best is estimated a little low and the rates are a little low too.
    ``scale_repeats`` simulates records with that many times the repeats (the same noise);
    ``clock`` is ``"wall"`` or ``"cpu"`` (:func:`gaussspec.benchmarking.harness.best_fixed`).

    Returns:
        ``(p_best, p_plain)``: the shares of simulated records in which the perfect rule's
        median is more than ``limit`` above the best fixed median, and above plain's.
    """
    key = f"{clock}_s_all"
    walls = np.log(np.array([plain[key], *(r[key] for r in fixed), rule[key]],
                            dtype=float))  # (K, R)
    contenders, repeats = walls.shape
    if repeats < 2:
        return math.nan, math.nan
    level = walls.mean(axis=1)  # mu_k
    repeat_effect = (walls - level[:, None]).mean(axis=0)  # a_r
    rest = walls - level[:, None] - repeat_effect[None, :]  # e_kr
    rest = rest.ravel() * math.sqrt(contenders * repeats / ((contenders - 1) * (repeats - 1)))
    level[-1] = level[:-1].min()  # the perfect rule: the best of plain and the fixed lengths
    rng = np.random.default_rng(seed)
    simulated = repeats * scale_repeats
    shared = rng.choice(repeat_effect, size=(draws, 1, simulated))
    runs = level[None, :, None] + shared + rng.choice(rest, size=(draws, contenders, simulated))
    medians = np.median(runs, axis=2)  # (draws, K), log seconds
    threshold = math.log1p(limit)
    p_best = float(np.mean(medians[:, -1] - medians[:, 1:-1].min(axis=1) > threshold))
    p_plain = float(np.mean(medians[:, -1] - medians[:, 0] > threshold))
    return p_best, p_plain


def read_record(path: Path) -> dict:
    """A suite's JSON as ``gaussspec bench`` wrote it, or gzipped (``.json.gz``, as the records
    kept under ``benchmarks/records/``)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            return json.load(stream)
    return json.loads(path.read_text())


def pool(records: list[dict]) -> dict:
    """One suite's records of the same code read as one record (see the module's docstring).

    Each case's runs are divided, clock by clock, by the median of that record's plain runs for
    the case, and concatenated in the records' order, so that run ``r`` of every contender of a
    case still belongs to one repeat of one record. A row's median (``wall_s``, ``cpu_s``) is
    that of its pooled runs; ``mean_draft_length`` the records' mean. Clocks that a record did
    not keep per run are left out of the pooled record. One record is returned as it is.

    Raises:
        ValueError: the records are of different suites or code (or one has no code digest),
            or their cases and contenders differ.
    """
    if len(records) == 1:
        return records[0]
    names = {record["suite"] for record in records}
    codes = [record.get("meta", {}).get("code") for record in records]
    if len(names) != 1 or None in codes or len(set(codes)) != 1:
        raise ValueError(f"only records of one suite and of the same code can be pooled: suites "
                         f"{sorted(names)}, code digests {codes} (None: recorded before "
                         f"gaussspec bench wrote one)")
    per_record = []
    for record in records:
        cases: dict[tuple, dict] = {}
        for section in record["sections"]:
            for row in _measured(section["rows"]):
                cases[(case_of(row), row["label"])] = row
        per_record.append(cases)
    keys = list(per_record[0])
    if any(set(cases) != set(keys) for cases in per_record[1:]):
        raise ValueError(f"{records[0]['suite']}: the records hold different cases or contenders")
    clocks = [c for c in harness.CLOCKS
              if all(f"{c}_s_all" in row for cases in per_record for row in cases.values())]
    pooled_rows = []
    for key in keys:
        row = copy.deepcopy(per_record[0][key])
        for clock in clocks:
            runs = []
            for cases in per_record:
                plain = next(r for (case, _), r in cases.items()
                             if case == key[0] and r["kind"] == "plain")
                unit = float(np.median(plain[f"{clock}_s_all"]))  # the record's plain median
                runs += [t / unit for t in cases[key][f"{clock}_s_all"]]
            row[f"{clock}_s_all"], row[f"{clock}_s"] = runs, float(np.median(runs))
        for clock in set(harness.CLOCKS) - set(clocks):
            row.pop(f"{clock}_s_all", None)
        row["mean_draft_length"] = float(np.mean(
            [cases[key].get("mean_draft_length", math.nan) for cases in per_record]))
        pooled_rows.append(row)
    meta = {**records[0].get("meta", {}), "records": len(records),
            "dates": [record.get("meta", {}).get("date") for record in records]}
    return {"suite": records[0]["suite"], "meta": meta,
            "sections": [{"title": "pooled", "rows": pooled_rows}]}


def adaptive_entries(suite: dict, limit: float = LIMIT, confidence: float = CONFIDENCE,
                     clock: str = "wall") -> list[dict]:
    """One entry per adaptive row of a suite's JSON: its gaps to the best fixed and to plain.

    The best fixed length is :func:`gaussspec.benchmarking.harness.best_fixed`, as in the suites'
    summaries, by the suite's clock (:func:`clock_of`).

    Raises:
        ValueError: ``clock`` is ``"cpu"`` and the record kept no CPU time per run (recorded
            before ``cpu_s_all`` existed).
    """
    clock = clock_of(suite["suite"], clock)
    cases: dict[str, list[dict]] = {}
    for section in suite["sections"]:
        for row in _measured(section["rows"]):
            cases.setdefault(case_of(row), []).append(row)
    entries = []
    for case, rows in cases.items():
        plain = next(r for r in rows if r["kind"] == "plain")
        if f"{clock}_s_all" not in plain:
            raise ValueError(f"{suite['suite']}: no {clock}_s_all in the record (kept per run "
                             f"since the CPU reading exists): read it with --clock wall")
        for rule in (r for r in rows if r["kind"] == harness.ADAPTIVE):
            best = harness.best_fixed(rows, rule, clock)
            entry = {"suite": suite["suite"], "case": case, "label": rule["label"],
                     "clock": clock, "best_fixed": best["label"],
                     "repeats": len(rule[f"{clock}_s_all"]),
                     "records": suite.get("meta", {}).get("records", 1),
                     "mean_draft_length": rule["mean_draft_length"]}
            for name, other in (("best", best), ("plain", plain)):
                gap, low, high = harness.paired_gap(rule, other, confidence, clock)
                entry[f"{name}_median_gap"] = rule[f"{clock}_s"] / other[f"{clock}_s"] - 1.0
                entry[f"{name}_paired_gap"], entry[f"{name}_low"], entry[f"{name}_high"] = (
                    gap, low, high)
                entry[f"{name}_interval"] = f"{gap:+.1%} [{low:+.1%}, {high:+.1%}]"
                entry[f"{name}_medians_hold"] = entry[f"{name}_median_gap"] <= limit
                entry[f"{name}_not_shown_over"] = low <= limit
                entry[f"{name}_shown_within"] = high <= limit
            fixed = harness.fixed_lengths(rows, rule)
            entry["best_false_miss"], entry["plain_false_miss"] = false_miss_rates(
                plain, fixed, rule, limit, clock=clock)
            for scale in MORE_REPEATS:  # the same noise over more repeats
                best_rate, plain_rate = false_miss_rates(plain, fixed, rule, limit,
                                                         scale_repeats=scale, clock=clock)
                entry[f"perfect_passes_x{scale}"] = (1.0 - best_rate) * (1.0 - plain_rate)
            entries.append(entry)
    return entries


def tally(entries: list[dict]) -> dict:
    """How many entries meet each reading of each guarantee."""
    counts = {"rows": len(entries)}
    for name in ("best", "plain"):
        for reading in ("medians_hold", "not_shown_over", "shown_within"):
            counts[f"{name}_{reading}"] = sum(bool(e[f"{name}_{reading}"]) for e in entries)
        rates = [e[f"{name}_false_miss"] for e in entries
                 if not math.isnan(e[f"{name}_false_miss"])]
        counts[f"{name}_expected_false_misses"] = float(sum(rates))
        counts[f"{name}_perfect_passes"] = float(np.prod([1.0 - p for p in rates]))
    counts["perfect_passes_all"] = counts["best_perfect_passes"] * counts["plain_perfect_passes"]
    for scale in MORE_REPEATS:
        rates = [e[f"perfect_passes_x{scale}"] for e in entries
                 if not math.isnan(e[f"perfect_passes_x{scale}"])]
        counts[f"perfect_passes_all_x{scale}"] = float(np.prod(rates))
    return counts


COLUMNS = (Column("suite", "suite"), Column("case", "case"), Column("adaptive", "label"),
           Column("clock", "clock"), Column("best fixed", "best_fixed"), Column("repeats", "repeats"),
           Column("records", "records"),
           Column("vs best: medians", "best_median_gap", "{:+.1%}"),
           Column("vs best: paired [95%]", "best_interval"),
           Column("vs plain: medians", "plain_median_gap", "{:+.1%}"),
           Column("vs plain: paired [95%]", "plain_interval"),
           Column("perfect rule missed: vs best", "best_false_miss", "{:.0%}"),
           Column("vs plain", "plain_false_miss", "{:.0%}"))


def markdown(entries: list[dict], counts: dict, sources: list[str], limit: float = LIMIT) -> str:
    """The table of every adaptive row and the tally of the three readings."""
    rows = counts["rows"]
    lines = [
        f"Read from {', '.join(sources)} (re-timed nothing). Paired: geometric mean of the "
        f"per-repeat ratios with a {CONFIDENCE:.0%} Student-t interval.",
        "",
        markdown_table(COLUMNS, entries),
        "",
        f"| reading (limit {limit:.0%}) | against the best fixed | against plain |",
        "|---|---|---|",
    ]
    for reading, text in (("medians_hold", "medians' gap at most the limit (the suites' reading)"),
                          ("not_shown_over", "interval reaches the limit (not shown slower)"),
                          ("shown_within", "whole interval at or below the limit")):
        lines.append(f"| {text} | {counts['best_' + reading]}/{rows} | "
                     f"{counts['plain_' + reading]}/{rows} |")
    lines.append(f"| a perfect rule (as fast as the case's best contender): misses expected by "
                 f"noise alone | {counts['best_expected_false_misses']:.1f} | "
                 f"{counts['plain_expected_false_misses']:.1f} |")
    lines.append(f"| a perfect rule: share of such records with no miss | "
                 f"{counts['best_perfect_passes']:.0%} | {counts['plain_perfect_passes']:.0%} |")
    lines += ["", f"A perfect rule passes every row against both in "
              f"{counts['perfect_passes_all']:.0%} of records of this design (the rows' noise, "
              f"repeats and contenders; {DRAWS} simulated records a row); with "
              + " and ".join(f"{scale} times the repeats in "
                             f"{counts[f'perfect_passes_all_x{scale}']:.0%}"
                             for scale in MORE_REPEATS) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, nargs="+",
                        default=[ROOT / "benchmarks" / "results" / "bench"],
                        help="the folders gaussspec bench wrote its JSON into: one record, or "
                             "several of the same code, pooled suite by suite")
    parser.add_argument("--suites", nargs="+", default=list(SUITES),
                        help="suites to read (a missing one is skipped with a note)")
    parser.add_argument("--clock", choices=harness.CLOCKS, default="wall",
                        help="read the computing suites by wall-clock or by CPU time (the "
                             "simulated kernels' suites are read by wall-clock either way)")
    args = parser.parse_args()
    entries, sources = [], []
    for name in args.suites:
        paths = [path for folder in args.results for path in (
            folder / f"{name}.json", folder / f"{name}.json.gz") if path.is_file()]
        if not paths:
            print(f"no {name}.json in {', '.join(map(str, args.results))}: skipped (run "
                  f"gaussspec bench {name} first)")
            continue
        try:
            suite = pool([read_record(path) for path in paths])
        except ValueError as error:
            raise SystemExit(str(error)) from None
        entries += adaptive_entries(suite, clock=args.clock)
        sources.append(" + ".join(str(path) for path in paths) if len(paths) > 1
                       else paths[0].name)
    counts = tally(entries)
    text = markdown(entries, counts, sources)
    stem = "guarantees" if args.clock == "wall" else f"guarantees_{args.clock}"
    out = args.results[0]
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(
        {"limit": LIMIT, "confidence": CONFIDENCE, "clock": args.clock, "sources": sources,
         "counts": counts, "entries": entries}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
