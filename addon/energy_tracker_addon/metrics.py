"""Prometheus metrics of one add-on service, on a registry of its own.

A registry per `Metrics` (not the global default) lets several services live in one test
process without their series colliding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BOARDS = ("rpict", "voltage")
METER_LABELS = ["meter", "name"]

# id, name and own registry of each extra meter
ExtraRegistries = Callable[[], Sequence[tuple[str, str, CollectorRegistry]]]


class ExtraMeterCollector(Collector):
    """Power, energy and availability of the extra meters, read when /metrics is scraped,
    and the serial line counters of their own registries.

    A collector instead of gauges: the meters' summaries are the one source, and nothing
    has to be kept in step when a reading arrives.
    """

    def __init__(self, meters: Callable[[], Sequence[Mapping[str, Any]]],
                 registries: ExtraRegistries) -> None:
        self._meters = meters
        self._registries = registries

    def describe(self) -> Iterator[Metric]:
        yield from self._families()
        yield from self._serial_families().values()

    def collect(self) -> Iterator[Metric]:
        power, energy, up = self._families()
        for meter in self._meters():
            labels = [meter["id"], meter["name"]]
            power.add_metric(labels, or_nan(meter["total_power_w"]))
            energy.add_metric(labels, or_nan(meter["total_energy_kwh"]))
            up.add_metric(labels, 1.0 if meter["available"] else 0.0)
        yield from (power, energy, up)
        serial = self._serial_families()
        for meter_id, name, registry in self._registries():
            for family in registry.collect():
                target = serial.get(family.name)
                if target is None:
                    continue
                for sample in family.samples:
                    if sample.name.endswith("_total"):  # not the _created timestamps
                        target.add_metric([meter_id, name, *sample.labels.values()],
                                          sample.value)
        yield from serial.values()

    @staticmethod
    def _serial_families() -> dict[str, CounterMetricFamily]:
        """An extra meter's own serial counters, by their name in its registry."""
        return {
            "energy_tracker_serial_lines": CounterMetricFamily(
                "energy_tracker_extra_meter_serial_lines",
                "Lines read from an extra meter's board, accepted and rejected",
                labels=[*METER_LABELS, "board"]),
            "energy_tracker_serial_lines_rejected": CounterMetricFamily(
                "energy_tracker_extra_meter_serial_lines_rejected",
                "Serial lines of an extra meter rejected by the parser, by reason",
                labels=[*METER_LABELS, "board", "reason"]),
        }

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("energy_tracker_extra_meter_power_watts",
                              "Total power of an extra meter (NaN while stale)",
                              labels=METER_LABELS),
            GaugeMetricFamily("energy_tracker_extra_meter_energy_kwh",
                              "Imported energy of an extra meter since its counters were created",
                              labels=METER_LABELS),
            GaugeMetricFamily("energy_tracker_extra_meter_up",
                              "1 while an extra meter's board sends fresh readings, else 0",
                              labels=METER_LABELS),
        )


def or_nan(value: float | None) -> float:
    """A gauge's value: NaN for unknown, never 0."""
    return math.nan if value is None else float(value)


class Metrics:
    """Every series the service exports. Unknown values are set to NaN, never 0."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, boards: Sequence[str] = BOARDS) -> None:
        """`boards`: those whose line counter is shown (at 0) before their first line."""
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
        for board in boards:
            self.serial_lines.labels(board)
        nan = float("nan")
        for gauge in (self.total_power_w, self.voltage_v, self.frequency_hz):
            gauge.set(nan)

    def watch_extra_meters(self, meters: Callable[[], Sequence[Mapping[str, Any]]],
                           registries: ExtraRegistries) -> Callable[[], None]:
        """Export the extra meters' summaries and serial counters; returns the function
        that stops it."""
        collector = ExtraMeterCollector(meters, registries)
        self.registry.register(collector)
        return lambda: self.registry.unregister(collector)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
