"""The sweep summary's plot: the judged figure against each swept value, one panel per key.

What a sweep is for is seeing how the figure moves with each setting; the table gives the
numbers, the plot the shape. Finished points are dots, points stopped early crosses (their
best figure before the rung that stopped them), the rest grey. A numeric key spanning a
factor of 10 or more gets a log axis (learning rates); a key of words gets one tick each.
"""
from __future__ import annotations

from pathlib import Path

from jobs.core.files import atomic_path
from jobs.core.pages import pyplot

# matplotlib is imported by pyplot() when a plot is drawn: every command line imports this
# module, and matplotlib at import would cost each a third of a CPU-second

STYLES = {"done": dict(marker="o", color="tab:blue", label="done"),
          "stopped": dict(marker="x", color="tab:red", label="stopped early")}
OTHER = dict(marker=".", color="0.6", label="other")


def plot_summary(rows: list[dict], keys: list[str], figure: str, path: Path) -> Path | None:
    """``path`` (a PNG) with ``figure`` (its best value per point) against every key in
    ``keys``; None when no point measured it yet."""
    fig = summary_figure(rows, keys, figure)
    if fig is None:
        return None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
    return path


def summary_figure(rows: list[dict], keys: list[str], figure: str):
    """The matplotlib figure of :func:`plot_summary` (the sweep's page inlines it); None
    when no point measured ``figure`` yet."""
    column = f"best_{figure}" if any(r.get(f"best_{figure}") not in (None, "")
                                     for r in rows) else figure
    measured = [r for r in rows if r.get(column) not in (None, "")]
    if not measured or not keys:
        return None
    fig, axes = pyplot().subplots(1, len(keys), figsize=(4 * len(keys), 3.4), dpi=100,
                                  squeeze=False)
    for ax, key in zip(axes[0], keys):
        _panel(ax, measured, key, column)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def _panel(ax, rows: list[dict], key: str, column: str) -> None:
    values = [r.get(key) for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ticks = sorted({str(v) for v in values}) if not numeric else []
    for row, value in zip(rows, values):
        style = STYLES.get(row.get("status"), OTHER)
        x = value if numeric else ticks.index(str(value))
        ax.scatter([x], [float(row[column])], **style)
    if numeric and min(values) > 0 and max(values) >= 10 * min(values):
        ax.set_xscale("log")
    if ticks:
        ax.set_xticks(range(len(ticks)), ticks)
    ax.set_xlabel(key.rsplit(".", 1)[-1])
    ax.set_ylabel(column)
    ax.grid(alpha=0.3)
