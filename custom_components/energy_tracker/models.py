"""Typed, validated views of the add-on API payloads (docs/api.md).

The add-on is the integration's only data source, so anything that does not have the
documented shape is refused here instead of surfacing later as a wrong entity state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol

from .analytics_models import ANALYTICS_SCHEMA, AnalyticsState
from .meters_models import (
    METERS_SCHEMA,
    ExtraMeterState,
    MeterComparison,
    comparison_from_validated,
    extra_meters_from_validated,
)
from .nilm_models import APPLIANCES_SCHEMA, ApplianceState, appliances_from_validated


class InvalidData(Exception):
    """The add-on answered with a payload that does not match docs/api.md."""


def _number(value: Any) -> float:
    # bool is an int subclass; "true" is not a measurement.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise vol.Invalid(f"expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid(f"expected an integer, got {value!r}")
    return value


NUMBER_OR_NULL = vol.Any(None, _number)
INTEGER_OR_NULL = vol.Any(None, _integer)
TEXT_OR_NULL = vol.Any(None, str)

# Unknown keys are allowed so a newer add-on does not break an older integration.
_CHANNEL_INFO = vol.Schema(
    {vol.Required("id"): _integer, vol.Required("name"): str, vol.Required("role"): str},
    extra=vol.ALLOW_EXTRA,
)
_BOARD_INFO = vol.Schema(
    {
        vol.Required("id"): str,
        vol.Optional("model"): TEXT_OR_NULL,
        vol.Optional("fw_version"): TEXT_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
INFO_SCHEMA = vol.Schema(
    {
        vol.Required("meter_id"): vol.All(str, vol.Length(min=1)),
        vol.Required("name"): str,
        vol.Required("version"): str,
        vol.Required("source"): str,
        vol.Optional("rpict_model"): TEXT_OR_NULL,
        vol.Required("boards"): [_BOARD_INFO],
        vol.Required("channels"): [_CHANNEL_INFO],
    },
    extra=vol.ALLOW_EXTRA,
)
_CHANNEL_STATE = vol.Schema(
    {
        vol.Required("id"): _integer,
        vol.Required("name"): str,
        vol.Optional("role"): str,
        vol.Required("power_w"): NUMBER_OR_NULL,
        vol.Required("current_a"): NUMBER_OR_NULL,
        vol.Required("power_factor"): NUMBER_OR_NULL,
        vol.Required("energy_kwh"): NUMBER_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
_BOARD_STATE = vol.Schema(
    {
        vol.Required("connected"): bool,
        vol.Optional("last_frame"): TEXT_OR_NULL,
        vol.Optional("lines_ok"): INTEGER_OR_NULL,
        vol.Optional("lines_rejected"): INTEGER_OR_NULL,
        vol.Optional("frames_lost"): INTEGER_OR_NULL,
        vol.Optional("boot_cause"): TEXT_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
_RELAY = vol.Schema(
    {
        vol.Required("id"): _integer,
        vol.Required("name"): str,
        vol.Optional("source"): TEXT_OR_NULL,
        vol.Required("state"): vol.Any(None, bool),
        vol.Required("available"): bool,
        vol.Required("priority"): _integer,
        vol.Required("min_on_s"): _integer,
        vol.Optional("min_off_s", default=None): vol.Any(None, _integer),  # add-on 0.3.17+
        vol.Optional("last_changed"): TEXT_OR_NULL,
        vol.Optional("shed", default=False): bool,
        vol.Optional("channel", default=None): vol.Any(None, _integer),
        vol.Optional("revision", default=None): vol.Any(None, _integer),  # add-on 0.3.20+
    },
    extra=vol.ALLOW_EXTRA,
)
RELAYS_SCHEMA = vol.Schema({vol.Required("relays"): [_RELAY]}, extra=vol.ALLOW_EXTRA)
# The analytics' anomalies (anomaly.Anomaly.as_dict(), docs/api.md): the episodes in
# progress; one episode is identified by its series, kind and start.
_ANOMALY = vol.Schema(
    {
        vol.Required("kind"): str,
        vol.Required("series"): str,
        vol.Required("started"): str,
        vol.Optional("power_w"): NUMBER_OR_NULL,
        vol.Optional("usual_w"): NUMBER_OR_NULL,
        vol.Optional("slot"): TEXT_OR_NULL,
        vol.Optional("reason"): TEXT_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
STATE_SCHEMA = vol.Schema(
    {
        vol.Required("meter_id"): vol.All(str, vol.Length(min=1)),
        vol.Required("seq"): _integer,
        vol.Required("available"): bool,
        vol.Required("total_power_w"): NUMBER_OR_NULL,
        vol.Required("total_energy_kwh"): NUMBER_OR_NULL,
        vol.Required("voltage_v"): NUMBER_OR_NULL,
        vol.Required("frequency_hz"): NUMBER_OR_NULL,
        vol.Required("temperature_c"): NUMBER_OR_NULL,
        vol.Required("power_factor"): NUMBER_OR_NULL,
        vol.Required("channels"): [_CHANNEL_STATE],
        vol.Required("boards"): {str: _BOARD_STATE},
        # Optional: add-ons before relays / analytics send neither.
        vol.Optional("relays", default=list): [_RELAY],
        vol.Optional("anomalies", default=list): [_ANOMALY],
    },
    extra=vol.ALLOW_EXTRA,
)


def _validate(schema: vol.Schema, payload: Any, what: str) -> dict[str, Any]:
    try:
        validated: dict[str, Any] = schema(payload)
    except vol.Invalid as err:
        raise InvalidData(f"{what} does not match the API: {err}") from err
    return validated


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A CT channel as configured in the add-on."""

    id: int
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """A serial board the add-on reads (the RPICT hat, the voltage board)."""

    id: str
    model: str | None
    fw_version: str | None


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """GET /api/v1/info."""

    meter_id: str
    name: str
    version: str
    source: str
    boards: tuple[BoardInfo, ...]
    channels: tuple[ChannelInfo, ...]

    @classmethod
    def from_json(cls, payload: Any) -> MeterInfo:
        """Validate and convert an info payload."""
        data = _validate(INFO_SCHEMA, payload, "info")
        return cls(
            meter_id=data["meter_id"],
            name=data["name"],
            version=data["version"],
            source=data["source"],
            boards=tuple(
                BoardInfo(b["id"], b.get("model"), b.get("fw_version")) for b in data["boards"]
            ),
            channels=tuple(
                ChannelInfo(c["id"], c["name"], c["role"]) for c in data["channels"]
            ),
        )


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One channel's current values; None means unknown right now."""

    id: int
    power_w: float | None
    current_a: float | None
    power_factor: float | None
    energy_kwh: float | None


@dataclass(frozen=True, slots=True)
class BoardState:
    """Link health of one board."""

    connected: bool
    last_frame: str | None
    lines_ok: int | None
    lines_rejected: int | None
    frames_lost: int | None
    boot_cause: str | None = None  # how the voltage board's boot began (firmware ≥ 1.4.0)


@dataclass(frozen=True, slots=True)
class RelayState:
    """One relay: `state` is what the relay acknowledged (None while unknown)."""

    id: int
    name: str
    state: bool | None
    available: bool
    priority: int
    min_on_s: int
    shed: bool
    last_changed: str | None
    channel: int | None = None  # the CT channel measuring the switched circuit
    min_off_s: int | None = None  # None: an add-on before 0.3.17, which has none
    revision: int | None = None  # +1 at each change this add-on run; None before 0.3.20

    @classmethod
    def from_json(cls, payload: Any) -> RelayState:
        """Validate and convert a relay object (PUT /api/v1/relays/{id})."""
        return cls.from_validated(_validate(_RELAY, payload, "relay"))

    @classmethod
    def from_validated(cls, r: dict[str, Any]) -> RelayState:
        """Convert an already validated relay object."""
        return cls(r["id"], r["name"], r["state"], r["available"], r["priority"],
                   r["min_on_s"], r["shed"], r.get("last_changed"), r["channel"],
                   r["min_off_s"], r["revision"])


NILM_STATUS_SCHEMA = vol.Schema(
    {
        vol.Required("available"): bool,
        vol.Optional("status"): str,  # add-on 0.3.4+; new values may come
        vol.Required("reason"): TEXT_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)


@dataclass(frozen=True, slots=True)
class NilmStatus:
    """Whether the add-on's appliance detection runs, and why not (GET /api/v1/appliances)."""

    available: bool
    reason: str | None
    status: str | None  # running, disabled, error; None from add-ons before 0.3.4

    @property
    def broken(self) -> bool:
        """Off for a reason to fix (models missing or unusable), not by its option."""
        if self.status is not None:
            return self.status == "error"
        # Older add-ons say it only in words
        return not self.available and not (self.reason or "").startswith("disabled")

    @classmethod
    def from_json(cls, payload: Any) -> NilmStatus:
        """Validate and convert the appliances summary."""
        data = _validate(NILM_STATUS_SCHEMA, payload, "appliances")
        return cls(data["available"], data["reason"], data.get("status"))


def relays_from_json(payload: Any) -> dict[int, RelayState]:
    """GET /api/v1/relays."""
    data = _validate(RELAYS_SCHEMA, payload, "relays")
    return {r["id"]: RelayState.from_validated(r) for r in data["relays"]}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An anomaly episode the add-on's analytics report as in progress."""

    kind: str
    series: str
    started: str
    power_w: float | None
    usual_w: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class MeterState:
    """GET /api/v1/state, and the data of every stream message."""

    meter_id: str
    seq: int
    available: bool
    total_power_w: float | None
    total_energy_kwh: float | None
    voltage_v: float | None
    frequency_hz: float | None
    temperature_c: float | None
    power_factor: float | None
    channels: dict[int, ChannelState]
    boards: dict[str, BoardState]
    relays: dict[int, RelayState] = field(default_factory=dict)
    anomalies: tuple[Anomaly, ...] = ()
    analytics: AnalyticsState = field(default_factory=AnalyticsState)
    # NILM estimates by appliance id; None while the add-on's detection is off.
    appliances: dict[str, ApplianceState] | None = None
    # The add-on's other meters by id, and today's comparison (both empty with one meter).
    extra_meters: dict[str, ExtraMeterState] = field(default_factory=dict)
    meter_comparison: MeterComparison | None = None

    @classmethod
    def from_json(cls, payload: Any) -> MeterState:
        """Validate and convert a state payload."""
        data = _validate(STATE_SCHEMA, payload, "state")
        meters = _validate(METERS_SCHEMA, payload, "state meters")
        return cls(
            meter_id=data["meter_id"],
            seq=data["seq"],
            available=data["available"],
            total_power_w=data["total_power_w"],
            total_energy_kwh=data["total_energy_kwh"],
            voltage_v=data["voltage_v"],
            frequency_hz=data["frequency_hz"],
            temperature_c=data["temperature_c"],
            power_factor=data["power_factor"],
            channels={
                c["id"]: ChannelState(
                    id=c["id"],
                    power_w=c["power_w"],
                    current_a=c["current_a"],
                    power_factor=c["power_factor"],
                    energy_kwh=c["energy_kwh"],
                )
                for c in data["channels"]
            },
            boards={
                board_id: BoardState(
                    connected=b["connected"],
                    last_frame=b.get("last_frame"),
                    lines_ok=b.get("lines_ok"),
                    lines_rejected=b.get("lines_rejected"),
                    frames_lost=b.get("frames_lost"),
                    boot_cause=b.get("boot_cause"),
                )
                for board_id, b in data["boards"].items()
            },
            relays={r["id"]: RelayState.from_validated(r) for r in data["relays"]},
            anomalies=tuple(
                Anomaly(
                    kind=a["kind"], series=a["series"], started=a["started"],
                    power_w=a.get("power_w"), usual_w=a.get("usual_w"),
                    reason=a.get("reason"),
                )
                for a in data["anomalies"]
            ),
            analytics=AnalyticsState.from_validated(
                _validate(ANALYTICS_SCHEMA, payload, "state analytics")
            ),
            appliances=appliances_from_validated(
                _validate(APPLIANCES_SCHEMA, payload, "state appliances")
            ),
            extra_meters=extra_meters_from_validated(meters),
            meter_comparison=comparison_from_validated(meters),
        )
