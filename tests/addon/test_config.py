"""Options loading and validation, the generated API token and the meter id."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from energy_tracker_addon.config import (
    ChannelConfig,
    Options,
    OptionsError,
    load_options,
    meter_id,
    parse_options,
    resolve_token,
)


def write_options(data_dir: Path, data: Any) -> None:
    (data_dir / "options.json").write_text(json.dumps(data))


def test_missing_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    options = load_options(tmp_path)

    assert options.rpict_model == "rpict3t1"
    assert options.rpict_vest == 230.0
    assert options.rpict_baudrate == 38400
    assert options.voltage_baudrate == 115200
    assert options.stale_after_s == 10
    assert options.persist_interval_s == 30
    assert options.simulation_speed == 1.0
    assert options.log_level == "info"
    assert options.api_token == options.rpict_port == options.voltage_port == ""
    assert [(c.id, c.name, c.role) for c in options.channels] == [
        (1, "Mains", "mains"),
        (2, "Kitchen", "circuit"),
        (3, "Water heater & AC", "circuit"),
    ]


def test_given_options_are_used_and_missing_keys_take_defaults(tmp_path: Path) -> None:
    write_options(
        tmp_path,
        {
            "rpict_vest": 240,
            "rpict_model": "rpict8",
            "channels": [{"id": 8, "name": "Heat pump", "role": "circuit"}],
            "relays": [{"id": 1, "name": "Heat pump", "source": "board", "channel": 8},
                       {"id": 2, "name": "Freezer", "source": "board", "fail_safe_on": True}],
            "nilm_appliances": ["kettle", "fridge"],
        },
    )

    options = load_options(tmp_path)

    assert options.rpict_vest == 240.0
    assert options.rpict_model == "rpict8"
    assert options.channels == (ChannelConfig(8, "Heat pump", "circuit"),)
    assert options.nilm_appliances == ("kettle", "fridge")
    assert [(r.name, r.fail_safe_on) for r in options.relays] == [
        ("Heat pump", False), ("Freezer", True)]
    assert options.stale_after_s == Options().stale_after_s


def test_names_in_any_script_are_kept_as_written(tmp_path: Path) -> None:
    # The joiners are visible in effect: they build an emoji family and Persian words.
    names = ["Family room \U0001f468\u200d\U0001f469\u200d\U0001f467",
             "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "Küche", "\u51b7\u8535\u5eab"]
    write_options(tmp_path, {"rpict_model": "rpict8", "channels": [
        {"id": index + 1, "name": name, "role": "circuit"} for index, name in enumerate(names)
    ]})

    assert [channel.name for channel in load_options(tmp_path).channels] == names


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rpict_vest": 9000}, "rpict_vest: value must be at most 500 (got 9000)"),
        ({"rpict_vest": "230"}, "rpict_vest: expected a number (got '230')"),
        ({"stale_after_s": 1}, "stale_after_s: value must be at least 2 (got 1)"),
        ({"persist_interval_s": 10.5}, "persist_interval_s: expected an integer (got 10.5)"),
        ({"rpict_baudrate": True}, "rpict_baudrate: expected an integer (got True)"),
        ({"simulation_speed": 5000}, "simulation_speed: value must be at most 1000"),
        ({"rpict_model": "rpict9"}, "rpict_model: value must be one of"),
        ({"log_level": "loud"}, "log_level: value must be one of"),
        ({"api_tokn": "x"}, "api_tokn: extra keys not allowed"),
        ({"channels": []}, "channels: needs at least one channel"),
        (
            {"channels": [{"id": 1, "name": "Mains", "role": "solar"}]},
            "channels[0].role: value must be one of ['circuit', 'mains'] (got 'solar')",
        ),
        (
            {"channels": [{"id": 9, "name": "Nine", "role": "circuit"}]},
            "channels[0].id: value must be at most 8 (got 9)",
        ),
        (
            {
                "channels": [
                    {"id": 1, "name": "A", "role": "mains"},
                    {"id": 1, "name": "B", "role": "circuit"},
                ]
            },
            "channels[1].id: channel id 1 is used twice",
        ),
        ({"channels": [{"id": 2, "role": "mains"}]}, "channels[0].name: required key"),
        # Names reach the log: a line break forged log lines.
        ({"relays": [{"id": 1, "name": "Heater\n2026-12-06 ERROR fake", "source": "board"}]},
         "relays[0].name: must not hold line breaks, tabs or other control characters"),
        # A right-to-left override shows the name's end reversed: "Heater\u202egnp.exe".
        ({"extra_meters": [{"id": "garage", "name": "Garage\u202eegaraG"}]},
         "extra_meters[0].name: must not hold text-direction controls (such as U+202E)"),
        # Invisible characters: "Kettle" and "Ket\u200btle" look the same in every list.
        ({"relays": [{"id": 1, "name": "Ket\u200btle", "source": "board"}]},
         "relays[0].name: must not hold invisible characters (such as U+200B or U+00AD)"),
        ({"channels": [{"id": 1, "name": "\ufeffMains", "role": "mains"}]},
         "channels[0].name: must not hold invisible characters"),
        ({"channels": [{"id": 1, "name": "   ", "role": "mains"}]},
         "channels[0].name: must show something, not only spaces"),
        ({"relays": [{"id": 2, "name": "Freezer", "source": "board", "fail_safe_on": "on"}]},
         "relays[0].fail_safe_on: expected bool"),
        ({"nilm_appliances": ["kettle", "Dish washer"]},
         "nilm_appliances[1]: not a model id such as kettle (got 'Dish washer')"),
        # pyserial cannot set a speed above a C int: the link died without a word.
        ({"rpict_baudrate": 3_000_000_000}, "rpict_baudrate: value must be at most 4000000"),
        ({"voltage_baudrate": 0}, "voltage_baudrate: value must be at least 50"),
        # A token anyone on the network could guess opens every route but health.
        ({"api_token": "abc"}, "api_token: at least 16 characters without spaces"),
        ({"api_token": " " * 20}, "api_token: at least 16 characters without spaces"),
        # Passed \S, and no client can send it (helper 92).
        ({"api_token": "abcdefghijklmnop\x7f"},
         "api_token: at least 16 characters without spaces or control characters"),
        # Checks across options: refused before anything starts (exit 2), not mid-start.
        ({"channels": [{"id": 5, "name": "A", "role": "mains"}], "relays": []},
         "channels: channel id 5 does not exist on an rpict3t1, which has 3 CT inputs"),
        # One port for two boards: each read part of its bytes, one board said nothing.
        ({"rpict_port": "/dev/ttyAMA0", "voltage_port": "/dev/ttyAMA0"},
         "voltage_port: the same port as rpict_port (/dev/ttyAMA0): each board needs its own"),
        ({"rpict_port": "/dev/ttyUSB0", "extra_meters": [
            {"id": "garage", "name": "Garage", "rpict_port": "/dev/ttyUSB0"}]},
         "extra_meters[0].rpict_port: the same port as rpict_port (/dev/ttyUSB0)"),
    ],
)
def test_bad_option_names_the_option_and_the_problem(
    tmp_path: Path, data: dict[str, Any], message: str
) -> None:
    write_options(tmp_path, data)

    with pytest.raises(OptionsError) as raised:
        load_options(tmp_path)

    assert message in str(raised.value)


def test_one_port_by_two_names_is_refused(tmp_path: Path) -> None:
    """/dev/serial0 is a link to the Pi's UART: the same port as /dev/ttyAMA0."""
    device = tmp_path / "ttyAMA0"
    device.touch()
    (tmp_path / "serial0").symlink_to(device)
    write_options(tmp_path, {"rpict_port": str(tmp_path / "serial0"),
                             "voltage_port": str(device)})
    with pytest.raises(OptionsError, match="voltage_port: the same port as rpict_port"):
        load_options(tmp_path)


@pytest.mark.parametrize("option", ["api_token", "mqtt_password", "mqtt_pasword", "api_tokn"])
def test_a_refused_secret_is_not_echoed(tmp_path: Path, option: str) -> None:
    """The message goes to the add-on log: it names the option, never the secret."""
    write_options(tmp_path, {option: ["my secret token 12345"]} if option == "mqtt_password"
                  else {option: "my secret token 12345"})
    with pytest.raises(OptionsError) as raised:
        load_options(tmp_path)
    assert str(raised.value).startswith(f"{option}: ")
    # A misspelt name too ("extra keys not allowed"): it may well hold the secret.
    assert "secret" not in str(raised.value)


def test_non_finite_number_is_rejected(tmp_path: Path) -> None:
    # json.loads accepts NaN, and NaN passes every range comparison.
    (tmp_path / "options.json").write_text('{"rpict_vest": NaN}')

    with pytest.raises(OptionsError, match="rpict_vest: expected a finite number"):
        load_options(tmp_path)


def test_file_that_is_not_json_is_an_options_error(tmp_path: Path) -> None:
    (tmp_path / "options.json").write_text('{"rpict_vest": ')

    with pytest.raises(OptionsError, match="not valid JSON"):
        load_options(tmp_path)


def test_generated_token_is_kept_private_and_reused(tmp_path: Path) -> None:
    first = resolve_token(Options(), tmp_path)

    token_file = tmp_path / "api_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert resolve_token(Options(), tmp_path) == first
    # A second data directory gets its own random token.
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_token(Options(), other) != first


def test_token_option_wins_over_the_generated_one(tmp_path: Path) -> None:
    resolve_token(Options(), tmp_path)

    assert resolve_token(Options(api_token="set-by-user-0123"), tmp_path) == "set-by-user-0123"


def test_meter_id_is_created_once(tmp_path: Path) -> None:
    first = meter_id(tmp_path)

    assert len(first) == 32
    int(first, 16)
    assert meter_id(tmp_path) == first
    assert (tmp_path / "meter_id").read_text().strip() == first


@pytest.mark.parametrize("content", [b"\x00\x00", b"", b"\xbd\xb2=\xbc", b"not-an-id\n"])
def test_unreadable_meter_id_is_replaced_with_an_error_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    # A damaged card: the add-on starts, and says why Home Assistant sees a new device.
    (tmp_path / "meter_id").write_bytes(content)

    value = meter_id(tmp_path)

    assert len(value) == 32
    assert "does not hold a valid meter id" in caplog.text
    assert meter_id(tmp_path) == value


def test_a_damaged_token_file_gets_a_new_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "api_token").write_bytes(b"\xbd" * 40)

    token = resolve_token(Options(), tmp_path)

    assert len(token) >= 32
    assert "does not hold a valid token" in caplog.text
    assert resolve_token(Options(), tmp_path) == token


@pytest.mark.parametrize(("write", "error"), [
    (lambda path: path.write_bytes(b'{"log_level": "\xe9"}'), "cannot read"),
    (lambda path: path.write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
    (lambda path: path.mkdir(), "cannot read"),
])
def test_an_options_file_that_cannot_be_read_is_an_options_error(
    tmp_path: Path, write: Callable[[Path], object], error: str
) -> None:
    write(tmp_path / "options.json")

    with pytest.raises(OptionsError, match=error):
        load_options(tmp_path)


def test_a_huge_bad_value_is_not_echoed_whole() -> None:
    with pytest.raises(OptionsError) as raised:
        parse_options({"log_level": "x" * 100_000})
    assert len(str(raised.value)) < 200
    assert "log_level" in str(raised.value)


def test_the_documented_channels_example_runs_with_the_default_relays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DOCS.md's two-clamp example leaves out channel 3, which the default water-heater
    relay names: the relay keeps working without the link, and the log says so."""
    options = parse_options({"channels": [{"id": 1, "name": "Mains", "role": "mains"},
                                          {"id": 2, "name": "Kitchen", "role": "circuit"}]})

    assert [(r.id, r.channel) for r in options.relays] == [(1, None), (2, 2), (3, None)]
    assert "Relay 1 (Water heater) names channel 3, which is not in channels" in caplog.text


def test_slips_a_list_editor_lets_through_are_mended_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = parse_options({"nilm_appliances": ["kettle", "fridge", "kettle"],
                             "mqtt_enabled": True, "mqtt_host": " 192.168.1.5 ",
                             "mqtt_password": "secret-pass", "nilm_bundle_dir": "   "})

    assert options.nilm_appliances == ("kettle", "fridge")
    assert "nilm_appliances lists a model more than once" in caplog.text
    assert options.mqtt_host == "192.168.1.5"
    assert options.nilm_bundle_dir == ""  # the shipped bundle, not a folder named "   "
    assert "mqtt_password is set without mqtt_username" in caplog.text
    assert "secret-pass" not in caplog.text
