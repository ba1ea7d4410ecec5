"""Output: the machine, the results table (Markdown, printed and pasted into the docs), the
JSON results file and the save-latency chart."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.harness import Row

DIALECT_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def machine_info(postgres_version: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    import psycopg
    import pydantic
    import sqlalchemy

    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()})",
        "pydantic": pydantic.__version__,
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "migrations"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("+uncommitted src changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


# --- the table ----------------------------------------------------------------------------


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "per_s":
        return f"{value:,.0f}/s"
    if unit == "count":
        return f"{value:.0f}"
    if value >= 1e9:
        return f"{value / 1e9:.2f} s"
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e4:
        return f"{value / 1e3:.0f} µs"
    return f"{value / 1e3:.1f} µs"


def fmt_met(row: Row) -> str:
    if row.met is None:
        return "not implemented" if row.note.startswith("not implemented") else "n/a"
    return "yes" if row.met else "**no**"


def table(rows: Iterable[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| operation | dialect | ours (median) | baseline (median) | ratio | target | met "
        "| baseline is / note |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    for row in rows:
        r = "—" if row.ratio is None else f"{row.ratio:.{3 if row.ratio < 0.1 else 2}f}x"
        explain = "; ".join(part for part in (row.baseline_name, row.note) if part)
        lines.append(
            f"| {row.operation} | {DIALECT_NAMES.get(row.dialect, row.dialect)} "
            f"| {fmt_value(row.ours, row.unit)} | {fmt_value(row.baseline, row.unit)} | {r} "
            f"| {row.target} | {fmt_met(row)} | {explain} |"
        )
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    judged = [row for row in rows if row.met is not None]
    missed = [row for row in judged if not row.met]
    missing = [row for row in rows if row.note.startswith("not implemented")]
    text = f"{len(judged) - len(missed)} of {len(judged)} targets met"
    if missed:
        text += "; missed: " + ", ".join(
            f"{row.operation} [{DIALECT_NAMES.get(row.dialect, row.dialect)}]" for row in missed
        )
    if missing:
        text += f"; {len(missing)} rows not implemented"
    return text


# --- files --------------------------------------------------------------------------------


def write_json(
    path: Path,
    machine: dict[str, Any],
    options: dict[str, Any],
    rows: list[Row],
    chart: dict[str, Any],
    seconds: float,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "seconds": round(seconds, 1),
        "machine": machine,
        "options": options,
        "summary": summary(rows),
        "rows": [row.as_json() for row in rows],
        "chart": chart,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def write_chart(paths: list[Path], chart: dict[str, Any]) -> bool:
    """Save latency against session length, ours against the blob design and the
    hand-written baseline, one panel per dialect. False if there is nothing to draw."""
    dialects = [d for d in ("sqlite", "postgresql") if d in chart and "save" in chart[d]]
    if not dialects:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dialects), figsize=(6 * len(dialects), 4.5), squeeze=False)
    series = (
        ("ours", "sqlsessions (normalized, incremental)", "o-"),
        ("blob", "original design (whole-session JSON blob)", "s--"),
        ("hand", "hand-written minimal UPDATE+INSERT", "^:"),
    )
    for ax, dialect in zip(axes[0], dialects, strict=True):
        data = chart[dialect]["save"]
        sizes = sorted(int(n) for n in data)
        for key, label, style in series:
            medians = [data[str(n)][key]["median"] / 1e6 for n in sizes]
            low = [m - data[str(n)][key]["p10"] / 1e6 for m, n in zip(medians, sizes, strict=True)]
            high = [data[str(n)][key]["p90"] / 1e6 - m for m, n in zip(medians, sizes, strict=True)]
            ax.errorbar(sizes, medians, yerr=[low, high], fmt=style, label=label, capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.set_xlabel("messages already in the session (N)")
        ax.set_ylabel("save latency, median ms (bars: p10-p90)")
        ax.set_title(f"Save after appending 1 message — {DIALECT_NAMES[dialect]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
