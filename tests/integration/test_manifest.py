"""The integration's metadata follows hassfest's rules for a custom integration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "custom_components" / "energy_tracker"


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
    # One entry makes several devices (the meter, its boards, appliances, extra meters)
    assert manifest["integration_type"] == "hub"
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


def test_every_choice_of_an_action_has_a_translated_label() -> None:
    """A select without a translation_key shows its raw values ("csv") in every language."""
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    for path in [COMPONENT / "strings.json", *sorted((COMPONENT / "translations").glob("*"))]:
        labels = json.loads(path.read_text(encoding="utf-8")).get("selector", {})
        for action, spec in services.items():
            for field, field_spec in spec.get("fields", {}).items():
                select = field_spec.get("selector", {}).get("select")
                if not select or "options" not in select:
                    continue
                key = select.get("translation_key")
                assert key, f"{action}.{field} has no translation_key"
                assert set(labels[key]["options"]) == set(select["options"]), path.name


def test_the_label_actions_choices_are_the_shipped_models() -> None:
    """Picked from a list in the action's form; a model the bundle gained would be missing."""
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    select = services["label_appliance"]["fields"]["appliance"]["selector"]["select"]
    bundle = json.loads((ROOT / "addon" / "energy_tracker_addon" / "nilm_bundle" / "bundle.json")
                        .read_text(encoding="utf-8"))
    assert set(select["options"]) == {model["name"] for model in bundle["models"]}
    assert select["custom_value"] is True  # a name as shown, or another bundle's model


def _strings(tree: object, path: str = "") -> dict[str, str]:
    """Every string of a translation tree by its key path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items()
                for k, v in _strings(sub, f"{path}/{key}").items()}
    assert isinstance(tree, str), path
    return {path: tree}


def test_other_languages_translate_every_string_with_the_same_placeholders() -> None:
    english = _strings(json.loads((COMPONENT / "strings.json").read_text(encoding="utf-8")))
    others = sorted((COMPONENT / "translations").glob("*.json"))
    assert [p.name for p in others] == ["en.json", "fr.json"]
    for path in others:
        translated = _strings(json.loads(path.read_text(encoding="utf-8")))
        assert translated.keys() == english.keys(), path.name
        for key, text in english.items():
            for pattern in (r"\{\w+\}", r"`[^`]+`"):
                assert sorted(re.findall(pattern, translated[key])) == sorted(
                    re.findall(pattern, text)), (path.name, key)


def test_brand_images_follow_the_brands_rules() -> None:
    """Home Assistant 2026.3+ shows these instead of a blank icon (scripts/make_brand_images.py):
    icons square at 256/512 px, logos landscape with a short side of 128-256 / 256-512 px,
    transparent around the mark, and a dark-theme logo whose text is not dark."""
    from PIL import Image

    brand = COMPONENT / "brand"
    images = {path.name: Image.open(path) for path in brand.glob("*.png")}
    assert set(images) == {f"{prefix}{kind}{suffix}.png" for prefix, kind in
                           (("", "icon"), ("", "logo"), ("dark_", "logo"))
                           for suffix in ("", "@2x")}
    for name, image in images.items():
        assert image.mode == "RGBA", name
        assert image.getpixel((0, 0))[3] == 0, f"{name} is not transparent in its corner"
        assert image.format == "PNG", name
    assert images["icon.png"].size == (256, 256)
    assert images["icon@2x.png"].size == (512, 512)
    for prefix in ("", "dark_"):
        logo, logo_2x = images[f"{prefix}logo.png"], images[f"{prefix}logo@2x.png"]
        assert logo.width > logo.height
        assert 128 <= logo.height <= 256
        assert logo_2x.size == (2 * logo.width, 2 * logo.height)

    def darkest_text(image: Image.Image) -> int:
        # Brightness of the darkest opaque pixel right of the mark (the words).
        words = image.crop((image.height, 0, image.width, image.height)).convert("RGBA")
        return min(sum(pixel[:3]) // 3 for pixel in words.getdata() if pixel[3] == 255)

    assert darkest_text(images["logo.png"]) < 80
    assert darkest_text(images["dark_logo.png"]) > 100  # readable on a dark header


def test_translated_appliance_names_are_the_addons_in_english() -> None:
    """English installs keep the add-on's names (existing devices are not renamed), and
    every appliance of the shipped bundle has its translation."""
    from custom_components.energy_tracker.appliance_entity import TRANSLATED_APPLIANCES
    from energy_tracker_addon.nilm import load_bundle
    from energy_tracker_addon.nilm_service import display_name

    strings = json.loads((COMPONENT / "strings.json").read_text(encoding="utf-8"))
    assert set(load_bundle().models) == TRANSLATED_APPLIANCES
    for appliance in TRANSLATED_APPLIANCES:
        assert strings["device"][f"appliance_{appliance}"]["name"] == display_name(appliance)


def test_repairs_name_the_default_meter_once() -> None:
    """A meter keeps the default title "Energy Tracker": its repairs read "Energy Tracker
    has not been able to reach the Energy Tracker add-on"."""
    for path in (COMPONENT / "strings.json", COMPONENT / "translations" / "fr.json"):
        issues = json.loads(path.read_text(encoding="utf-8"))["issues"]
        for key, issue in issues.items():
            if "{title}" not in issue["description"]:
                continue
            # The add-on's name in a menu path ("Settings → Add-ons → Energy Tracker") is
            # what the user clicks: not a repeat.
            text = issue["description"].replace("{title}", "Energy Tracker")
            assert text.replace("→ Energy Tracker", "→").count("Energy Tracker") == 1, (
                path.name, key, text)


def test_every_default_name_of_the_addon_has_a_translation() -> None:
    """A default channel or relay name added to the add-on without one would stay English
    in a French Home Assistant (default_names.py)."""
    from custom_components.energy_tracker.default_names import ADDON_DEFAULT_NAMES

    options = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())["options"]
    defaults = {item["name"] for key in ("channels", "relays") for item in options[key]}
    assert set(ADDON_DEFAULT_NAMES) == defaults
    for language in ("en", "fr"):
        devices = json.loads((COMPONENT / "translations" / f"{language}.json").read_text())[
            "device"]
        for key in ADDON_DEFAULT_NAMES.values():
            assert devices[f"default_{key}"]["name"], (language, key)
    english = json.loads((COMPONENT / "translations" / "en.json").read_text())["device"]
    assert {english[f"default_{key}"]["name"] for key in ADDON_DEFAULT_NAMES.values()} \
        == defaults
