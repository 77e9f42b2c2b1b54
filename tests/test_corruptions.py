"""Artefact test sets: frozen parameters replay bit for bit, sources are verified, the grid is the paper's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchio as tio

from robench.benchmark.config import PAPER_SPACING_MM
from robench.benchmark.preprocess import prepare
from robench.benchmark.suites import base
from robench.benchmark.suites.base import Case, CaseRef
from robench.corruptions import ACDC_C_SETS, CORRUPTIONS, apply_corruption, artefact_test_sets, get_corruption, graded_parameters
from robench.corruptions.frozen import derive_seed
from robench.errors import ConfigError, DataError

SPACING = (8.0, 1.5, 1.5)


def toy_heart(rng: np.random.Generator, shape=(3, 40, 40), radius: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) image and ACDC-convention label: LV disc (3) in a MYO ring (2), RV blob (1) beside it."""
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-2, 2)
    ring = np.hypot(yy - cy, xx - cx)
    label = np.zeros((h, w), np.int16)
    label[ring < radius + 3] = 2
    label[ring < radius] = 3
    label[(np.hypot(yy - cy, xx - (cx - radius - 7)) < 3.5) & (label == 0)] = 1
    label = np.repeat(label[None], z, 0)
    image = rng.normal(0.2, 0.02, shape).astype(np.float32) + np.array([0.0, 0.6, 0.2, 0.7], np.float32)[label]
    return image, label


def _sources(n: int = 2, shape=(3, 40, 40)) -> dict[str, Case]:
    rng = np.random.default_rng(0)
    cases = {}
    for i in range(n):
        image, label = toy_heart(rng, shape=shape)
        cid = f"patient{i + 7:03d}_ED"
        cases[cid] = Case(cid, image, label, SPACING, {"subject": cid[:10], "frame": "ED", "site": "toy", "vendor": "T"})
    return cases


def _intra(sources: dict[str, Case]) -> base.TestSet:
    """Loaders read `sources` at load time, so a test can change a source after the first use."""
    refs = tuple(CaseRef(cid, lambda cid=cid: sources[cid], dict(sources[cid].meta)) for cid in sources)
    return base.TestSet("Toy", "intra", refs)


def _by_name(sets):
    return {s.name: s for s in sets}


def test_acdc_c_sets_three_copies_each_with_the_papers_names_and_meta(tmp_path):
    sets = artefact_test_sets(_intra(_sources()), cache_dir=tmp_path)
    assert [s.name for s in sets] == list(ACDC_C_SETS) == ["RandBias", "RandGhosting", "RandMotion", "RandSpike"]
    for s in sets:
        assert s.kind == "artefact" and s.meta["family"] == "acdc-c" and s.meta["severity"] == 0
        assert [r.case_id for r in s.cases][:3] == ["patient007_ED_copy1", "patient007_ED_copy2", "patient007_ED_copy3"]
        assert len(s.cases) == 6
    assert not any(tmp_path.rglob("*.json")), "building the sets must not touch any case"


def _both_frames(n: int = 2) -> dict[str, Case]:
    """ED and ES of `n` toy subjects (the ES frame a different draw of the same heart)."""
    out = {}
    for frame, cases in (("ED", _sources(n)), ("ES", _sources(n, shape=(3, 40, 40)))):
        for cid, case in cases.items():
            es_id = cid.replace("_ED", f"_{frame}")
            image = case.image if frame == "ED" else case.image[:, ::-1].copy()
            out[es_id] = Case(es_id, image, case.label if frame == "ED" else case.label[:, ::-1].copy(), case.spacing,
                              {**case.meta, "frame": frame})
    return out


def test_es_family_corrupts_only_the_es_frames_with_the_very_copies_of_the_both_frames_sets(tmp_path):
    intra = _intra(_both_frames())
    both = _by_name(artefact_test_sets(intra, families=("acdc-c",), cache_dir=tmp_path / "both"))
    es = _by_name(artefact_test_sets(intra, families=("acdc-c-es",), cache_dir=tmp_path / "es"))
    assert list(es) == ["RandBias-ES", "RandGhosting-ES", "RandMotion-ES", "RandSpike-ES"]
    for name in ACDC_C_SETS:
        es_set, both_set = es[f"{name}-ES"], both[name]
        assert es_set.meta["family"] == "acdc-c-es" and es_set.meta["frames"] == ["ES"]
        assert len(es_set.cases) == 2 * 3 and len(both_set.cases) == 4 * 3  # ES only: half the volumes
        assert all(r.meta["frame"] == "ES" for r in es_set.cases)
        twins = {r.case_id: r for r in both_set.cases}
        for ref in es_set.cases[:4]:  # the ES copy here is the ES copy there, pixel for pixel
            a, b = ref.load(), twins[ref.case_id].load()
            assert a.image.tobytes() == b.image.tobytes()
            assert a.meta["family"] == "acdc-c-es" and b.meta["family"] == "acdc-c"


def test_es_family_on_a_suite_without_frames_says_to_use_acdc_c(tmp_path):
    sources = {cid: Case(cid, c.image, c.label, c.spacing, {"site": "toy"}) for cid, c in _sources().items()}
    intra = base.TestSet("Toy", "intra", tuple(CaseRef(cid, lambda cid=cid: sources[cid], {"site": "toy"}) for cid in sources))
    with pytest.raises(ConfigError, match="has no frames; use --corruptions acdc-c"):
        artefact_test_sets(intra, families=("acdc-c-es",), cache_dir=tmp_path)


def test_all_families_means_acdc_c_and_graded_and_a_comma_list_keeps_the_es_sets():
    assert base.parse_corruption_families("all") == ("acdc-c", "graded")
    assert base.parse_corruption_families("acdc-c-es,acdc-c") == ("acdc-c", "acdc-c-es")


def test_graded_sets_one_copy_per_case_named_type_at_severity(tmp_path):
    sets = artefact_test_sets(_intra(_sources()), families=("graded",), cache_dir=tmp_path)
    assert len(sets) == 9 * 5
    bias3 = _by_name(sets)["bias@3"]
    assert bias3.meta["corruption"] == "bias" and bias3.meta["severity"] == 3 and bias3.meta["family"] == "graded"
    assert [r.case_id for r in bias3.cases] == ["patient007_ED", "patient008_ED"]


def test_artefact_case_lives_on_the_paper_grid_with_the_label_untouched(tmp_path):
    sources = _sources()
    source = sources["patient007_ED"]
    for test_set in artefact_test_sets(_intra(sources), families=("acdc-c", "graded"), cache_dir=tmp_path)[:6]:
        case = test_set.cases[0].load()
        expected = prepare(source, PAPER_SPACING_MM)
        assert case.image.shape == tuple(expected.image.shape) == (3, 44, 44)
        assert case.image.dtype == np.float32 and 0.0 <= case.image.min() and case.image.max() <= 1.0
        assert case.spacing == (8.0, PAPER_SPACING_MM, PAPER_SPACING_MM)
        np.testing.assert_array_equal(case.label, expected.label.numpy())
        assert case.label.dtype == source.label.dtype
        assert {"corruption", "severity", "copy", "subject", "frame", "site", "vendor", "source_case"} <= set(case.meta)
        assert case.meta["source_case"] == "patient007_ED" and case.meta["site"] == "toy"
        # the world field of view is kept: the affine maps the new grid onto the source's extent
        assert np.allclose(np.abs(np.diag(case.affine)[:3]), (PAPER_SPACING_MM, PAPER_SPACING_MM, 8.0))


def test_first_use_writes_the_parameters_and_replay_is_bit_identical(tmp_path):
    sources = _sources()
    first = [ref.load() for s in artefact_test_sets(_intra(sources), cache_dir=tmp_path) for ref in s.cases[:2]]
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 4 * 2
    record = json.loads(files[0].read_text())
    assert {"format", "set", "corruption", "severity", "copy", "seed", "parameters", "source_sha256", "recipe"} <= set(record)
    again = [ref.load() for s in artefact_test_sets(_intra(sources), cache_dir=tmp_path) for ref in s.cases[:2]]
    for a, b in zip(first, again):
        assert a.image.tobytes() == b.image.tobytes()
    # the replay reads the file: change a stored parameter and the image follows it
    path = tmp_path / "Toy" / "seed-0" / "RandGhosting" / "patient007_ED_copy1.json"
    stored = json.loads(path.read_text())
    stored["parameters"]["intensity"] = 0.0
    path.write_text(json.dumps(stored))
    ghosting = _by_name(artefact_test_sets(_intra(sources), cache_dir=tmp_path))["RandGhosting"]
    assert ghosting.cases[0].load().image.tobytes() != first[2].image.tobytes()


def test_the_seed_alone_fixes_the_draws_and_another_seed_differs(tmp_path):
    sources = _sources()
    a = _by_name(artefact_test_sets(_intra(sources), seed=0, cache_dir=tmp_path / "a"))
    b = _by_name(artefact_test_sets(_intra(sources), seed=0, cache_dir=tmp_path / "b"))
    c = _by_name(artefact_test_sets(_intra(sources), seed=1, cache_dir=tmp_path / "a"))
    for name in ACDC_C_SETS:
        x, y, z = (s[name].cases[0].load() for s in (a, b, c))
        assert x.image.tobytes() == y.image.tobytes(), name  # fresh cache, same seed: the same draw
        assert x.meta["corruption_record"]["parameters"] != z.meta["corruption_record"]["parameters"], name
        assert not np.array_equal(x.image, z.image), name
    # copies of one case are independent draws
    copies = [r.load().meta["corruption_record"]["parameters"] for r in a["RandSpike"].cases[:3]]
    assert copies[0] != copies[1] != copies[2]


def test_a_changed_source_is_an_error_naming_the_file(tmp_path):
    sources = _sources()
    _by_name(artefact_test_sets(_intra(sources), cache_dir=tmp_path))["RandBias"].cases[0].load()
    old = sources["patient007_ED"]
    sources["patient007_ED"] = Case(old.case_id, old.image + 0.01, old.label, old.spacing, old.meta)
    ref = _by_name(artefact_test_sets(_intra(sources), cache_dir=tmp_path))["RandBias"].cases[0]
    with pytest.raises(DataError) as err:
        ref.load()
    path = tmp_path / "Toy" / "seed-0" / "RandBias" / "patient007_ED_copy1.json"
    assert str(path) in str(err.value) and "delete" in str(err.value)
    path.unlink()  # as the message says: deleting re-samples for the new source
    assert ref.load().image.shape == (3, 44, 44)


def test_a_file_of_another_recipe_is_never_replayed(tmp_path):
    sources = _sources()
    graded = _by_name(artefact_test_sets(_intra(sources), families=("graded",), cache_dir=tmp_path))
    graded["noise@2"].cases[0].load()
    path = tmp_path / "Toy" / "seed-0" / "noise@2" / "patient007_ED.json"
    record = json.loads(path.read_text())
    record["recipe"]["level"]["sigma"] = 0.5  # as if the severity table had been recalibrated since
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match="another recipe or seed"):
        graded["noise@2"].cases[0].load()


def test_derived_seeds_are_stable_across_processes():
    # a literal: Python's hash() would change it between interpreter runs
    assert derive_seed(0, "RandBias", "patient007_ED", 1) == derive_seed(0, "RandBias", "patient007_ED", 1)
    assert derive_seed(0, "RandBias", "patient007_ED", 1) == 4697527863683801806
    assert derive_seed(0, "RandBias", "patient007_ED", 2) != derive_seed(0, "RandBias", "patient007_ED", 1)
    with pytest.raises(ConfigError):
        derive_seed(-1, "x")


def test_acdc_c_draws_follow_torchios_defaults_and_leave_the_global_rng_alone(tmp_path):
    state = torch.get_rng_state()
    sets = _by_name(artefact_test_sets(_intra(_sources(n=1)), cache_dir=tmp_path))
    p = {name: [r.load().meta["corruption_record"]["parameters"] for r in sets[name].cases] for name in ACDC_C_SETS}
    assert torch.equal(state, torch.get_rng_state())
    for bias in p["RandBias"]:
        assert len(bias["coefficients"]) == 20 and max(abs(c) for c in bias["coefficients"]) <= 0.5
    for ghost in p["RandGhosting"]:
        assert 4 <= ghost["num_ghosts"] <= 10 and 0.5 <= ghost["intensity"] <= 1 and ghost["axis"] in (0, 1, 2)
    for motion in p["RandMotion"]:
        assert np.abs(motion["degrees"]).max() <= 30 and np.abs(motion["translation"]).max() <= 10
        assert np.array(motion["degrees"]).shape == (2, 3) and len(motion["times"]) == 2
    for spike in p["RandSpike"]:
        assert 1 <= spike["intensity"] <= 3 and np.array(spike["spikes_positions"]).shape == (1, 3)


def test_unknown_type_severity_or_family_is_a_config_error_listing_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="valid corruptions: bias, ghosting"):
        get_corruption("fog")
    stack = np.zeros((2, 16, 16), np.float32)
    for severity in (0, 6, 2.5):
        with pytest.raises(ConfigError, match="severity must be one of 1, 2, 3, 4, 5"):
            apply_corruption(stack, "noise", severity)
    with pytest.raises(ConfigError, match="valid families: acdc-c, acdc-c-es, graded"):
        artefact_test_sets(_intra(_sources(1)), families=("imagenet-c",), cache_dir=tmp_path)


def test_one_draw_per_case_serves_every_severity():
    low, high = graded_parameters("noise", 1, seed=5), graded_parameters("noise", 5, seed=5)
    assert low["noise_seed"] == high["noise_seed"] and low["sigma"] < high["sigma"]
    b1, b4 = graded_parameters("bias", 1, seed=5), graded_parameters("bias", 4, seed=5)
    ratio = np.array(b4["coefficients"]) / np.array(b1["coefficients"])
    assert np.allclose(ratio, ratio[0]) and ratio[0] == pytest.approx(0.6 / 0.15)


def test_every_graded_type_degrades_monotonically_with_severity():
    image, _ = toy_heart(np.random.default_rng(1), shape=(3, 64, 64), radius=12.0)
    clean = np.stack([(s - s.min()) / (s.max() - s.min()) for s in image])
    for name in CORRUPTIONS:
        errors = []
        for severity in range(1, 6):
            out = apply_corruption(clean, name, severity, seed=3)
            assert out.shape == clean.shape, name
            out = np.stack([(s - s.min()) / max(s.max() - s.min(), 1e-8) for s in out])
            errors.append(float(np.mean((out - clean) ** 2)))
        assert errors[0] > 0, name
        assert all(a < b for a, b in zip(errors, errors[1:])), (name, errors)


def test_parameters_are_cached_under_robench_home_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBENCH_HOME", str(tmp_path))
    ref = artefact_test_sets(_intra(_sources(1)), seed=4)[0].cases[0]
    ref.load()
    assert (tmp_path / "corruptions" / "Toy" / "seed-4" / "RandBias" / "patient007_ED_copy1.json").is_file()


def test_the_registry_applies_a_type_directly():
    stack = np.full((2, 32, 32), 0.5, np.float32)
    out = CORRUPTIONS["noise"].apply(stack, 2, seed=1)
    assert out.shape == stack.shape and np.array_equal(out, apply_corruption(stack, "noise", 2, seed=1))
    assert CORRUPTIONS["kspace"].label(3) == "R=4, centre 15%"


def test_replaying_every_recipe_equals_torchios_call_and_leaves_the_global_rng_alone():
    # evaluation workers corrupt cases side by side: a replay must not move torch's global stream
    from robench.corruptions.pipeline import grid_affine, paper_grid
    from robench.corruptions.recipe import replay
    from robench.corruptions.testsets import recipes

    source = _sources(n=1)["patient007_ED"]
    _, stack = paper_grid(source)
    spacing = (SPACING[0], PAPER_SPACING_MM, PAPER_SPACING_MM)
    every = recipes(("acdc-c", "graded"))
    assert len(every) == 4 + 9 * 5
    for recipe in every:
        parameters = recipe.draw(derive_seed(0, recipe.stream, source.case_id, 1))

        def image():
            return tio.ScalarImage(tensor=stack[None].clone(), affine=grid_affine(tuple(stack.shape), spacing, recipe.physical_grid))

        with torch.random.fork_rng(devices=[]):
            called = recipe.transform(parameters)(image())
        state = torch.get_rng_state()
        replayed = replay(recipe.transform(parameters), image())
        assert torch.equal(state, torch.get_rng_state()), recipe.name
        assert torch.equal(called.data, replayed.data), recipe.name
    with pytest.raises(ValueError, match="not deterministic"):
        replay(tio.Gamma(0.5, p=0.5), image())
