"""The report pages (``jobs/core/run_page.py``, ``jobs/sweep_page.py``, ``jobs/report.py``)
built from run events made to order: what each page shows, that it names nothing outside
itself, that secrets stay masked, and that a page never costs a job. (The pages of real runs
in a real browser: tests/system/report_pages.py.)"""
from __future__ import annotations

import json
import logging
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from jobs import kinds
from jobs.cli import main as jobs_main
from jobs.core import events, exitcodes, pages
from jobs.core.grids import save_grid
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.run_page import job_rows, latest_by_epoch, write_run_page
from jobs.report import page_of_directory
from jobs.sweep import write_points
from jobs.sweep_page import write_sweep_page
from tests.conftest import ROOT, record_epoch

SECRET = "hunter2-do-not-show"


class Links(HTMLParser):
    """Every src and href of a page, and the ids of its images."""

    def __init__(self):
        super().__init__()
        self.urls, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag == "img":
            self.images.append(attrs.get("id") or attrs.get("alt"))


def parsed(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text())
    return links


def started(run_dir: Path, job: str, pid: int) -> None:
    spec = load_spec(ROOT / "jobs/examples/train_cgan_digits.yaml", parse_set_args(
        [f"env.WANDB_API_KEY={SECRET}", f"train.run_dir={run_dir}"]))
    line = events.make("job_started", job=job, kind="train", ranks=2, device="device: CPU",
                       link="0:0", restart=0, spec=spec.to_dict(env_values=False))
    with open(run_dir / events.EVENTS_NAME, "a") as f:
        f.write(json.dumps({**line, "pid": pid}) + "\n")


def samples(run_dir: Path, epochs: int) -> None:
    rng = np.random.default_rng(0)
    for epoch in range(1, epochs + 1):
        save_grid(run_dir / "samples" / f"epoch_{epoch:04d}.png",
                  rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8),
                  [str(i // 2) for i in range(20)], columns=2)


def a_run(run_dir: Path, epochs: int = 4) -> Path:
    """Job 1 trains 2 epochs, is stopped by a signal and exits 75; job 2 redoes epoch 2
    (killed after it: no outcome), and job 3 trains on, keeping a best snapshot."""
    run_dir.mkdir(parents=True)
    started(run_dir, "1", 100)
    record_epoch(run_dir, 1, {"kid": 0.02, "kid_std": 0.001, "recall": 0.1}, d_acc_real=0.9)
    record_epoch(run_dir, 2, {"kid": 0.5}, g=9.0)  # redone below: the later one is right
    events.emit(run_dir, "stop_signal", signal=10, epoch=2, step=56)
    line = events.make("outcome", job="1", kind="train", exit=75, meaning="requeue")
    with open(run_dir / events.EVENTS_NAME, "a") as f:
        f.write(json.dumps({**line, "pid": 100}) + "\n")
    started(run_dir, "1", 200)  # the requeued job, killed outright
    record_epoch(run_dir, 2, {"kid": 0.015, "recall": 0.2}, g=0.8)
    started(run_dir, "1", 300)
    for epoch in range(3, epochs + 1):
        record_epoch(run_dir, epoch, {"kid": 0.01 / epoch, "recall": 0.1 * epoch})
    events.emit(run_dir, "best", figure="kid", value=0.01 / epochs, epoch=epochs,
                step=28 * epochs, name=f"ckpt-{28 * epochs}")
    samples(run_dir, epochs)
    return run_dir


def test_an_epoch_redone_after_a_kill_counts_once_the_later_record_wins(tmp_path):
    story = events.read(a_run(tmp_path / "run"))
    done = latest_by_epoch(story, "epoch_done")
    assert [e["epoch"] for e in done] == [1, 2, 3, 4]
    assert done[1]["metrics"]["g"] == 0.8
    jobs = job_rows(story)
    assert [j["ended"] for j in jobs] == [
        "exit 75: requeue", "no outcome: still running, or killed outright",
        "no outcome: still running, or killed outright"]


def test_the_run_page_holds_everything_inline_and_no_secret(tmp_path):
    run_dir = a_run(tmp_path / "run")
    page = write_run_page(run_dir)
    text = page.read_text()
    links = parsed(page)
    assert all(u.startswith("data:image/") for u in links.urls), \
        [u[:40] for u in links.urls if not u.startswith("data:")]
    assert {"plot-losses", "plot-accuracy", "plot-quality", "best-grid"} <= set(links.images)
    assert [i for i in links.images if i.startswith("samples at epoch")] == [
        f"samples at epoch {k}" for k in range(1, 5)]
    assert SECRET not in text and "WANDB_API_KEY: &#39;***&#39;" in text
    assert "Epoch 4: kept by checkpoint.keep_best (kid), best/ckpt-112." in text
    assert "stop_signal" in text and "signal=10" in text  # the timeline
    assert not list(run_dir.glob(".report.html.tmp-*"))  # written atomically


def test_a_page_before_any_epoch_says_so_instead_of_failing(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    started(run_dir, "9", 1)
    text = write_run_page(run_dir).read_text()
    assert "no epoch finished yet" in text and "No sample grid yet." in text
    assert "No quality measured yet" in text


def test_the_strip_keeps_first_last_and_best_within_its_limit():
    items = list(range(100))
    chosen = pages.spread(items, 16, keep=[37])
    assert chosen[0] == 0 and chosen[-1] == 99 and 37 in chosen and len(chosen) <= 17
    assert chosen == sorted(chosen) and pages.spread(items[:5], 16) == items[:5]


def test_the_sweep_page_lists_every_point_with_its_values_and_plot(tmp_path):
    root = tmp_path / "sweep"
    spec = load_spec(ROOT / "jobs/examples/sweep_cgan_lr.yaml",
                     parse_set_args([f"sweep.run_root={root}"]))
    record = write_points(spec)
    names = [p["name"] for p in json.loads(record.read_text())["points"]]
    assert len(names) == 4
    for k, name in enumerate(names[:2]):  # two points trained, two not started
        (root / name).mkdir(parents=True)
        started(root / name, f"5_{k}", os.getpid())
        record_epoch(root / name, 1, {"kid": 0.02 + k})
        events.emit(root / name, "outcome", kind="train", exit=0, meaning="success")
        samples(root / name, 1)
    write_run_page(root / names[0])
    page = write_sweep_page(root)
    links = parsed(page)
    assert "plot-sweep" in links.images
    assert sorted(i for i in links.images if i.startswith("samples of ")) == sorted(
        f"samples of {n}" for n in names[:2])
    text = page.read_text()
    assert text.count("<tr><td") == 4
    assert text.count("<td>done</td>") == 2 and text.count("<td>not started</td>") == 2
    assert "train.optimizer.learning_rate" in text
    # the one page there is linked, relative to the sweep's (the folder can move)
    assert [u for u in links.urls if not u.startswith("data:")] == [
        names[0].replace(",", "%2C").replace("=", "%3D") + "/report.html"]
    assert page_of_directory(root) == page


def test_report_on_a_folder_with_no_record_exits_3_with_one_line(tmp_path, capsys):
    assert jobs_main(["report", str(tmp_path)]) == exitcodes.NOT_RUNNABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run directory" in err[0], err
    spec = ROOT / "jobs/examples/preprocess_faces.yaml"
    assert jobs_main(["report", str(spec)]) == exitcodes.NOT_RUNNABLE


def test_a_page_that_cannot_be_written_costs_a_warning_not_the_job(tmp_path, caplog):
    def broken():
        raise OSError(28, "No space left on device")

    with caplog.at_level(logging.WARNING):
        assert pages.write_quietly(broken, "somewhere") is None
    assert "report page not written: OSError" in caplog.text


def test_a_refused_sweep_leaves_no_run_root_and_no_page(tmp_path):
    """The runner writes the kind's page as a job ends, but a sweep refused by its checks
    (a misspelt grid key, exit 2) made no run_root, and gets none."""
    root = tmp_path / "sweep"
    spec = load_spec(ROOT / "jobs/examples/sweep_cgan_lr.yaml", parse_set_args(
        [f"sweep.run_root={root}", "sweep.grid={train.optimizer.learnin_rate: [1.0e-4]}"]))
    assert kinds.run(spec) == exitcodes.INVALID_SPEC
    assert not root.exists()
