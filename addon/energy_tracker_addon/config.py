"""Read and validate the add-on options (`<data dir>/options.json`, docs/architecture.md).

Also owns the two small identities kept next to the options: the generated API token and
the meter id.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

import voluptuous as vol

from .protocol import RPICT_POWER_INPUTS
from .statefile import write_atomic

_LOGGER = logging.getLogger(__name__)

OPTIONS_FILE: Final = "options.json"
TOKEN_FILE: Final = "api_token"  # noqa: S105 - a file name, not a secret
# Options whose refused value is never echoed in the log
SECRET_OPTIONS: Final = frozenset({"api_token", "mqtt_password"})
METER_ID_FILE: Final = "meter_id"

RPICT_MODELS: Final = ("rpict3t1", "rpict3v1", "rpict4v3", "rpict7v1", "rpict8")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
ROLES: Final = ("mains", "circuit")
RELAY_SOURCES: Final = ("board", "gpio")
# BCM pins of the original system's three relay outputs, taken in order by gpio relays
# that name no pin.
DEFAULT_GPIO_PINS: Final = (22, 23, 24)
MAX_BOARD_RELAYS: Final = 8  # ET1 n_relays limit (docs/protocol.md 2.1)
MAX_CHANNEL_ID: Final = 8  # the RPICT8's inputs, the most of any hat

type Role = Literal["mains", "circuit"]
type RelaySource = Literal["board", "gpio"]


class OptionsError(ValueError):
    """An option is invalid; the message names the option and the problem."""


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    id: int
    name: str
    role: Role


DEFAULT_CHANNELS: Final = (
    ChannelConfig(1, "Mains", "mains"),
    ChannelConfig(2, "Kitchen", "circuit"),
    ChannelConfig(3, "Water heater & AC", "circuit"),
)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """One appliance relay (ids 1 to 8). A board relay's id is its relay number on the board."""

    id: int
    name: str
    source: RelaySource
    gpio: int | None = None  # BCM pin, gpio relays only
    channel: int | None = None  # CT channel measuring the switched circuit, if any
    # Board relays: closed at the board's boot and when its watchdog trips (a freezer).
    fail_safe_on: bool = False


DEFAULT_RELAYS: Final = (
    RelayConfig(1, "Water heater", "board", channel=3),
    RelayConfig(2, "Kitchen", "board", channel=2),
    RelayConfig(3, "Laundry", "board"),
)


@dataclass(frozen=True, slots=True)
class ExtraMeterConfig:
    """Another board/meter served by this add-on (extra_meters.py); its own device in HA."""

    id: str  # slug: URLs, the data folder <data>/meters/<id>/
    name: str
    rpict_port: str = ""  # empty: simulated, the replay shifted by a week
    rpict_model: str = "rpict3t1"
    rpict_vest: float = 230.0


# How late a line may come and still join the one before (see Options.joined_within_s).
READING_JITTER_S: Final = 1.0
# The main meter's id in the meter list and URLs: no extra meter may take it.
MAIN_METER: Final = "main"
METER_SLUG_PATTERN: Final = r"^[a-z0-9][a-z0-9_]{0,31}\Z"  # \Z: "$" lets a final newline in


@dataclass(frozen=True, slots=True)
class Options:
    api_token: str = ""
    rpict_port: str = ""
    rpict_model: str = "rpict3t1"
    rpict_baudrate: int = 38400
    rpict_vest: float = 230.0
    voltage_port: str = ""
    voltage_baudrate: int = 115200
    channels: tuple[ChannelConfig, ...] = DEFAULT_CHANNELS
    relays: tuple[RelayConfig, ...] = DEFAULT_RELAYS
    relay_watchdog_s: int = 0
    stale_after_s: int = 10
    persist_interval_s: int = 30
    simulation_speed: float = 1.0
    log_level: str = "info"
    # Analytics (analytics.py, gas.py).
    rolling_window: int = 5
    history_retention_days: int = 90
    history_max_size_mb: int = 500
    # Mainland France, the replayed house's grid: ADEME Base Empreinte's average
    # consumption mix of the early 2020s (life cycle, imports included) is about 52 g.
    co2_g_per_kwh: float = 52.0
    gas_m3_per_pulse: float = 0.01
    # MQTT publishing for fleets (mqtt.py).
    mqtt_enabled: bool = False
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: bool = False
    # PEM file of the CA that signed the broker's certificate (/ssl/...); empty: the
    # system's public CAs, right for a broker with a certificate from a public CA.
    mqtt_ca_certificate: str = ""
    mqtt_topic_prefix: str = "energy_tracker"
    mqtt_discovery_prefix: str = "homeassistant"
    # Appliance detection (nilm_service.py); empty dir: the bundle shipped with the add-on.
    nilm_enabled: bool = True
    nilm_bundle_dir: str = ""
    # Model ids to run (kettle, fridge, ...); empty: every model of the bundle.
    nilm_appliances: tuple[str, ...] = ()
    # Several meters / locations (extra_meters.py).
    extra_meters: tuple[ExtraMeterConfig, ...] = ()

    @property
    def joined_within_s(self) -> float:
        """Readings this close are one stretch of measurement (the energy between them is
        counted, NILM windows go on): stale_after_s and a second of serial jitter. At
        exactly stale_after_s 2, half of the hat's 2 s intervals were gaps, lost energy."""
        return self.stale_after_s + READING_JITTER_S


# The ids of a NILM bundle's models (models/README.md), as the API and the labels use them.
APPLIANCE_ID_PATTERN: Final = r"^[a-z0-9_]{1,64}\Z"
# 1-10 topic levels of 1-100 characters, none empty, no wildcards (not allowed when
# publishing), no control characters (brokers drop the connection), not starting with "$"
# (brokers keep $ topics for themselves and refuse publishes there). \Z, not $: "$"
# would accept a trailing newline.
MQTT_TOPIC_PATTERN: Final = (
    r"^(?!\$)[^#+/\s\x00-\x1f\x7f]{1,100}(/[^#+/\s\x00-\x1f\x7f]{1,100}){0,9}\Z"
)


def _integer(value: Any) -> int:
    # bool is an int subclass, and JSON `true` for a baud rate is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected an integer")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid("expected a number")
    # json.loads accepts NaN and Infinity, which every range check would let through.
    if not math.isfinite(value):
        raise vol.Invalid("expected a finite number")
    return float(value)


def _unique_channel_ids(channels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[int] = set()
    for index, channel in enumerate(channels):
        if channel["id"] in seen:
            raise vol.Invalid(f"channel id {channel['id']} is used twice", path=[index, "id"])
        seen.add(channel["id"])
    return channels


def _check_relays(relays: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids: set[int] = set()
    pins: set[int] = set()
    spare_pins = [p for p in DEFAULT_GPIO_PINS if p not in {r.get("gpio") for r in relays}]
    for index, relay in enumerate(relays):
        if relay["id"] in ids:
            raise vol.Invalid(f"relay id {relay['id']} is used twice", path=[index, "id"])
        ids.add(relay["id"])
        if relay["source"] == "board":
            continue
        if "gpio" not in relay:
            if not spare_pins:
                raise vol.Invalid("a gpio relay needs its BCM pin", path=[index, "gpio"])
            relay["gpio"] = spare_pins.pop(0)
        if relay["gpio"] in pins:
            raise vol.Invalid(f"GPIO {relay['gpio']} is used twice", path=[index, "gpio"])
        pins.add(relay["gpio"])
    return relays


def _check_extra_meters(meters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for index, meter in enumerate(meters):
        if meter["id"] == MAIN_METER:
            raise vol.Invalid(f"meter id {MAIN_METER!r} is the main meter's", path=[index, "id"])
        if meter["id"] in seen:
            raise vol.Invalid(f"meter id {meter['id']!r} is used twice", path=[index, "id"])
        seen.add(meter["id"])
    return meters


# Bidirectional overrides and isolates reorder what follows them on screen, so a name
# could show one text in Home Assistant and the log and hold another.
_BIDI_CONTROLS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                                  "\u2066\u2067\u2068\u2069")
# The joiners shape emoji sequences and Persian or Indic words. Other format characters
# (zero-width space, byte order mark, soft hyphen) show nothing: two names that look the
# same could differ, and a name of them alone looks empty.
_JOINERS: Final = frozenset("\u200c\u200d")


def _printable(name: str) -> str:
    # Names reach the log and Home Assistant: a line break in one forged log lines.
    if any(unicodedata.category(character) in ("Cc", "Zl", "Zp") for character in name):
        raise vol.Invalid("must not hold line breaks, tabs or other control characters")
    if any(character in _BIDI_CONTROLS for character in name):
        raise vol.Invalid("must not hold text-direction controls (such as U+202E)")
    if any(unicodedata.category(character) == "Cf" and character not in _JOINERS
           for character in name):
        raise vol.Invalid("must not hold invisible characters (such as U+200B or U+00AD)")
    if not name.strip():
        raise vol.Invalid("must show something, not only spaces")
    return name


_NAME: Final = vol.All(str, vol.Length(min=1, max=64), _printable)


_EXTRA_METER_SCHEMA: Final = vol.Schema(
    {
        vol.Required("id"): vol.All(str, vol.Match(
            METER_SLUG_PATTERN, msg="not a slug (a-z, 0-9 and _, at most 32)")),
        vol.Required("name"): _NAME,
        vol.Optional("rpict_port"): str,
        vol.Optional("rpict_model"): vol.In(RPICT_MODELS),
        vol.Optional("rpict_vest"): vol.All(_number, vol.Range(min=50, max=500)),
    }
)

_RELAY_SCHEMA: Final = vol.Schema(
    {
        vol.Required("id"): vol.All(_integer, vol.Range(min=1, max=MAX_BOARD_RELAYS)),
        vol.Required("name"): _NAME,
        vol.Required("source"): vol.In(RELAY_SOURCES),
        vol.Optional("gpio"): vol.All(_integer, vol.Range(min=0, max=27)),
        vol.Optional("channel"): vol.All(_integer, vol.Range(min=1, max=8)),
        vol.Optional("fail_safe_on"): bool,
    }
)

_CHANNEL_SCHEMA: Final = vol.Schema(
    {
        vol.Required("id"): vol.All(_integer, vol.Range(min=1, max=MAX_CHANNEL_ID)),
        vol.Required("name"): _NAME,
        vol.Required("role"): vol.In(ROLES),
    }
)


def _without_repeats(values: list[str]) -> list[str]:
    """A model listed twice is listed once: a slip in a list editor is no reason to stop
    the meter."""
    kept = list(dict.fromkeys(values))
    if len(kept) < len(values):
        _LOGGER.warning("nilm_appliances lists a model more than once: %s", values)
    return kept


def _api_token(value: Any) -> str:
    """Empty (a generated token), or one nobody on the network could guess quickly."""
    if value == "":
        return ""
    # Printable: a control character passed \S, and no client can send it in a header
    # (aiohttp and Home Assistant refuse it; a raw client got a 400).
    if (not isinstance(value, str) or re.fullmatch(r"\S{16,}", value) is None
            or not value.isprintable()):
        raise vol.Invalid("at least 16 characters without spaces or control characters "
                          "(empty: a generated one)")
    return value


_SCHEMA: Final = vol.Schema(
    {
        vol.Optional("api_token"): _api_token,
        vol.Optional("rpict_port"): str,
        vol.Optional("rpict_model"): vol.In(RPICT_MODELS),
        vol.Optional("rpict_baudrate"): vol.All(_integer, vol.Range(min=50, max=4_000_000)),
        vol.Optional("rpict_vest"): vol.All(_number, vol.Range(min=50, max=500)),
        vol.Optional("voltage_port"): str,
        vol.Optional("voltage_baudrate"): vol.All(_integer, vol.Range(min=50, max=4_000_000)),
        vol.Optional("channels"): vol.All(
            [_CHANNEL_SCHEMA], vol.Length(min=1, msg="needs at least one channel"),
            _unique_channel_ids,
        ),
        vol.Optional("relays"): vol.All([_RELAY_SCHEMA], _check_relays),
        vol.Optional("relay_watchdog_s"): vol.All(_integer, vol.Range(min=0, max=3600)),
        vol.Optional("stale_after_s"): vol.All(_integer, vol.Range(min=2, max=600)),
        vol.Optional("persist_interval_s"): vol.All(_integer, vol.Range(min=1, max=3600)),
        vol.Optional("simulation_speed"): vol.All(_number, vol.Range(min=0.1, max=1000)),
        vol.Optional("log_level"): vol.In(LOG_LEVELS),
        vol.Optional("rolling_window"): vol.All(_integer, vol.Range(min=1, max=3600)),
        vol.Optional("history_retention_days"): vol.All(_integer, vol.Range(min=1, max=3650)),
        vol.Optional("history_max_size_mb"): vol.All(_integer, vol.Range(min=10, max=100000)),
        vol.Optional("co2_g_per_kwh"): vol.All(_number, vol.Range(min=0, max=2000)),
        vol.Optional("gas_m3_per_pulse"): vol.All(_number, vol.Range(min=0.001, max=10)),
        vol.Optional("mqtt_enabled"): bool,
        vol.Optional("mqtt_host"): vol.All(str, str.strip),
        vol.Optional("mqtt_port"): vol.All(_integer, vol.Range(min=1, max=65535)),
        vol.Optional("mqtt_username"): str,
        vol.Optional("mqtt_password"): str,
        vol.Optional("mqtt_tls"): bool,
        vol.Optional("mqtt_ca_certificate"): str,
        vol.Optional("mqtt_topic_prefix"): vol.Match(
            MQTT_TOPIC_PATTERN, msg="not an MQTT topic without wildcards"
        ),
        vol.Optional("mqtt_discovery_prefix"): vol.Match(
            MQTT_TOPIC_PATTERN, msg="not an MQTT topic without wildcards"
        ),
        vol.Optional("nilm_enabled"): bool,
        vol.Optional("nilm_bundle_dir"): vol.All(str, str.strip),
        vol.Optional("nilm_appliances"): vol.All(
            [vol.Match(APPLIANCE_ID_PATTERN, msg="not a model id such as kettle")],
            _without_repeats,
        ),
        vol.Optional("extra_meters"): vol.All([_EXTRA_METER_SCHEMA], _check_extra_meters),
    }
)


def _describe(error: vol.Invalid, data: Any) -> str:
    """`channels[1].role: value must be one of ['circuit', 'mains'] (got 'solar')`."""
    name = ""
    value: Any = data
    found = True
    for key in error.path:
        name += f"[{key}]" if isinstance(key, int) else (f".{key}" if name else str(key))
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            found = False
    # A misspelt key ("mqtt_pasword") may well hold a secret: unknown keys' values are
    # never shown.
    secret = bool(error.path) and (error.path[-1] in SECRET_OPTIONS
                                   or error.error_message == "extra keys not allowed")
    shown = repr(value)
    if len(shown) > 80:  # enough to recognise it; the log is not the place for all of it
        shown = shown[:77] + "..."
    got = f" (got {shown})" if found and error.path and not secret else ""
    return f"{name or 'options'}: {error.msg}{got}"


def parse_options(data: Any) -> Options:
    """Validate decoded options.json content; missing keys take their defaults."""
    if not isinstance(data, dict):
        raise OptionsError(f"options: expected a JSON object (got {type(data).__name__})")
    try:
        valid = _SCHEMA(data)
    except vol.MultipleInvalid as error:
        raise OptionsError(
            "; ".join(sorted(_describe(e, data) for e in error.errors))
        ) from None
    if "channels" in valid:
        valid["channels"] = tuple(
            ChannelConfig(c["id"], c["name"], c["role"]) for c in valid["channels"]
        )
    if "relays" in valid:
        valid["relays"] = tuple(
            RelayConfig(r["id"], r["name"], r["source"], r.get("gpio"), r.get("channel"),
                        r.get("fail_safe_on", False))
            for r in valid["relays"]
        )
    if "extra_meters" in valid:
        valid["extra_meters"] = tuple(ExtraMeterConfig(**m) for m in valid["extra_meters"])
    if "nilm_appliances" in valid:
        valid["nilm_appliances"] = tuple(valid["nilm_appliances"])
    if valid.get("mqtt_enabled") and not valid.get("mqtt_host"):
        raise OptionsError("mqtt_host: needed when mqtt_enabled is true")
    if valid.get("mqtt_enabled") and valid.get("mqtt_password") and not valid.get(
            "mqtt_username"):
        _LOGGER.warning("mqtt_password is set without mqtt_username: the broker is asked "
                        "for an anonymous login and the password is not sent")
    # Only with publishing on: a path left behind when MQTT was turned off must not stop
    # the meter (the Supervisor accepts it).
    ca = valid.get("mqtt_ca_certificate", "") if valid.get("mqtt_enabled") else ""
    if ca and not valid.get("mqtt_tls"):
        raise OptionsError("mqtt_ca_certificate: only used with mqtt_tls: true")
    if ca and not ca.startswith("/"):
        raise OptionsError(f"mqtt_ca_certificate: an absolute path such as /ssl/ca.crt "
                           f"(got {ca!r})")
    options = Options(**valid)
    # Checks across options: refused here, before anything starts, like every other one.
    check_hat_channels(options)
    check_ports_distinct(options)
    return unlink_missing_relay_channels(options)


def check_ports_distinct(options: Options) -> None:
    """No serial port is given to two boards. Raises OptionsError.

    Two readers of one port each get some of its bytes (luck decides which), and neither
    board's lines make sense: it showed as an unexplained silence of one board.
    """
    seen: dict[str, str] = {}
    ports = [("rpict_port", options.rpict_port), ("voltage_port", options.voltage_port)]
    ports += [(f"extra_meters[{i}].rpict_port", m.rpict_port)
              for i, m in enumerate(options.extra_meters)]
    for name, port in ports:
        if not port:
            continue
        device = os.path.realpath(port)  # /dev/serial0 is a link to /dev/ttyAMA0
        if device in seen:
            raise OptionsError(f"{name}: the same port as {seen[device]} ({port}): each "
                               "board needs its own")
        seen[device] = name


def check_hat_channels(options: Options) -> None:
    """Every channel id is a CT input of the hat model. Raises OptionsError."""
    inputs = RPICT_POWER_INPUTS[options.rpict_model]
    for channel in options.channels:
        if channel.id > inputs:
            raise OptionsError(f"channels: channel id {channel.id} does not exist on an "
                               f"{options.rpict_model}, which has {inputs} CT inputs")


def unlink_missing_relay_channels(options: Options) -> Options:
    """Relays that name a channel not in `channels` lose the link, with a warning: the
    default relays name channel 3, and a house metered on two clamps still switches them."""
    channel_ids = {c.id for c in options.channels}
    relays = []
    for relay in options.relays:
        if relay.channel is not None and relay.channel not in channel_ids:
            _LOGGER.warning("Relay %d (%s) names channel %d, which is not in channels: its "
                            "draw is taken from the total when it switches instead",
                            relay.id, relay.name, relay.channel)
            relay = replace(relay, channel=None)
        relays.append(relay)
    return replace(options, relays=tuple(relays))


def channels_on_hat(channels: tuple[ChannelConfig, ...],
                    model: str) -> tuple[ChannelConfig, ...]:
    """The channels a hat model has inputs for; the first default channel if none."""
    inputs = RPICT_POWER_INPUTS[model]
    return tuple(c for c in channels if c.id <= inputs) or DEFAULT_CHANNELS[:1]


def load_options(data_dir: Path) -> Options:
    """Options from `<data_dir>/options.json`; a missing file means all defaults."""
    path = data_dir / OPTIONS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _LOGGER.info("No %s: using default options", path)
        return Options()
    except (OSError, UnicodeDecodeError) as error:
        raise OptionsError(f"options: cannot read {path} ({error})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise OptionsError(f"options: {path} is not valid JSON "
                           f"({error or 'nested too deeply'})") from None
    return parse_options(data)


def _read_kept(path: Path) -> str | None:
    """A generated id kept in `path`: None before the first run; anything unreadable as
    ASCII comes back as text that is not a valid id."""
    try:
        return path.read_bytes().decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None


_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{32,}")
_METER_ID_RE: Final = re.compile(r"[0-9a-f]{32}")


def resolve_token(options: Options, data_dir: Path) -> str:
    """The API token: the option if set, else one generated once and kept (mode 0600)."""
    if options.api_token:
        return options.api_token
    path = data_dir / TOKEN_FILE
    token = _read_kept(path)
    if token is not None and _TOKEN_RE.fullmatch(token):
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return token
    if token is not None:
        _LOGGER.error("%s does not hold a valid token: generating a new one", path)
    token = secrets.token_urlsafe(32)
    write_atomic(path, token + "\n", mode=0o600)
    _LOGGER.info("Generated a new API token in %s", path)
    return token


def kept_meter_id(data_dir: Path) -> str | None:
    """The meter id kept in `data_dir`, if a valid one is there (nothing is created)."""
    try:
        value = _read_kept(data_dir / METER_ID_FILE)
    except OSError:
        return None
    return value if value is not None and _METER_ID_RE.fullmatch(value) else None


def meter_id(data_dir: Path) -> str:
    """This meter's random id, created once and kept in `<data_dir>/meter_id`."""
    path = data_dir / METER_ID_FILE
    value = _read_kept(path)
    if value is not None and _METER_ID_RE.fullmatch(value):
        return value
    if value is not None:
        # A new id makes Home Assistant see a new device; say so loudly.
        _LOGGER.error("%s does not hold a valid meter id: generating a new one", path)
    value = uuid.uuid4().hex
    write_atomic(path, value + "\n", mode=0o600)
    return value
