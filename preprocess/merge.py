"""Merge step: check that all N shards are complete, then write one HDF5 view over them.

``faces.h5`` holds *virtual* datasets (HDF5 VDS) that map onto the shard files by relative
path, so nothing is copied and the folder can be moved as a whole. Beside it:
``faces.manifest.json`` (shards, counts, settings) and ``faces.report.json`` (every skipped
photo and why, summed over shards), plus ``sample_sheet.png``.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import h5py
import numpy as np

from jobs.core import facefile
from jobs.core.files import atomic_path, atomic_write_json
from jobs.core.grids import save_grid
from jobs.core.schema import PreprocessSpec
from preprocess.extract import package_versions, spec_hash
from preprocess.report import sum_reports
from preprocess.shards import ShardInfo, inspect_shard, report_path, shard_path

log = logging.getLogger(__name__)
MERGED_NAME = facefile.MERGED_NAME


class MissingShards(Exception):
    """Some shards are missing or invalid; ``indices`` are the array tasks to rerun."""

    def __init__(self, problems: dict[int, str], spec_source: str):
        self.indices = sorted(problems)
        listed = "\n".join(f"  shard {k}: {why}" for k, why in sorted(problems.items()))
        array = ",".join(map(str, self.indices))
        super().__init__(
            f"{len(problems)} shard(s) not ready:\n{listed}\nrerun only these tasks:\n"
            f"  sbatch --array={array} slurm/preprocess.sbatch {spec_source}\n"
            f"  or: python -m jobs run {spec_source} --index K  (for each K in {array})")


def check_shards(spec: PreprocessSpec, spec_source: str = "SPEC") -> list[ShardInfo]:
    expected = spec_hash(spec)
    infos, problems = [], {}
    for k in range(spec.num_shards):
        info = inspect_shard(shard_path(spec.output_dir, k, spec.num_shards), k,
                             spec.num_shards, expected)
        if isinstance(info, str):
            problems[k] = info
            continue
        rep = report_path(spec.output_dir, k, spec.num_shards)
        if not rep.exists() or json.loads(rep.read_text())["faces"] != info.num_faces:
            problems[k] = "report missing or does not match the shard"
            continue
        infos.append(info)
    if problems:
        raise MissingShards(problems, spec_source)
    return infos


def merge(spec: PreprocessSpec, spec_source: str = "SPEC") -> Path:
    """Write faces.h5 (virtual), its manifest and summed report; return faces.h5's path."""
    infos = check_shards(spec, spec_source)
    out_dir = Path(spec.output_dir)
    total = sum(i.num_faces for i in infos)
    if total == 0:
        raise RuntimeError("no faces in any shard: see the shard reports for why")
    merged = out_dir / MERGED_NAME
    first = infos[0].attrs
    with atomic_path(merged) as tmp:
        with facefile.open_h5(infos[0].path) as f0, facefile.open_h5(tmp, "w") as out:
            for name in f0:
                dset = f0[name]
                layout = h5py.VirtualLayout(shape=(total, *dset.shape[1:]), dtype=dset.dtype)
                start = 0
                for info in infos:
                    n = info.num_faces
                    if n:
                        layout[start:start + n] = h5py.VirtualSource(
                            info.path.name, name, shape=(n, *dset.shape[1:]))
                    start += n
                out.create_virtual_dataset(name, layout)
            for key in ("class_names", "attribute_names", "image_size", "layout", "spec",
                        "spec_hash", "input_dir"):
                out.attrs[key] = first[key]
            out.attrs["num_faces"] = total
            out.attrs["num_shards"] = len(infos)
            out.attrs["shards"] = [i.path.name for i in infos]
            facefile.stamp(out.attrs)
    reports = [json.loads(report_path(out_dir, k, spec.num_shards).read_text())
               for k in range(spec.num_shards)]
    summary = sum_reports(reports)
    atomic_write_json(out_dir / "faces.report.json", summary)
    atomic_write_json(out_dir / "faces.manifest.json", {
        "merged": MERGED_NAME, "num_faces": total, "image_size": int(first["image_size"]),
        "class_names": [str(c) for c in first["class_names"]],
        "label_counts": summary["label_counts"], "spec_hash": first["spec_hash"],
        "shards": [{"file": i.path.name, "faces": i.num_faces,
                    "bytes": i.path.stat().st_size} for i in infos],
        "photos": summary["photos"], "skipped_counts": summary["skipped_counts"],
        "converted_counts": summary["converted_counts"], "versions": package_versions(),
        "created": dt.datetime.now().isoformat(timespec="seconds")})
    if spec.sample_sheet:
        write_sample_sheet(merged, out_dir / "sample_sheet.png", spec.sample_sheet, spec.seed)
    log.info("merged %d shards: %d faces from %d photos -> %s (skipped: %s)", len(infos), total,
             summary["photos"], merged, ", ".join(f"{r}={n}" for r, n in
                                                  summary["skipped_counts"].items()) or "none")
    return merged


def write_sample_sheet(merged: Path, out: Path, count: int, seed: int) -> Path:
    """N random faces with their class names: look at the data before spending GPU hours."""
    with facefile.open_h5(merged) as f:
        facefile.check_readable(f, merged)
        n = len(f[facefile.LABELS])
        pick = np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
        images = f[facefile.IMAGES][pick]
        names = facefile.names(f, facefile.CLASS_NAMES)
        captions = [names[int(label)] for label in f[facefile.LABELS][pick]]
    # an unlabelled set has one class ("all" when no rule made any): nothing to caption
    return save_grid(out, images, captions if len(names) > 1 else None)
