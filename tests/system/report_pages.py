"""The report pages of real runs, looked at in a real browser (``tests/system/browser.py``):
the demo's run page (``test_demo.py``) and the early-stopping sweep's page
(``test_slurm_sweeps.py``), each on the directories those tests already made.

Each check saves its screenshot twice: beside the test's files, and as
``runs/screenshots/<name>.png`` in the checkout, where a person looks at the last one."""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT
from tests.system.browser import (
    Seen,
    assert_self_contained,
    browser,
    click_header,
    column_values,
    look_at,
)

SHOTS = ROOT / "runs" / "screenshots"


@contextlib.contextmanager
def looking_at(page: Path, shot: Path, name: str) -> Iterator[tuple[object, Seen]]:
    """A browser on ``page``: its screenshot kept as ``name``, the page proven
    self-contained; yields (the driver, what it saw). No console message may follow."""
    driver = browser()
    try:
        seen = look_at(driver, page, shot)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SHOTS / f"{name}.png")
        assert_self_contained(seen, page)
        yield driver, seen
        assert not driver.get_log("browser")
    finally:
        driver.quit()


def check_run_page(run_dir: Path, shot: Path, epochs: int) -> None:
    """The run page: self-contained; the loss, accuracy and quality plots drawn; the best
    grid and the slider's grids at the trainer's size; the slider shows the epoch it
    names."""
    with looking_at(run_dir / "report.html", shot, "run-page") as (driver, seen):
        images = {i["name"]: i for i in seen.images}
        for plot in ("plot-losses", "plot-accuracy", "plot-quality"):
            assert images[plot]["natural"][0] >= 600, images.get(plot)
        grids = [i for i in seen.images if i["name"].startswith("samples at epoch")]
        assert grids and images["best-grid"]["natural"] == grids[-1]["natural"], seen.images
        assert [not i["hidden"] for i in grids].count(True) == 1  # one frame at a time
        assert grids[-1]["name"] == f"samples at epoch {epochs}"
        driver.execute_script("""const s = document.getElementById('strip-slider');
            s.value = 0; s.dispatchEvent(new Event('input'));""")
        shown = driver.execute_script("""return Array.from(document.querySelectorAll(
            '#strip img')).filter(i => !i.hidden).map(i => i.dataset.epoch)
            .concat([document.getElementById('strip-epoch').textContent]);""")
        assert shown == ["1", "1"], shown


def check_sweep_page(root: Path, shot: Path, points: int, sort_by: str) -> None:
    """The sweep page: self-contained; the plot and every point's grid drawn; the points
    table sorts by ``sort_by`` (numerically, empty cells last) and reverses on a second
    click."""
    with looking_at(root / "report.html", shot, "sweep-page") as (driver, seen):
        images = {i["name"]: i for i in seen.images}
        assert images["plot-sweep"]["natural"][0] >= 400, seen.images
        cards = [i for i in seen.images if i["name"].startswith("samples of ")]
        assert len(cards) == points, seen.images
        before = column_values(driver, "points-table", sort_by)
        click_header(driver, "points-table", sort_by)
        up = column_values(driver, "points-table", sort_by)
        click_header(driver, "points-table", sort_by)
        down = column_values(driver, "points-table", sort_by)
        numbers = [float(v) for v in before if v]
        assert [float(v) for v in up if v] == sorted(numbers), up
        assert [float(v) for v in down if v] == sorted(numbers, reverse=True), down
        assert up[len(numbers):] == down[len(numbers):] == [""] * (len(before) - len(numbers))
