"""Content fingerprints of the data a run reads, cached so a rerun does not rehash gigabytes.

Why contents and not names and sizes: an edited spacing in `info.csv`, or a volume rewritten
at the same size, changes every number of a run; a fingerprint that misses it would report
the old run as "already finished". Each file is hashed once (SHA-256) and the digest is
cached under `$ROBENCH_HOME/fingerprints.json` by path, size and modification time; a file
touched since is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from robench.benchmark.store import atomic_write
from robench.errors import DataError
from robench.home import robench_home

CACHE_NAME = "fingerprints.json"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the file and its permissions") from None
    return h.hexdigest()


class DigestCache:
    """path → (size, mtime_ns, sha256); a cache that cannot be read or written is only slower."""

    def __init__(self, path: Path | None = None):
        self.path = path if path is not None else robench_home() / CACHE_NAME
        self.entries: dict[str, list] = {}
        self.dirty = False
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self.entries = loaded
        except (OSError, ValueError):
            pass

    def digest(self, path: Path) -> str:
        key = str(path.resolve())
        try:
            stat = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror}); check the data root") from None
        cached = self.entries.get(key)
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(cached[2])
        value = file_digest(path)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if not self.dirty:
            return
        self.entries = {k: v for k, v in self.entries.items() if Path(k).exists()}  # forget deleted files
        data = json.dumps(self.entries, sort_keys=True).encode()
        try:
            atomic_write(self.path, lambda f: f.write(data))
        except Exception:  # noqa: BLE001 - a read-only home only costs rehashing next time
            pass
        self.dirty = False


def fingerprint_files(paths: Iterable[Path], root: Path, cache: DigestCache | None = None) -> str:
    """Identity of a set of files by their contents and their names relative to `root` (not where it lives)."""
    cache = cache or DigestCache()
    h = hashlib.sha256()
    for path in sorted(set(paths)):
        h.update(f"{path.relative_to(root)}:{cache.digest(path)};".encode())
    cache.save()
    return h.hexdigest()[:16]
