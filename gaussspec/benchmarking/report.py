"""Writing a suite's results: JSON, a markdown report and matplotlib figures."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import attrs
import torch

__all__ = ["Column", "Section", "SuiteResult", "code_digest", "machine_meta", "markdown_table",
           "write_result", "new_figure", "run_columns"]

_PACKAGE = Path(__file__).resolve().parent.parent  # gaussspec/


@attrs.frozen
class Column:
    """A table column: header, row key and format (``"{:.2f}"``, ``"{:.1%}"``, ...)."""

    header: str
    key: str
    fmt: str = "{}"


def run_columns(mean_draft_length: bool = True) -> tuple:
    """The columns every per-run table ends with (row keys as ``harness.measure`` writes them).

    Block efficiency, the mean draft length (optional), sequential target calls, wall-clock, the
    engine's share of it and the speed-up over the plain chain.
    """
    gamma = (Column("mean gamma", "mean_draft_length", "{:.2f}"),) if mean_draft_length else ()
    return (Column("block eff.", "block_efficiency", "{:.2f}"), *gamma,
            Column("seq. calls", "sequential_target_calls"), Column("wall s", "wall_s", "{:.3f}"),
            Column("engine share", "overhead_share", "{:.1%}"),
            Column("speed-up", "speedup", "{:.2f}x"))


@attrs.frozen
class Section:
    """One table of a suite, with the text that explains it."""

    title: str
    note: str
    columns: tuple
    rows: list


@attrs.define
class SuiteResult:
    """What a suite produced (filled in by the suite, written by :func:`write_result`)."""

    suite: str
    meta: dict
    sections: list = attrs.field(factory=list)
    figures: list = attrs.field(factory=list)  # (file name, caption)
    summary: list = attrs.field(factory=list)  # lines of findings
    notes: list = attrs.field(factory=list)  # skipped parts, caveats


def code_files() -> list[Path]:
    """The source files a suite's times depend on, in a fixed order.

    The core modules (``gaussspec/*.py``), the benchmarking package but this module (which only
    writes reports), the adapters (``gaussspec.adapters``, all sub-packages) and, in a source
    checkout, the suites' scripts ``benchmarks/*_bench.py``. Data files (weights, posteriors) are
    not read: they are versioned with the code that loads them.
    """
    import gaussspec.adapters  # noqa: PLC0415 (the adapters' folder: installed or a checkout)

    files = sorted(_PACKAGE.glob("*.py"))
    files += sorted(p for p in (_PACKAGE / "benchmarking").glob("*.py")
                    if p.name != Path(__file__).name)
    for folder in gaussspec.adapters.__path__:
        files += sorted(Path(folder).rglob("*.py"))
    scripts = _PACKAGE.parent / "benchmarks"
    files += sorted(scripts.glob("*_bench.py"))
    return files


def _code_only(source: str) -> str:
    """``source``'s syntax tree without its docstrings, comments and layout (``ast.dump``)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # the docstring
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def code_digest() -> str:
    """A short SHA-256 digest of the code in :func:`code_files` (names and syntax trees).

    Two records of one suite with the same digest measured the same code the same way, so their
    repeats can be pooled (``benchmarks/guarantees.py``). Any change to what the engine, the
    adaptive rule, an adapter or the harness does changes it; docstrings, comments and layout do
    not count.
    """
    digest = hashlib.sha256()
    for path in code_files():
        code = _code_only(path.read_text(encoding="utf-8"))
        digest.update(path.name.encode() + b"\0" + code.encode() + b"\0")
    return digest.hexdigest()[:16]


def machine_meta(device: str = "cpu") -> dict:
    """Where and how the suite ran."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        machine = f"{torch.cuda.get_device_name(0)} (CUDA)"
    else:
        machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    return {
        "machine": machine,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "code": code_digest(),
    }


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, str):
        return value
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(columns, rows) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with the given columns."""
    lines = ["| " + " | ".join(c.header for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c.key), c.fmt) for c in columns) + " |")
    return "\n".join(lines)


def _json_ready(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def new_figure(columns: int, width: float = 4.6, height: float = 3.6):
    """A figure with ``columns`` panels side by side (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, list(axes[0])


def save_figure(figure, out_dir: Path, name: str) -> str:
    """Save as ``out_dir/name`` (PNG) and close; returns the file name."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(out_dir / name, dpi=110)
    plt.close(figure)
    return name


def write_result(result: SuiteResult, out_dir: Path, figures_dir: Path | None = None) -> dict:
    """Write ``<suite>.json`` and ``<suite>.md`` (figures are already in ``out_dir``).

    Args:
        result: The suite's tables, figures and findings.
        out_dir: The results folder.
        figures_dir: Also copy the figures there (for docs), unchanged names.

    Returns:
        The JSON document, with ``files`` naming what was written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{result.suite}.json"
    md_path = out_dir / f"{result.suite}.md"
    copied = []
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
        for name, _ in result.figures:
            if (figures_dir / name).resolve() != (out_dir / name).resolve():  # one folder: done
                shutil.copyfile(out_dir / name, figures_dir / name)
            copied.append(str(figures_dir / name))
    document = {
        "suite": result.suite,
        "meta": result.meta,
        "summary": result.summary,
        "notes": result.notes,
        "sections": [{"title": s.title, "note": s.note, "rows": s.rows} for s in result.sections],
        "figures": [name for name, _ in result.figures],
        "files": {"json": str(json_path), "markdown": str(md_path),
                  "figures": [str(out_dir / name) for name, _ in result.figures],
                  "copied_figures": copied},
    }
    json_path.write_text(json.dumps(_json_ready(document), indent=2))
    md_path.write_text(render_markdown(result))
    return document


def _turns(meta: dict) -> str:
    """How a repeat's runs were interleaved (records made before ``waves`` ran them whole)."""
    waves = meta.get("waves", 0)
    return (f" (each repeat's runs advancing together in turns: at most {waves} a run, each "
            f"turn of the fastest run about {meta.get('min_turn', 0.02) * 1e3:.0f} ms or more, "
            "in a shuffled order)" if waves else " (whole runs)")


def render_markdown(result: SuiteResult) -> str:
    """The suite's markdown report: command, machine, findings, tables, figures."""
    meta = result.meta
    lines = [f"### Suite `{result.suite}`", "",
             f"Command: `{meta.get('command', '')}` ({meta.get('seconds', 0):.0f} s). "
             f"Machine: {meta.get('machine')}; torch {meta.get('torch')}, {meta.get('threads')} "
             f"thread(s); {meta.get('date')}; medians of {meta.get('repeats')} interleaved "
             f"repeats{_turns(meta)}; C allocator: {meta.get('allocator', 'default')}.", ""]
    if result.summary:
        lines += [f"- {line}" for line in result.summary] + [""]
    for note in result.notes:
        lines += [f"*{note}*", ""]
    for section in result.sections:
        lines += [f"#### {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        lines += [markdown_table(section.columns, section.rows), ""]
    for name, caption in result.figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def replace_doc_section(doc: Path, heading: str, section: str) -> None:
    """Replace (or append) the ``## heading`` section of a markdown file, leaving the others alone.

    The section runs from its heading to the next ``## `` heading (or the end of the file).
    """
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nOne section per adapter.\n\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("" if end < 0 else text[end + 1:])
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
