"""Prometheus metrics of one add-on service, on a registry of its own.

A registry per `Metrics` (not the global default) lets several services live in one test
process without their series colliding.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BOARDS = ("rpict", "voltage")


class Metrics:
    """Every series the service exports. Unknown values are set to NaN, never 0."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.serial_lines = Counter(
            "energy_tracker_serial_lines",
            "Lines read from a serial board, accepted and rejected",
            ["board"],
            registry=registry,
        )
        self.serial_lines_rejected = Counter(
            "energy_tracker_serial_lines_rejected",
            "Serial lines rejected by the parser, by reason (docs/protocol.md)",
            ["board", "reason"],
            registry=registry,
        )
        self.serial_frames_lost = Counter(
            "energy_tracker_serial_frames_lost",
            "Voltage-board frames missing from the sequence numbers",
            registry=registry,
        )
        self.total_power_w = Gauge(
            "energy_tracker_total_power_watts",
            "Total power: the sum of the mains channels (NaN while stale)",
            registry=registry,
        )
        self.voltage_v = Gauge(
            "energy_tracker_voltage_volts",
            "Mains RMS voltage (NaN while unknown)",
            registry=registry,
        )
        self.frequency_hz = Gauge(
            "energy_tracker_frequency_hertz",
            "Mains frequency (NaN while unknown)",
            registry=registry,
        )
        self.channel_power_w = Gauge(
            "energy_tracker_channel_power_watts",
            "Power of one CT channel (NaN while stale)",
            ["channel", "name"],
            registry=registry,
        )
        self.total_energy_kwh = Gauge(
            "energy_tracker_total_energy_kwh",
            "Imported energy since the counters were created",
            registry=registry,
        )
        self.channel_energy_kwh = Gauge(
            "energy_tracker_channel_energy_kwh",
            "Imported energy of one CT channel since the counters were created",
            ["channel", "name"],
            registry=registry,
        )
        self.websocket_clients = Gauge(
            "energy_tracker_websocket_clients",
            "WebSocket clients connected to /api/v1/stream",
            registry=registry,
        )
        for board in BOARDS:
            self.serial_lines.labels(board)
        nan = float("nan")
        for gauge in (self.total_power_w, self.voltage_v, self.frequency_hz):
            gauge.set(nan)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
