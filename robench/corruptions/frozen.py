"""Frozen per-case corruption parameters: derived seeds, source hashes, parameter files.

ImageNet-C pre-renders its corrupted images so every model sees the same ones; ROOD-MRI
regenerates them unseeded. Here the *parameters* are what is frozen: each corrupted copy
gets a seed derived from (corruption seed, stream, case, copy), the draw is written once as
JSON, and every later use replays that file through a deterministic transform. A file
remembers the sha256 of the volume it was drawn for, so a changed source is an error,
never a silent reuse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from robench.benchmark.store import write_json
from robench.benchmark.suites.base import Case
from robench.errors import ConfigError, DataError

FORMAT_VERSION = 1


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed from a base seed and names, stable across processes and platforms.

    Python's `hash()` of a string changes between interpreter runs, so names enter
    numpy's SeedSequence through sha256 words instead.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"corruption seed must be a non-negative integer, got {seed!r}")
    words = []
    for key in keys:
        digest = hashlib.sha256(str(key).encode()).digest()
        words.extend(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    state = np.random.SeedSequence([int(seed), *words]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def source_sha256(case: Case) -> str:
    """Hash of everything that determines a corrupted copy: image and label bytes, shapes, dtypes, spacing."""
    h = hashlib.sha256(b"robench-source-v1")
    for name, array in (("image", case.image), ("label", case.label)):
        if array is None:
            h.update(f"{name}:none;".encode())
            continue
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(array.tobytes())
    h.update(f"spacing:{[float(s) for s in case.spacing]};".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Header:
    """What a parameter file must agree on before its parameters may be replayed."""

    set_name: str
    family: str
    corruption: str
    severity: int
    copy: int
    case_id: str
    seed: int
    recipe: Mapping[str, Any]  # the distribution the parameters were drawn from

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION, "set": self.set_name, "family": self.family, "corruption": self.corruption,
            "severity": self.severity, "copy": self.copy, "case_id": self.case_id, "seed": self.seed,
            "recipe": _plain(self.recipe),
        }


def frozen_parameters(
    path: Path | None, header: Header, source_digest: str, draw: Callable[[int], dict[str, Any]]
) -> dict[str, Any]:
    """The parameter record of one copy: replayed from `path` when it exists, else drawn and written.

    The record returned is always the JSON round trip of what is on disk, so a first use and
    every replay feed the transform exactly the same numbers. `path=None` draws without a cache.
    """
    if path is not None and path.is_file():
        return _verified(path, header, source_digest)
    record = {**header.as_dict(), "source_sha256": source_digest, "parameters": _plain(draw(header.seed))}
    if path is not None:
        write_json(path, record)
    return json.loads(json.dumps(record, sort_keys=True))


def _verified(path: Path, header: Header, source_digest: str) -> dict[str, Any]:
    redo = f"delete {path} (or its folder) to re-sample"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable corruption parameter file ({exc}); {redo}") from None
    expected = header.as_dict()
    wrong = [key for key, value in expected.items() if record.get(key) != value]
    if wrong:
        found = ", ".join(f"{k}={record.get(k)!r} (expected {expected[k]!r})" for k in wrong)
        raise DataError(f"{path}: frozen parameters belong to another recipe or seed: {found}; {redo}")
    if record.get("source_sha256") != source_digest:
        raise DataError(
            f"{path}: frozen parameters were drawn for a different source volume of {header.case_id} "
            f"(sha256 {str(record.get('source_sha256'))[:12]}… on file, {source_digest[:12]}… now); the data "
            f"changed since they were sampled. Restore the original data, or {redo}"
        )
    if "parameters" not in record:
        raise DataError(f"{path}: no 'parameters' entry; {redo}")
    return record


def _plain(value: Any) -> Any:
    """Numpy/torch scalars and arrays → JSON types (float32 values survive the float64 round trip exactly)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return value
