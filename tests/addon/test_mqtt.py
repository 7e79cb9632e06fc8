"""MQTT publishing for fleets, against a real Mosquitto broker started on loopback.

The broker is Debian's `mosquitto` (apt-get install mosquitto), run per test from a config
file in tmp_path, listening on 127.0.0.1 only, without persistence; the tests stop, kill
and restart it. A second real client (aiomqtt) plays the central Home Assistant.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import json
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import voluptuous as vol
from homeassistant.core import HomeAssistant
from homeassistant.helpers.template import Template

from energy_tracker_addon.config import (
    ChannelConfig,
    ExtraMeterConfig,
    Options,
    OptionsError,
    meter_id,
    parse_options,
)
from energy_tracker_addon.meter import Meter
from energy_tracker_addon.metrics import Metrics
from energy_tracker_addon.mqtt import QUEUE_SIZE, MqttPublisher
from energy_tracker_addon.persistence import CounterStore
from energy_tracker_addon.service import AddonService

from .polling import wait_until
from .test_packaging import ADDON, _supervisor_validate, _yaml

pytestmark = pytest.mark.usefixtures("socket_enabled")

TOKEN = "mqtt-test-token-0123456789abcdefghijklmnopqrstuv"
ADDON_COMMAND = str(Path(sys.executable).with_name("energy-tracker-addon"))
LOGGER = "energy_tracker_addon.mqtt"
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BrokerCertificate:
    ca: Path  # the private CA's certificate (PEM), what mqtt_ca_certificate points to
    cert: Path  # the broker's, for the name "localhost", signed by that CA
    key: Path


def make_broker_certificate(directory: Path) -> BrokerCertificate:
    """A private CA and a broker certificate for `localhost`, as a user's own broker has."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers are needed.
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer.public_key()), critical=False)
        )
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("Energy Tracker test CA", ca_key, "Energy Tracker test CA", ca_key,
                          ca=True)
    cert = certificate("localhost", key, "Energy Tracker test CA", ca_key, ca=False)
    paths = BrokerCertificate(directory / "ca.crt", directory / "broker.crt",
                              directory / "broker.key")
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


class Mosquitto:
    """One broker process; `start()` again after `stop()` reuses the same port."""

    def __init__(self, directory: Path, password_file: Path | None = None,
                 tls: BrokerCertificate | None = None) -> None:
        assert MOSQUITTO is not None
        self.directory = directory
        self.port = _free_port()
        self.log = directory / "mosquitto.log"
        self.password_file = password_file
        self.tls = tls
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            *([] if self.tls is None else [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}",
                                           f"keyfile {self.tls.key}"]),
            "persistence false",  # a restart loses the retained messages, as after a crash
            "log_dest stderr",
            "log_type all",
            # Root would otherwise switch to the `mosquitto` user, who cannot read tmp_path.
            f"user {getpass.getuser()}",
        ]
        if self.password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while f"Opening ipv4 listen socket on port {self.port}" not in self.log_text():
            assert self._process.poll() is None, self.log_text()
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.02)
        time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(10)

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP / SIGCONT: a broker whose host hangs, its connections still open."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password file again."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian: apt-get install mosquitto)")
    directory = tmp_path / "broker"
    directory.mkdir()
    return directory


@pytest.fixture
def broker(broker_dir: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(broker_dir)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """The central consumer: a second real MQTT client recording everything it gets."""

    def __init__(self, port: int, username: str | None = None,
                 password: str | None = None, tls_ca: Path | None = None) -> None:
        tls = None if tls_ca is None else ssl.create_default_context(cafile=tls_ca)
        self._client = aiomqtt.Client("localhost" if tls else "127.0.0.1", port,
                                      username=username, password=password, tls_context=tls)
        self.messages: list[Received] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        await self._client.__aenter__()
        await self._client.subscribe("#", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def _collect(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker went away
            async for message in self._client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                self.messages.append(Received(str(message.topic), payload, message.retain))

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def states(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(topic)]

    def configs(self, prefix: str = "homeassistant/") -> dict[str, dict[str, Any]]:
        """The latest discovery payload per config topic (an empty one deletes it)."""
        latest: dict[str, dict[str, Any]] = {}
        for m in self.messages:
            if m.topic.startswith(prefix) and m.topic.endswith("/config"):
                if m.payload:
                    latest[m.topic] = json.loads(m.payload)
                else:
                    latest.pop(m.topic, None)
        return latest


async def get_state(session: aiohttp.ClientSession, service: AddonService) -> dict[str, Any]:
    async with session.get(f"{service.url}/api/v1/state",
                           headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        result: dict[str, Any] = await resp.json()
        return result


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def mqtt_options(port: int, **extra: Any) -> Options:
    return Options(**{"api_token": TOKEN, "mqtt_enabled": True, "mqtt_host": "127.0.0.1",
                      "mqtt_port": port, "simulation_speed": 50, **extra})


def _expected_values(state: dict[str, Any]) -> dict[str, Any]:
    """What each sensor of a central Home Assistant must show, by unique_id suffix: the
    simulated RPICT3T1 and voltage board measure no power factor, so it has no sensor."""
    values = {
        "total_power": state["total_power_w"], "total_energy": state["total_energy_kwh"],
        "voltage": state["voltage_v"], "frequency": state["frequency_hz"],
        "temperature": state["temperature_c"],
    }
    for channel in state["channels"]:
        values[f"channel_{channel['id']}_power"] = channel["power_w"]
        values[f"channel_{channel['id']}_current"] = channel["current_a"]
        values[f"channel_{channel['id']}_energy"] = channel["energy_kwh"]
    return values


async def test_discovery_and_states_match_the_api(
    hass: HomeAssistant, broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # Imported here: the MQTT platform needs the running Home Assistant to check templates.
    from homeassistant.components.mqtt.sensor import DISCOVERY_SCHEMA

    # An add-on before 0.3.10 announced a power factor the RPICT3T1 never prints.
    (tmp_path / "data").mkdir()
    old_node = f"energy_tracker_{meter_id(tmp_path / 'data')}"
    async with aiomqtt.Client("127.0.0.1", broker.port) as older:
        await older.publish(f"homeassistant/sensor/{old_node}/power_factor/config",
                            json.dumps({"name": "Power factor",
                                        "unique_id": f"{old_node}_power_factor"}),
                            qos=1, retain=True)
    service = AddonService(mqtt_options(broker.port), tmp_path / "data", "127.0.0.1", 0)
    async with Subscriber(broker.port) as central:
        await service.start()
        try:
            ident = service.meter_id
            state_topic = f"energy_tracker/{ident}/state"
            availability = f"energy_tracker/{ident}/availability"
            api: dict[str, Any] = {}

            async def api_state_was_published() -> bool:
                api.clear()
                api.update(await get_state(session, service))
                return api["available"] and any(s == api for s in central.states(state_topic))

            # Every field of a message is the API's, for the same reading (seq).
            await wait_until(api_state_was_published, timeout=15, what="API state on MQTT")
            assert api["total_power_w"] is not None
            assert [m.payload for m in central.on(availability)] == [b"online"]

            configs = central.configs()
            expected = _expected_values(api)
            node = f"energy_tracker_{ident}"
            assert {c["unique_id"].removeprefix(f"{node}_") for c in configs.values()} \
                == set(expected), "one sensor per value, each unique"
            for topic, config in configs.items():
                key = config["unique_id"].removeprefix(f"{node}_")
                assert topic == f"homeassistant/sensor/{node}/{key}/config"
                assert config["state_topic"] == state_topic
                assert config["availability_topic"] == availability
                assert config["device"]["identifiers"] == [node]
                # Home Assistant's own MQTT sensor schema accepts it...
                DISCOVERY_SCHEMA(config)
                # ...and its template engine shows what the API says.
                shown = Template(config["value_template"], hass).async_render(
                    {"value_json": api}, parse_result=False
                )
                assert shown == str(expected[key]), key
            # The Energy dashboard takes only these.
            for key in ("total_energy", "channel_1_energy"):
                config = configs[f"homeassistant/sensor/{node}/{key}/config"]
                assert (config["device_class"], config["state_class"],
                        config["unit_of_measurement"]) == ("energy", "total_increasing", "kWh")

            # A central Home Assistant connecting later gets it all from retained messages.
            async with Subscriber(broker.port) as late:
                await wait_until(lambda: late.configs() == configs, what="retained discovery")
                await wait_until(lambda: bool(late.on(availability)), what="retained availability")
                assert [(m.payload, m.retain) for m in late.on(availability)] \
                    == [(b"online", True)]

            # A restarted Home Assistant (its broker without persistence) lost the
            # discovery; its birth message brings it back.
            async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
                for topic in configs:
                    await ha.publish(topic, b"", qos=1, retain=True)
                await wait_until(lambda: not central.configs(), what="discovery deleted")
                await ha.publish("homeassistant/status", b"online", qos=1)
                await wait_until(lambda: central.configs() == configs, what="rediscovery")
        finally:
            await service.stop()

        # Stopped: `offline`, retained, and a clean DISCONNECT (not the broker's will).
        await wait_until(lambda: central.on(availability)[-1].payload == b"offline",
                         what="offline on stop")
    assert f"Received DISCONNECT from {node}" in broker.log_text()
    async with Subscriber(broker.port) as late:
        await wait_until(lambda: bool(late.on(availability)), what="retained availability")
        assert [(m.payload, m.retain) for m in late.on(availability)] == [(b"offline", True)]


async def test_a_channel_taken_out_of_the_options_loses_its_sensors(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Kitchen removed: its retained sensors stayed, and their templates (by position in
    `channels`) showed the water heater's power and energy as the kitchen's (helper 82)."""
    (tmp_path / "data").mkdir()
    node = f"energy_tracker_{meter_id(tmp_path / 'data')}"
    kitchen = f"homeassistant/sensor/{node}/channel_2_energy/config"
    heater = f"homeassistant/sensor/{node}/channel_3_energy/config"
    async with Subscriber(broker.port) as central:
        service = AddonService(mqtt_options(broker.port), tmp_path / "data", "127.0.0.1", 0)
        await service.start()
        try:
            await wait_until(lambda: kitchen in central.configs(), what="kitchen announced")
        finally:
            await service.stop()
        two = (ChannelConfig(1, "Mains", "mains"), ChannelConfig(3, "Water heater", "circuit"))
        service = AddonService(mqtt_options(broker.port, channels=two), tmp_path / "data",
                               "127.0.0.1", 0)
        await service.start()
        try:
            await wait_until(lambda: kitchen not in central.configs(), what="kitchen removed")
            assert central.configs()[heater]["value_template"] \
                == "{{ value_json.channels[1].energy_kwh }}"
        finally:
            await service.stop()


async def test_broker_restart_resumes_publishing_and_the_api_keeps_serving(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    service = AddonService(mqtt_options(broker.port), tmp_path / "data", "127.0.0.1", 0)
    await service.start()
    try:
        state_topic = f"energy_tracker/{service.meter_id}/state"
        async with Subscriber(broker.port) as central:
            await wait_until(lambda: bool(central.on(state_topic)), timeout=15,
                             what="first state")

        broker.stop()
        before = (await get_state(session, service))["seq"]

        async def meter_goes_on() -> bool:
            return bool((await get_state(session, service))["seq"] >= before + 3)

        # The meter and the API do not wait for the broker (several retries meanwhile).
        await wait_until(meter_goes_on, timeout=15, what="readings while the broker is down")
        outage = [r for r in caplog.records
                  if r.name == LOGGER and "unavailable" in r.getMessage()]
        assert len(outage) == 1, "one log line per outage, not one per retry"
        # The API says so too, for a user who has no access to the log.
        async with session.get(f"{service.url}/api/v1/info",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            mqtt = (await resp.json())["mqtt"]
        assert mqtt["broker"] == f"127.0.0.1:{broker.port}"
        assert mqtt["connected"] is False
        assert "Connection refused" in mqtt["error"]

        broker.start()
        async with Subscriber(broker.port) as central:
            # Retained messages died with the broker: the add-on announces again.
            sensors = len(_expected_values(await get_state(session, service)))
            await wait_until(lambda: len(central.configs()) == sensors, timeout=20,
                             what="discovery after the restart")
            availability = f"energy_tracker/{service.meter_id}/availability"
            # published right after the discovery configs
            await wait_until(lambda: bool(central.on(availability)), what="availability")
            assert central.on(availability)[-1].payload == b"online"
            await wait_until(
                lambda: any(s["seq"] > before + 3 for s in central.states(state_topic)),
                what="new readings after the restart",
            )
        assert any(r.name == LOGGER and "is back" in r.getMessage() for r in caplog.records)
        assert service.info()["mqtt"]["connected"] is True
        assert service.info()["mqtt"]["error"] is None
    finally:
        await service.stop()


async def test_killed_addon_goes_offline_by_its_will(broker: Mosquitto, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    options = {"mqtt_enabled": True, "mqtt_host": "127.0.0.1", "mqtt_port": broker.port}
    (data / "options.json").write_text(json.dumps(options), encoding="utf-8")
    async with Subscriber(broker.port) as central:
        with (tmp_path / "addon.log").open("wb") as log:
            process = subprocess.Popen(
                [ADDON_COMMAND, "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            await wait_until(lambda: (data / "meter_id").exists(), timeout=30, what="meter id")
            availability = f"energy_tracker/{(data / 'meter_id').read_text().strip()}" \
                "/availability"
            await wait_until(lambda: [m.payload for m in central.on(availability)] == [b"online"],
                             timeout=30, what="online")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            # No goodbye from a killed process: the broker sends its will.
            await wait_until(lambda: central.on(availability)[-1].payload == b"offline",
                             what="will after SIGKILL")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert f"Received DISCONNECT from energy_tracker_{availability.split('/')[1]}" \
        not in broker.log_text()
    async with Subscriber(broker.port) as late:
        await wait_until(lambda: bool(late.on(availability)), what="retained availability")
        assert [(m.payload, m.retain) for m in late.on(availability)] == [(b"offline", True)]


async def test_a_hung_broker_does_not_hold_the_stop_past_the_supervisors_kill(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Each meter's publisher waited up to 5 s for its goodbye; one after another, with a
    hung broker and a few extra meters, the stop ran past the Supervisor's 10 s kill, and
    the main meter's last history writes came after them (helper 82)."""
    meters = tuple(ExtraMeterConfig(f"m{i}", f"Meter {i}") for i in range(4))
    service = AddonService(mqtt_options(broker.port, extra_meters=meters), tmp_path / "data",
                           "127.0.0.1", 0)
    await service.start()
    try:
        await wait_until(lambda: "Received PUBLISH" in broker.log_text(), timeout=15,
                         what="publishing")
        broker.freeze(True)
        started = time.monotonic()
        await service.stop()
        took = time.monotonic() - started
    finally:
        broker.freeze(False)
    assert took < 9.0, f"stop took {took:.1f} s: the Supervisor kills at 10 s"


async def test_every_extra_meter_is_its_own_mqtt_device(
    broker: Mosquitto, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    options = mqtt_options(broker.port, extra_meters=(ExtraMeterConfig("garage", "Garage"),))
    service = AddonService(options, tmp_path / "data", "127.0.0.1", 0)
    async with Subscriber(broker.port) as central:
        await service.start()
        try:
            garage = next(m for m in service.extra_meters.summary() if m["id"] == "garage")
            ids = (service.meter_id, garage["meter_id"])
            assert ids[0] != ids[1]
            topics = [f"energy_tracker/{meter}/state" for meter in ids]
            await wait_until(lambda: all(central.states(t) for t in topics), timeout=15,
                             what="both meters on MQTT")
            garage_meter = service.extra_meters.get("garage")
            assert garage_meter is not None
            # The garage publishes its own readings: its power, not the main meter's.
            await wait_until(lambda: any(
                s["total_power_w"] == garage_meter.snapshot()["total_power_w"]
                and s["seq"] == garage_meter.snapshot()["seq"]
                for s in central.states(topics[1])), timeout=15, what="garage state")
            configs = central.configs().values()
            devices = {c["device"]["identifiers"][0] for c in configs}
            assert devices == {f"energy_tracker_{meter}" for meter in ids}
            garage_node = f"energy_tracker_{ids[1]}"
            garage_configs = [c for c in configs
                              if c["device"]["identifiers"] == [garage_node]]
            # Named as configured; only what a lone RPICT3T1 measures (no voltage board).
            assert {c["device"]["name"] for c in garage_configs} == {"Energy Tracker Garage"}
            assert {c["unique_id"].removeprefix(f"{garage_node}_") for c in garage_configs
                    if not c["unique_id"].startswith(f"{garage_node}_channel_")} \
                == {"total_power", "total_energy", "temperature"}
            for meter in ids:
                assert [m.payload for m in central.on(f"energy_tracker/{meter}/availability")
                        ] == [b"online"]
        finally:
            await service.stop()
        await wait_until(lambda: all(
            central.on(f"energy_tracker/{meter}/availability")[-1].payload == b"offline"
            for meter in ids), what="both meters offline after a clean stop")


async def test_an_extra_meter_taken_out_of_the_options_loses_its_device(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """Its retained configs and "offline" stayed on the broker: a device of unavailable
    sensors in the central Home Assistant for ever (helper 95)."""
    with_garage = mqtt_options(broker.port, extra_meters=(ExtraMeterConfig("garage", "Garage"),))
    async with Subscriber(broker.port) as central:
        service = AddonService(with_garage, tmp_path / "data", "127.0.0.1", 0)
        await service.start()
        try:
            garage = next(m for m in service.extra_meters.summary() if m["id"] == "garage")
            node = f"energy_tracker_{garage['meter_id']}"
            await wait_until(lambda: any(node in topic for topic in central.configs()),
                             timeout=15, what="the garage announced")
        finally:
            await service.stop()
        service = AddonService(mqtt_options(broker.port), tmp_path / "data", "127.0.0.1", 0)
        await service.start()
        try:
            await wait_until(lambda: not any(node in topic for topic in central.configs()),
                             timeout=15, what="the garage's sensors removed")
            availability = f"energy_tracker/{garage['meter_id']}/availability"
            await wait_until(lambda: central.on(availability)[-1].payload == b"",
                             what="its retained availability cleared")
            assert any(f"energy_tracker_{service.meter_id}" in t for t in central.configs())
        finally:
            await service.stop()


async def test_no_broker_neither_delays_start_nor_stop(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    # Nothing listens on this port: every connection attempt is refused.
    service = AddonService(mqtt_options(_free_port()), tmp_path / "data", "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    await service.start()
    try:
        first = (await get_state(session, service))["seq"]

        async def readings_go_on() -> bool:
            return bool((await get_state(session, service))["seq"] > first + 1)

        await wait_until(readings_go_on, timeout=15, what="readings without a broker")
    finally:
        started = loop.time()
        await service.stop()
    assert loop.time() - started < 2, "stop waited for the absent broker"


def _set_password(path: Path, user: str, password: str) -> None:
    subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True)


RPICT_LINE = b"11 230.0 115.0 0.0 21.5\r\n"


def _password_broker(broker_dir: Path, **users: str) -> tuple[Mosquitto, Path]:
    """A started broker that refuses anonymous clients; users: "central" and `users`."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (Debian: apt-get install mosquitto)")
    passwords = broker_dir / "passwords"
    passwords.touch(mode=0o600)
    for user, password in {"central": "central-secret", **users}.items():
        _set_password(passwords, user, password)
    broker = Mosquitto(broker_dir, password_file=passwords)
    broker.start()
    return broker, passwords


async def test_a_refused_anonymous_login_says_to_set_a_user(
    broker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, _passwords = _password_broker(broker_dir)
    options = mqtt_options(broker.port)  # no mqtt_username
    meter_id = "0123456789abcdef0123456789abcdef"
    meter = Meter(options, CounterStore(tmp_path / "energy.json"), Metrics(), meter_id)
    publisher = MqttPublisher(options, meter, meter_id, voltage_board=False)
    try:
        await publisher.start()
        await wait_until(lambda: broker.log_text().count("not authorised") >= 1, timeout=10,
                         what="a refused login")
        await wait_until(lambda: any(r.levelno >= logging.ERROR for r in caplog.records
                                     if r.name == LOGGER), timeout=5, what="the error line")
        message = next(r.getMessage() for r in caplog.records
                       if r.name == LOGGER and r.levelno >= logging.ERROR)
        assert "refused an anonymous login" in message
        assert "set mqtt_username and mqtt_password" in message
    finally:
        await publisher.stop()
        broker.stop()


async def test_wrong_password_is_logged_once_and_readings_wait_in_a_bounded_queue(
    broker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, passwords = _password_broker(broker_dir, meter="the-real-one")
    options = mqtt_options(broker.port, mqtt_username="meter", mqtt_password="a-typo")
    meter_id = "0123456789abcdef0123456789abcdef"
    meter = Meter(options, CounterStore(tmp_path / "energy.json"), Metrics(), meter_id)
    publisher = MqttPublisher(options, meter, meter_id, voltage_board=False)
    try:
        async with Subscriber(broker.port, "central", "central-secret") as central:
            await publisher.start()
            await wait_until(lambda: broker.log_text().count("not authorised") >= 3, timeout=10,
                             what="three refused logins")
            refused = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
            assert len(refused) == 1, "logged once, not at every retry"
            assert "refused the login of user 'meter'" in refused[0].getMessage()
            assert "mqtt_password" in refused[0].getMessage()

            # Readings go on meanwhile (the meter never waits); only the newest are kept.
            for _ in range(QUEUE_SIZE + 50):
                meter.feed_rpict_line(RPICT_LINE)
            assert not central.on(publisher.state_topic)

            # The user fixes the broker's password file: the add-on logs in at its next try.
            _set_password(passwords, "meter", "a-typo")
            broker.reload()
            await wait_until(lambda: len(central.on(publisher.state_topic)) == QUEUE_SIZE,
                             timeout=30, what="queued readings delivered")
            seqs = [s["seq"] for s in central.states(publisher.state_topic)]
            assert seqs == list(range(51, QUEUE_SIZE + 51)), "the oldest 50 were dropped"
            meter.feed_rpict_line(RPICT_LINE)
            await wait_until(lambda: central.states(publisher.state_topic)[-1]["seq"] == 151,
                             what="live again")
    finally:
        await publisher.stop()
        broker.stop()
    assert "u'meter'" in broker.log_text()


async def test_a_refused_login_after_an_outage_is_still_an_error(
    broker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The broker is down when the add-on starts (a power cut: the add-on boots first) and
    # comes back refusing its password: the warning about the outage must not hide that.
    broker, _passwords = _password_broker(broker_dir, meter="the-real-one")
    broker.stop()
    options = mqtt_options(broker.port, mqtt_username="meter", mqtt_password="a-typo")
    _meter, publisher = _publisher(tmp_path, options)
    try:
        await publisher.start()
        await wait_until(lambda: any("unavailable" in r.getMessage() for r in caplog.records
                                     if r.name == LOGGER), timeout=10, what="the outage")
        broker.start()
        await wait_until(lambda: broker.log_text().count("not authorised") >= 2, timeout=30,
                         what="two refused logins")
        refused = [r.getMessage() for r in caplog.records
                   if r.name == LOGGER and r.levelno >= logging.ERROR]
        assert len(refused) == 1, refused
        assert "refused the login of user 'meter'" in refused[0]
    finally:
        await publisher.stop()
        broker.stop()


async def test_a_second_meter_with_the_same_client_id_is_not_fought_twice_a_second(
    broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two add-ons started from copies of one data folder share a meter id, so a client id:
    # the broker closes one whenever the other connects. The rival here is a plain client
    # with that id (keepalive 17 s, to tell its connections from the add-on's 30 s).
    options = mqtt_options(broker.port)
    meter, publisher = _publisher(tmp_path, options)
    client_id = f"energy_tracker_{meter.snapshot()['meter_id']}"

    def connections() -> int:
        return broker.log_text().count(f"as {client_id} (p2, c1, k30)")

    async def rival() -> None:
        # Takes the id a second after each of the add-on's connections, once it is idle.
        seen = 0
        while True:
            await wait_until(lambda seen=seen: connections() > seen, timeout=60,
                             what="a connection")
            seen = connections()
            await asyncio.sleep(1)
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id,
                                          keepalive=17):
                    await asyncio.sleep(0.2)

    try:
        await publisher.start()
        await wait_until(lambda: publisher.connected, what="the add-on's connection")
        rival_task = asyncio.create_task(rival())
        await asyncio.sleep(15)
        rival_task.cancel()
        await asyncio.gather(rival_task, return_exceptions=True)
    finally:
        await publisher.stop()
    # Without a growing delay it takes the connection back 0.5 s after each loss (~9
    # times in 15 s); with it, after 0.5, 1, 2 and 4 s.
    reconnections = connections() - 1
    assert 1 <= reconnections <= 5, reconnections
    warnings = [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 2, "the outage and then the hint, not a line per retry"
    assert client_id in warnings[1]


@pytest.fixture
def tls_broker(broker_dir: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(broker_dir, tls=make_broker_certificate(broker_dir))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def _publisher(tmp_path: Path, options: Options) -> tuple[Meter, MqttPublisher]:
    meter_id = "0123456789abcdef0123456789abcdef"
    meter = Meter(options, CounterStore(tmp_path / "energy.json"), Metrics(), meter_id)
    return meter, MqttPublisher(options, meter, meter_id, voltage_board=False)


async def test_tls_publishes_to_a_broker_signed_by_the_users_ca(
    tls_broker: Mosquitto, tmp_path: Path
) -> None:
    assert tls_broker.tls is not None
    options = mqtt_options(tls_broker.port, mqtt_host="localhost", mqtt_tls=True,
                           mqtt_ca_certificate=str(tls_broker.tls.ca))
    meter, publisher = _publisher(tmp_path, options)
    try:
        async with Subscriber(tls_broker.port, tls_ca=tls_broker.tls.ca) as central:
            await publisher.start()
            await wait_until(lambda: publisher.connected, what="TLS connection")
            meter.feed_rpict_line(RPICT_LINE)
            await wait_until(lambda: bool(central.states(publisher.state_topic)),
                             what="a reading over TLS")
            assert central.states(publisher.state_topic)[-1]["total_power_w"] == 230.0
    finally:
        await publisher.stop()


async def test_tls_refuses_a_broker_its_ca_does_not_vouch_for(
    tls_broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert tls_broker.tls is not None
    # No mqtt_ca_certificate: the system's public CAs, which never signed the private one.
    options = mqtt_options(tls_broker.port, mqtt_host="localhost", mqtt_tls=True)
    meter, publisher = _publisher(tmp_path, options)
    try:
        async with Subscriber(tls_broker.port, tls_ca=tls_broker.tls.ca) as central:
            await publisher.start()
            await wait_until(lambda: tls_broker.log_text().count("OpenSSL Error") >= 2,
                             timeout=10, what="two refused handshakes")
            meter.feed_rpict_line(RPICT_LINE)
            refused = [r.getMessage() for r in caplog.records
                       if r.name == LOGGER and r.levelno >= logging.ERROR]
            assert len(refused) == 1, "logged once, not at every retry"
            assert "failed the TLS handshake" in refused[0]
            assert "CERTIFICATE_VERIFY_FAILED" in refused[0]
            assert not publisher.connected
            assert not central.on(publisher.state_topic), "nothing left in plain text"
    finally:
        await publisher.stop()


async def test_tls_to_a_plain_mqtt_port_says_to_check_the_port(
    broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain broker resets a TLS hello: said as such, once, not as a generic outage."""
    _meter, publisher = _publisher(tmp_path, mqtt_options(broker.port, mqtt_tls=True))
    try:
        await publisher.start()
        await wait_until(lambda: broker.log_text().count("protocol error") >= 2, timeout=10,
                         what="two TLS hellos refused")
        lines = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].levelno == logging.ERROR
        assert "is mqtt_port a TLS port?" in lines[0].getMessage()
        assert not publisher.connected
    finally:
        await publisher.stop()


async def test_an_unreadable_ca_file_turns_publishing_off_not_the_meter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "ssl" / "mqtt-ca.crt"
    options = mqtt_options(_free_port(), mqtt_tls=True, mqtt_ca_certificate=str(missing))
    meter, publisher = _publisher(tmp_path, options)
    await publisher.start()
    try:
        meter.feed_rpict_line(RPICT_LINE)
        assert meter.snapshot()["total_power_w"] == 230.0
        assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
            f"MQTT publishing off: cannot load mqtt_ca_certificate {missing} "
            "([Errno 2] No such file or directory)"]
    finally:
        await publisher.stop()


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error"), [
    ({"mqtt_ca_certificate": "/ssl/ca.crt"}, "only used with mqtt_tls: true"),
    ({"mqtt_tls": True, "mqtt_ca_certificate": "ca.crt"}, "an absolute path"),
])
def test_a_ca_certificate_needs_tls_and_an_absolute_path(
    options: dict[str, Any], error: str
) -> None:
    with pytest.raises(OptionsError, match=error):
        parse_options({"mqtt_enabled": True, "mqtt_host": "broker.example", **options})
    assert parse_options({"mqtt_enabled": True, "mqtt_host": "broker.example",
                          "mqtt_tls": True, "mqtt_ca_certificate": "/ssl/ca.crt"}).mqtt_tls


def test_a_ca_path_left_with_publishing_off_does_not_stop_the_meter() -> None:
    """MQTT turned off, its CA path left in the options (the Supervisor accepts it): the
    add-on refused to start, and metering stopped over an unused option (helper 82)."""
    options = parse_options({"mqtt_enabled": False, "mqtt_ca_certificate": "ca.crt"})
    assert not options.mqtt_enabled


def test_publishing_needs_a_broker_host() -> None:
    with pytest.raises(OptionsError, match="mqtt_host"):
        parse_options({"mqtt_enabled": True})
    assert parse_options({"mqtt_enabled": True, "mqtt_host": "core-mosquitto"}).mqtt_enabled


@pytest.mark.parametrize(
    ("prefix", "valid"),
    [("energy_tracker", True), ("fleet/site-7", True), ("a/#", False), ("+", False),
     ("fleet/", False), ("/fleet", False), ("two words", False), ("", False),
     # Brokers refuse publishing under $ topics (and drop a client sending NUL); "$" in
     # a regex end would also let a trailing newline through.
     ("$SYS", False), ("fleet/$site", True), ("a\x00b", False), ("energy\n", False),
     ("x" * 100, True), ("x" * 101, False), ("/".join("abcdefghij"), True),
     ("/".join("abcdefghijk"), False)],
)
def test_supervisor_and_service_agree_on_topic_prefixes(prefix: str, valid: bool) -> None:
    config = _yaml(ADDON / "config.yaml")
    for key in ("mqtt_topic_prefix", "mqtt_discovery_prefix"):
        options = {**config["options"], key: prefix}
        try:
            _supervisor_validate(config["schema"], options)
        except vol.Invalid:
            supervisor_ok = False
        else:
            supervisor_ok = True
        try:
            parse_options(options)
        except OptionsError:
            service_ok = False
        else:
            service_ok = True
        assert (supervisor_ok, service_ok) == (valid, valid), key

