"""`robench publish`: entries, Markdown, LaTeX and HTML from real kept records; the committed boards
re-render from their committed JSON; the HTML report works in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robench.cli import app
from robench.leaderboards.entries import ENTRY_SCHEMA, read_entries
from robench.leaderboards.publish import figure_list, markdown_document

REPO = Path(__file__).resolve().parents[1]
KEPT = REPO / "results" / "brain-lgg-imbalance-quick"  # real records, committed (results/README.md)
PUBLISHED = REPO / "docs" / "leaderboards"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("boards")
    result = CliRunner().invoke(app, ["publish", str(KEPT), "--out", str(out), "--tag", "imbalance",
                                      "--metric", "dice", "--metric", "sens"])
    assert result.exit_code == 0, result.output
    return out


def test_publish_writes_entries_with_provenance_and_every_format(published):
    name = "brain-lgg-imbalance-quick"
    entries = read_entries(published / name)
    kept_runs = {p.name for p in KEPT.iterdir() if (p / "done.json").exists()}
    assert {r for e in entries for r in e["provenance"]["run_ids"]} == kept_runs
    for entry in entries:
        assert entry["schema"] == ENTRY_SCHEMA and entry["suite"] == "brain-lgg" and entry["budget"] == "quick"
        assert {t["metric"] for t in entry["tables"]} == {"dice", "sensitivity"}
        prov = entry["provenance"]
        assert prov["code_versions"] and "torch" in prov["packages"] and prov["hardware"] and prov["dates"]
        assert prov["budget"]["name"] == "quick"
    for suffix in (".md", ".tex", ".html"):
        assert (published / f"{name}{suffix}").stat().st_size > 0
    assert (published / f"{name}-figures" / "sites.png").exists()
    assert f"[{name}]({name}.md)" in (published / "README.md").read_text()


def test_markdown_renders_from_the_entries(published):
    name = "brain-lgg-imbalance-quick"
    expected = markdown_document(read_entries(published / name), name,
                                 figure_list(published / f"{name}-figures", published), published)
    assert (published / f"{name}.md").read_text() == expected


def test_committed_boards_reproduce_from_their_committed_json():
    boards = [p for p in PUBLISHED.iterdir() if p.is_dir() and (PUBLISHED / f"{p.name}.md").exists()
              and list(p.glob("*.json"))]
    assert boards, f"no published board (entries folder + Markdown) under {PUBLISHED}"
    for folder in boards:
        expected = markdown_document(read_entries(folder), folder.name,
                                     figure_list(PUBLISHED / f"{folder.name}-figures", PUBLISHED), PUBLISHED)
        assert (PUBLISHED / f"{folder.name}.md").read_text() == expected, f"{folder.name}: rerun robench publish"


def test_publish_of_a_root_without_runs_fails_clearly(tmp_path):
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no finished run" in result.output


# ---------------------------------------------------------------- the HTML report in a real browser


def _browser():
    missing = [b for b in ("chromium", "chromedriver") if shutil.which(b) is None]
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing; `make test-browser` installs it")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; `make test-browser` installs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_html_report_loads_without_errors_and_sorts_in_chromium(published, tmp_path):
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By

        driver.get((published / "brain-lgg-imbalance-quick.html").as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        table = driver.find_elements(By.CSS_SELECTOR, "table.board")[0]
        headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        column = headers.index("Avg")

        def values() -> list[float]:
            return [float(tr.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-value"))
                    for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        original = values()
        header = table.find_elements(By.CSS_SELECTOR, "thead th")[column]
        header.click()
        assert values() == sorted(original) and header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert values() == sorted(original, reverse=True)
        labels = headers.index("Method")
        table.find_elements(By.CSS_SELECTOR, "thead th")[labels].click()
        names = [tr.find_elements(By.TAG_NAME, "td")[labels].text for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert names == sorted(names)
        assert driver.find_elements(By.CSS_SELECTOR, "figure img")  # figures embedded
        assert driver.execute_script("return document.images[0].naturalWidth") > 0  # and decodable
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
