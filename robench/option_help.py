"""Help texts of the options that `robench run` and `robench sweep` (and `robench corrupt`) share: one wording."""

CORRUPTIONS_HELP = ("Artefact test sets: acdc-c (the paper's four, both frames), acdc-c-es (the same of frame ES only, "
                    "as the public script: 60 per set on ACDC), graded (9 types × 5 severities), all (acdc-c,graded), "
                    "none, or a comma list.")
TEST_NORM_HELP = ("Evaluation slices: per-slice (min-max each, robench's default) or none (the volume's scaling only, as the "
                  "public tester's normalize_2D=False); another setting, another run.")
