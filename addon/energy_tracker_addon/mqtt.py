"""Publish every reading to an MQTT broker, with Home Assistant MQTT discovery (docs/api.md).

For fleets: a central Home Assistant (or any MQTT consumer) aggregates many meters from one
broker. The meter's listener only appends to a bounded queue, so a slow or absent broker
never holds up the meter; one background task owns the connection, reconnects with backoff
and announces (discovery, availability) again on every connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Final

import aiomqtt

from . import __version__
from .config import MAX_CHANNEL_ID, Options
from .meter import Meter
from .protocol import RPICT_PRINTS_TEMPERATURE, RPICT_PRINTS_VOLTAGE

_LOGGER = logging.getLogger(__name__)

QUEUE_SIZE: Final = 100  # readings kept while the broker is away; the oldest go first
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
# A connection the broker drops sooner than this does not reset the backoff: a broker that
# accepts and then closes at once (another client with the same id) is not hammered. Above
# BACKOFF_MAX_S, or two add-ons taking turns would each look stable to the other.
STABLE_S: Final = 2 * BACKOFF_MAX_S
KEEPALIVE_S: Final = 30
# The goodbye (`offline`, its PUBACK waited 2 s) and a clean disconnect: every meter's
# publisher within the Supervisor's 10 s kill, with the rest of the stop.
STOP_TIMEOUT_S: Final = 2.5
ONLINE: Final = "online"
OFFLINE: Final = "offline"
DEVICE_NAME: Final = "Energy Tracker"
PROJECT_URL: Final = "https://github.com/energy-tracker/energy_tracker"
# CONNACK codes for a refused login: MQTT 3.1.1 (4, 5) and their MQTT 5 reason codes.
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})

# (key, name, state JSON key, device_class, state_class, unit, extra discovery fields)
_TOTALS: Final[tuple[tuple[str, str, str, str, str, str | None, dict[str, Any]], ...]] = (
    ("total_power", "Total power", "total_power_w", "power", "measurement", "W", {}),
    ("total_energy", "Total energy", "total_energy_kwh", "energy", "total_increasing", "kWh",
     {"suggested_display_precision": 3}),
    ("voltage", "Voltage", "voltage_v", "voltage", "measurement", "V", {}),
    ("frequency", "Frequency", "frequency_hz", "frequency", "measurement", "Hz", {}),
    ("power_factor", "Power factor", "power_factor", "power_factor", "measurement", None, {}),
    ("temperature", "Temperature", "temperature_c", "temperature", "measurement", "°C",
     {"entity_category": "diagnostic"}),
)
_PER_CHANNEL: Final[tuple[tuple[str, str, str, str, str | None, dict[str, Any]], ...]] = (
    ("power", "power_w", "power", "measurement", "W", {}),
    ("current", "current_a", "current", "measurement", "A", {}),
    ("energy", "energy_kwh", "energy", "total_increasing", "kWh",
     {"suggested_display_precision": 3}),
)


def _retrieve_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark the client's disconnect error as seen: a drop while publishing or subscribing
    (not while iterating messages) leaves it unread, and asyncio would log it as an error
    with a traceback when the client is collected. The drop itself is logged by _run."""
    disconnected = client._disconnected  # aiomqtt 2.x keeps it private
    if disconnected.done() and not disconnected.cancelled():
        disconnected.exception()


def _code(rc: object) -> int | None:
    """A CONNACK code as a number, whether paho gave an int or a ReasonCode."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


class MqttPublisher:
    """Mirror the meter onto `<prefix>/<meter_id>/…`; `start()` returns at once."""

    def __init__(self, options: Options, meter: Meter, meter_id: str, *,
                 voltage_board: bool, name: str | None = None,
                 retired_meter_ids: Sequence[str] = ()) -> None:
        """`voltage_board`: a board measures Vrms and frequency for this meter; `name`:
        an extra meter's configured name (its device name and the prefix of its log lines);
        `retired_meter_ids`: extra meters taken out of the options, whose devices it
        removes from the central Home Assistant."""
        self._options = options
        self._retired = tuple(retired_meter_ids)
        self._meter = meter
        self._meter_id = meter_id
        self._voltage_board = voltage_board
        self._name = name
        self._broker = f"{options.mqtt_host}:{options.mqtt_port}"
        base = f"{options.mqtt_topic_prefix}/{meter_id}"
        self.state_topic = f"{base}/state"
        self.availability_topic = f"{base}/availability"
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=QUEUE_SIZE)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connected = False
        self._dropped = 0
        # What was logged of the current outage (at most one line of each kind), and
        # whether its end was: a flapping connection logs one warning, not one per retry.
        self._outage: set[str] = set()
        self._back_logged = False
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._tls: ssl.SSLContext | None = None
        self._last_error: str | None = "not connected yet"

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        """The `mqtt` object of /api/v1/info: the broker, and why it is not connected."""
        return {"broker": self._broker,
                "connected": self._connected,
                "error": None if self._connected else self._last_error}

    async def start(self) -> None:
        try:
            self._tls = self._tls_context()
        except (OSError, ssl.SSLError) as error:
            # Never fall back to plain MQTT: the user asked for an encrypted link.
            _LOGGER.error("MQTT publishing off: cannot load mqtt_ca_certificate %s (%s)",
                          self._options.mqtt_ca_certificate, error)
            self._last_error = f"publishing off: cannot load mqtt_ca_certificate ({error})"
            return
        self._remove_listener = self._meter.add_listener(self._on_reading)
        self._task = asyncio.create_task(self._run(), name="energy_tracker mqtt")

    async def stop(self) -> None:
        """Say `offline` and disconnect cleanly (so the broker does not send the will)."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wakeup.set()
        if self._connected:  # not connecting or backing off: say goodbye first
            await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        while not task.done():
            # Again if need be: cancelled, the client still waits up to its 10 s timeout
            # for a hung broker to close the connection, and a second cancel ends that.
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task

    def _on_reading(self, snapshot: dict[str, Any]) -> None:
        # Called by the meter: must stay cheap and never wait for the network.
        if len(self._queue) == self._queue.maxlen:
            self._dropped += 1
        self._queue.append(snapshot)
        self._wakeup.set()

    # ------------------------------------------------------------------ connection

    def _tls_context(self) -> ssl.SSLContext | None:
        """With mqtt_tls: certificate and host name checked, against the given CA or the
        system's public CAs."""
        if not self._options.mqtt_tls:
            return None
        return ssl.create_default_context(cafile=self._options.mqtt_ca_certificate or None)

    @property
    def _client_id(self) -> str:
        return f"energy_tracker_{self._meter_id}"

    def _client(self) -> aiomqtt.Client:
        options = self._options
        return aiomqtt.Client(
            options.mqtt_host,
            options.mqtt_port,
            username=options.mqtt_username or None,
            password=options.mqtt_password or None,
            # One id per meter: a meter that comes back replaces its own stale session.
            identifier=self._client_id,
            will=aiomqtt.Will(self.availability_topic, OFFLINE, qos=1, retain=True),
            keepalive=KEEPALIVE_S,
            timeout=10,
            tls_context=self._tls,
            logger=_LOGGER.getChild("client"),
        )

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        # One line per meter: say whose.
        where = self._broker if self._name is None else f"{self._broker} (meter {self._name})"
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            connected_at: float | None = None
            client = self._client()
            try:
                async with client:
                    connected_at = loop.time()
                    self._connected = True
                    self._last_error = None
                    self._log_connected(where)
                    await self._session(client)
                    if self._stopping.is_set():
                        await client.publish(self.availability_topic, OFFLINE, qos=1,
                                             retain=True, timeout=2)
            except aiomqtt.MqttError as error:
                lasted = None if connected_at is None else loop.time() - connected_at
                self._log_outage(where, error, lasted)
            except Exception:
                # Publishing is a side job: a bug here must not end it (nor the add-on).
                _LOGGER.exception("MQTT publisher failed; reconnecting")
            finally:
                self._connected = False
                _retrieve_disconnect_error(client)
            if self._stopping.is_set():
                return
            if connected_at is not None and loop.time() - connected_at >= STABLE_S:
                backoff = BACKOFF_MIN_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _log_connected(self, where: str) -> None:
        if not self._outage:
            _LOGGER.info("Connected to MQTT broker %s, publishing to %s", where,
                         self.state_topic)
        elif not self._back_logged:
            _LOGGER.info("MQTT broker %s is back (%d readings dropped while it was away)",
                         where, self._dropped)
            self._back_logged = True
            self._dropped = 0

    def _log_outage(self, where: str, error: aiomqtt.MqttError, lasted: float | None) -> None:
        """One line per kind of trouble and outage; an outage ends with a stable session."""
        if self._stopping.is_set():
            return
        self._last_error = str(error)
        if lasted is not None and lasted >= STABLE_S:
            self._outage.clear()
            self._back_logged = False
            self._dropped = 0
        # A plain-MQTT port resets a TLS hello: the user's fix, like a refused certificate.
        tls_reset = self._options.mqtt_tls and isinstance(error.__context__,
                                                          ConnectionResetError)
        if lasted is None and (isinstance(error.__context__, ssl.SSLError) or tls_reset):
            kind = "tls"
        elif lasted is None and isinstance(error, aiomqtt.MqttCodeError) \
                and _code(error.rc) in _AUTH_REFUSED:
            kind = "auth"
        elif lasted is not None and self._outage:
            kind = "dropped"  # a second drop soon after connecting: flapping
        else:
            kind = "unavailable"
        if kind in self._outage:
            _LOGGER.debug("MQTT broker %s still unavailable: %s", where, error)
            return
        self._outage.add(kind)
        if kind == "tls" and tls_reset:
            _LOGGER.error("MQTT broker %s closed the connection during the TLS handshake "
                          "(%s): is mqtt_port a TLS port? Brokers usually take plain MQTT on "
                          "1883 and TLS on 8883", where, error)
        elif kind == "tls":
            # A certificate the CA does not vouch for: only the user can fix it, so an
            # error; retried all the same.
            _LOGGER.error("MQTT broker %s failed the TLS handshake (%s): check "
                          "mqtt_ca_certificate, mqtt_host (the name in the broker's "
                          "certificate) and mqtt_port", where, error)
        elif kind == "auth":
            # Retried anyway (the broker's password file may be fixed meanwhile), but
            # logged at error level: only the user can fix this one.
            user = self._options.mqtt_username
            who = f"the login of user {user!r}" if user else "an anonymous login"
            _LOGGER.error("MQTT broker %s refused %s (%s): %s", where, who, error,
                          "check mqtt_username and mqtt_password" if user else
                          "set mqtt_username and mqtt_password")
        elif kind == "dropped":
            _LOGGER.warning(
                "MQTT broker %s keeps closing the connection soon after accepting it (%s): "
                "retrying less often. Brokers do this when another client connects with "
                "the same client id, %s: does another add-on have the same meter id (a "
                "copied data folder)?", where, error, self._client_id)
        else:
            _LOGGER.warning("MQTT broker %s unavailable (%s): retrying, keeping the newest "
                            "%d readings", where, error, QUEUE_SIZE)

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: announce, then publish until stopping or disconnected."""
        # Home Assistant says `online` here when it (re)starts and needs discovery again.
        birth = f"{self._options.mqtt_discovery_prefix}/status"
        await client.subscribe(birth, qos=1)
        await self._announce(client)
        listen = asyncio.create_task(self._listen(client, birth), name="mqtt listen")
        drain = asyncio.create_task(self._drain(client), name="mqtt publish")
        try:
            done, _ = await asyncio.wait({listen, drain}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listen, drain):
                task.cancel()
            await asyncio.gather(listen, drain, return_exceptions=True)
        for task in done:
            task.result()  # raises the MqttError that ended the session

    async def _listen(self, client: aiomqtt.Client, birth: str) -> None:
        # The message iterator also raises MqttError as soon as the connection drops.
        async for message in client.messages:
            if message.topic.matches(birth) and message.payload in (b"online", "online"):
                _LOGGER.debug("Home Assistant restarted: announcing again")
                await self._announce(client)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while not self._stopping.is_set():
            while self._queue:
                snapshot = self._queue[0]
                await client.publish(self.state_topic, json.dumps(snapshot), qos=0)
                # Removed only once sent, so a reading in flight at a disconnect is kept.
                if self._queue and self._queue[0] is snapshot:
                    self._queue.popleft()
            self._wakeup.clear()
            if self._stopping.is_set():
                return
            await self._wakeup.wait()

    async def _announce(self, client: aiomqtt.Client) -> None:
        for topic, payload in self.discovery_messages().items():
            await client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for topic in self.unmeasured_topics() + self.removed_channel_topics():
            # An empty retained config removes the sensor: totals announced by add-ons
            # before 0.3.10; channels no longer in the options, whose templates (by list
            # position) would show another channel's values.
            await client.publish(topic, b"", qos=1, retain=True)
        for meter_id in self._retired:
            # Their retained configs and "offline" kept a device of unavailable sensors in
            # the central Home Assistant for ever (helper 95).
            for topic in self._all_config_topics(meter_id):
                await client.publish(topic, b"", qos=1, retain=True)
            base = f"{self._options.mqtt_topic_prefix}/{meter_id}"
            for topic in (f"{base}/availability", f"{base}/state"):
                await client.publish(topic, b"", qos=1, retain=True)
        await client.publish(self.availability_topic, ONLINE, qos=1, retain=True)

    def _all_config_topics(self, meter_id: str) -> list[str]:
        keys = [key for key, *_ in _TOTALS] + [
            f"channel_{channel_id}_{key}" for channel_id in range(1, MAX_CHANNEL_ID + 1)
            for key, *_ in _PER_CHANNEL]
        return [self._config_topic(key, meter_id) for key in keys]

    # ------------------------------------------------------------------ discovery

    def _unmeasured(self) -> set[str]:
        """Totals this meter has no source for: their sensors would be unknown for ever."""
        hat_voltage = RPICT_PRINTS_VOLTAGE[self._options.rpict_model]
        measured = {
            "voltage": self._voltage_board or hat_voltage,
            "frequency": self._voltage_board,
            "power_factor": hat_voltage,
            "temperature": RPICT_PRINTS_TEMPERATURE[self._options.rpict_model],
        }
        return {key for key, known in measured.items() if not known}

    def unmeasured_topics(self) -> list[str]:
        return [self._config_topic(key) for key in sorted(self._unmeasured())]

    def removed_channel_topics(self) -> list[str]:
        kept = {channel["id"] for channel in self._meter.info_channels()}
        return [self._config_topic(f"channel_{channel_id}_{key}")
                for channel_id in range(1, MAX_CHANNEL_ID + 1) if channel_id not in kept
                for key, *_ in _PER_CHANNEL]

    def _config_topic(self, key: str, meter_id: str | None = None) -> str:
        node = f"energy_tracker_{meter_id or self._meter_id}"
        return f"{self._options.mqtt_discovery_prefix}/sensor/{node}/{key}/config"

    def discovery_messages(self) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT discovery: config topic → payload, one sensor each."""
        node = f"energy_tracker_{self._meter_id}"
        device = {
            "identifiers": [node],
            # Distinct names across a fleet; the user renames them in Home Assistant.
            "name": f"{DEVICE_NAME} {self._name or self._meter_id[:8]}",
            "manufacturer": "Energy Tracker",
            "model": self._options.rpict_model,
            "sw_version": __version__,
        }
        origin = {"name": "Energy Tracker add-on", "sw_version": __version__,
                  "support_url": PROJECT_URL}
        unmeasured = self._unmeasured()
        sensors: list[tuple[str, str, str, str, str, str | None, dict[str, Any]]] = [
            (key, name, f"value_json.{field}", device_class, state_class, unit, extra)
            for key, name, field, device_class, state_class, unit, extra in _TOTALS
            if key not in unmeasured
        ]
        for index, channel in enumerate(self._meter.info_channels()):
            for key, field, device_class, state_class, unit, extra in _PER_CHANNEL:
                sensors.append((
                    f"channel_{channel['id']}_{key}", f"{channel['name']} {key}",
                    f"value_json.channels[{index}].{field}", device_class, state_class, unit,
                    extra,
                ))
        messages: dict[str, dict[str, Any]] = {}
        for key, name, value, device_class, state_class, unit, extra in sensors:
            payload: dict[str, Any] = {
                "name": name,
                "unique_id": f"{node}_{key}",
                "state_topic": self.state_topic,
                # A null (stale) value renders "None", which Home Assistant shows as unknown.
                "value_template": f"{{{{ {value} }}}}",
                "availability_topic": self.availability_topic,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "device_class": device_class,
                "state_class": state_class,
                "device": device,
                "origin": origin,
                **extra,
            }
            if unit is not None:
                payload["unit_of_measurement"] = unit
            messages[self._config_topic(key)] = payload
        return messages
