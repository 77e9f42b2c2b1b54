"""Suite registry. Importing this package registers every built-in suite."""

from robench.benchmark.suites.base import (
    SUITES,
    Case,
    CaseRef,
    SuiteData,
    SuiteOptions,
    TestSet,
    get_suite,
    parse_corruption_families,
    register_suite,
)
from robench.benchmark.suites import cardiac as _cardiac  # noqa: F401  (registers suites)
from robench.benchmark.suites import nnunet as _nnunet  # noqa: F401
from robench.benchmark.suites import brain_lgg as _brain_lgg  # noqa: F401
from robench.benchmark.suites import lesion_synth as _lesion_synth  # noqa: F401

__all__ = ["SUITES", "Case", "CaseRef", "SuiteData", "SuiteOptions", "TestSet", "get_suite", "parse_corruption_families", "register_suite"]
