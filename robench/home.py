"""`$ROBENCH_HOME` (default ~/.cache/robench): the one place of robench's caches (generated data, frozen artefacts, digests)."""

from __future__ import annotations

import os
from pathlib import Path

from robench.errors import ConfigError


def robench_home() -> Path:
    raw = os.environ.get("ROBENCH_HOME", "~/.cache/robench")
    home = Path(raw).expanduser()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"ROBENCH_HOME={raw} is a file, not a folder; point ROBENCH_HOME at a folder (or unset it)")
    return home
