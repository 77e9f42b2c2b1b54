"""Every baseline of the robustness benchmark: trains, is deterministic, is listed, and runs end to end."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from robench.benchmark.runner import RunRequest, execute
from robench.benchmark.suites import SuiteOptions
from robench.cli import app
from robench.errors import ConfigError
from robench.imageops import centre_crop
from robench.methods import METHODS, Batch, get_method, resolve_hparams

BASELINES = ("rand-conv", "adv-noise", "adv-bias", "rand-mwm", "no-aug", "heuristic", "rand-augment")
P, CROP = 40, 32


def make(name, seed=0):
    cls = get_method(name)
    return cls(cls.hparams, num_classes=4, device=torch.device("cpu"), seed=seed)


def batch_for(method, seed=0, n=2) -> Batch:
    """A batch as the trainer builds it: the method's augmentation of n padded slices + their centre crops."""
    labels = torch.zeros(n, P, P, dtype=torch.int64)
    labels[:, 12:28, 12:28] = 2
    labels[:, 16:24, 16:24] = 3
    labels[:, 14:26, 6:11] = 1
    images = (labels.float() / 3 + 0.05 * torch.rand(n, P, P, generator=torch.Generator().manual_seed(0)))[:, None]
    aug_x, aug_y = method.augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(seed))
    return Batch(torch.cat([aug_x, centre_crop(images, CROP)]), torch.cat([aug_y, centre_crop(labels, CROP)]), n)


@pytest.mark.parametrize("name", BASELINES)
def test_update_returns_finite_losses_and_changes_every_subnetwork(name):
    method = make(name)
    before = {k: v.clone() for k, v in method.net.named_parameters()}
    out = {k: float(v) for k, v in method.update(batch_for(method)).items()}  # detached 0-d tensors
    assert "total" in out and all(math.isfinite(v) for v in out.values()), out
    assert out["total"] == pytest.approx(sum(v for k, v in out.items() if k != "total"), rel=1e-5)
    for sub in ("encoder", "decoupler", "image_decoder", "seg_decoder", "stn"):
        moved = [not torch.equal(before[k], v) for k, v in method.net.named_parameters() if k.startswith(sub + ".")]
        assert any(moved), sub


@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_same_losses(name):
    a, b, c = make(name, seed=5), make(name, seed=5), make(name, seed=6)
    losses_a = [a.update(batch_for(a, seed=i)) for i in range(2)]
    losses_b = [b.update(batch_for(b, seed=i)) for i in range(2)]
    assert losses_a == losses_b
    assert c.update(batch_for(c, seed=0)) != losses_a[0]


@pytest.mark.parametrize("name", BASELINES)
def test_listed_with_description_reference_and_overridable_hparams(name):
    cls = get_method(name)
    assert cls.name == name and len(cls.description) > 20 and len(cls.reference) > 20
    out = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "400"})
    assert out.exit_code == 0
    row = next(line for line in out.output.splitlines() if f" {name} " in line)
    assert cls.description in row and cls.reference in row
    # every declared hyperparameter can be overridden from a string, with its default's type
    for key, default in cls.hparams.items():
        value = resolve_hparams(cls, {key: str(default)})[key]
        assert value == default and type(value) is type(default), key
    with pytest.raises(ConfigError):
        resolve_hparams(cls, {"no_such_hparam": "1"})


@pytest.mark.parametrize("name", BASELINES)
def test_smoke_run_through_the_runner(name, tiny_acdc, tmp_path):
    result = execute(
        RunRequest(suite="cardiac", method=name, budget="smoke", out=tmp_path,
                   options=SuiteOptions(data_root=tiny_acdc, cval=0), progress=False),
        log=lambda m: None,
    )
    records = result.records
    assert set(records["mode"]) == {"ftn", "ftn+stn"}
    assert len(records) == 20 * 2 * 2 * 3  # test subjects × frames × modes × classes
    assert records["dice"].between(0, 1).all()
    assert result.folder.done()["iterations"] == 12


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("adv-bias", "eps", 1.0),
        ("adv-noise", "power_iterations", -1),
        ("rand-conv", "views", 0),
        ("rand-mwm", "loss", "dice"),
        ("rand-mwm", "inpaint_prob", 1.5),
        ("rand-augment", "num_ops", 99),
        ("rand-augment", "magnitude", 0),
    ],
)
def test_invalid_hyperparameters_fail_at_construction(name, key, value):
    cls = get_method(name)
    with pytest.raises(ConfigError, match=key):
        cls({**cls.hparams, key: value}, num_classes=4, device=torch.device("cpu"), seed=0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_either_trains_on_two_channels_or_refuses_them_clearly(name):
    """Multi-channel suites (FLAIR + T1c, …): the image channels reach the network as input channels."""
    cls = get_method(name)
    if not cls.multichannel:
        with pytest.raises(ConfigError, match="single-channel images only"):
            cls(cls.hparams, num_classes=4, device=torch.device("cpu"), seed=0, in_channels=2)
        return
    method = cls(cls.hparams, num_classes=4, device=torch.device("cpu"), seed=0, in_channels=2)
    labels = torch.zeros(2, P, P, dtype=torch.int64)
    labels[:, 12:28, 12:28] = 2
    second = torch.rand(2, 1, P, P, generator=torch.Generator().manual_seed(1))
    images = torch.cat([labels.float()[:, None] / 3, second], 1)  # channel 0 carries the anatomy, channel 1 noise
    aug_x, aug_y = method.augment(images, labels, crop=CROP, generator=torch.Generator().manual_seed(0))
    assert aug_x.shape == (2, 2, CROP, CROP)
    losses = method.update(Batch(torch.cat([aug_x, centre_crop(images, CROP)]), torch.cat([aug_y, centre_crop(labels, CROP)]), 2))
    assert all(math.isfinite(float(v)) for v in losses.values())
    method.eval()
    with torch.no_grad():
        for mode in method.prediction_modes:
            assert method.predict(centre_crop(images, CROP), mode).shape == (2, 4, CROP, CROP)
