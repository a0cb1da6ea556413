"""What every benchmark returns, and how the runner prints it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Result:
    """One row of figures: ``metrics`` maps a name (unit in the name) to a number."""

    benchmark: str
    case: str
    metrics: dict[str, float]
    info: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "metrics": self.metrics,
            "info": self.info,
        }


def format_number(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: list[Result]) -> str:
    """A plain-text table: one row per result, one column per metric name seen."""
    columns: list[str] = []
    for result in results:
        for name in result.metrics:
            if name not in columns:
                columns.append(name)
    header = ["benchmark", "case", *columns]
    rows = [
        [
            r.benchmark,
            r.case,
            *(format_number(r.metrics[c]) if c in r.metrics else "" for c in columns),
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # Names left-aligned, numbers right-aligned.
        return "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
