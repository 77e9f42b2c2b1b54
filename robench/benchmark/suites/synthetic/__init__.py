"""cardiac-synth: the embedded synthetic cardiac suite (see docs/synthetic.md)."""

from robench.benchmark.suites.synthetic.generate import (
    GENERATOR_VERSION,
    ensure_cardiac_synth,
    generate_cardiac_synth,
)
from robench.benchmark.suites.synthetic.imaging import SITES as SITE_PARAMETERS

__all__ = ["GENERATOR_VERSION", "SITE_PARAMETERS", "ensure_cardiac_synth", "generate_cardiac_synth"]
