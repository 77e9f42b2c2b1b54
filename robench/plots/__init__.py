"""Figures from records and runs: Dice against corruption severity, Dice per site, hard examples.

Records figures are pure functions of the records (their numbers come from `aggregate`,
which follows the leaderboard's rules); every figure is written as PNG and PDF, atomically,
in one style with a fixed colour per method. Names are imported on first use, so the
`robench` command line, which imports `robench.plots.cli`, starts without matplotlib or torch.
"""

from importlib import import_module

_EXPORTS = {
    "plot_severity": "robench.plots.severity",
    "plot_sites": "robench.plots.sites",
    "plot_hard_examples": "robench.plots.hard_examples",
    "severity_curves": "robench.plots.aggregate",
    "site_scores": "robench.plots.aggregate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
