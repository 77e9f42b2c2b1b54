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

__all__ = ["SUITES", "Case", "CaseRef", "SuiteData", "SuiteOptions", "TestSet", "get_suite", "parse_corruption_families", "register_suite"]
