"""RunConfig and budgets. A run is identified by the hash of its canonical config.

Budgets trade resolution and iterations for time while keeping the field of view of the
paper's protocol: `quick` and `smoke` resample in-plane to 2× and 4× the paper's spacing
and crop 96² and 48², which cover the same 262 mm as the paper's 192² at 1.367 mm.
Because they also run a small fraction of the paper's ~11k updates, they multiply every
method's learning rate by `lr_multiplier` (recorded in the run's config); `paper` uses the
methods' learning rates unchanged. `quick` also decays the learning rate on a cosine from
×`lr_multiplier` back to the method's own rate over the run (`lr_schedule`), so the last
updates take the small steps of the paper's setting; the schedule is a pure function of
the iteration, so resumed runs follow it exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from robench.errors import ConfigError

PAPER_SPACING_MM = 1.36719
PAPER_CROP = 192
MIN_CROP = 48  # the smallest network input a budget gets (4 poolings of the U-Net leave 3²)


@dataclass(frozen=True)
class Geometry:
    """A suite's grid at the `paper` budget: in-plane spacing and network input size.

    The cardiac suites use the paper's (1.367 mm, 192²); other data sets declare theirs (from
    their median spacing and extent), and each budget scales it as it scales the cardiac one.
    """

    spacing_mm: float
    crop: int

    @classmethod
    def covering(cls, spacing_mm: float, extent_px: float) -> "Geometry":
        """The spacing given, and the smallest multiple of 16 that covers `extent_px` pixels of it."""
        return cls(float(spacing_mm), max(MIN_CROP, 16 * math.ceil(extent_px / 16)))


CARDIAC_GEOMETRY = Geometry(PAPER_SPACING_MM, PAPER_CROP)


@dataclass(frozen=True)
class Budget:
    """How much compute a run gets and at what resolution it trains and predicts."""

    name: str
    spacing_mm: float  # in-plane target spacing after resampling
    pad: int  # slices are padded/cropped to pad² before augmentation
    crop: int  # network input size (training crop, test-time crop)
    batch_size: int  # half augmented, half the same slices un-augmented (methods.md §1 step 1)
    epochs: int | None  # paper: epochs over the labelled training slices
    iterations: int | None  # quick/smoke: a fixed number of updates
    val_every: int | None  # iterations between validations (None: once per epoch)
    checkpoint_every: int  # iterations between resumable checkpoints
    lr_multiplier: float  # applied to a method's `lr` hyperparameter (short budgets need larger steps)
    description: str
    lr_schedule: str = "constant"  # "constant" | "cosine" (from ×lr_multiplier down to ×1 at the last update)
    # artefact sets evaluated on the copies of the first N source volumes only (None: all); smoke's
    # 12 updates would otherwise spend minutes corrupting 480 ACDC-C copies
    artefact_sources: int | None = None
    # how evaluation slices (validation and test) are scaled: "per-slice" min-max to [0, 1] (robench's
    # default, protocol.md §2) or "none" (the volume's percentile normalisation only, as the public
    # tester's normalize_2D=False); the network trains on both kinds of slice either way
    test_norm: str = "per-slice"

    def on_geometry(self, geometry: Geometry | None) -> "Budget":
        """This budget on a suite's grid: the field of view of `geometry`, its resolution divided as
        this budget divides the paper's (quick: half, smoke: a quarter), never below MIN_CROP."""
        if geometry is None or geometry == CARDIAC_GEOMETRY:
            return self
        crop = max(MIN_CROP, 16 * round(geometry.crop * self.crop / PAPER_CROP / 16))
        pad = 8 * round(crop * self.pad / self.crop / 8)
        return replace(self, spacing_mm=geometry.spacing_mm * geometry.crop / crop, crop=crop, pad=pad)

    def lr_factor(self, iteration: int, total: int) -> float:
        """Multiplier on the (already ×lr_multiplier) learning rate for update number `iteration` (0-based)."""
        if self.lr_schedule == "constant" or total <= 1:
            return 1.0
        if self.lr_schedule != "cosine":
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; use constant or cosine")
        floor = 1.0 / self.lr_multiplier
        progress = min(iteration, total - 1) / (total - 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def fingerprint(self) -> str:
        """Identity of everything but the description: a run trained under changed settings is another run.
        Fields added later stay out at their default, so the runs made before them keep their ids."""
        spec = {k: v for k, v in asdict(self).items()
                if k != "description" and not (k in _LATER_BUDGET_FIELDS and v == _LATER_BUDGET_FIELDS[k])}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def effective_hparams(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters a method trains with under this budget: every learning rate (`lr`, `*_lr`) scaled."""
        return {k: v * self.lr_multiplier if k == "lr" or k.endswith("_lr") else v for k, v in hparams.items()}

    def total_iterations(self, n_train_slices: int) -> int:
        if self.iterations is not None:
            return self.iterations
        assert self.epochs is not None
        return self.epochs * self.iterations_per_epoch(n_train_slices)

    def iterations_per_epoch(self, n_train_slices: int) -> int:
        per_step = self.batch_size // 2
        return max(1, -(-n_train_slices // per_step))

    def validation_interval(self, n_train_slices: int) -> int:
        return self.val_every or self.iterations_per_epoch(n_train_slices)


TEST_NORMS = ("per-slice", "none")
_LATER_BUDGET_FIELDS = {"test_norm": "per-slice"}


def check_test_norm(value: str) -> str:
    if value not in TEST_NORMS:
        raise ConfigError(f"--test-norm {value!r} is unknown; use per-slice (robench's default) or none (the public tester's)")
    return value


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget(
            "smoke", PAPER_SPACING_MM * 4, 56, 48, 4, None, 12, 6, 6, 10.0,
            "seconds: 12 updates at 5.47 mm / 48², artefact sets on 2 source volumes, for tests only",
            artefact_sources=2,
        ),
        Budget(
            "quick", PAPER_SPACING_MM * 2, 112, 96, 10, None, 1000, 100, 50, 10.0,
            "minutes on 2 CPU cores: 1000 updates of 5+5 slices at 2.73 mm / 96², learning rate ×10 cosine-decayed to ×1",
            "cosine",
        ),
        Budget(
            "ci", PAPER_SPACING_MM * 2, 112, 96, 10, None, 300, 50, 50, 10.0,
            "a Dice regression far from chance in minutes: 300 quick-resolution updates, learning rate ×10 cosine-decayed to ×1",
            "cosine",
        ),
        Budget(
            "paper", PAPER_SPACING_MM, 224, 192, 20, 600, None, None, 200, 1.0,
            "the protocol: 600 epochs of 10+10 slices at 1.367 mm / 192² (GPU)",
        ),
    )
}


def get_budget(name: str) -> Budget:
    """A named budget, or `<name>@N`: that budget's resolution, batch and schedule over N updates
    (quick@4000 is quick four times as long), for measuring how far a budget is from the paper.
    `quick@1000` is `quick` itself: the same training is the same run."""
    base_name, at, count = name.partition("@")
    try:
        base = BUDGETS[base_name]
    except KeyError:
        raise ConfigError(f"unknown budget {name!r}; choose one of {', '.join(BUDGETS)}, or NAME@UPDATES (quick@4000)") from None
    if not at:
        return base
    if not (count.isascii() and count.isdecimal()) or int(count) < 1 or str(int(count)) != count:
        raise ConfigError(f"budget {name!r}: the number of updates after @ must be a positive integer, as in quick@4000")
    updates = int(count)
    if updates == base.iterations:
        return base
    return replace(base, name=name, epochs=None, iterations=updates,
                   description=f"the resolution, batch and learning-rate schedule of {base.name}, over {updates} updates")


def budget_order(name: str) -> tuple:
    """Sort key of budget names: by base (smoke, quick, paper, then others by name), then by updates
    (quick@500, quick, quick@2000, …; a base that counts epochs, such as paper, after its @N variants)."""
    base, _, count = name.partition("@")
    known = BUDGET_ORDER.index(base) if base in BUDGET_ORDER else len(BUDGET_ORDER)
    if count.isascii() and count.isdecimal():
        updates: float = int(count)
    else:
        own = BUDGETS[base].iterations if base in BUDGETS else None
        updates = own if own is not None else math.inf
    return (known, base, updates, name)


BUDGET_ORDER = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers. Its hash names the run folder."""

    suite: str
    method: str
    seed: int = 0
    cval: int = 0
    budget: str = "quick"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, str] = field(default_factory=dict)  # data fingerprints, not paths
    budget_spec: str = ""  # Budget.fingerprint(): resolution, iterations, lr schedule of the budget named
    hd95_variant: str = "max_directed"  # the records' HD95 definition: another variant is another result
    precision: str = "fp32"  # fp32 | bf16 autocast (robench.precision): other floats, another run
    memory_format: str = "contiguous"  # contiguous | channels_last networks: other kernels, other floats
    train_fraction: float = 1.0  # nested subset of the training pool (suites.base.nested_subset)
    oversample_foreground: float | None = None  # share of each batch forced to hold the rarest class; None: the suite's

    def canonical(self) -> dict[str, Any]:
        d = asdict(self)
        for name, default in _LATER_FIELDS.items():  # fields added after runs existed: at their default
            if d[name] == default:  # they stay out of the id, so those runs keep their folders
                del d[name]
        d["hparams"] = dict(sorted(self.hparams.items()))
        d["data"] = dict(sorted(self.data.items()))
        return d

    def run_id(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_LATER_FIELDS = {"train_fraction": 1.0, "oversample_foreground": None}


def parse_hparam_overrides(items: list[str] | None) -> dict[str, str]:
    """`key=value` strings → dict (values are typed later against the method's defaults)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--hparam expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
