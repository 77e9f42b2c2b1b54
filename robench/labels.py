"""The cardiac label convention used everywhere inside robench.

Arrays carry the ACDC file convention (0 background, 1 RV, 2 MYO, 3 LV); readers of other
layouts (M&Ms: 1 LV, 2 MYO, 3 RV) remap to it on load. Results always name classes, never
indices, because conventions differ between data sets and codebases.
"""

BACKGROUND = 0
CARDIAC_CLASSES: dict[str, int] = {"RV": 1, "MYO": 2, "LV": 3}
NUM_CARDIAC_CLASSES = 4  # including background
MNMS_TO_ACDC = {0: 0, 1: 3, 2: 2, 3: 1}  # M&Ms LV=1, MYO=2, RV=3 -> ACDC RV=1, MYO=2, LV=3
