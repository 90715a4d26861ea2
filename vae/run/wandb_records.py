"""Read a W&B run file (wandb/*run-*/run-*.wandb) back: what a run logged, without the network.

Used by the sweep report for runs logged only to W&B offline, and by the tests.

The file is a 7-byte header (":W&B", a magic number, a version) followed by a LevelDB-style
log: 32 KiB blocks of records, each with a 7-byte header (crc32, length, type) and a
serialized wandb Record protobuf, split into FIRST/MIDDLE/LAST fragments across blocks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto.wandb_internal_pb2 import Record

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, payloads, pending = 7, [], b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # trailer padding at the end of a block
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if len(chunk) < length:  # a run still being written: stop at its last whole record
            break
        if kind == FULL:
            payloads.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            payloads.append(pending + chunk)
        elif kind == 0 and length == 0:  # zero padding to the end of the block
            pos += BLOCK - pos % BLOCK
    records = []
    for payload in payloads:
        try:
            records.append(Record.FromString(payload))
        except Exception:  # the last record of a run still being written may be incomplete
            break
    return records


def history(path: str | Path) -> list[dict[str, Any]]:
    """Every wandb.log call of the run, as {key: value}."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def config(path: str | Path) -> dict[str, Any]:
    """The run's config, {key: value}."""
    result: dict[str, Any] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                result[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return result
