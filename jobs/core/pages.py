"""What the report pages share: one Jinja2 environment, images inlined as data URIs, plots
drawn by matplotlib, and an atomic write.

A page must open from a shared filesystem in any browser (Open OnDemand's file viewer, a
copy on a laptop) with no server, no port and no network: every image is inside the file,
the only script is the page's own few lines (the sample slider, the sortable table), and no
URL outside the file is ever named. The plots are PNGs from matplotlib, a dependency already,
so a page looks like the PNGs a run has always written and needs no JavaScript library
vendored into every page.
"""
from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image

from jobs.core.files import atomic_write_text

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).with_name("templates")
PAGE_NAME = "report.html"  # in the run directory or the sweep's run_root
STRIP_MAX = 16  # sample grids a run's page carries at most (each a few hundred kB)
JPEG_QUALITY = 88  # the grids of the strip: a tenth of their PNG's size, faces still sharp


def environment():
    """Jinja2's environment for the page templates: HTML autoescaped (a spec value or a
    point's name is text, never markup), undefined names an error, not an empty cell."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(**context)


def write_page(path: Path, template: str, context: dict[str, Any]) -> Path:
    """The page, stamped with when it was made, written whole or not at all (a reader never
    sees half a page)."""
    made = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    atomic_write_text(path, render(template, {**context, "made": made}))
    return path


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image_uri(path: Path, jpeg: bool = False) -> str | None:
    """A picture file as a data URI: as it is, or re-encoded as JPEG (the strip of sample
    grids); None when the file is gone or unreadable (a page never fails on one image)."""
    try:
        if not jpeg:
            return data_uri(path.read_bytes(), "image/png")
        with Image.open(path) as image:
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
        return data_uri(buf.getvalue(), "image/jpeg")
    except OSError as exc:
        log.warning("%s: not shown in the report: %s", path, exc)
        return None


def spread(items: Sequence[Any], most: int, keep: Sequence[Any] = ()) -> list[Any]:
    """At most ``most`` of ``items``, evenly spaced, always with the first, the last and any
    in ``keep`` (the best epoch's grid), in their order."""
    if len(items) <= most:
        return list(items)
    step = (len(items) - 1) / (most - 1)
    chosen = {round(i * step) for i in range(most)}
    chosen |= {i for i, item in enumerate(items) if item in keep}
    return [items[i] for i in sorted(chosen)]


def figure_uri(fig) -> str:
    """A matplotlib figure as a PNG data URI; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def pyplot():
    """matplotlib's pyplot on the Agg backend (batch nodes have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_panels(series: dict[str, list[tuple[float, float]]], xlabel: str,
                columns: int = 3) -> str | None:
    """One small panel per named series of (x, y) points, in a grid: the quality figures
    differ in scale, so they never share an axis. None when there is nothing to draw."""
    drawn = {name: points for name, points in series.items() if points}
    if not drawn:
        return None
    plt = pyplot()
    rows = -(-len(drawn) // columns)
    fig, axes = plt.subplots(rows, min(columns, len(drawn)), squeeze=False,
                             figsize=(3.6 * min(columns, len(drawn)), 2.6 * rows), dpi=100)
    for ax, (name, points) in zip(axes.flat, drawn.items()):
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(drawn):]:
        ax.set_visible(False)
    # fixed margins: tight_layout draws the figure twice more, most of a page's CPU time
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16 / rows, top=1 - 0.1 / rows,
                        wspace=0.35, hspace=0.6)
    return figure_uri(fig)


def overlay(series: dict[str, list[tuple[float, float]]], xlabel: str,
            ylabel: str) -> str | None:
    """Named series on one axis (a run's losses): None when there is nothing to draw."""
    drawn = {name: points for name, points in series.items() if points}
    if not drawn:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=100)
    for name, points in drawn.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker=".", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.95)
    return figure_uri(fig)


def write_quietly(write, what: str) -> Path | None:
    """``write()``, its failure logged as a warning: a page is a view, and a job that
    trained must never fail on it (a full disk, a grid being rewritten)."""
    try:
        return write()
    except Exception as exc:  # noqa: BLE001 - any failure of a view, never the job's
        log.warning("%s: report page not written: %s: %s", what, type(exc).__name__, exc)
        return None
