"""The `energy_tracker.export` action: the add-on's history for a time range, as a CSV or
Parquet file in /share/energy_tracker/ (where the add-on and Samba see it) when Home
Assistant has /share, else in <config>/energy_tracker_exports/."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import voluptuous as vol
from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util
from homeassistant.util import slugify

from .commands import run_command
from .const import DOMAIN
from .services import ATTR_CONFIG_ENTRY_ID, _target_entry

SERVICE_EXPORT: Final = "export"
ATTR_START: Final = "start"
ATTR_END: Final = "end"
ATTR_FORMAT: Final = "format"
FORMATS: Final = ("csv", "parquet")
SHARE_DIR: Final = Path("/share")
EXPORT_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_START): cv.datetime,
        vol.Required(ATTR_END): cv.datetime,
        vol.Optional(ATTR_FORMAT, default="csv"): vol.In(FORMATS),
    }
)


def async_setup_export_action(hass: HomeAssistant) -> None:
    """Register the action once for the integration."""
    hass.services.async_register(
        DOMAIN, SERVICE_EXPORT, _async_export, schema=EXPORT_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


def export_file_name(title: str, meter_id: str, start: datetime, end: datetime,
                     fmt: str) -> str:
    """Names the meter (two meters' exports of one span do not overwrite each other) and
    gives both times in UTC (times given in two zones do not read as one moment)."""
    utc = [t.astimezone(UTC) for t in (start, end)]
    # %Y does not pad years before 1000: the four digits are written out.
    span = "_".join(f"{t.year:04d}{t:%m%dT%H%M%SZ}" for t in utc)
    # The default title is "Energy Tracker": not "energy_tracker_energy_tracker_…".
    name = slugify(title)
    name = name if name.startswith(DOMAIN) else f"{DOMAIN}_{name}"
    return f"{name}_{meter_id[:8]}_{span}.{fmt}"


def export_directory(hass: HomeAssistant) -> Path:
    if SHARE_DIR.is_dir():
        return SHARE_DIR / DOMAIN
    return Path(hass.config.path("energy_tracker_exports"))


async def _async_export(call: ServiceCall) -> ServiceResponse:
    """Download the export from the add-on into a file; answers its path and row count."""
    hass = call.hass
    # A time without a zone is Home Assistant's local time, as in the UI.
    try:
        start, end = (_aware(call.data[key]).astimezone(UTC) for key in (ATTR_START, ATTR_END))
    except OverflowError:  # 0001-01-01 with a zone east of UTC is before the year 1
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="export_time_out_of_range") from None
    if end <= start:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="export_end_before_start")
    fmt: str = call.data[ATTR_FORMAT]
    entry = _target_entry(call)
    directory = export_directory(hass)
    name = export_file_name(entry.title, str(entry.unique_id), start, end, fmt)
    path = directory / name
    handle, temp = await _on_disk(hass, path, _open_temp, directory)

    async def sink(chunk: bytes) -> None:
        await _on_disk(hass, path, handle.write, chunk)

    try:
        rows = await run_command(
            entry.runtime_data.client.download_export(
                start.isoformat(), end.isoformat(), fmt, sink
            ),
            SERVICE_EXPORT,
        )
        await _on_disk(hass, path, _finish, handle, temp, path)
    except BaseException:
        await hass.async_add_executor_job(_discard, handle, temp)
        raise
    return {"path": str(path), "rows": rows, "format": fmt}


async def _on_disk[T](hass: HomeAssistant, path: Path, job: Callable[..., T], *args: Any) -> T:
    """Run file work off the loop; a full or read-only disk on Home Assistant's side is
    said as such (not as the add-on being unreachable, which the client would report)."""
    try:
        return await hass.async_add_executor_job(job, *args)
    except OSError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="export_write_failed",
            translation_placeholders={"path": str(path), "error": err.strerror or str(err)},
        ) from err


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt_util.get_default_time_zone())
    return moment


def _open_temp(directory: Path) -> tuple[IO[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".export.", suffix=".part")
    return os.fdopen(fd, "wb"), Path(temp)


def _finish(handle: IO[bytes], temp: Path, path: Path) -> None:
    """Complete files only: the name appears when the download is whole."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.replace(temp, path)


def _discard(handle: IO[bytes], temp: Path) -> None:
    # Closing flushes the buffer, which fails again on a full disk: the part goes anyway.
    with contextlib.suppress(OSError):
        handle.close()
    temp.unlink(missing_ok=True)
