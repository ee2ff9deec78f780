"""The end-of-run table: teacher next to student for quality, size and speed."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) > 1000):
        return f"{int(value):,}"
    return f"{value:.{digits}f}"


def comparison_table(results: dict, title: str = "kdforge results") -> Table:
    """Rows: size, speed and each metric; columns: teacher, student, student/teacher."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("teacher", justify="right")
    table.add_column("student", justify="right")
    table.add_column("student / teacher", justify="right")
    teacher, student = results.get("teacher", {}), results.get("student", {})

    def row(label: str, t, s, ratio_digits: int = 2, suffix: str = "x", invert: bool = False) -> None:
        ratio = None
        if isinstance(t, (int, float)) and isinstance(s, (int, float)) and t:
            ratio = (t / s if invert else s / t) if s else None
        table.add_row(label, _fmt(t), _fmt(s), f"{ratio:.{ratio_digits}f}{suffix}" if ratio is not None else "-")

    row("parameters", teacher.get("parameters"), student.get("parameters"))
    row("disk (MB, safetensors)", teacher.get("disk_mb"), student.get("disk_mb"))
    row("throughput (sentences/s)", teacher.get("sentences_per_second"), student.get("sentences_per_second"))
    for split, metrics in results.get("metrics", {}).get("student", {}).items():
        for name, value in metrics.items():
            t_value = results["metrics"].get("teacher", {}).get(split, {}).get(name)
            retained = value / t_value * 100 if t_value else None
            table.add_row(
                f"{split} {name}", _fmt(t_value), _fmt(value), f"{retained:.1f}% kept" if retained is not None else "-"
            )
    for name, value in results.get("agreement", {}).items():
        table.add_row(f"agreement: {name}", "", _fmt(value), "")
    return table


def print_table(results: dict, title: str = "kdforge results", console: Console | None = None) -> None:
    (console or Console()).print(comparison_table(results, title))
