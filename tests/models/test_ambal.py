"""AMBAL appliance models from the antgen package, read without its generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from energy_tracker_models.ambal import AmbalError, load_models, parse_model
from energy_tracker_models.targets import APPLIANCES


def test_every_target_has_training_and_unseen_models() -> None:
    from energy_tracker_models.synth import split_models

    train, test = split_models(unseen=False), split_models(unseen=True)
    for target in APPLIANCES:
        assert train[target.name], target.name
        assert test[target.name], target.name
        if target.test_models:  # held-out ids never leak into training
            assert not {m.model_id for m in train[target.name]} & set(target.test_models)


def test_kettle_profile_draws_its_rated_power_for_its_duration() -> None:
    kettle = next(m for m in load_models("KETTLE") if m.model_id == "KETTLE/dev_5AE2CA/mode0")
    power = kettle.synthesize()
    assert len(power) == kettle.duration_s
    assert 1800 < np.median(power) < 2200  # a 2 kW kettle
    longer = kettle.synthesize(stretch=1.5, scale=0.5)
    assert len(longer) == round(1.5 * kettle.duration_s)
    assert longer.sum() == pytest.approx(0.75 * power.sum(), rel=0.02)


def test_decay_phase_follows_the_ambal_formula(tmp_path: Path) -> None:
    xml = tmp_path / "mode0"
    xml.write_text(
        '<profile duration="100" type="X"><load type="ON_OFF_DECAY">'
        '<activePower value="100"/><peakPower value="500"/><decayRate value="0.1"/>'
        '<duration value="1.0"/></load></profile>')
    power = parse_model(xml, "X/a/mode0").synthesize()
    assert power[0] == pytest.approx(500)
    assert power[10] == pytest.approx(100 + 400 * np.exp(-1.0))
    assert power[-1] == pytest.approx(100, abs=1)


def test_unreadable_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "mode0"
    bad.write_text("<profile><load type='ON_OFF'></profile")
    with pytest.raises(AmbalError, match="mode0"):
        parse_model(bad, "X/a/mode0")
