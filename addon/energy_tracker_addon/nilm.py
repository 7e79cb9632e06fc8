"""NILM inference: load a model bundle and disaggregate a stream of total-power samples.

A bundle is a folder with `bundle.json` and one int8 TFLite model per appliance, written by
`energy-tracker-models export`. Each model is a Seq2Point network: a window of mains
samples at the model's period in, the appliance power at the window's midpoint out, so a
live estimate lags by half a window. Inference uses LiteRT (`ai_edge_litert`), never
TensorFlow. Any problem with the bundle raises `NilmBundleError` so that the add-on can log
it and keep running without NILM.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

BUNDLE_FORMAT = 1
DEFAULT_BUNDLE = Path(__file__).with_name("nilm_bundle")
# Gaps up to this many periods (of the meter's time) are bridged with the last value; longer
# ones restart the window
MAX_FILL_PERIODS = 2
_BATCH = 256

FloatArray = NDArray[np.float32]


class NilmBundleError(Exception):
    """A bundle (or one of its model files) is missing or unusable."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ModelSpec:
    """One appliance's model and how to use it (an entry of `bundle.json`)."""

    name: str
    kind: str
    file: str
    period_s: int
    window: int
    input_mean: float
    input_std: float
    output_scale: float
    on_w: float
    off_w: float
    min_on_s: float
    min_off_s: float
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ModelSpec:
        spec = cls(
            name=str(entry["name"]),
            kind=str(entry["kind"]),
            file=str(entry["file"]),
            period_s=int(entry["period_s"]),
            window=int(entry["window"]),
            input_mean=float(entry["normalisation"]["input_mean"]),
            input_std=float(entry["normalisation"]["input_std"]),
            output_scale=float(entry["normalisation"]["output_scale"]),
            on_w=float(entry["thresholds"]["on_w"]),
            off_w=float(entry["thresholds"]["off_w"]),
            min_on_s=float(entry["thresholds"]["min_on_s"]),
            min_off_s=float(entry["thresholds"]["min_off_s"]),
            sha256=str(entry["sha256"]),
            metadata=entry,
        )
        numbers = (spec.input_mean, spec.input_std, spec.output_scale, spec.on_w, spec.off_w,
                   spec.min_on_s, spec.min_off_s)
        if not all(math.isfinite(number) for number in numbers):
            # NaN passes every comparison below, and turns every estimate into garbage.
            raise ValueError("normalisation and thresholds must be finite numbers")
        if entry["period_s"] != spec.period_s or entry["window"] != spec.window:
            raise ValueError("period_s and window must be whole numbers")
        if spec.period_s <= 0 or spec.window < 1 or spec.window % 2 == 0:
            raise ValueError("period_s must be > 0 and window odd")
        if spec.input_std <= 0 or spec.output_scale <= 0 or spec.off_w > spec.on_w:
            raise ValueError("input_std and output_scale must be > 0, off_w <= on_w")
        return spec


class ModelRunner:
    """One LiteRT interpreter: normalised mains windows in, appliance watts out."""

    def __init__(self, path: Path, spec: ModelSpec, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = spec
        try:
            data = path.read_bytes()
        except OSError as err:
            raise NilmBundleError(path, f"cannot read model file ({err.strerror})") from err
        if hashlib.sha256(data).hexdigest() != spec.sha256:
            raise NilmBundleError(path, "model file does not match its sha256 in bundle.json")
        try:
            self._interp = Interpreter(model_content=data, num_threads=num_threads)
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
        except (ValueError, RuntimeError) as err:
            raise NilmBundleError(path, f"not a usable TFLite model ({err})") from err
        shape = tuple(int(d) for d in self._in["shape"])
        if len(shape) != 3 or shape[1:] != (spec.window, 1):
            raise NilmBundleError(path, f"model input {shape} does not match window {spec.window}")
        self._batch = 1

    def _quantise(self, x: FloatArray) -> NDArray[Any]:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return x
        scale, zero = self._in["quantization"]
        info = np.iinfo(dtype)
        q: NDArray[Any] = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        return q

    def _dequantise(self, y: NDArray[Any]) -> FloatArray:
        if self._out["dtype"] == np.float32:
            return y.astype(np.float32)
        scale, zero = self._out["quantization"]
        out: FloatArray = ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return out

    def predict(self, windows: FloatArray) -> FloatArray:
        """Appliance power (W, unclipped) at the midpoint of each row of `windows` (N, window)."""
        spec = self.spec
        x = ((windows - spec.input_mean) / spec.input_std).astype(np.float32)[..., None]
        out = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), _BATCH):
            chunk = x[start : start + _BATCH]
            if len(chunk) != self._batch:
                self._interp.resize_tensor_input(self._in["index"], [len(chunk), spec.window, 1])
                self._interp.allocate_tensors()
                self._batch = len(chunk)
            self._interp.set_tensor(self._in["index"], self._quantise(chunk))
            self._interp.invoke()
            y = self._dequantise(self._interp.get_tensor(self._out["index"]))
            out[start : start + len(chunk)] = y.reshape(-1) * spec.output_scale
        return out


@dataclass
class NilmBundle:
    path: Path
    version: str
    models: dict[str, ModelRunner]
    metadata: dict[str, Any]

    @property
    def specs(self) -> dict[str, ModelSpec]:
        return {name: runner.spec for name, runner in self.models.items()}


def load_bundle(path: Path | None = None, num_threads: int = 1,
                only: Collection[str] = ()) -> NilmBundle:
    """Load `bundle.json` and its models; raises `NilmBundleError` on any problem.

    `only` names the models to load (ids the bundle lacks are skipped; the caller says so);
    empty: all of them.
    """
    folder = Path(path) if path is not None else DEFAULT_BUNDLE
    manifest = folder / "bundle.json"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise NilmBundleError(manifest, "bundle.json not found") from err
    except OSError as err:
        raise NilmBundleError(manifest, f"cannot read ({err.strerror})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NilmBundleError(manifest, f"not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise NilmBundleError(manifest, f"unsupported bundle format (want {BUNDLE_FORMAT})")
    try:
        specs = [ModelSpec.from_json(entry) for entry in meta["models"]]
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise NilmBundleError(manifest, f"invalid model entry ({err!r})") from err
    if not specs:
        raise NilmBundleError(manifest, "the bundle lists no models")
    names = [spec.name for spec in specs]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        # The later entry would silently win: which model runs would be a guess.
        raise NilmBundleError(manifest, f"it lists {', '.join(twice)} more than once")
    if only:
        wanted = [spec for spec in specs if spec.name in only]
        if not wanted:
            raise NilmBundleError(manifest, f"it has none of the models asked for "
                                  f"({', '.join(only)}); it has "
                                  f"{', '.join(spec.name for spec in specs)}")
        specs = wanted
    models = {}
    for spec in specs:
        if Path(spec.file).name != spec.file:
            raise NilmBundleError(manifest, f"model file {spec.file!r} is outside the bundle")
        models[spec.name] = ModelRunner(folder / spec.file, spec, num_threads)
    return NilmBundle(folder, str(meta.get("version", "")), models, meta)


class OnOffTracker:
    """On/off state with hysteresis and minimum durations, like NILMTK's activations.

    Switches on once power has reached on_w and stayed at or above off_w for min_on_s,
    dips below off_w shorter than min_off_s included (a washing machine's drum pauses);
    switches off after min_off_s below off_w. Undecided (`on` None) until then after it
    is made or restarted: a run already under way is neither "off" nor starting anew.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self.on: bool | None = None
        self.since: float | None = None  # while on: when the run began (its first bin)
        self._candidate_s: float | None = None  # time since a possible start (state off)
        self._candidate_at: float | None = None
        self._below_s = 0.0  # time spent below off_w
        self._quiet_s = 0.0  # undecided: time spent below on_w with no possible start

    def update(self, power_w: float, dt_s: float, timestamp: float = 0.0) -> bool | None:
        spec = self._spec
        below = power_w < spec.off_w
        self._below_s = self._below_s + dt_s if below else 0.0
        if self.on:
            if self._below_s >= spec.min_off_s and below:
                self.on, self.since = False, None
            return self.on
        if self._candidate_s is None:
            if power_w < spec.on_w:
                self._quiet_s += dt_s
                if self.on is None and self._quiet_s >= spec.min_off_s:
                    self.on = False
                return self.on
            self._candidate_s, self._candidate_at = 0.0, timestamp
        self._candidate_s += dt_s
        if below and self._below_s >= spec.min_off_s:
            self._candidate_s, self._quiet_s = None, 0.0
            self.on = False
        elif not below and self._candidate_s >= spec.min_on_s:
            self.on, self.since, self._candidate_s = True, self._candidate_at, None
        return self.on


def postprocess(predicted: FloatArray, mains_mid: FloatArray) -> FloatArray:
    """An appliance can draw neither less than nothing nor more than the whole house."""
    return np.clip(predicted, 0.0, np.maximum(mains_mid, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class Estimate:
    """One appliance estimate; `timestamp` is the midpoint of the window's middle bin."""

    appliance: str
    timestamp: float
    power_w: float
    on: bool | None  # None: not decided yet (just started, or after a gap)
    energy_wh: float
    since: float | None = None  # while on: the midpoint of the run's first bin


class _PeriodStream:
    """Averages raw samples into fixed bins and keeps the last `window` bins."""

    def __init__(self, period_s: int, window: int, max_fill: int = MAX_FILL_PERIODS) -> None:
        self.period_s = period_s
        self.max_fill = max_fill
        self.buffer: deque[float] = deque(maxlen=window)
        self._bin: int | None = None
        self._sum = 0.0
        self._count = 0

    def add(self, timestamp: float, watts: float) -> list[tuple[float, FloatArray | None]]:
        """Add one sample; returns the bins completed by it: each one's start time and the
        window ending with it (None while the window is not full)."""
        index = math.floor(timestamp / self.period_s)
        closed: list[tuple[float, FloatArray | None]] = []
        if self._bin is not None and index > self._bin:
            closed.extend(self._close(index))
        if self._bin is None or index > self._bin:
            self._bin, self._sum, self._count = index, 0.0, 0
        if index == self._bin:  # late samples of an older bin are dropped
            self._sum += watts
            self._count += 1
        return closed

    def restart(self) -> None:
        """Forget the window and the bin in progress (after a gap nobody measured)."""
        self.buffer.clear()
        self._bin, self._sum, self._count = None, 0.0, 0

    def _close(self, next_index: int) -> list[tuple[float, FloatArray | None]]:
        assert self._bin is not None
        value = self._sum / self._count
        missing = next_index - self._bin - 1
        self.buffer.append(value)
        if missing > self.max_fill:
            self.buffer.clear()
            return [(float(self._bin * self.period_s), None)]
        closed = [(float(self._bin * self.period_s), self._window())]
        for k in range(1, missing + 1):
            # Each bridged bin with its own window: the last one read by all of them
            # estimated bins whose window was not even full (a sped-up replay bridges
            # several bins at every reading).
            self.buffer.append(value)
            closed.append((float((self._bin + k) * self.period_s), self._window()))
        return closed

    def _window(self) -> FloatArray | None:
        window = self.buffer.maxlen or 0
        if len(self.buffer) < window:
            return None
        return np.fromiter(self.buffer, dtype=np.float32, count=window)


class Disaggregator:
    """Streaming NILM: feed total power samples, read per-appliance power, state and energy."""

    def __init__(self, bundle: NilmBundle, time_scale: float = 1.0) -> None:
        """`time_scale`: seconds of data per second of the meter (a sped-up replay). A gap
        is an outage only when it is long in the meter's time: at 60x, readings 2 s apart
        are 120 s of data apart, and each is held until the next like any bridged gap."""
        self._bundle = bundle
        self._streams: dict[str, _PeriodStream] = {}
        self._trackers = {name: OnOffTracker(r.spec) for name, r in bundle.models.items()}
        self._energy_wh = dict.fromkeys(bundle.models, 0.0)
        self._latest: dict[str, Estimate] = {}
        max_fill = math.ceil(MAX_FILL_PERIODS * max(time_scale, 1.0))
        for name, runner in bundle.models.items():
            self._streams[name] = _PeriodStream(runner.spec.period_s, runner.spec.window,
                                                max_fill)

    def restart_windows(self) -> None:
        """A gap the meter did not measure: no window spans it, no energy is held across,
        and no run either (what ran before it may have stopped, and another started)."""
        for stream in self._streams.values():
            stream.restart()
        self._trackers = {name: OnOffTracker(r.spec) for name, r in self._bundle.models.items()}

    def feed(self, timestamp: float, mains_w: float) -> list[Estimate]:
        """Add one total-power sample (unix seconds, W); returns the estimates it completed."""
        if not math.isfinite(mains_w) or not math.isfinite(timestamp):
            return []
        made = []
        for name, stream in self._streams.items():
            runner = self._bundle.models[name]
            spec = runner.spec
            for bin_start, window in stream.add(timestamp, mains_w):
                if window is None:
                    continue
                power = float(postprocess(runner.predict(window[None, :]),
                                          window[spec.window // 2 : spec.window // 2 + 1])[0])
                mid = bin_start - (spec.window // 2) * spec.period_s + spec.period_s / 2
                made.append(self._record(name, mid, power))
        return made

    def _record(self, name: str, timestamp: float, power: float) -> Estimate:
        spec = self._bundle.models[name].spec
        tracker = self._trackers[name]
        on = tracker.update(power, spec.period_s, timestamp)
        self._energy_wh[name] += power * spec.period_s / 3600.0
        estimate = Estimate(name, timestamp, power, on, self._energy_wh[name], tracker.since)
        self._latest[name] = estimate
        return estimate

    def snapshot(self) -> dict[str, Estimate]:
        """The latest estimate per appliance (appliances without one yet are absent)."""
        return dict(self._latest)


@dataclass(frozen=True)
class SeriesResult:
    """Batch disaggregation of a regular series: NaN power where no full window exists."""

    power_w: FloatArray
    on: NDArray[np.bool_]


def disaggregate_series(runner: ModelRunner, mains: Iterable[float]) -> SeriesResult:
    """Run one model over a series already at its period (NaN marks missing bins).

    Same normalisation, model, clipping and on/off tracking as `Disaggregator`, batched for
    offline evaluation; windows containing NaN yield NaN and leave the on/off state as is.
    """
    spec = runner.spec
    x = np.asarray(list(mains) if not isinstance(mains, np.ndarray) else mains, np.float32)
    power = np.full(len(x), np.nan, dtype=np.float32)
    on = np.zeros(len(x), dtype=bool)
    if len(x) >= spec.window:
        windows = np.lib.stride_tricks.sliding_window_view(x, spec.window)
        ok = np.flatnonzero(np.isfinite(windows).all(axis=1))
        half = spec.window // 2
        if len(ok):
            pred = runner.predict(np.ascontiguousarray(windows[ok]))
            power[ok + half] = postprocess(pred, x[ok + half])
    tracker = OnOffTracker(spec)
    for i, p in enumerate(power):
        on[i] = bool(tracker.update(float(p), spec.period_s) if np.isfinite(p) else tracker.on)
    return SeriesResult(power, on)
