"""Artefact test sets: ACDC-C as published and graded MR corruptions, frozen per case.

- `artefact_test_sets(intra, seed=, families=, cache_dir=)`: lazy test sets for a suite.
- `materialise(test_sets, out)`: NIfTI + parameter files, byte-identical per seed.
- `CORRUPTIONS`, `get_corruption`, `apply_corruption`: the graded registry (9 types × 5 severities).
- `ACDC_C_SETS`: RandBias, RandGhosting, RandMotion, RandSpike.

See docs/corruptions.md for the recipes, the calibration and the mCE formula.
"""

from robench.corruptions.acdc_c import ACDC_C_SETS
from robench.corruptions.graded import (
    CORRUPTIONS,
    SEVERITIES,
    GradedCorruption,
    apply_corruption,
    get_corruption,
    graded_parameters,
)
from robench.corruptions.materialise import materialise
from robench.corruptions.recipe import FAMILIES, Recipe
from robench.corruptions.testsets import artefact_test_sets, default_cache_dir

__all__ = [
    "ACDC_C_SETS", "CORRUPTIONS", "FAMILIES", "SEVERITIES", "GradedCorruption", "Recipe", "apply_corruption",
    "artefact_test_sets", "default_cache_dir", "get_corruption", "graded_parameters", "materialise",
]
