"""Analytics wired into the real service: real UCI minutes through pty boards, read back
through the API and compared with an independent pandas computation."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import pytest

from energy_tracker_addon import api_analytics
from energy_tracker_addon import history as history_module
from energy_tracker_addon.history import HistoryStore, Reading
from energy_tracker_addon.meter import iso_utc
from energy_tracker_addon.meter_source import SOURCE_FILE, switch_learned_state
from energy_tracker_addon.statefile import VersionedStateFile

from .analytics_rig import TOKEN, Clocks, Rig
from .polling import wait_until
from .ptys import PtyPort
from .uci import UCI_TZ, read_uci

pytestmark = pytest.mark.usefixtures("socket_enabled")

PARIS = "Europe/Paris"
# Crosses midnight and a month end, so hour, day and month buckets all split.
SLICE = (datetime.fromisoformat("2009-05-31T22:00+01:00"),
         datetime.fromisoformat("2009-06-01T02:00+01:00"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> None:
    """The add-on's local zone ($TZ, as the Supervisor sets it)."""
    monkeypatch.setenv("TZ", PARIS)


def _weeks_to_now(moment: datetime) -> timedelta:
    """Whole weeks that bring `moment` to within the last week (keeps the time of week)."""
    weeks = (datetime.now(UTC) - moment) // timedelta(weeks=1)
    return timedelta(weeks=weeks)


def _printed_frame(data: pd.DataFrame, printed: list[tuple[str, str, str]]) -> pd.DataFrame:
    values = np.array([[float(v) for v in line] for line in printed])
    return pd.DataFrame(values, index=data.index, columns=["1", "2", "3"])


@pytest.mark.usefixtures("paris")
async def test_energy_per_hour_day_month_and_co2_equal_pandas_on_real_data(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    data = read_uci(*SLICE)
    clocks = Clocks(data.index[0].to_pydatetime())
    rig = Rig(tmp_path / "data", clocks, pty_port("ttyRPICT"))
    await rig.start()
    try:
        printed = await rig.replay(data)
        got = {period: (await rig.get(session, f"aggregates?period={period}"))[1]
               for period in ("hour", "day", "month")}
        state = (await rig.get(session, "state"))[1]
    finally:
        await rig.stop()

    # Independent: trapezoid energy of each minute interval, in the hour it starts.
    power = _printed_frame(data, printed)
    power["total"] = power["1"]  # channel 1 is the only mains channel
    kwh = ((power.shift(1) + power) / 2 * 60 / 3.6e6).iloc[1:]
    kwh.index = data.index[:-1].tz_convert(PARIS)
    keys = {"hour": kwh.index.floor("h"), "day": kwh.index.normalize(),
            "month": kwh.index.to_period("M").to_timestamp().tz_localize(PARIS)}
    for period, key in keys.items():
        expected = kwh.groupby(key).sum()
        buckets = got[period]["buckets"]
        assert got[period]["time_zone"] == PARIS
        assert [pd.Timestamp(b["start"]) for b in buckets] == list(expected.index), period
        for bucket, (_, row) in zip(buckets, expected.iterrows(), strict=True):
            for name in ("total", "1", "2", "3"):
                assert bucket["energy_kwh"][name] == pytest.approx(row[name], abs=2e-6)
    assert len(got["hour"]["buckets"]) == 4
    assert [b["start"][:10] for b in got["day"]["buckets"]] == ["2009-05-31", "2009-06-01"]

    # The state: rolling mean of the last 5 totals, today's energy and its CO2.
    assert state["rolling_power_w"] == pytest.approx(power["total"].iloc[-5:].mean(), abs=0.01)
    today = kwh[kwh.index.normalize() == pd.Timestamp("2009-06-01", tz=PARIS)].sum()
    assert state["energy_today_kwh"] == pytest.approx(today["total"], abs=2e-6)
    assert state["co2_g_per_kwh"] == 52.0
    assert state["co2_kg_today"] == pytest.approx(today["total"] * 0.052, abs=1e-4)
    shares = {item["channel"]: item["share_pct"] for item in state["recommendations"]}
    # A circuit that used nothing today (the kitchen at night) is not listed.
    assert shares == pytest.approx(
        {int(c): 100 * today[c] / today["total"] for c in ("2", "3") if today[c] >= 0.001},
        abs=0.05,
    )
    assert len(shares) == 1
    top = state["recommendations"][0]
    assert top["share_pct"] == max(shares.values())
    assert top["text"].startswith(f"{top['name']} used {top['share_pct']:.0f} % of today's")


@pytest.mark.usefixtures("paris")
async def test_a_circuit_that_used_nothing_today_is_no_recommendation(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """It used to be listed: "Water heater used 0 % of today's energy (0.00 kWh, …)"."""
    data = read_uci(datetime.fromisoformat("2009-06-01T12:00+01:00"),
                    datetime.fromisoformat("2009-06-01T13:11+01:00")).copy()
    data["water_heater_ac"] = 0.0  # off all day so far
    data.loc[data.index[-11:], "water_heater_ac"] = 60.0  # then 10 minutes at 60 W: 10 Wh
    rig = Rig(tmp_path / "data", Clocks(data.index[0].to_pydatetime()), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(data.iloc[:-11])
        before = (await rig.get(session, "state"))[1]
        await rig.replay(data.iloc[-11:])
        after = (await rig.get(session, "state"))[1]
    finally:
        await rig.stop()
    assert before["energy_today_kwh"] > 0.1  # enough for recommendations
    [kitchen] = before["recommendations"]
    assert kitchen["channel"] == 2
    assert kitchen["text"].startswith(f"Kitchen used {kitchen['share_pct']:.0f} % of today's")
    # A small share in words and Wh, not "0 % … (0.01 kWh, 0.00 kg CO2)".
    little = after["recommendations"][1]
    assert little["channel"] == 3
    assert little["energy_kwh"] == pytest.approx(0.0105, abs=1e-3)  # trapezoids: 10.5 Wh
    assert little["share_pct"] < 1
    assert re.search(r"used less than 1 % of today's energy \(1[01] Wh, 1 g CO2\)$",
                     little["text"]), little["text"]


async def test_export_reloads_to_the_readings_sent_and_bad_requests_get_400(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    data = read_uci(SLICE[0], SLICE[0] + timedelta(minutes=30))
    shift = _weeks_to_now(data.index[0].to_pydatetime())
    clocks = Clocks(data.index[0].to_pydatetime() + shift)
    rig = Rig(tmp_path / "data", clocks, pty_port("ttyRPICT"))
    await rig.start()
    try:
        printed = await rig.replay(data, shift)
        first, last = data.index[0] + shift, data.index[-1] + shift
        query = f"start={first.isoformat()}&end={(last + timedelta(seconds=1)).isoformat()}"
        query = query.replace("+", "%2B")
        status_csv, csv_body = await rig.get(session, f"export?{query}&format=csv")
        status_pq, pq_body = await rig.get(session, f"export?{query}&format=parquet")
        bad = {q: await rig.get(session, f"export?{q}") for q in (
            "start=yesterday&end=2030-01-01T00:00:00Z",
            "start=2030-01-01T00:00:00&end=2030-01-02T00:00:00Z",
            "start=2030-01-02T00:00:00Z&end=2030-01-01T00:00:00Z",
            f"{query}&format=xlsx",
            "end=2030-01-01T00:00:00Z",
            # Before year 1 once in UTC: a 400, not an OverflowError's 500
            "start=0001-01-01T00:00:00%2B01:00&end=2026-12-31T00:00:00Z",
        )}
        bad_period = await rig.get(session, "aggregates?period=week")
        left_behind = list((rig.data_dir / "exports").iterdir())
        # One range in two zones: the same file name, in UTC
        names = set()
        for zone in ("+01:00", "-05:00"):
            moment = datetime(2026, 11, 24, tzinfo=UTC)
            span = (f"start={moment.astimezone(timezone(timedelta(hours=int(zone[:3]))))
                             .isoformat()}&end=2026-11-25T00:00:00Z").replace("+", "%2B")
            async with session.get(f"{rig.service.url}/api/v1/export?{span}",  # type: ignore[union-attr]
                                   headers={"Authorization": "Bearer "
                                            + rig.options["api_token"]}) as resp:
                names.add(resp.headers["Content-Disposition"])
            # HEAD ran the whole export and sent it as a body after the headers, which the
            # next answer on the connection then followed (helper 86).
            async with session.head(f"{rig.service.url}/api/v1/export?{query}",  # type: ignore[union-attr]
                                    headers={"Authorization": "Bearer "
                                             + rig.options["api_token"]}) as resp:
                head = (resp.status, resp.headers.get("Allow"))
            health = await rig.get(session, "health")
    finally:
        await rig.stop()

    assert head == (405, "GET")
    assert health[0] == 200
    assert names == {'attachment; filename="energy_tracker_20261124T000000Z_20261125T000000Z.csv"'}
    assert status_csv == status_pq == 200
    sent = _printed_frame(data, printed)
    for frame in (pd.read_csv(io.BytesIO(csv_body)), pd.read_parquet(io.BytesIO(pq_body))):
        times = pd.to_datetime(frame["timestamp"], utc=True)
        assert list(times) == list((data.index + shift).tz_convert(UTC))
        for channel in ("1", "2", "3"):
            assert list(frame[f"channel_{channel}_power_w"]) == list(sent[channel])
        assert list(frame["total_power_w"]) == list(sent["1"])
        assert frame["total_energy_kwh"].is_monotonic_increasing
    for query, (status, body) in bad.items():
        assert status == 400, query
        assert body["error"] == "invalid", query
        assert body["detail"], query
    naive = bad["start=2030-01-01T00:00:00&end=2030-01-02T00:00:00Z"][1]
    assert "start needs a time zone" in naive["detail"]
    assert bad_period[0] == 400
    assert "hour, day, month" in bad_period[1]["detail"]
    assert left_behind == []


def _prefill(path: Path, data: pd.DataFrame, shift: timedelta) -> None:
    store = HistoryStore(path, retention_days=None, max_size_mb=None)
    store.append([
        Reading(moment.to_pydatetime() + shift, row.mains, 0.0, row.voltage,
                {1: row.mains, 2: row.kitchen, 3: row.water_heater_ac})
        for moment, row in zip(data.index, data.itertuples(), strict=True)
    ])
    store.close()


async def test_ready_at_is_a_week_of_real_time_across_a_clock_change(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learning from a history that spans the autumn change: "ready at" was seven days of
    wall clock (an hour late), while detection was ready after 168 hours (helper 103)."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    data = tmp_path / "data"
    data.mkdir()
    first = datetime(2026, 10, 21, 10, tzinfo=UTC)  # four days before the change
    store = HistoryStore(data / "history.sqlite3", retention_days=None, max_size_mb=None)
    store.append([Reading(first + timedelta(minutes=m), 500.0, 0.0)
                  for m in range(3 * 24 * 60)])
    store.close()
    rig = Rig(data, Clocks(first + timedelta(days=6, hours=23)), pty_port("ttyRPICT"))
    await rig.start()
    try:
        assert rig.state["anomaly"]["ready_at"] == iso_utc(first + timedelta(hours=168))
        await rig.rpict_line(first + timedelta(hours=168, minutes=1), ("500.0", "0.0", "0.0"))
        assert rig.state["anomaly"]["ready"] is True
    finally:
        await rig.stop()


async def test_the_hat_after_the_simulated_meter_is_not_judged_by_the_replayed_house(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    """Two weeks on the simulated meter (DOCS.md's step 2), then rpict_port set: detection
    was ready at once with the UCI house as this home's usual, and a small flat got "1.7 kW
    below the usual" on its first evening (helper 98)."""
    start = datetime.fromisoformat("2009-03-02T00:00+01:00")
    live_start = start + timedelta(days=14, hours=19)
    shift = _weeks_to_now(live_start + timedelta(minutes=60))
    data = tmp_path / "data"
    data.mkdir()
    simulated = read_uci(start, live_start)
    _prefill(data / "history.sqlite3", simulated, shift)
    rig = Rig(data, Clocks(live_start + shift), pty_port("ttyRPICT"))
    # The replayed house, learnt: its readings in the history and the analytics' state.
    await rig.start()
    try:
        await rig.replay(read_uci(live_start - timedelta(minutes=3), live_start), shift)
        assert rig.state["anomaly"]["ready"] is True
    finally:
        await rig.stop()
    (data / SOURCE_FILE).write_text('{"source": "simulated"}')
    # Its forecast retrain, in the backup loading falls back on (helper 104).
    replayed_retrain = '{"version": 1, "weights": "the replayed house\'s"}'
    (data / "forecast.json.bak").write_text(replayed_retrain)
    # rpict_port set: a first run without a reading (the port still wrong) resumed the
    # replayed house's learning at the next start (helper 104).
    await rig.start()
    await rig.stop()
    assert (data / "simulated.forecast.json.bak").read_text() == replayed_retrain
    for name in ("forecast.json", "forecast.json.bak"):
        assert "replayed" not in ((data / name).read_text() if (data / name).exists() else "")
    await rig.start()
    try:
        minutes = pd.date_range(live_start, periods=40, freq="min")
        flat = pd.DataFrame({"mains": 80.0, "kitchen": 10.0, "water_heater_ac": 5.0},
                            index=minutes)
        await rig.replay(flat, shift)
        assert rig.state["anomaly"]["ready"] is False  # learning this home
        assert rig.state["anomaly"]["active"] is None
    finally:
        await rig.stop()
    assert json.loads((data / SOURCE_FILE).read_text()) == {"source": "serial"}
    # The replayed house's history is kept aside, and comes back with the simulated meter.
    assert switch_learned_state(data, "simulated") == "serial"
    store = HistoryStore(data / "history.sqlite3")
    try:
        assert store.count() == len(simulated)
    finally:
        store.close()
    assert (data / "serial.history.sqlite3").exists()


async def test_a_spike_after_learning_from_history_turns_the_anomaly_on_and_survives_restart(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    start = datetime.fromisoformat("2009-03-02T00:00+01:00")
    live_start = start + timedelta(days=14)
    shift = _weeks_to_now(live_start + timedelta(minutes=10))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _prefill(data_dir / "history.sqlite3", read_uci(start, live_start), shift)
    live = read_uci(live_start, live_start + timedelta(minutes=6))
    clocks = Clocks(live_start + shift)
    rig = Rig(data_dir, clocks, pty_port("ttyRPICT"))
    await rig.start()
    try:
        before = rig.state["anomaly"]
        # Two usual minutes, one 8 kW above the real reading, then usual ones again.
        await rig.replay(live, shift, extra_w={2: 8000.0})
        state = rig.state
        _, events = await rig.get(session, "anomalies")
    finally:
        await rig.stop()
    assert before["ready"] is True
    assert before["active"] is False
    anomaly = state["anomaly"]
    assert anomaly["active"] is True
    assert "spike" in anomaly["reason"]
    assert "above the usual for" in anomaly["reason"]
    total = next(s for s in anomaly["series"] if s["series"] == "total")
    kitchen = next(s for s in anomaly["series"] if s["channel"] == 2)
    assert total["active"] is True
    assert kitchen["active"] is False
    spike_minute = (live.index[2] + shift).tz_convert(UTC)
    assert anomaly["last"]["started"] == spike_minute.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert anomaly["last"]["power_w"] == pytest.approx(live["mains"].iloc[2] + 8000, abs=0.1)
    assert anomaly["last"]["active"] is True  # an anomaly event, like those of /anomalies
    # Once: the single mains channel is the total, not a second series reporting it again.
    assert [(e["kind"], e["series"]) for e in events["anomalies"]] == [("spike", "total")]
    assert [s["channel"] for s in anomaly["series"]] == [None, 2, 3]
    assert {e["id"] for e in events["anomalies"]} == {1}
    assert all(e["active"] for e in events["anomalies"])
    assert state["anomalies"] == events["anomalies"]

    await rig.start()  # the log is kept, numbering goes on
    try:
        assert [e["id"] for e in rig.state["anomalies"]] == [1]
        assert rig.state["anomaly"]["last"]["id"] == 1
        # A quick restart carries the episode on: still in progress, not a new one
        assert rig.state["anomaly"]["active"] is True
        assert all(e["active"] for e in rig.state["anomalies"])
    finally:
        await rig.stop()


async def test_detection_is_ready_when_its_first_slot_is_judged_not_a_day_later(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """A week after the first reading the first slots have a week behind them and are
    judged: the state says so then, while the add-on runs (it said "learning" until the
    next daily refit while alerts were already coming)."""
    start = datetime.fromisoformat("2009-03-02T00:00+01:00")
    week = start + timedelta(days=7)
    live_start = week - timedelta(minutes=6)
    shift = _weeks_to_now(week + timedelta(minutes=15))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _prefill(data_dir / "history.sqlite3", read_uci(start, live_start), shift)
    # The first slot with a week of complete windows behind it (the base-load window needs
    # 90 minutes) is 02:00: a spike at 02:15 is judged.
    live = read_uci(live_start, week + timedelta(hours=2, minutes=20))
    spike = live.index.get_loc(week + timedelta(hours=2, minutes=15))
    rig = Rig(data_dir, Clocks(live_start + shift), pty_port("ttyRPICT"))
    await rig.start()
    try:
        before = rig.state["anomaly"]
        await rig.replay(live, shift, extra_w={spike: 8000.0})
        after = rig.state["anomaly"]
        _, events = await rig.get(session, "anomalies")
    finally:
        await rig.stop()
    assert [(e["kind"], e["series"]) for e in events["anomalies"]] == [("spike", "total")]
    assert before["ready"] is False
    assert before["ready_at"] == iso_utc(week + shift)  # the history's first minute + 7 days
    assert after["ready"] is True
    assert after["ready_at"] is None
    assert after["active"] is True


EXPORT_WEEKS = timedelta(weeks=4)


async def _four_weeks_to_export(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> tuple[Rig, datetime, str]:
    """A started service whose history holds four weeks of real minutes ending now (inside
    the retention): the rig, the first minute (UTC) and the export URL of the whole span."""
    uci_start = datetime.fromisoformat("2009-03-02T00:00+01:00")
    shift = _weeks_to_now(uci_start + EXPORT_WEEKS)
    start = (uci_start + shift).astimezone(UTC)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _prefill(data_dir / "history.sqlite3", read_uci(uci_start, uci_start + EXPORT_WEEKS),
             shift)
    rig = Rig(data_dir, Clocks(start + EXPORT_WEEKS), pty_port("ttyRPICT"))
    await rig.start()
    end = start + EXPORT_WEEKS
    url = (f"{rig.service.url}/api/v1/export"  # type: ignore[union-attr]
           f"?start={start:%Y-%m-%dT%H:%M:%SZ}&end={end:%Y-%m-%dT%H:%M:%SZ}")
    return rig, start, url


async def test_a_csv_export_streams_and_a_client_leaving_early_leaves_no_traceback(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Four weeks of minutes: the CSV's first line arrives before the rest is read (the
    file used to be built whole first), and a client that leaves after it is no error."""
    rig, start, url = await _four_weeks_to_export(tmp_path, pty_port)
    weeks = EXPORT_WEEKS
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with session.get(url, headers=headers) as resp:
            assert resp.status == 200
            assert "X-Export-Rows" not in resp.headers  # known only at the end
            assert (await resp.content.readline()).startswith(b"timestamp,total_power_w")
            first = await resp.content.readline()
            resp.close()  # gone, with most of the file unsent
        assert first.startswith(f"{start:%Y-%m-%dT%H:%M:%S}.000Z,".encode())
        await asyncio.sleep(1)
        async with session.get(url, headers=headers) as resp:  # and whole for who waits
            body = await resp.read()
    finally:
        await rig.stop()
    assert body.count(b"\n") == 1 + weeks // timedelta(minutes=1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize(("client", "fmt"), [
    ("leaves", "csv"), ("leaves", "parquet"), ("stalls", "csv")])
async def test_a_client_that_stops_reading_mid_download_is_no_storage_error(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, fmt: str, client: str,
) -> None:
    """While the add-on waited for it to take bytes, a client leaving (HA's read timeout, a
    restart, Ctrl-C) was logged as "Storage: reading the history failed" with a traceback;
    one that never read again held the request, and a CSV's place in the history's
    queue, for ever (helper 88)."""
    monkeypatch.setattr(api_analytics, "SEND_DEADLINE_S", 1.0)  # 30 s in use
    monkeypatch.setattr(api_analytics, "CHUNK_BYTES", 16 * 1024)
    caplog.set_level(logging.INFO, logger=api_analytics.__name__)
    rig, _start, url = await _four_weeks_to_export(tmp_path, pty_port)
    try:
        target = url.split("/", 3)[3] + f"&format={fmt}"
        host, port = rig.service.host, rig.service.port  # type: ignore[union-attr]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        # Three in a row (pipelined): more than the socket buffers hold, however large.
        writer.write(3 * f"GET /{target} HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.transport.pause_reading()  # the add-on's sends fill the socket's buffers
        if client == "leaves":
            await asyncio.sleep(0.5)
            writer.transport.abort()
            await asyncio.sleep(0.5)
        else:
            await wait_until(lambda: "dropping a client" in caplog.text, timeout=10)
            writer.transport.resume_reading()
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):  # what was buffered, then the cut
                    pass
            writer.close()
    finally:
        await rig.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_stopping_cuts_a_csv_export_cleanly(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The add-on stops (an update) during a long export: the export is cut at once,
    the client sees an incomplete body (not a clean end), and nothing is logged as an
    error. A 60-day export used to hold the stop for two minutes."""
    monkeypatch.setattr(history_module, "EXPORT_CHUNK_ROWS", 20)  # a long export
    rig, _start, url = await _four_weeks_to_export(tmp_path, pty_port)
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            await resp.content.readline()
            stopping = asyncio.create_task(rig.stop())
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
            await stopping
    finally:
        await rig.stop()
    assert "Export cut short: the add-on is stopping" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_history_keeps_to_the_retention_options(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rpict = pty_port("ttyRPICT")
    # Age: three days of minutes, one day kept.
    data = read_uci(SLICE[0], SLICE[0] + timedelta(days=3))
    shift = now - data.index[-1].to_pydatetime()
    aged = tmp_path / "aged"
    aged.mkdir()
    _prefill(aged / "history.sqlite3", data, shift)
    rig = Rig(aged, Clocks(now), rpict, history_retention_days=1)
    await rig.start()
    await rig.stop()
    store = HistoryStore(aged / "history.sqlite3", None, None)
    oldest, newest = store.time_range() or (None, None)
    store.close()
    assert oldest is not None
    assert newest is not None
    assert now - timedelta(days=1) <= oldest <= now - timedelta(days=1) + timedelta(minutes=2)
    assert newest == now

    # Size: 14 MB of one-second readings, 10 MB allowed; the newest stay.
    big = tmp_path / "big"
    big.mkdir()
    store = HistoryStore(big / "history.sqlite3", None, None)
    store.append([Reading(now - timedelta(seconds=i), 500.0 + i % 13, 1e6 - i, 231.0,
                          {1: 500.0, 2: 20.0, 3: 1000.0}, {1: 1.0, 2: 2.0, 3: 3.0})
                  for i in range(80_000)])
    assert store.disk_bytes() > 12 * 2**20
    store.close()
    rig = Rig(big, Clocks(now), rpict, history_max_size_mb=10)
    await rig.start()
    await rig.stop()
    store = HistoryStore(big / "history.sqlite3", None, None)
    size, (_, newest) = store.disk_bytes(), store.time_range() or (None, None)
    store.close()
    assert size <= 10 * 2**20
    assert newest == now


async def test_gas_pulses_become_m3_through_reboot_and_restart(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    clocks = Clocks(datetime.now(UTC))
    rig = Rig(tmp_path / "data", clocks, pty_port("ttyRPICT"), pty_port("ttyVOLT"))
    await rig.start()
    try:
        assert rig.state["gas_m3"] is None  # no count from the board yet
        seen = []
        for count in (1200, 1250, 1251, 3, 40):  # 3: the board rebooted (count from 0)
            await rig.etm(count)
            seen.append(rig.state["gas_m3"])
    finally:
        await rig.stop()
    # The first count is where the meter starts; then 50, 1, 3 (since boot) and 37 pulses.
    assert seen == [0.0, 0.5, 0.51, 0.54, 0.91]

    await rig.start()  # the board kept counting while the add-on was down: 40 -> 65
    try:
        assert rig.state["gas_m3"] == 0.91
        await rig.etm(65)
        after_restart = rig.state["gas_m3"]
    finally:
        await rig.stop()
    assert after_restart == 1.16


async def test_gas_counter_wrap_counts_the_pulses_across_it(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    rig = Rig(tmp_path / "data", Clocks(datetime.now(UTC)), pty_port("ttyRPICT"),
              pty_port("ttyVOLT"), gas_m3_per_pulse=0.1)
    await rig.start()
    try:
        seen = []
        for count in (2**32 - 6, 2**32 - 1, 4):
            await rig.etm(count)
            seen.append(rig.state["gas_m3"])
    finally:
        await rig.stop()
    assert seen == [0.0, 0.5, 1.0]  # 5 pulses, then 5 more across the wrap


async def _shown_figures(rig: Rig, session: aiohttp.ClientSession) -> dict[str, Any]:
    """Every hour and day bucket, and today's energy and CO2, as the add-on shows them."""
    figures: dict[str, Any] = {period: (await rig.get(session, f"aggregates?period={period}"))[1]
                               for period in ("hour", "day")}
    figures["today"] = {key: rig.state[key] for key in ("energy_today_kwh", "co2_kg_today")}
    return figures


async def _killed_and_resumed(rig: Rig, session: aiohttp.ClientSession,
                              killed: Path) -> tuple[dict[str, Any], Any]:
    """The data dir as a kill -9 leaves it (copied while the add-on runs: what the kernel
    holds), started again: its figures and its carbon intensity."""
    shutil.copytree(rig.data_dir, killed)
    await rig.stop()
    again = Rig(killed, Clocks(rig.clocks.wall), rig.rpict)
    await again.start()
    try:
        return (await _shown_figures(again, session),
                (await again.get(session, "co2_intensity"))[1])
    finally:
        await again.stop()


@pytest.mark.usefixtures("paris")
async def test_a_kill_resumes_every_bucket_as_shown(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """A kill -9 between two saves resumes with every hour, day and CO2 figure as shown, an
    hour having turned since the state was last saved in full (between saves, each reading
    rewrites only the counters' tail, not the whole state)."""
    start = datetime(2009, 3, 2, 9, 25, tzinfo=UCI_TZ)
    data = read_uci(start, start + timedelta(minutes=60))  # 09:25-10:24, Paris
    rig = Rig(tmp_path / "data", Clocks(start), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(data.iloc[:20])
        async with session.put(f"{rig.service.url}/api/v1/co2_intensity",  # type: ignore[union-attr]
                               json={"g_per_kwh": 312},
                               headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
        await rig.replay(data.iloc[20:])
        shown = await _shown_figures(rig, session)
        resumed, intensity = await _killed_and_resumed(rig, session, tmp_path / "killed")
    finally:
        await rig.stop()
    hours = [bucket["start"] for bucket in shown["hour"]["buckets"]]
    assert hours == ["2009-03-02T09:00:00+01:00", "2009-03-02T10:00:00+01:00"]
    assert resumed == shown
    assert intensity["g_per_kwh"] == 312
    # Saved in full at the hour's first reading; the tail held the 24 minutes after it.
    saved = json.loads((tmp_path / "killed" / "analytics.json").read_text())
    assert saved["buckets"]["last_time"] == "2009-03-02T09:00:00+00:00"


@pytest.mark.usefixtures("paris")
async def test_a_kill_after_the_clock_fell_back_resumes_both_hours_as_shown(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """The two local 02:00 hours of an autumn night are two buckets: the state is saved
    when the second begins, as at any new hour (they compare equal as local times)."""
    first = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)  # 02:45+02:00, then 02:00+01:00 at 01:00
    uci = datetime(2009, 3, 2, 9, 25, tzinfo=UCI_TZ)
    data = read_uci(uci, uci + timedelta(minutes=30))
    rig = Rig(tmp_path / "data", Clocks(first), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(data, shift=first - uci)
        shown = await _shown_figures(rig, session)
        resumed, _ = await _killed_and_resumed(rig, session, tmp_path / "killed")
    finally:
        await rig.stop()
    hours = [bucket["start"] for bucket in shown["hour"]["buckets"]]
    assert hours == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert resumed == shown


async def test_a_kill_after_the_meter_counters_restarted_loses_nothing_shown(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """The meter's counters lost (their files deleted): it counts again from zero, a new
    baseline for the buckets that a kill before the next save must not undo."""
    start = datetime(2009, 3, 2, 9, 5, tzinfo=UCI_TZ)
    data = read_uci(start, start + timedelta(minutes=30))
    rig = Rig(tmp_path / "data", Clocks(start), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(data.iloc[:10])
        await rig.stop()
        for counters in rig.data_dir.glob("energy_counters.json*"):
            counters.unlink()
        await rig.start()
        await rig.replay(data.iloc[10:])
        shown = await _shown_figures(rig, session)
        resumed, _ = await _killed_and_resumed(rig, session, tmp_path / "killed")
    finally:
        await rig.stop()
    assert shown["today"]["energy_today_kwh"] > 0
    assert resumed == shown


async def test_the_whole_state_live_copy_of_0_3_12_is_taken_then_removed(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """Up to 0.3.12 a kill left the newest state in analytics.json.live: an update after
    one starts from it, makes it durable and removes it (nothing rewrites it any more)."""
    start = datetime(2009, 3, 2, 9, 25, tzinfo=UCI_TZ)
    rig = Rig(tmp_path / "data", Clocks(start), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(read_uci(start, start + timedelta(minutes=10)))
    finally:
        await rig.stop()
    state_file = VersionedStateFile(rig.data_dir / "analytics.json", 1, "analytics state",
                                    logging.getLogger(__name__))
    newer = state_file.load()
    hour = next(iter(newer["buckets"]["buckets"]["hour"].values()))
    hour["kwh"]["total"] += 0.5  # more than saved: the newest reading had been shown
    state_file.write(newer, live=True)  # as 0.3.12 did before every publication
    await rig.start()
    try:
        shown = (await rig.get(session, "aggregates?period=hour"))[1]["buckets"]
    finally:
        await rig.stop()
    assert not (rig.data_dir / "analytics.json.live").exists()
    restored = json.loads((rig.data_dir / "analytics.json").read_text())
    assert restored["buckets"]["buckets"]["hour"] == newer["buckets"]["buckets"]["hour"]
    assert shown[0]["energy_kwh"]["total"] == pytest.approx(hour["kwh"]["total"], abs=1e-6)


async def test_co2_today_goes_on_from_an_add_on_before_0_3_1(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """Up to 0.3.0 the state kept no CO2 buckets (the CO2 was the energy at the option's
    intensity): after the upgrade CO2 today fell to the few grams since (0.061 -> 0.001 kg)."""
    start = datetime(2009, 3, 2, 9, 25, tzinfo=UCI_TZ)
    rig = Rig(tmp_path / "data", Clocks(start), pty_port("ttyRPICT"))
    await rig.start()
    try:
        await rig.replay(read_uci(start, start + timedelta(minutes=20)))
        before = (await rig.get(session, "state"))[1]
    finally:
        await rig.stop()
    state_file = VersionedStateFile(rig.data_dir / "analytics.json", 1, "analytics state",
                                    logging.getLogger(__name__))
    old = state_file.load()
    for newer in ("co2_buckets", "carbon", "detectors"):  # what 0.3.0 did not write
        del old[newer]
    state_file.save(old)
    (rig.data_dir / "analytics_tail.live").unlink(missing_ok=True)
    await rig.start()
    try:
        after = (await rig.get(session, "state"))[1]
    finally:
        await rig.stop()
    assert before["energy_today_kwh"] > 0.1
    assert after["energy_today_kwh"] == pytest.approx(before["energy_today_kwh"], abs=1e-6)
    assert after["co2_kg_today"] == pytest.approx(
        after["energy_today_kwh"] * after["co2_g_per_kwh"] / 1000, abs=1e-4)
    assert after["co2_kg_today"] == pytest.approx(before["co2_kg_today"], abs=1e-4)


async def test_a_pushed_intensity_holds_across_a_restart_until_it_expires(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    clocks = Clocks(datetime(2026, 11, 24, 10, tzinfo=UTC))
    rig = Rig(tmp_path / "data", clocks, pty_port("ttyRPICT"))
    await rig.start()
    try:
        async with session.put(f"{rig.service.url}/api/v1/co2_intensity",  # type: ignore[union-attr]
                               json={"g_per_kwh": 312},
                               headers={"Authorization": "Bearer " + rig.options["api_token"]}
                               ) as resp:
            assert resp.status == 200
        pushed = (await rig.get(session, "co2_intensity"))[1]
        await rig.stop()
        clocks.set(clocks.wall + timedelta(minutes=5))  # an update's restart
        await rig.start()
        assert (await rig.get(session, "co2_intensity"))[1] == pushed
        await rig.stop()
        clocks.set(clocks.wall + timedelta(hours=2))  # two hours without a push
        await rig.start()
        expired = (await rig.get(session, "co2_intensity"))[1]
        # Withdrawn (the integration lost its sensor): the option at once, and after a
        # restart too.
        async with session.put(f"{rig.service.url}/api/v1/co2_intensity",  # type: ignore[union-attr]
                               json={"g_per_kwh": 312},
                               headers={"Authorization": "Bearer " + rig.options["api_token"]}
                               ) as resp:
            assert resp.status == 200
        async with session.delete(f"{rig.service.url}/api/v1/co2_intensity",  # type: ignore[union-attr]
                                  headers={"Authorization": "Bearer " + rig.options["api_token"]}
                                  ) as resp:
            assert resp.status == 200
            withdrawn = await resp.json()
        await rig.stop()
        await rig.start()
        after_restart = (await rig.get(session, "co2_intensity"))[1]
    finally:
        await rig.stop()
    assert pushed["source"] == "home_assistant"
    assert expired == {"g_per_kwh": 52.0, "source": "option", "updated": None}
    assert withdrawn == after_restart == expired


@pytest.mark.usefixtures("paris")
async def test_co2_follows_a_live_intensity_and_falls_back_to_the_option(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """Home Assistant pushes the grid's intensity: each reading's energy counts at the
    intensity of its time; without pushes for two hours the option applies again."""
    data = read_uci(datetime.fromisoformat("2009-06-01T00:00+02:00"),
                    datetime.fromisoformat("2009-06-01T04:00+02:00"))
    clocks = Clocks(data.index[0].to_pydatetime())
    rig = Rig(tmp_path / "data", clocks, pty_port("ttyRPICT"))
    await rig.start()
    url = f"{rig.service.url}/api/v1/co2_intensity"  # type: ignore[union-attr]
    headers = {"Authorization": "Bearer " + rig.options["api_token"]}

    async def push(body: Any) -> tuple[int, Any]:
        async with session.put(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    first, second = data.iloc[:60], data.iloc[60:]
    try:
        assert (await rig.get(session, "co2_intensity"))[1] == {
            "g_per_kwh": 52.0, "source": "option", "updated": None}
        assert (await push({"g_per_kwh": 100}))[1]["source"] == "home_assistant"
        assert (await rig.get(session, "co2_intensity"))[1]["updated"].endswith("Z")
        printed = await rig.replay(first)
        assert (await push({"g_per_kwh": 400.0}))[0] == 200
        printed += await rig.replay(second)  # the last 60 minutes go past the 2 h limit
        state = (await rig.get(session, "state"))[1]
        refused = [await push(body) for body in (
            {"g_per_kwh": -1}, {"g_per_kwh": 2001}, {"g_per_kwh": "high"}, {"g_per_kwh": True},
            {}, [100])]
        after = (await rig.get(session, "co2_intensity"))[1]
        await rig.stop()
        await rig.start()  # CO2 per period is persisted like the energy
        restarted = (await rig.get(session, "state"))[1]
    finally:
        await rig.stop()

    power = _printed_frame(data, printed)
    kwh = ((power.shift(1) + power) / 2 * 60 / 3.6e6).iloc[1:]
    # An interval counts at the intensity when its closing reading arrived: 100 g/kWh up to
    # minute 59 (when 400 was pushed), 400 for two hours after that, then the option.
    minutes = np.arange(1, len(data))
    intensity = np.where(minutes < 60, 100.0, np.where(minutes <= 59 + 120, 400.0, 52.0))
    expected_kg = float((kwh["1"].to_numpy() * intensity).sum() / 1000)
    assert state["co2_kg_today"] == pytest.approx(expected_kg, abs=2e-4)
    assert restarted["co2_kg_today"] == state["co2_kg_today"]
    assert state["co2_g_per_kwh"] == 52.0
    assert state["co2_intensity_source"] == "option"
    assert after["source"] == "option"
    assert all(status == 400 for status, _ in refused), refused
    by_channel = {item["channel"]: item["co2_kg"] for item in state["recommendations"]}
    assert by_channel[3] == pytest.approx(float((kwh["3"].to_numpy() * intensity).sum() / 1000),
                                          abs=2e-3)


@pytest.mark.usefixtures("paris")
async def test_after_midnight_without_readings_today_is_unknown_not_yesterday(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    """The hat went silent at 23:39: all the next day Home Assistant showed yesterday's
    total as *Energy today* (and CO2 today), available, as if nothing had changed since
    (helper 79). Today is the wall clock's day, and the turn of the day is published."""
    evening = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 23:30 in Paris
    rig = Rig(tmp_path / "data", Clocks(evening), pty_port("ttyRPICT"), persist_interval_s=1)
    service = await rig.start()
    published: list[dict[str, Any]] = []
    service.meter.add_listener(published.append)
    try:
        for minute in range(10):
            await rig.rpict_line(evening + timedelta(minutes=minute), ("2000.0", "0.0", "0.0"))
        assert rig.state["energy_today_kwh"] == pytest.approx(0.3, abs=0.01)
        rig.clocks.set(evening + timedelta(minutes=15))  # past stale_after_s: unavailable
        await rig._until(lambda: not published[-1]["available"], "the readings stale")
        rig.clocks.set(datetime(2026, 11, 25, 6, 57, tzinfo=UTC))  # 07:57, still silent
        await rig._until(lambda: published[-1]["energy_today_kwh"] is None,
                         "today's totals published as unknown", timeout=10)
        status, state = await rig.get(session, "state")
    finally:
        await rig.stop()
    assert status == 200
    assert state["energy_today_kwh"] is None
    assert state["co2_kg_today"] is None
    assert state["energy_periods"]["day"] is None
    # This month's bucket still holds last night's readings.
    assert state["energy_periods"]["month"]["start"] == "2026-11-01T00:00:00+01:00"


@pytest.mark.usefixtures("paris")
async def test_a_clock_set_back_over_midnight_does_not_bring_yesterday_back(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    """NTP stepped the clock back two minutes just after midnight: *Energy today* jumped
    to yesterday's total and dropped again, which Home Assistant's statistics count as a
    day's energy used twice (helper 79)."""
    night = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)  # 23:00 in Paris
    rig = Rig(tmp_path / "data", Clocks(night), pty_port("ttyRPICT"))
    await rig.start()
    shown: list[float] = []
    try:
        for minute in range(63):  # to 00:02
            await rig.rpict_line(night + timedelta(minutes=minute), ("2000.0", "0.0", "0.0"))
        shown.append(rig.state["energy_today_kwh"])
        back = night + timedelta(minutes=58)  # 23:58 of the day before, then on
        for minute in range(6):
            await rig.rpict_line(back + timedelta(minutes=minute), ("2000.0", "0.0", "0.0"))
            shown.append(rig.state["energy_today_kwh"])
    finally:
        await rig.stop()
    assert shown[0] == pytest.approx(2 / 30, abs=0.005)  # two minutes at 2 kW
    assert all(later >= earlier for earlier, later in itertools.pairwise(shown)), shown
    assert max(shown) < 0.5, shown  # never yesterday's 2 kWh


async def test_a_history_kept_for_less_than_a_week_does_not_unlearn_detection(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    """history_retention_days 3: the daily refit learnt from 3 days, replaced the week
    learnt, and detection went back to "learning" every day, never alerting (helper 84)."""
    real_now = datetime.now(UTC).replace(second=0, microsecond=0)
    uci = datetime.fromisoformat("2009-03-02T00:00+01:00")
    week = read_uci(uci, uci + timedelta(days=7))
    shift = (real_now - timedelta(days=3)) - week.index[0].to_pydatetime()
    data = tmp_path / "data"
    data.mkdir()
    _prefill(data / "history.sqlite3", week, shift)
    now = week.index[-1].to_pydatetime() + shift + timedelta(minutes=1)
    rig = Rig(data, Clocks(now), pty_port("ttyRPICT"), history_retention_days=3)
    service = await rig.start()
    try:
        await rig.replay(read_uci(uci + timedelta(days=7), uci + timedelta(days=7, minutes=3)),
                         shift)
        assert rig.state["anomaly"]["ready"] is True
        analytics = service.analytics
        await analytics.history.prune(now)  # the hourly retention, then the daily refit
        await analytics.refit()
        assert rig.state["anomaly"]["ready"] is True
    finally:
        await rig.stop()
    # A restart (an update, a reboot) dated the learning from the history's first minute
    # again: "learning" for 4 more days (helper 98).
    await rig.start()
    try:
        await rig.replay(read_uci(uci + timedelta(days=7, minutes=3),
                                  uci + timedelta(days=7, minutes=6)), shift)
        assert rig.state["anomaly"]["ready"] is True
        assert rig.state["anomaly"]["ready_at"] is None
    finally:
        await rig.stop()
