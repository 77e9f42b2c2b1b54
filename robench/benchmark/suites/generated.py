"""Generated data sets in the cache: written into a hidden temporary sibling, renamed into place when complete.

An interrupted generation never leaves a folder that looks finished, and a killed writer's
temporary folder (named with its host and pid) is removed by the next generation on that host.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Callable

from robench.benchmark.store import process_alive


def ensure_generated(base: Path, name: str, marker: str, write: Callable[[Path], None], *, family: str) -> Path:
    """`base/name`, calling `write(folder)` into a temporary folder first when `base/name/marker` is absent.

    `family` prefixes the names of every version of this data set (their abandoned temporaries are cleaned)."""
    target = base / name
    if (target / marker).is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    remove_abandoned(base, family)
    temporary = base / f".{name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(temporary)
        try:
            os.rename(temporary, target)
        except OSError:
            if not (target / marker).is_file():  # not a concurrent finisher: a real failure
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def remove_abandoned(base: Path, prefix: str) -> list[Path]:
    """Delete temporary folders `.<prefix>*.tmp-<host>-<pid>-…` of this host whose writer is gone."""
    removed = []
    host = socket.gethostname()
    for folder in base.glob(f".{prefix}*.tmp-*"):
        parts = folder.name.rsplit(".tmp-", 1)[1].rsplit("-", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit() or process_alive(host, int(parts[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
