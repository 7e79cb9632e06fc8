"""The integration's metadata follows hassfest's rules for a custom integration."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

COMPONENT = Path(__file__).resolve().parents[2] / "custom_components" / "energy_tracker"


def test_manifest_keys_are_domain_name_then_alphabetical() -> None:
    manifest = json.loads((COMPONENT / "manifest.json").read_text(encoding="utf-8"))
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["domain"] == COMPONENT.name
    # A custom integration must carry a version; discovery and setup need these.
    assert manifest["version"]
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["issue_tracker"].startswith("https://")


def test_english_translations_are_the_strings() -> None:
    strings = json.loads((COMPONENT / "strings.json").read_text(encoding="utf-8"))
    english = json.loads((COMPONENT / "translations" / "en.json").read_text(encoding="utf-8"))
    assert english == strings


def test_every_action_has_an_icon_and_translated_name() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    icons = json.loads((COMPONENT / "icons.json").read_text(encoding="utf-8"))["services"]
    strings = json.loads((COMPONENT / "strings.json").read_text(encoding="utf-8"))["services"]
    assert set(icons) == set(services)
    assert set(strings) == set(services)
    for name, fields in strings.items():
        assert fields["name"], name
        assert fields["description"], name
