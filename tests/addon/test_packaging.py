"""Static checks of the add-on packaging and the repository metadata.

No Docker engine here, so what the Supervisor, HACS and the image build would reject is
checked against their own rules, ported from their sources:
  * Supervisor `supervisor/apps/validate.py` (_SCHEMA_APP_CONFIG, SCHEMA_BUILD_CONFIG,
    SCHEMA_APP_TRANSLATIONS) and `supervisor/apps/options.py` (RE_SCHEMA_ELEMENT and how
    AppOptions validates and coerces option values);
  * `supervisor/store/validate.py` (repository.yaml);
  * HACS `custom_components/hacs/utils/validate.py` (HACS_MANIFEST_JSON_SCHEMA).
The discovery script is run for real with bash, with bashio and curl stubbed.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
import yaml
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from custom_components.energy_tracker.const import DOMAIN
from energy_tracker_addon import config as addon_config

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
ROOTFS = ADDON / "rootfs"
S6_RC = ROOTFS / "etc/s6-overlay/s6-rc.d"
PACKAGE = ADDON / "energy_tracker_addon"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def addon_cfg() -> dict[str, Any]:
    return _yaml(ADDON / "config.yaml")


# --- The Supervisor's rules (supervisor/apps/validate.py, options.py) ----------------

# Every key _SCHEMA_APP_CONFIG knows; it drops unknown keys silently (REMOVE_EXTRA), so a
# misspelt `hassio_api` would just vanish.
SUPERVISOR_KEYS = {
    "name", "version", "slug", "description", "arch", "machine", "url", "startup", "boot",
    "init", "advanced", "stage", "ports", "ports_description", "watchdog", "webui",
    "ingress", "ingress_port", "ingress_entry", "ingress_stream", "panel_icon",
    "panel_title", "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc",
    "host_uts", "host_dbus", "devices", "udev", "tmpfs", "map", "environment",
    "privileged", "apparmor", "full_access", "audio", "video", "gpio", "usb", "uart",
    "devicetree", "kernel_modules", "realtime", "hassio_api", "hassio_role",
    "homeassistant_api", "stdin", "legacy", "docker_api", "auth_api", "services",
    "discovery", "backup_exclude", "backup_pre", "backup_post", "backup", "options",
    "schema", "image", "ulimits", "timeout", "journald", "breaking_versions",
}
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
ARCHES = {"aarch64", "amd64"}  # armhf, armv7 and i386 are deprecated
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
RE_DOCKER_PORT = re.compile(r"^\d+(?:/tcp|/udp)?$")
RE_VOLUME = re.compile(
    r"^(data|config|ssl|local_apps|addons|backup|share|media|homeassistant_config"
    r"|all_app_configs|all_addon_configs|app_config|addon_config)(?::(rw|ro))?$"
)
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)


def _check_schema_element(element: Any, path: str, in_list: bool = False) -> None:
    """The grammar SCHEMA_ELEMENT accepts: a type string, a one-item list, a dict."""
    if isinstance(element, str):
        assert RE_SCHEMA_ELEMENT.match(element), f"{path}: {element!r} is not a schema type"
    elif isinstance(element, dict):
        for key, value in element.items():
            _check_schema_element(value, f"{path}.{key}")
    elif isinstance(element, list) and not in_list:
        assert len(element) == 1, f"{path}: a list schema holds exactly one element"
        _check_schema_element(element[0], f"{path}[]", in_list=True)
    else:
        pytest.fail(f"{path}: {element!r} is not a valid schema element")


def _bounds(match: re.Match[str]) -> dict[str, float]:
    bounds = {}
    for group in ("i_min", "i_max", "f_min", "f_max", "s_min", "s_max", "p_min", "p_max"):
        if match.group(group):
            bounds[group[2:]] = float(match.group(group))
    return bounds


def _supervisor_single(typ: str, value: Any) -> Any:
    """AppOptions._single_validate for the types this add-on uses (same coercions)."""
    if value is None:
        raise vol.Invalid("missing required option")
    match = RE_SCHEMA_ELEMENT.match(typ)
    assert match, typ
    bounds = _bounds(match)
    if typ.startswith(("str", "password")):
        return vol.All(str, vol.Length(**bounds))(value)
    if typ.startswith("int"):
        return vol.All(vol.Coerce(int), vol.Range(**bounds))(value)
    if typ.startswith("float"):
        return vol.All(vol.Coerce(float), vol.Range(**bounds))(value)
    if typ.startswith("bool"):
        return vol.Boolean()(value)
    if typ.startswith("match"):
        return vol.Match(match.group("match"))(str(value))
    if typ.startswith("list"):
        # The value saved is the *string* form: list(...) never yields a number.
        return vol.In(match.group("list").split("|"))(str(value))
    if typ.startswith("device"):
        # Looked up among the host's devices: nothing here is one, "" least of all.
        raise vol.Invalid(f"device {value!r} does not exist")
    raise AssertionError(f"type {typ} not emulated")


def _supervisor_validate(schema: Any, value: Any) -> Any:
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise vol.Invalid("expected a list")
        return [_supervisor_validate(schema[0], item) for item in value]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise vol.Invalid("expected a dict")
        result = {k: _supervisor_validate(schema[k], v) for k, v in value.items() if k in schema}
        for missing in set(schema) - set(result):
            inner = schema[missing][0] if isinstance(schema[missing], list) else schema[missing]
            if not (isinstance(inner, str) and inner.endswith("?")):
                raise vol.Invalid(f"missing option {missing}")
        return result
    return _supervisor_single(schema, value)


def test_config_yaml_passes_the_supervisor_rules(addon_cfg: dict[str, Any]) -> None:
    unknown = set(addon_cfg) - SUPERVISOR_KEYS
    assert not unknown, f"the Supervisor would silently drop {unknown}"
    for key in ("name", "version", "slug", "description", "arch"):
        assert addon_cfg.get(key), f"required key {key} missing"
    assert RE_SLUG.match(addon_cfg["slug"])
    # Quoted: an unquoted 1.0 would be read as the float 1.0 and lose its meaning.
    assert isinstance(addon_cfg["version"], str)
    assert re.fullmatch(r"\d+\.\d+\.\d+", addon_cfg["version"])
    assert set(addon_cfg["arch"]) == ARCHES
    assert addon_cfg["startup"] in STARTUP
    assert addon_cfg.get("boot", "auto") in BOOT
    # s6-overlay v3's /init must be PID 1; the Supervisor's own init would take that.
    assert addon_cfg["init"] is False
    assert "image" not in addon_cfg, "with `image` the Supervisor pulls instead of building"
    for port, host_port in addon_cfg["ports"].items():
        assert RE_DOCKER_PORT.match(port)
        assert host_port is None or 1 <= host_port <= 65535
    assert set(addon_cfg["ports_description"]) == set(addon_cfg["ports"])
    assert all(isinstance(volume, str) and RE_VOLUME.match(volume) for volume in addon_cfg["map"])
    assert all(isinstance(service, str) for service in addon_cfg["discovery"])
    for flag in ("uart", "gpio", "hassio_api", "init"):
        assert isinstance(addon_cfg[flag], bool)


def test_the_image_reports_its_health_from_the_api_health_route(
    addon_cfg: dict[str, Any],
) -> None:
    """The add-on linter (frenck/action-addon-linter) calls config.yaml's `watchdog`
    obsolete and fails the repository's Validate workflow on it: a Docker HEALTHCHECK on
    the token-free health route takes its place (helper 96)."""
    api_doc = (ROOT / "docs/api.md").read_text(encoding="utf-8")
    path = re.search(r"`GET (/api/v1/health)` \(no token\)", api_doc)
    assert path, "docs/api.md no longer has a token-free health route"
    assert "watchdog" not in addon_cfg
    checks = [line for line in _dockerfile() if line.startswith("HEALTHCHECK")]
    assert len(checks) == 1
    assert f"curl -fsS http://127.0.0.1:8099{path.group(1)}" in checks[0]
    assert "8099/tcp" in addon_cfg["ports"]


def test_config_yaml_passes_the_addon_linters_rules(addon_cfg: dict[str, Any]) -> None:
    """Its schema (config.schema.json, tag v2): no key repeating a Supervisor default,
    and `map` only of the folders it knows (/data is always mounted read-write)."""
    defaults = {"boot": "auto", "backup": "hot", "startup": "application", "init": True,
                "hassio_api": False, "uart": False, "gpio": False}
    assert not {key for key, value in defaults.items() if addon_cfg.get(key, object()) == value}
    linter_map = re.compile(r"^(addon_config|all_addon_configs|config|homeassistant_config"
                            r"|ssl|addons|backup|share|media)(:(rw|ro))?$")
    assert all(linter_map.match(volume) for volume in addon_cfg["map"])


def test_addon_version_is_the_service_version(addon_cfg: dict[str, Any]) -> None:
    # The store shows config.yaml's version; /api/v1/health reports the package's.
    from energy_tracker_addon import __version__

    assert addon_cfg["version"] == __version__


def test_schema_is_valid_and_options_match_it(addon_cfg: dict[str, Any]) -> None:
    schema, options = addon_cfg["schema"], addon_cfg["options"]
    _check_schema_element(schema, "schema")
    assert set(options) <= set(schema), "an option without a schema entry is dropped"
    for key in set(schema) - set(options):
        assert schema[key].endswith("?"), f"{key} has no default yet is required"
    for key, typ in schema.items():
        if isinstance(typ, str) and typ.startswith("device"):
            # "" is not a device: the add-on would refuse to start with its defaults.
            assert key not in options, f"device option {key} must have no default"
    # The Supervisor validates the defaults when the add-on starts.
    _supervisor_validate(schema, options)


def test_defaults_reach_the_service_unchanged(addon_cfg: dict[str, Any], tmp_path: Path) -> None:
    """options.json as the Supervisor writes it from the defaults = the service defaults."""
    written = _supervisor_validate(addon_cfg["schema"], addon_cfg["options"])
    (tmp_path / "options.json").write_text(json.dumps(written), encoding="utf-8")
    from_supervisor = addon_config.load_options(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert from_supervisor == addon_config.load_options(empty)


def test_every_service_option_is_in_the_schema(addon_cfg: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(addon_config.Options)}
    assert set(addon_cfg["schema"]) == fields
    channel_fields = {f.name for f in dataclasses.fields(addon_config.ChannelConfig)}
    assert set(addon_cfg["schema"]["channels"][0]) == channel_fields
    relay_fields = {f.name for f in dataclasses.fields(addon_config.RelayConfig)}
    assert set(addon_cfg["schema"]["relays"][0]) == relay_fields
    meter_fields = {f.name for f in dataclasses.fields(addon_config.ExtraMeterConfig)}
    assert set(addon_cfg["schema"]["extra_meters"][0]) == meter_fields


def _bounded_fields(addon_cfg: dict[str, Any]) -> list[tuple[str, str]]:
    fields = [(k, t) for k, t in addon_cfg["schema"].items() if isinstance(t, str)]
    for name in ("channels", "relays"):
        fields += [(f"{name}.{k}", t) for k, t in addon_cfg["schema"][name][0].items()]
    return [(k, t) for k, t in fields if re.match(r"(int|float|str)\(", t)]


def _with_value(options: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = json.loads(json.dumps(options))
    if "." in key:
        # One entry only, so a changed id cannot collide with another entry's.
        name, field = key.split(".")
        changed[name] = [changed[name][0]]
        changed[name][0][field] = value
        # Checks across options are beyond the Supervisor's schema language and have tests
        # of their own (test_config): a one-field comparison keeps clear of them, with a
        # hat that has every channel id, and relays naming no channel or one that exists.
        changed["rpict_model"] = "rpict8"
        if name == "channels":
            changed["relays"] = [{k: v for k, v in relay.items() if k != "channel"}
                                 for relay in changed["relays"]]
        else:
            changed["channels"] = [{"id": i, "name": f"CT {i}", "role": "circuit"}
                                   for i in range(1, 9)]
    else:
        changed[key] = value
    return changed


def test_supervisor_and_service_agree_on_limits(addon_cfg: dict[str, Any]) -> None:
    """A value the UI accepts must not stop the service, and the other way round."""
    checked = 0
    for key, typ in _bounded_fields(addon_cfg):
        match = RE_SCHEMA_ELEMENT.match(typ)
        assert match
        bounds = _bounds(match)
        candidates: list[Any] = []
        if typ.startswith("str"):
            for edge in (int(b) for b in bounds.values()):
                candidates += ["x" * n for n in (edge - 1, edge, edge + 1) if n >= 0]
        else:
            step = 1 if typ.startswith("int") else bounds.get("min", 1) / 2 or 1
            for edge in bounds.values():
                candidates += [edge, edge - step, edge + step]
            if typ.startswith("int"):
                candidates = [int(c) for c in candidates]
        for value in candidates:
            options = _with_value(addon_cfg["options"], key, value)
            try:
                written = _supervisor_validate(addon_cfg["schema"], options)
            except vol.Invalid:
                supervisor_ok, written = False, options
            else:
                supervisor_ok = True
            try:
                addon_config.parse_options(written)
            except addon_config.OptionsError:
                service_ok = False
            else:
                service_ok = True
            assert supervisor_ok == service_ok, (
                f"{key}={value!r}: Supervisor {'accepts' if supervisor_ok else 'rejects'}, "
                f"service {'accepts' if service_ok else 'rejects'}"
            )
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("token", ["", "x" * 16])
def test_a_token_saved_by_an_earlier_release_still_starts_the_addon(
    addon_cfg: dict[str, Any], token: str
) -> None:
    """Releases up to 0.3.1 had `api_token: ""` in their defaults, so a user who saved the
    Configuration tab has it in the options: after an update the Supervisor must still
    accept them (it validates before starting), and the service generates a token."""
    options = addon_cfg["options"] | {"api_token": token}
    written = _supervisor_validate(addon_cfg["schema"], options)
    assert addon_config.parse_options(written).api_token == token


def test_a_short_token_is_refused_with_its_rule(addon_cfg: dict[str, Any]) -> None:
    options = _supervisor_validate(addon_cfg["schema"],
                                   addon_cfg["options"] | {"api_token": "short"})
    with pytest.raises(addon_config.OptionsError, match="at least 16 characters"):
        addon_config.parse_options(options)


def test_every_choice_offered_is_accepted(addon_cfg: dict[str, Any]) -> None:
    schema = addon_cfg["schema"]
    lists = {k: t for k, t in schema.items() if isinstance(t, str) and t.startswith("list(")}
    for name in ("channels", "relays"):
        lists |= {f"{name}.{k}": t for k, t in schema[name][0].items() if t.startswith("list(")}
    assert {"rpict_model", "log_level", "channels.role", "relays.source"} <= set(lists)
    expected = {
        "rpict_model": addon_config.RPICT_MODELS,
        "log_level": addon_config.LOG_LEVELS,
        "channels.role": addon_config.ROLES,
        "relays.source": addon_config.RELAY_SOURCES,
    }
    for key, typ in lists.items():
        match = RE_SCHEMA_ELEMENT.match(typ)
        assert match
        choices = match.group("list").split("|")
        assert set(choices) == set(expected[key]), key
        for choice in choices:
            written = _supervisor_validate(schema, _with_value(addon_cfg["options"], key, choice))
            addon_config.parse_options(written)


def _architecture_options() -> dict[str, tuple[str, str]]:
    """option -> (type column, default column) from docs/architecture.md."""
    text = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    section = text.split("## Options", 1)[1]
    rows = {}
    for line in section.splitlines():
        # Split on the column pipes only: `mains\|circuit` is one cell.
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) >= 3 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_options_follow_the_architecture_table(addon_cfg: dict[str, Any]) -> None:
    rows = _architecture_options()
    schema = addon_cfg["schema"]
    assert set(rows) == set(schema)
    defaults = addon_config.Options()
    for key, (typ, default) in rows.items():
        value = getattr(defaults, key)
        if key in ("channels", "relays"):
            assert default == " / ".join(c.name for c in value)
            continue
        if key in ("extra_meters", "nilm_appliances"):
            assert (default, value) == ("none", ())
            continue
        if default == '`""`':
            assert value == ""
        elif default in ("`true`", "`false`"):
            assert value is (default == "`true`"), key
        elif re.fullmatch(r"`\w+`", default):
            assert value == default.strip("`")
        else:
            assert value == float(default), key
        if choices := re.fullmatch(r"one of `([^`]+)`", typ):
            listed = RE_SCHEMA_ELEMENT.match(schema[key])
            assert listed
            assert listed.group("list").split("|") == choices.group(1).split()
        if limits := re.fullmatch(r"(int|float) ([\d.]+)\u2013([\d.]+)", typ):
            element = RE_SCHEMA_ELEMENT.match(schema[key])
            assert element
            assert schema[key].startswith(limits.group(1))
            assert _bounds(element) == {
                "min": float(limits.group(2)), "max": float(limits.group(3))
            }, key
        if "(device)" in typ:
            assert schema[key].startswith("device(subsystem=tty)")


# --- translations -----------------------------------------------------------------


def test_every_option_is_translated(addon_cfg: dict[str, Any]) -> None:
    translations = _yaml(ADDON / "translations/en.yaml")
    configuration = translations["configuration"]
    assert set(configuration) == set(addon_cfg["schema"])
    for key, entry in configuration.items():
        assert entry.get("name"), key
        assert entry.get("description"), key
    for name in ("channels", "relays", "extra_meters"):
        fields = configuration[name]["fields"]
        assert set(fields) == set(addon_cfg["schema"][name][0])
        assert all(f.get("name") and f.get("description") for f in fields.values())
    assert set(translations["network"]) == set(addon_cfg["ports"])


def _keys(tree: Any, path: str = "") -> set[str]:
    if isinstance(tree, dict):
        return {k for key, sub in tree.items() for k in _keys(sub, f"{path}/{key}")}
    assert isinstance(tree, str), path
    assert tree.strip(), path
    return {path}


def test_other_languages_translate_every_option() -> None:
    english = _keys(_yaml(ADDON / "translations/en.yaml"))
    others = sorted((ADDON / "translations").glob("*.yaml"))
    assert [p.name for p in others] == ["en.yaml", "fr.yaml"]
    for path in others:
        assert _keys(_yaml(path)) == english, path.name


def test_every_option_is_in_the_documentation_table(addon_cfg: dict[str, Any]) -> None:
    """The add-on's Documentation tab has a table row for every option users can set."""
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    rows = {name for line in docs.splitlines() if line.startswith("| `")
            for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert rows >= set(addon_cfg["schema"])


def test_a_bundle_dir_in_share_is_reachable(addon_cfg: dict[str, Any]) -> None:
    """models/README.md puts fine-tuned bundles in /share for `nilm_bundle_dir`."""
    assert "/share/" in (ROOT / "models/README.md").read_text(encoding="utf-8")
    assert "share:ro" in addon_cfg["map"]


# --- build.yaml and Dockerfile ----------------------------------------------------

DEBIAN_PYTHON = {"bookworm": (3, 11), "trixie": (3, 13)}


def test_build_yaml_uses_the_debian_base_for_every_arch(addon_cfg: dict[str, Any]) -> None:
    build = _yaml(ADDON / "build.yaml")
    assert set(build) <= {"build_from", "squash", "args", "labels"}
    assert set(build["build_from"]) == set(addon_cfg["arch"])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=(\d+)\.(\d+)", requires)
    assert version
    minimum = (int(version.group(1)), int(version.group(2)))
    for arch, image in build["build_from"].items():
        found = re.fullmatch(rf"ghcr\.io/home-assistant/{arch}-base-debian:(\w+)", image)
        assert found, image
        # Debian's python3 is what runs the service.
        assert DEBIAN_PYTHON[found.group(1)] >= minimum, image


def _dockerfile() -> list[str]:
    text = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_dockerfile_builds_from_the_supervisor_base() -> None:
    """build.yaml's per-arch image (older Supervisors pass it), else the multi-arch one
    of the same Debian release (Supervisor 2026.04 on passes no BUILD_FROM)."""
    instructions = [line for line in _dockerfile() if not line.startswith("#")]
    default = re.fullmatch(r"ARG BUILD_FROM=ghcr\.io/home-assistant/base-debian:(\w+)",
                           instructions[0])
    assert default, instructions[0]
    assert instructions[1] == "FROM ${BUILD_FROM}"
    per_arch = _yaml(ADDON / "build.yaml")["build_from"].values()
    assert {image.rsplit(":", 1)[1] for image in per_arch} == {default.group(1)}


def test_dockerfile_copies_only_what_the_build_context_has() -> None:
    copies = [line.split()[1:] for line in _dockerfile() if line.split()[0] in {"COPY", "ADD"}]
    sources = {src for *srcs, _dest in copies for src in srcs if not src.startswith("--")}
    assert {"requirements.txt", "energy_tracker_addon", "rootfs"} <= sources
    for source in sources:
        path = (ADDON / source).resolve()
        assert path.is_relative_to(ADDON), f"{source} is outside the build context"
        assert path.exists(), f"{source} does not exist under addon/"
    run = " ".join(line for line in _dockerfile() if line.startswith("RUN"))
    assert re.search(r"pip install [^&]*-r /tmp/requirements\.txt", run)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _addon_venv() -> dict[str, importlib.metadata.Distribution]:
    """The distributions of .venv-addon, where the add-on's tests run on the image's pins."""
    site = sorted((ROOT / ".venv-addon").glob("lib/python3*/site-packages"))
    assert site, ".venv-addon is missing: run scripts/setup.sh"
    return {canonicalize_name(d.metadata["Name"]): d
            for d in importlib.metadata.distributions(path=[str(site[-1])])}


def _image_requirements() -> list[Requirement]:
    lines = (ADDON / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(x) for x in (ln.split("#")[0].strip() for ln in lines) if x]


def _requirement_closure(requirements: list[Requirement],
                         venv: dict[str, importlib.metadata.Distribution]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in requirements if r.marker is None or r.marker.evaluate()]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for dep in venv[name].requires or []:
            parsed = Requirement(dep)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                todo.append(parsed)
    return seen


def test_image_installs_every_package_the_service_imports() -> None:
    installed = _requirement_closure(_image_requirements(), _addon_venv())
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(PACKAGE.rglob("*.py")):
        for name in _imports(module) - set(sys.stdlib_module_names) - {"energy_tracker_addon"}:
            dists = {canonicalize_name(d) for d in distributions.get(name, [name])}
            if not dists & installed:
                missing[name] = module.relative_to(ADDON).as_posix()
    assert not missing, f"imported but not in addon/requirements.txt: {missing}"


def test_image_pins_the_versions_the_tests_run() -> None:
    """An image built later installs what the add-on's tests ran against (.venv-addon),
    not whatever is newest."""
    venv = _addon_venv()
    differing = {}
    for req in _image_requirements():
        pins = [spec.version for spec in req.specifier if spec.operator == "=="]
        installed = venv[canonicalize_name(req.name)].version
        if pins != [installed]:
            differing[req.name] = (str(req.specifier), installed)
    assert not differing, f"requirement vs tested version: {differing}"


def test_the_main_venv_differs_from_the_image_only_by_home_assistants_aiohttp() -> None:
    """The add-on code also runs in-process in the integration tests (.venv): there every
    pin is the image's but aiohttp, which Home Assistant 2025.4 pins to 3.11."""
    differing = {}
    for req in _image_requirements():
        pins = [spec.version for spec in req.specifier if spec.operator == "=="]
        installed = importlib.metadata.version(req.name)
        if pins != [installed]:
            differing[canonicalize_name(req.name)] = installed
    assert differing == {"aiohttp": "3.11.16"}


# --- s6-overlay v3 services -------------------------------------------------------


def _services() -> dict[str, Path]:
    return {p.name: p for p in S6_RC.iterdir() if p.is_dir()}


def _assert_script(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_mode & stat.S_IXUSR, f"{path} is not executable"
    data = path.read_bytes()
    assert b"\r\n" not in data, f"{path} has CRLF line ends (breaks the shebang)"
    assert data.startswith(b"#!/"), f"{path} has no shebang"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_s6_services_are_well_formed() -> None:
    services = _services()
    assert {"energy-tracker", "discovery", "user"} <= set(services)
    for name, directory in services.items():
        if name == "user":  # s6-overlay's own bundle: only its contents.d is ours
            continue
        kind = (directory / "type").read_text(encoding="ascii").strip()
        assert kind in {"longrun", "oneshot", "bundle"}, name
        if kind == "longrun":
            _assert_script(directory / "run")
            if (directory / "finish").exists():
                _assert_script(directory / "finish")
        elif kind == "oneshot":
            up = (directory / "up").read_text(encoding="ascii").split()
            assert len(up) == 1, f"{name}/up should name one script"
            _assert_script(ROOTFS / up[0].lstrip("/"))
        for dep in (directory / "dependencies.d").glob("*"):
            assert dep.name == "base" or dep.name in services, f"{name} needs unknown {dep.name}"
    assert (services["energy-tracker"] / "type").read_text().strip() == "longrun"
    assert (services["discovery"] / "type").read_text().strip() == "oneshot"
    # Discovery must not race the service it announces.
    assert (services["discovery"] / "dependencies.d/energy-tracker").exists()
    enabled = {p.name for p in (services["user"] / "contents.d").iterdir()}
    assert enabled == {"energy-tracker", "discovery"}


def test_service_runs_the_python_package() -> None:
    run = (S6_RC / "energy-tracker/run").read_text(encoding="utf-8")
    command = re.search(r"^exec (\S+) -m energy_tracker_addon --data-dir /data$", run, re.M)
    assert command, "the run script must exec the service (so it gets SIGTERM)"
    assert (PACKAGE / "__main__.py").is_file()
    assert "/opt/venv" in command.group(1)
    # A backup's SIGUSR1 before Python handles it would end the service (its default).
    trap = re.search(r"^trap '' USR1 USR2$", run, re.M)
    assert trap, "USR1/USR2 must be ignored before exec"
    assert trap.start() < command.start(), "USR1/USR2 must be ignored before exec"
    assert "python3 -m venv /opt/venv" in " ".join(_dockerfile())
    wrapper = ROOTFS / "usr/bin/energy-tracker-addon"
    _assert_script(wrapper)
    assert 'python3 -m energy_tracker_addon "$@"' in wrapper.read_text(encoding="utf-8")


# --- The discovery script, run ----------------------------------------------------

STUBS = r"""
set -o errexit -o errtrace -o nounset -o pipefail
bashio::log.info() { echo "INFO $*" >&2; }
bashio::log.error() { echo "ERROR $*" >&2; }
bashio::var.has_value() { [[ -n "${1}" ]]; }
bashio::config() { jq --raw-output ".${1}" "${STUB_OPTIONS}"; }
bashio::config.has_value() {
    local v; v=$(bashio::config "${1}"); [[ "${v}" != "null" && -n "${v}" ]];
}
bashio::addon.hostname() { echo "${STUB_HOSTNAME}"; }
bashio::discovery() { printf '%s\n%s\n' "${1}" "${2}" >> "${STUB_SENT}"; }
hostname() { echo fallback-host; }
sleep() { :; }
curl() {
    echo "${@: -1}" >> "${STUB_CURL}"
    [[ $(wc -l < "${STUB_CURL}") -gt "${STUB_CURL_FAILS}" ]]
}
source "${SCRIPT}"
"""


@pytest.fixture
def run_discovery(tmp_path: Path) -> Any:
    if shutil.which("jq") is None:
        pytest.skip("jq (in the add-on base image) is not installed here")
    script = ROOTFS / (S6_RC / "discovery/up").read_text(encoding="ascii").strip().lstrip("/")

    def run(
        options: dict[str, Any], token_file: str | None, curl_fails: int = 0,
        hostname: str = "a0d7b954-energy-tracker",
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str], subprocess.CompletedProcess[str]]:
        (tmp_path / "options.json").write_text(json.dumps(options))
        for name in ("sent", "curl"):
            (tmp_path / name).write_text("")
        if token_file is not None:
            (tmp_path / "api_token").write_text(token_file)
        env = {
            "PATH": os.environ["PATH"], "SCRIPT": str(script),
            "ENERGY_TRACKER_DATA_DIR": str(tmp_path),
            "STUB_OPTIONS": str(tmp_path / "options.json"), "STUB_HOSTNAME": hostname,
            "STUB_SENT": str(tmp_path / "sent"), "STUB_CURL": str(tmp_path / "curl"),
            "STUB_CURL_FAILS": str(curl_fails),
        }
        done = subprocess.run(
            ["bash", "-c", STUBS], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )
        lines = (tmp_path / "sent").read_text().splitlines()
        sent = [(lines[i], json.loads(lines[i + 1])) for i in range(0, len(lines), 2)]
        return sent, (tmp_path / "curl").read_text().splitlines(), done

    return run


# No api_token (the default options have none) or an empty one: the generated token.
@pytest.mark.parametrize("options", [{}, {"api_token": ""}])
def test_discovery_announces_the_generated_token_once_the_api_answers(
    run_discovery: Any, addon_cfg: dict[str, Any], options: dict[str, str]
) -> None:
    sent, probes, done = run_discovery(options, "gen-token_123\n", curl_fails=3)
    assert done.returncode == 0, done.stderr
    assert len(probes) == 4, "announced before the API answered"
    assert set(probes) == {"http://127.0.0.1:8099/api/v1/health"}
    # Exactly the keys the integration's async_step_hassio reads; the service name is the
    # integration's domain and the one config.yaml allows.
    assert sent == [(
        DOMAIN,
        {CONF_HOST: "a0d7b954-energy-tracker", CONF_PORT: 8099, CONF_API_TOKEN: "gen-token_123"},
    )]
    assert [s for s, _ in sent] == addon_cfg["discovery"]
    assert f"{sent[0][1]['port']}/tcp" in addon_cfg["ports"]


def test_discovery_prefers_the_configured_token(run_discovery: Any) -> None:
    # A token that bashio::var.json would take as raw JSON ("^…") and one needing escapes.
    for token in ('^my "secret"', "plain-token"):
        sent, _, done = run_discovery({"api_token": token}, "generated-but-unused\n")
        assert done.returncode == 0, done.stderr
        assert [payload["api_token"] for _, payload in sent] == [token]


def test_discovery_falls_back_to_the_container_hostname(run_discovery: Any) -> None:
    sent, _, done = run_discovery({"api_token": "t"}, None, hostname="")
    assert done.returncode == 0, done.stderr
    assert sent[0][1]["host"] == "fallback-host"


def test_discovery_gives_up_quietly_when_the_api_never_answers(run_discovery: Any) -> None:
    # A failing oneshot would stop the whole container (S6_BEHAVIOUR_IF_STAGE2_FAILS=2).
    sent, probes, done = run_discovery({"api_token": "t"}, None, curl_fails=10_000)
    assert done.returncode == 0, done.stderr
    assert sent == []
    assert len(probes) > 100
    assert "did not answer" in done.stderr


def test_discovery_without_any_token_sends_nothing(run_discovery: Any) -> None:
    sent, _, done = run_discovery({"api_token": ""}, None)
    assert done.returncode == 0, done.stderr
    assert sent == []
    assert "No API token" in done.stderr


# --- repository metadata ----------------------------------------------------------

HACS_KEYS = {
    "name", "content_in_root", "country", "filename", "hacs", "hide_default_branch",
    "homeassistant", "persistent_directory", "render_readme", "zip_release",
}


def test_hacs_json_has_only_documented_keys() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text(encoding="utf-8"))
    assert set(hacs) <= HACS_KEYS, "HACS rejects unknown keys (PREVENT_EXTRA)"
    assert hacs["name"]
    # The integration is tested against this version; older ones are refused.
    assert hacs["homeassistant"] == "2025.4.0"
    assert not hacs.get("content_in_root"), "the integration is in custom_components/"
    assert len(list((ROOT / "custom_components").glob("*/manifest.json"))) == 1


def test_the_repository_carries_its_licence() -> None:
    """HACS's validation refuses a repository without a licence GitHub can detect."""
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_github_runs_the_validators_of_both_stores() -> None:
    """hassfest and the HACS action for the integration, the add-on linter for addon/."""
    workflow = _yaml(ROOT / ".github" / "workflows" / "validate.yml")
    used = {step["uses"].split("@")[0]: step for job in workflow["jobs"].values()
            for step in job["steps"] if "uses" in step}
    assert "home-assistant/actions/hassfest" in used
    assert used["hacs/action"]["with"]["category"] == "integration"
    assert used["frenck/action-addon-linter"]["with"]["path"] == "./addon"


def test_repository_yaml_names_the_repository() -> None:
    repository = _yaml(ROOT / "repository.yaml")
    assert set(repository) == {"name", "url", "maintainer"}
    assert all(isinstance(v, str) and v for v in repository.values())
    vol.Url()(repository["url"])
    manifest = json.loads(
        (ROOT / "custom_components/energy_tracker/manifest.json").read_text(encoding="utf-8")
    )
    # One URL for the add-on store and HACS: both must point at the same repository.
    assert repository["url"] == manifest["documentation"]
    assert (ROOT / "addon/config.yaml").is_file(), "the Supervisor looks for */config.yaml"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_store_images_have_the_documented_shapes() -> None:
    width, height = _png_size(ADDON / "icon.png")
    assert width == height, "the icon must be square"
    assert 128 <= width <= 256
    width, height = _png_size(ADDON / "logo.png")
    assert width > height


def test_backup_hooks_run_the_shipped_script(addon_cfg: dict[str, Any]) -> None:
    """backup_pre / backup_post run inside the container: the script must be in the image
    and name the s6 service the signals go to (docs: DOCS.md "Backups")."""
    assert addon_cfg.get("backup", "hot") == "hot"  # the files are copied while it runs
    for key, argument in (("backup_pre", "pre"), ("backup_post", "post")):
        command, given = addon_cfg[key].split()
        assert given == argument
        script = ROOTFS / command.lstrip("/")
        _assert_script(script)
        subprocess.run(["sh", "-n", str(script)], check=True)
        text = script.read_text(encoding="utf-8")
        assert "/run/service/energy-tracker" in text
        assert "energy-tracker" in _services()
    from energy_tracker_addon.history import HELD_FOR_BACKUP_FILE
    assert f"/data/{HELD_FOR_BACKUP_FILE}" in (ROOTFS / "usr/bin/energy-tracker-backup").read_text(
        encoding="utf-8")


@pytest.mark.parametrize("service_holds", [True, False])
def test_backup_pre_fails_the_backup_when_the_history_does_not_pause(
    tmp_path: Path, service_holds: bool
) -> None:
    """The history's worker busy with a long export: backup_pre gave up after 10 s without
    a word and the Supervisor copied a database being written (helper 82)."""
    from energy_tracker_addon.history import HELD_FOR_BACKUP_FILE
    held = tmp_path / HELD_FOR_BACKUP_FILE
    s6_svc = tmp_path / "s6-svc"  # stands for s6 signalling the service, which holds or not
    s6_svc.write_text(f"#!/bin/sh\n{'touch ' + str(held) if service_holds else 'true'}\n")
    s6_svc.chmod(0o755)
    script = tmp_path / "energy-tracker-backup"
    script.write_text((ROOTFS / "usr/bin/energy-tracker-backup").read_text(encoding="utf-8")
                      .replace("/command/s6-svc", str(s6_svc))
                      .replace(f"/data/{HELD_FOR_BACKUP_FILE}", str(held)))
    done = subprocess.run(["sh", str(script), "pre"], capture_output=True, text=True,
                          env={**os.environ, "ENERGY_TRACKER_BACKUP_WAIT_S": "1"}, timeout=30)
    if service_holds:
        assert (done.returncode, done.stderr) == (0, "")
    else:
        assert done.returncode == 1
        assert "did not pause its writes within 1 s; backup refused" in done.stderr
