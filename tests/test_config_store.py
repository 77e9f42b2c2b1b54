"""Run identity, hyperparameter overrides, atomic writes and the never-overwrite rule."""

from __future__ import annotations

import errno

import pandas as pd
import pytest

from robench.benchmark import store
from robench.benchmark.config import BUDGETS, RunConfig, get_budget, parse_hparam_overrides
from robench.errors import ConfigError, RunStateError
from robench.methods import get_method, resolve_hparams


def test_run_id_is_canonical_and_sensitive_to_every_field():
    a = RunConfig("s", "m", seed=0, hparams={"b": 1, "a": 2})
    b = RunConfig("s", "m", seed=0, hparams={"a": 2, "b": 1})
    assert a.run_id() == b.run_id()
    for other in (
        RunConfig("s", "m", seed=1, hparams={"a": 2, "b": 1}),
        RunConfig("s", "m", seed=0, hparams={"a": 3, "b": 1}),
        RunConfig("s", "m", seed=0, budget="paper", hparams={"a": 2, "b": 1}),
        RunConfig("s", "m", seed=0, hparams={"a": 2, "b": 1}, data={"fingerprint": "x"}),
        RunConfig("s", "m", seed=0, hparams={"a": 2, "b": 1}, budget_spec="changed"),
    ):
        assert other.run_id() != a.run_id()


def test_budget_fingerprint_follows_settings_not_wording():
    import dataclasses

    quick = BUDGETS["quick"]
    assert dataclasses.replace(quick, description="other words").fingerprint() == quick.fingerprint()
    assert dataclasses.replace(quick, lr_schedule="constant").fingerprint() != quick.fingerprint()
    # a setting added later changes the id only away from its default, so earlier run folders keep theirs
    assert {name: b.fingerprint() for name, b in BUDGETS.items()} == {
        "smoke": "7a660001b012", "quick": "ec04f914fec2", "ci": "01acf4aa9661", "paper": "855e18af94a3"}
    assert dataclasses.replace(quick, test_norm="none").fingerprint() != quick.fingerprint()


def test_a_budget_at_n_updates_keeps_its_resolution_and_schedule_over_n_updates():
    import dataclasses

    from robench.benchmark.config import budget_order, get_budget
    from robench.errors import ConfigError

    quick, longer = BUDGETS["quick"], get_budget("quick@4000")
    assert longer.name == "quick@4000" and longer.total_iterations(179) == 4000
    assert dataclasses.replace(longer, name="quick", iterations=1000, description=quick.description) == quick
    assert longer.lr_factor(0, 4000) == 1.0 and longer.lr_factor(3999, 4000) == 1 / quick.lr_multiplier
    paper = get_budget("paper@2000")  # epochs give way to the fixed count
    assert paper.epochs is None and paper.total_iterations(179) == 2000 and paper.crop == 192
    assert longer.fingerprint() != quick.fingerprint()
    assert get_budget("quick@1000") is quick  # the same training is the same run
    for bad in ("quick@", "quick@0", "quick@-5", "quick@1e3", "quick@007", "quick@²", "fast@100"):
        with pytest.raises(ConfigError, match="budget"):
            get_budget(bad)
    names = ["paper", "quick@8000", "smoke", "quick@2000", "paper@2000", "quick", "quick@500", "ci"]
    assert sorted(names, key=budget_order) == ["smoke", "quick@500", "quick", "quick@2000", "quick@8000", "paper@2000",
                                               "paper", "ci"]


def test_cosine_schedule_decays_from_the_multiplied_rate_to_the_methods_own():
    quick = BUDGETS["quick"]
    total = quick.iterations
    factors = [quick.lr_factor(i, total) for i in range(total)]
    assert factors[0] == 1.0 and abs(factors[-1] * quick.lr_multiplier - 1.0) < 1e-12
    assert all(a >= b for a, b in zip(factors, factors[1:]))
    assert BUDGETS["paper"].lr_factor(500, 1000) == 1.0


def test_budgets_keep_the_papers_field_of_view_and_network_divisibility():
    fov = {name: b.spacing_mm * b.crop for name, b in BUDGETS.items()}
    assert max(fov.values()) - min(fov.values()) < 1e-6
    assert all(b.crop % 16 == 0 and b.pad >= b.crop for b in BUDGETS.values())
    paper = get_budget("paper")
    assert paper.crop == 192 and paper.pad == 224 and paper.batch_size == 20 and paper.epochs == 600
    assert paper.total_iterations(190) == 600 * 19
    with pytest.raises(ConfigError, match="unknown budget"):
        get_budget("huge")


def test_hparam_overrides_are_typed_against_defaults():
    cls = get_method("standard")
    hp = resolve_hparams(cls, parse_hparam_overrides(["lr=0.001", "input_noise=0"]))
    assert hp["lr"] == 0.001 and isinstance(hp["input_noise"], float)
    with pytest.raises(ConfigError, match="no hyperparameter 'nope'"):
        resolve_hparams(cls, {"nope": "1"})
    with pytest.raises(ConfigError, match="expected a float"):
        resolve_hparams(cls, {"lr": "fast"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_hparam_overrides(["lr"])


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "records.parquet"
    target.write_bytes(b"finished")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        store.atomic_write(target, broken)
    assert target.read_bytes() == b"finished"
    assert [p.name for p in tmp_path.iterdir()] == ["records.parquet"]  # no temp file left behind


def test_disk_full_is_reported_with_what_to_do(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RunStateError, match="disk full.*--resume"):
        store.atomic_write(tmp_path / "x.json", full)


def test_finished_run_is_never_overwritten(tmp_path):
    folder = store.RunFolder(tmp_path / "run")
    records = pd.DataFrame({"dice": [0.5]})
    folder.finish(records, {"train_seconds": 1.0})
    assert folder.finished and folder.records()["dice"].tolist() == [0.5]
    with pytest.raises(RunStateError, match="already finished"):
        folder.finish(pd.DataFrame({"dice": [0.9]}), {})
    assert folder.records()["dice"].tolist() == [0.5]


def test_environment_records_versions():
    import torch

    env = store.environment(torch.device("cpu"))
    assert env["packages"]["torch"].startswith("2.") and env["robench"]
    assert env["device"] == "cpu"


def test_short_budgets_scale_the_learning_rate_and_paper_keeps_it():
    hp = {"lr": 1e-4, "input_noise": 0.05}
    assert get_budget("paper").effective_hparams(hp) == hp
    quick = get_budget("quick").effective_hparams(hp)
    assert quick["lr"] == 1e-4 * get_budget("quick").lr_multiplier and quick["input_noise"] == 0.05
    assert get_budget("quick").effective_hparams({"p": 1}) == {"p": 1}  # methods without lr are untouched


def test_trainer_applies_the_schedule_to_every_optimiser(tmp_path):
    from robench.benchmark.store import RunFolder
    from robench.benchmark.train import Trainer
    from tests.toys import build_method

    quick = BUDGETS["quick"]
    method = build_method("coop-latent", lr=1e-3)
    trainer = Trainer(method, quick, RunFolder(tmp_path), seed=0, progress=False)
    trainer.state.iteration = quick.iterations - 1
    trainer.set_learning_rate(quick.iterations)
    rates = {g["lr"] for o in method.optimisers().values() for g in o.param_groups}
    assert rates == {1e-3 / quick.lr_multiplier}
    trainer.state.iteration = 0
    trainer.set_learning_rate(quick.iterations)  # the schedule is a function of the iteration, not of past calls
    assert {g["lr"] for o in method.optimisers().values() for g in o.param_groups} == {1e-3}


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    from robench.benchmark.store import atomic_write

    mask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == 0o644  # not mkstemp's private 0600
