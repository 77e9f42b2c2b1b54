"""`python -m robench`: the same command line as `robench` (used to restart under pinned numerics)."""

from robench.cli import app

app(prog_name="robench")
