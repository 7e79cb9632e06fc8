"""Read ANTgen's AMBAL appliance models (XML) and synthesise appliance activations.

Follows the phase semantics of antgen 0.4.1 (`LoadModelComponents.py`, `ApplianceModel.synthesize`):
a profile of `duration` seconds is a sequence of phases, each taking `duration` (a fraction of
the profile) seconds at 1 s resolution. We read the XML ourselves because the package's own
generator pins numpy/pandas versions that do not install on Python 3.13.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class AmbalError(Exception):
    """The AMBAL model files are missing or unreadable."""


@dataclass(frozen=True)
class Phase:
    kind: str
    fraction: float
    params: dict[str, float]

    def synthesize(self, n: int) -> NDArray[np.float64]:
        p = self.params
        if self.kind == "ON_OFF":
            return np.full(n, p["onPower"])
        if self.kind == "LINEAR":
            return np.linspace(p["startPower"], p["endPower"], n, dtype=np.float64)
        if self.kind == "ON_OFF_DECAY":
            x = np.arange(n, dtype=np.float64)
            return p["activePower"] + (p["peakPower"] - p["activePower"]) * np.exp(
                -p["decayRate"] * x
            )
        if self.kind == "ON_OFF_GROWTH":
            x = np.arange(1, n + 1, dtype=np.float64)
            stretch = p.get("stretchFactor", 1.0)
            return p["basePower"] + p["growthRate"] * np.log(stretch * x)
        raise AmbalError(f"unsupported AMBAL phase type {self.kind!r}")


@dataclass(frozen=True)
class ApplianceModel:
    """One AMBAL model: `model_id` is `<TYPE>/<device>/<mode>`."""

    model_id: str
    appliance_type: str
    duration_s: int
    phases: tuple[Phase, ...]

    def synthesize(self, stretch: float = 1.0, scale: float = 1.0) -> NDArray[np.float64]:
        """Power at 1 s resolution (W); `stretch` scales the duration, `scale` the power."""
        total = max(1, round(self.duration_s * stretch))
        out = np.zeros(total)
        start = 0
        for phase in self.phases:
            n = round(phase.fraction * total)
            # antgen skips phases that round to nothing (or absurdly long ones)
            if n <= 0 or n > 86_400:
                continue
            end = min(total, start + n)
            out[start:end] += phase.synthesize(n)[: end - start]
            start = end
        return np.clip(out * scale, 0.0, None)


def ambal_root() -> Path:
    """The `appliances/` folder of the installed antgen package (without importing it)."""
    spec = importlib.util.find_spec("antgen")
    if spec is None or not spec.submodule_search_locations:
        raise AmbalError("antgen is not installed: pip install --no-deps antgen==0.4.1")
    root = Path(next(iter(spec.submodule_search_locations))) / "appliances"
    if not root.is_dir():
        raise AmbalError(f"{root}: antgen has no appliances folder")
    return root


def parse_model(path: Path, model_id: str) -> ApplianceModel:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - files of an installed package
        phases = []
        for load in root.iter("load"):
            params = {
                child.tag: float(child.attrib["value"])
                for child in load
                if child.tag != "duration" and "value" in child.attrib
            }
            duration = load.find("duration")
            if duration is None:
                raise AmbalError(f"{path}: phase without duration")
            phases.append(Phase(load.attrib["type"], float(duration.attrib["value"]), params))
        return ApplianceModel(
            model_id=model_id,
            appliance_type=model_id.split("/")[0],
            duration_s=int(root.attrib["duration"]),
            phases=tuple(phases),
        )
    except (ET.ParseError, KeyError, ValueError) as err:
        raise AmbalError(f"{path}: unreadable AMBAL model ({err})") from err


def load_models(appliance_type: str, root: Path | None = None) -> list[ApplianceModel]:
    """Every model of one AMBAL type, sorted by id."""
    base = (root or ambal_root()) / appliance_type
    files = sorted(p for p in base.glob("*/*") if p.is_file())
    if not files:
        raise AmbalError(f"{base}: no AMBAL models")
    return [parse_model(p, p.relative_to(base.parent).as_posix()) for p in files]
