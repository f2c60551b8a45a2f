"""What a W&B offline run wrote, read back without the network: the records of its
``run-ID.wandb`` file (LevelDB's log format, as W&B writes it: a 7-byte file header, then
records in 32 KiB blocks, each with a 7-byte header and split across blocks when long),
decoded with W&B's own protobuf messages."""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, found, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:  # zero padding up to the next block
            pos += room
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            found.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            found.append(pending + chunk)
    return found


def read_run(folder: Path) -> dict:
    """An offline run folder's id, config and history rows ({step: {key: value}})."""
    from wandb.proto import wandb_internal_pb2 as pb

    [path] = folder.glob("run-*.wandb")
    run = {"id": "", "config": {}, "history": {}}
    for chunk in raw_records(path):
        record = pb.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"] = record.run.run_id
            run["config"].update({c.key: json.loads(c.value_json)
                                  for c in record.run.config.update})
        elif kind == "config":
            run["config"].update({c.key: json.loads(c.value_json)
                                  for c in record.config.update})
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                   for item in record.history.item}
            run["history"][row["_step"]] = row
    return run
