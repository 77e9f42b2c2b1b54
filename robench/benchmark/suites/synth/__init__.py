"""`cardiac-synth`: the embedded synthetic cardiac suite (see docs/synthetic.md).

Why: the real cardiac data sets are gated downloads, so a fresh install has no data. This
package generates short-axis cine MR of four synthetic sites, site A in the ACDC layout and
sites B-D in the M&Ms layout, so the `cardiac` suite's own readers load it, and caches it.
"""

from robench.benchmark.suites.synth.figure import plot_synth_sites
from robench.benchmark.suites.synth.generate import ensure_cardiac_synth, generate_cardiac_synth
from robench.benchmark.suites.synth.parameters import (
    GENERATOR_VERSION,
    GROUP_PARAMETERS,
    SITE_PARAMETERS,
    GroupParameters,
    SiteParameters,
)

__all__ = [
    "GENERATOR_VERSION",
    "GROUP_PARAMETERS",
    "SITE_PARAMETERS",
    "GroupParameters",
    "SiteParameters",
    "ensure_cardiac_synth",
    "generate_cardiac_synth",
    "plot_synth_sites",
]
