"""The shipped model's card (``models/*.md``) says what its machine-read card (``*.toml``) holds.

A new version rewrites the ``.toml`` through ``publish``; the prose is edited by hand and can keep
an older version's numbers. These tests read the sections that describe the current version.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
CARDS = sorted(MODELS.glob("*.toml"))
CURRENT_SECTIONS = ("Architecture", "Input and preprocessing", "Threshold and calibration")


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"the card has no '## {heading}' section"
    return match.group(1)


def stated_keys(text: str) -> dict[str, str]:
    """Backticked ``key = value`` statements, e.g. `face_margin = 0.125` (formulas skipped)."""
    return {key: value for key, value in re.findall(r"`([a-z_0-9]+) = ([^`=()]+)`", text)}


@pytest.fixture(params=CARDS, ids=lambda p: p.stem)
def card(request) -> tuple[dict, str]:
    toml = request.param
    return tomllib.loads(toml.read_text()), toml.with_suffix(".md").read_text()


def test_there_is_a_shipped_card():
    assert CARDS, "models/ holds no .toml card"
    for toml in CARDS:
        assert toml.with_suffix(".md").is_file(), f"{toml.name} has no prose card"


def test_the_title_names_the_shipped_version(card):
    machine, prose = card
    title = prose.splitlines()[0]
    assert f"`{machine['name']}`" in title and f"(v{machine['version']})" in title


def test_the_current_sections_state_the_toml_values(card):
    machine, prose = card
    checked = 0
    for heading in CURRENT_SECTIONS:
        for key, value in stated_keys(section(prose, heading)).items():
            if key in machine:
                assert tomllib.loads(f"v = {value}")["v"] == machine[key], (
                    f"'## {heading}' says `{key} = {value}`, the .toml {machine[key]!r}")
                checked += 1
    assert checked >= 4  # activation, use_se, crop_rule, face_margin, temperature at least


def test_the_calibration_section_states_the_temperature_and_threshold(card):
    machine, prose = card
    body = " ".join(section(prose, "Threshold and calibration").split())
    assert f"{machine['temperature']:.2f} here" in body
    assert f"threshold = {machine['threshold']}" in body
