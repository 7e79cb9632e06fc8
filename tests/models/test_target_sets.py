"""A circuit's own validation months: cut from the prepared UCI sets, never from 2010."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy_tracker_models.data import CIRCUIT_COLUMNS
from energy_tracker_models.export import training_data
from energy_tracker_models.prepare import save_uci
from energy_tracker_models.targets import ALL_TARGETS
from energy_tracker_models.train import target_set


def _uci_part(first: str, last: str, offset: int) -> pd.DataFrame:
    index = pd.date_range(first, last, freq="60s")
    minutes = np.arange(len(index), dtype=np.float32) + offset
    frame = pd.DataFrame({"mains": minutes, "valid": minutes % 7 != 0}, index=index)
    for circuit in CIRCUIT_COLUMNS:
        frame[circuit] = minutes / 2
    return frame


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    # Minute counters as values: any sample lost or repeated at a cut shows as a jump
    train = _uci_part("2009-09-27", "2009-09-30 23:59", 0)
    val = _uci_part("2009-10-01", "2009-10-02 23:59", len(train))
    save_uci(train, tmp_path / "uci_train.npz")
    save_uci(val, tmp_path / "uci_val.npz")
    save_uci(_uci_part("2010-01-01", "2010-01-01 23:59", 10**6), tmp_path / "uci_test.npz")
    return tmp_path


def test_a_circuit_can_validate_on_months_before_the_prepared_validation_set(
    cache: Path,
) -> None:
    laundry = replace(ALL_TARGETS["laundry"], val_start="2009-09-29")
    train = target_set(laundry, cache, "train")
    val = target_set(laundry, cache, "val")

    assert pd.Timestamp(int(train.start), unit="s") == pd.Timestamp("2009-09-27")
    assert len(train.mains) == 2 * 1440  # 27th and 28th
    assert pd.Timestamp(int(val.start), unit="s") == pd.Timestamp("2009-09-29")
    assert len(val.mains) == 4 * 1440  # 29th, 30th and the prepared 1st-2nd October
    joined = np.concatenate([train.mains, val.mains])
    assert np.array_equal(joined, np.arange(6 * 1440))
    assert np.array_equal(np.concatenate([train.valid, val.valid]), joined % 7 != 0)
    assert np.array_equal(val.truth["laundry"], val.mains / 2)
    # The held-out year stays where it is
    assert target_set(laundry, cache, "test").mains[0] == 10**6


def test_circuits_without_their_own_start_use_the_prepared_sets(cache: Path) -> None:
    kitchen = ALL_TARGETS["kitchen"]
    assert kitchen.val_start is None
    assert len(target_set(kitchen, cache, "train").mains) == 4 * 1440
    assert target_set(kitchen, cache, "val").mains[0] == 4 * 1440


@pytest.mark.parametrize("day", ["2009-09-27", "2009-10-02", "2010-02-01"])
def test_a_validation_start_outside_the_training_set_is_refused(cache: Path, day: str) -> None:
    bad = replace(ALL_TARGETS["laundry"], val_start=day)
    with pytest.raises(ValueError, match="val_start"):
        target_set(bad, cache, "train")


def test_sets_that_do_not_follow_each_other_are_refused(tmp_path: Path) -> None:
    # A cache from two different `prepare` runs: joining them would shift every minute
    save_uci(_uci_part("2009-09-27", "2009-09-30 23:59", 0), tmp_path / "uci_train.npz")
    save_uci(_uci_part("2009-10-02", "2009-10-02 23:59", 0), tmp_path / "uci_val.npz")
    with pytest.raises(ValueError, match="not contiguous"):
        target_set(replace(ALL_TARGETS["laundry"], val_start="2009-09-29"), tmp_path, "val")


def test_the_bundle_states_each_circuits_training_and_validation_months() -> None:
    kitchen = training_data(ALL_TARGETS["kitchen"])
    assert "2006-12-16..2009-09-30; validation 2009-10..12; 2010 held out" in kitchen
    moved = training_data(replace(ALL_TARGETS["kitchen"], val_start="2009-07-01"))
    assert "2006-12-16..2009-06-30; validation 2009-07..12; 2010 held out" in moved
    assert "AMBAL" in training_data(ALL_TARGETS["kettle"])
