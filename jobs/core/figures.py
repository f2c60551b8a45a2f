"""The quality figures a run measures (``gan.quality.meter``) and which way each is better:
one home, read by the trainer (``checkpoint.keep_best``), the sweep's summary and early
stopping, ``status`` and the report pages, none of which should need TensorFlow to know it."""
from __future__ import annotations

import math

# quality figures (gan.quality.meter) and which way is better: True = lower, None = neither
# (density above 1 is fakes crowding real modes, not better fidelity)
_FEATURE_FIGURES = {"kid": True, "kid_std": None, "fid": True, "precision": False,
                    "recall": False, "density": None, "coverage": False}
QUALITY = {**_FEATURE_FIGURES, "face_rate": False,
           **{f"inception_{k}": v for k, v in _FEATURE_FIGURES.items()}}
RANKED = tuple(f for f, lower in QUALITY.items() if lower is not None)  # have a best


def better(value: float, best: float, lower: bool) -> bool:
    """Strictly better (equal is not): the rule of ``checkpoint.keep_best`` and summaries."""
    return value < best if lower else value > best


def best_row(rows: list[dict], figure: str) -> dict | None:
    """The epoch row with the best finite value of ``figure`` (the first of equals), None if
    never measured."""
    best = None
    for row in rows:
        if row.get(figure) in (None, "") or not math.isfinite(float(row[figure])):
            continue
        if best is None or better(float(row[figure]), float(best[figure]), QUALITY[figure]):
            best = row
    return best


def quality_summary(rows: list[dict]) -> dict[str, str]:
    """Last and best measured value of each quality figure in metrics.csv's epoch rows:
    {kid, kid_epoch, best_kid, best_kid_epoch, ...} (strings, as in the file)."""
    out = {}
    for figure in RANKED:
        measured = [r for r in rows if r.get(figure) not in (None, "")]
        if measured:
            best = best_row(measured, figure)
            out.update({figure: measured[-1][figure], f"{figure}_epoch": measured[-1]["epoch"],
                        f"best_{figure}": best[figure], f"best_{figure}_epoch": best["epoch"]})
    return out
