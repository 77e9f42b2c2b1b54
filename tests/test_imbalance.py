"""The class-imbalance family (methods.md §6): each mechanism shown on tensors, every method trained on two suites."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from robench.benchmark.config import get_budget
from robench.benchmark.store import RunFolder
from robench.benchmark.suites import SuiteOptions, get_suite
from robench.benchmark.train import Trainer, TrainingSlices, ValidationSet
from robench.cli import app
from robench.errors import ConfigError
from robench.imageops import centre_crop, minmax_per_slice
from robench.methods import METHODS, Batch, get_method, resolve_hparams
from robench.methods.imbalance import ImbalanceMethod, parse_rare_classes
from robench.methods.imbalance_losses import (
    adversarial_normalise,
    focal_factors,
    margin_logits,
    mixup_target,
    rare_voxel_loss,
)
from robench.methods.nets import one_hot

FAMILY = ("margin", "asym-margin", "focal", "asym-focal", "adv", "asym-adv", "mixup", "asym-mixup", "asym-aug", "asym-combo")
P, CROP, C = 40, 32, 3  # background, a common class (1) and a rare one (2)


def make(name, seed=0, **overrides):
    cls = get_method(name)
    return cls({**cls.hparams, **overrides}, num_classes=C, device=torch.device("cpu"), seed=seed)


def scene(n=4) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded slices: a large class-1 square on all, a small class-2 blob on the even slices only."""
    labels = torch.zeros(n, P, P, dtype=torch.int64)
    labels[:, 8:30, 8:30] = 1
    labels[::2, 14:19, 14:19] = 2
    noise = torch.rand(n, P, P, generator=torch.Generator().manual_seed(0))
    return (labels.float() / 2 + 0.1 * noise)[:, None], labels


def batch_for(method, seed=0) -> Batch:
    images, labels = scene()
    aug_x, aug_y = method.augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(seed))
    return Batch(torch.cat([aug_x, centre_crop(images, CROP)]), torch.cat([aug_y, centre_crop(labels, CROP)]), len(images))


def test_the_registry_holds_all_ten_with_descriptions_references_and_hparams():
    assert set(FAMILY) <= set(METHODS)
    out = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "500"})
    assert out.exit_code == 0
    for name in FAMILY:
        cls = get_method(name)
        assert issubclass(cls, ImbalanceMethod) and "Class Imbalance" in cls.reference
        row = next(line for line in out.output.splitlines() if line.startswith(f"│ {name} "))
        assert cls.description in row and cls.reference in row
        for key, default in cls.hparams.items():
            value = resolve_hparams(cls, {key: str(default)})[key]
            assert value == default and type(value) is type(default), (name, key)
        assert ("rare_classes" in cls.hparams) == name.startswith("asym-")


# margin -------------------------------------------------------------------------------------------
def test_the_asymmetric_margin_lowers_only_the_true_logit_of_rare_class_voxels():
    method = make("asym-margin", rare_classes="2", margin=0.7)
    _, labels = scene()
    logits = torch.randn(len(labels), C, P, P, generator=torch.Generator().manual_seed(1))
    shifted = margin_logits(logits, one_hot(labels, C), method.margin_on, method.margin)
    drop = logits - shifted
    rare_voxels = labels == 2
    assert torch.allclose(drop[:, 2][rare_voxels], torch.tensor(0.7))
    assert drop[:, 2][~rare_voxels].abs().max() == 0  # class-2 logit elsewhere untouched
    assert drop[:, :2].abs().max() == 0  # background and the common class never shifted
    symmetric = margin_logits(logits, one_hot(labels, C), make("margin", margin=0.7).margin_on, 0.7) - logits
    assert torch.allclose(symmetric, -0.7 * one_hot(labels, C))  # symmetric: every true-class logit


# focal --------------------------------------------------------------------------------------------
def test_focal_factors_are_one_on_rare_classes_and_below_one_elsewhere():
    method = make("asym-focal", rare_classes="1")
    logits = torch.randn(2, C, 8, 8, generator=torch.Generator().manual_seed(2))
    factors = focal_factors(torch.softmax(logits, 1), method.focal_on, method.gamma)
    assert torch.equal(factors[:, 1], torch.ones_like(factors[:, 1]))
    assert (factors[:, [0, 2]] < 1).all()
    symmetric = focal_factors(torch.softmax(logits, 1), make("focal").focal_on, 4.0)
    assert (symmetric < 1).all()


def test_focal_weighting_of_the_dice_term_acts_on_false_negatives_of_common_classes_only():
    """Lowering every probability of the common class raises the Dice loss less under asym-focal than under
    the plain Dice (γ = 0), while the rare class's Dice loss is that of plain Dice."""
    _, labels = scene(2)
    logits = 3 * one_hot(labels, C) + torch.randn(2, C, P, P, generator=torch.Generator().manual_seed(3))
    focal, plain = make("asym-focal", rare_classes="2"), make("asym-focal", rare_classes="2", gamma=0.0)
    assert focal.regularised(logits, one_hot(labels, C))["seg_dice"] < plain.regularised(logits, one_hot(labels, C))["seg_dice"]
    only_rare = labels.clone()
    only_rare[only_rare == 1] = 0
    target = one_hot(only_rare, C)
    assert torch.allclose(focal.regularised(logits, target)["seg_dice"], plain.regularised(logits, target)["seg_dice"], atol=1e-4)


# adversarial --------------------------------------------------------------------------------------
def test_the_adversarial_direction_is_zero_outside_rare_voxels_and_raises_the_rare_loss_more_than_random():
    method = make("asym-adv", rare_classes="2", eps=1.0, eps_reference_voxels=0)
    for _ in range(3):  # BN running statistics away from their initial values
        method.update(batch_for(method))
    images, labels = scene()
    x, y = centre_crop(images, CROP), centre_crop(labels, CROP)
    r_adv = method.adversarial_perturbation(x, y)
    rare = (y == 2)[:, None]
    assert r_adv[~rare.expand_as(r_adv)].abs().max() == 0
    assert (r_adv.flatten(1).abs().sum(1) > 0)[::2].all()  # slices with the rare class are perturbed
    norms = r_adv.flatten(1).norm(dim=1)
    assert torch.allclose(norms[::2], method.radius(x).flatten()[::2], rtol=1e-3)  # ε·std per perturbed slice

    def rare_loss(inputs):
        method.eval()
        with torch.no_grad():
            return float(rare_voxel_loss(method.net.segment(inputs), one_hot(y, C), method.rare))

    base = rare_loss(x)
    gain = rare_loss(x + r_adv) - base
    generator = torch.Generator().manual_seed(4)
    for _ in range(5):  # random directions of the same norm on the same (rare) voxels
        noise = torch.randn(x.shape, generator=generator) * rare
        noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * norms.view(-1, 1, 1, 1)
        assert torch.allclose(noise.flatten(1).norm(dim=1), norms, atol=1e-6)
        assert gain > rare_loss(x + noise) - base
    assert gain > 0


def test_adversarial_normalisation_divides_by_the_signed_maximum_then_the_l2_norm():
    d = torch.tensor([[[[-4.0, 2.0]]], [[[1.0, 3.0]]]])
    out = adversarial_normalise(d.clone())
    expected = d / d.amax(dim=(1, 2, 3), keepdim=True)
    expected = expected / expected.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out.flatten(1).norm(dim=1), torch.ones(2), atol=1e-5)


# mixup --------------------------------------------------------------------------------------------
def test_asymmetric_mixup_never_gives_a_rare_voxel_a_common_label_and_drops_fractional_voxels():
    """A voxel rare in either image is rare in the mixed target whenever that image's weight exceeds the mixup
    margin μ, else dropped — never background or the common class; fractional voxels are dropped."""
    _, labels = scene()
    a, b = labels, labels.flip(0).roll(6, dims=-1)  # the rare blob of b lands elsewhere than a's
    rare, mu = parse_rare_classes("2", C), 0.2
    for lam in (0.05, 0.3, 0.6):
        target, keep = mixup_target(a, b, lam, C, rare=rare, mixup_margin=mu)
        assert set(target.sum(1).unique().tolist()) <= {0.0, 1.0}  # integral or dropped, never fractional
        assert torch.equal(keep, target.sum(1) == 1)
        either_rare = (a == 2) | (b == 2)
        assert (target[:, :2][either_rare[:, None].expand(-1, 2, -1, -1)] == 0).all()  # never a common label
        assert (target[:, 2][b == 2] == 1).all()  # B weighs 1 − λ ≥ μ: its rare voxels always survive
        assert bool((target[:, 2][a == 2] == 1).all()) == (lam > mu)  # A's only when λ > μ
        soft = lam * F.one_hot(a, C) + (1 - lam) * F.one_hot(b, C)
        differ = (a != b) & ~either_rare  # background against the common class: fractional, dropped
        assert not keep[differ].any()
        same = a == b
        assert torch.equal(target.permute(0, 2, 3, 1)[same], soft.float()[same].round())


def test_symmetric_mixup_keeps_the_soft_target_and_all_rare_asymmetric_drops_where_labels_differ():
    _, labels = scene()
    a, b = labels, labels.flip(0).roll(6, dims=-1)
    soft, keep_all = mixup_target(a, b, 0.3, C, rare=None, mixup_margin=0.0)
    assert keep_all.all() and torch.allclose(soft, (0.3 * one_hot(a, C) + 0.7 * one_hot(b, C)))
    every, keep = mixup_target(a, b, 0.3, C, rare=parse_rare_classes("all", C), mixup_margin=0.2)
    assert torch.equal(keep, a == b)
    assert torch.equal(every * keep[:, None], soft * keep[:, None])


# augmentation -------------------------------------------------------------------------------------
def test_with_p_bg_zero_background_centred_slices_are_never_augmented():
    images, labels = scene(8)  # even slices hold the rare class 2, odd ones do not
    method = make("asym-aug", rare_classes="2", p_bg=0.0)
    plain = minmax_per_slice(centre_crop(images, CROP))
    aug_x, aug_y = method.augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(0))
    standard_x, _ = get_method("standard")(get_method("standard").hparams, num_classes=C, device=torch.device("cpu"), seed=0).augment(
        images, labels, crop=CROP, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(aug_x[1::2], plain[1::2]) and torch.equal(aug_y[1::2], centre_crop(labels, CROP)[1::2])
    assert torch.equal(aug_x[::2], standard_x[::2])  # rare-class-centred slices always get the paper's augmentation
    always = make("asym-aug", rare_classes="2", p_bg=1.0).augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(always, standard_x)


# symmetric = asymmetric when the technique's mask covers every class ------------------------------
@pytest.mark.parametrize(
    "symmetric, asymmetric, rare",
    [("margin", "asym-margin", "all"), ("adv", "asym-adv", "all"), ("focal", "asym-focal", "none")],
)
def test_symmetric_and_asymmetric_variants_coincide_when_the_mask_covers_every_class(symmetric, asymmetric, rare):
    """For margin and adversarial training that is every class rare; focal down-weights the classes that are
    *not* rare, so its symmetric variant is the asymmetric one with no rare class (module docstring)."""
    a, b = make(symmetric, seed=3), make(asymmetric, seed=3, rare_classes=rare)
    for step in range(2):
        assert a.update(batch_for(a, seed=step)) == b.update(batch_for(b, seed=step))
    for (name, p), (_, q) in zip(a.net.named_parameters(), b.net.named_parameters()):
        assert torch.equal(p, q), name


def test_asymmetric_augmentation_with_every_class_rare_is_the_standard_augmentation():
    images, labels = scene(8)
    every = make("asym-aug", rare_classes="all", p_bg=0.0).augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(0))
    standard = get_method("standard")(get_method("standard").hparams, num_classes=C, device=torch.device("cpu"), seed=0)
    assert torch.equal(every[0], standard.augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(0))[0])


# steps per update ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, steps", [("asym-margin", 1), ("asym-focal", 1), ("asym-aug", 1), ("asym-adv", 2),
                                         ("asym-mixup", 2), ("adv", 2), ("mixup", 2), ("asym-combo", 3)])
def test_optimiser_steps_per_update(name, steps):
    method = make(name)
    out = method.update(batch_for(method))
    assert all(math.isfinite(float(v)) for v in out.values())
    adam = method.optimisers()["encoder"]
    assert {int(s["step"]) for s in adam.state.values()} == {steps}
    assert ("adv_total" in out) == (steps > 1 and "adv" in name or name == "asym-combo")


def test_the_loss_never_sees_the_margin_at_prediction_time():
    method = make("asym-margin", margin=5.0)
    images, _ = scene(2)
    method.eval()
    with torch.no_grad():
        assert torch.equal(method.predict(centre_crop(images, CROP)), method.net.segment(centre_crop(images, CROP)))


@pytest.mark.parametrize("text", ["3", "tumour", "1,,x", "-1"])
def test_bad_rare_classes_fail_at_construction_with_the_choices(text):
    with pytest.raises(ConfigError, match="rare_classes"):
        make("asym-margin", rare_classes=text)


@pytest.mark.parametrize("key, value", [("margin", -1.0), ("gamma", -2.0), ("p_bg", 1.5), ("mixup_margin", 1.0), ("eps", -1.0)])
def test_invalid_hyperparameters_fail_at_construction(key, value):
    with pytest.raises(ConfigError, match=key):
        make("asym-combo", **{key: value})


def test_same_seed_same_losses_for_the_combination():
    a, b = make("asym-combo", seed=5), make("asym-combo", seed=5)
    assert [a.update(batch_for(a, seed=i)) for i in range(2)] == [b.update(batch_for(b, seed=i)) for i in range(2)]


# every method trains at the smoke budget on lesion-synth and cardiac-synth --------------------------
@pytest.fixture(scope="module", params=["lesion-synth", "cardiac-synth"])
def suite_slices(request):
    """Training and validation slices of a suite at the smoke budget (training on its first 4 cases, to stay fast)."""
    suite = get_suite(request.param).build(SuiteOptions())
    budget = get_budget("smoke").on_geometry(suite.geometry)
    device = torch.device("cpu")
    data = TrainingSlices.from_cases(suite.train[:4], budget, device, all_slices=suite.training_slices == "all")
    return suite, budget, data, ValidationSet.from_cases(suite.val[:1], budget, device)


@pytest.mark.parametrize("name", FAMILY)
def test_each_trains_at_the_smoke_budget(name, suite_slices, tmp_path):
    suite, budget, data, val = suite_slices
    cls = get_method(name)
    method = cls(budget.effective_hparams(cls.hparams), num_classes=len(suite.classes) + 1, device=torch.device("cpu"), seed=0)
    before = [p.clone() for p in method.net.parameters()]
    state = Trainer(method, budget, RunFolder(tmp_path), seed=0, progress=False,
                    oversample_foreground=suite.oversample_foreground).run(data, val)
    assert state.iteration == budget.iterations and len(state.history) == budget.iterations
    assert all(math.isfinite(v) for row in state.history for v in row.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, method.net.parameters()))
    assert 0 <= state.best_score <= 1
