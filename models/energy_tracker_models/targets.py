"""What each model disaggregates: sampling period, window, on/off thresholds, AMBAL splits.

Appliances run at 6 s, the period of the published UK-DALE Seq2Point results and of the
UK-DALE validation slice. Each window covers the appliance's distinguishing activity: a
kettle or microwave run fits in 10 min (99 samples), a fridge cycle in 20 min (199), and
30 min (299) of a washing machine or dishwasher programme shows its heating and motor
phases. Live estimates lag by half a window (the Seq2Point midpoint). The UCI circuits are
1-minute data with a 99-minute window (about one water-heater or oven run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

# UCI validation (early stopping and choices) runs from here to the end of 2009 unless a
# circuit sets its own start; 2010 on is held out
VAL_START = "2009-10-01"

# Training variation of AMBAL profiles unless a target sets its own (power and time scale)
POWER_RANGE = (0.85, 1.15)
DURATION_RANGE = (0.8, 1.25)


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # "circuit" (UCI sub-meter) or "appliance" (AMBAL on real background)
    period_s: int
    window: int
    on_w: float
    off_w: float
    min_on_s: float
    min_off_s: float
    # AMBAL model ids (<TYPE>/<device>/<mode>) kept out of training: the unseen test models
    ambal_type: str = ""
    test_models: tuple[str, ...] = field(default_factory=tuple)
    # Training power scaling of AMBAL profiles: the span of ratings real appliances of this
    # type have (AMBAL holds only 1-3 devices per type, e.g. fridges of 50-75 W)
    power_range: tuple[float, float] = POWER_RANGE
    # Training stretch of AMBAL profiles in time: how long real runs of this type last
    duration_range: tuple[float, float] = DURATION_RANGE
    # Share of training windows centred on activity, drawn with replacement. Chosen on the
    # validation set (single-head network): for kettle and microwave 0.5, 0.2 and 0.05 all
    # raised false positives, so they train on the natural mix; the gated network reached
    # 2.8 W (kettle) on that mix.
    on_share: float = 0.0
    # Networks averaged (each on its own sample of windows, own seed): more for the
    # circuits that miss their goal
    members: int = 1
    # Cut the learning rate by 0.3 after 2 epochs without progress on validation (and stop
    # after 5, not 3). Validation MAE of one network (seed 7): kitchen 19.5 -> 18.4 W,
    # laundry 35.0 -> 33.1 W. The other models meet their goals and were trained without.
    lr_cuts: bool = False
    # A circuit's own start of validation (ISO date) instead of VAL_START: its
    # validation months then come from the end of the prepared training set
    val_start: str | None = None

    def validation_months(self) -> str:
        """The UCI validation months, e.g. "2009-10..12"."""
        return f"{(self.val_start or VAL_START)[:7]}..12"

    def last_training_day(self) -> str:
        """The last UCI day a circuit trains on (ISO date)."""
        return str(date.fromisoformat(self.val_start or VAL_START) - timedelta(days=1))


CIRCUITS = (
    Target("kitchen", "circuit", 60, 99, 100.0, 50.0, 60.0, 60.0, members=3, lr_cuts=True),
    # laundry validates on summer and autumn: its fridge's long runs (>= 45 min: 31 % of
    # 2009-Q3 minutes, 1.5 % of Q4's) are in no autumn quarter. On 2009-07..12, one network
    # (seed 7): window 99 -> 199 minutes 33.4 -> 32.4 W (Q3 33.6 -> 31.6, Q4 33.3 -> 33.2)
    Target("laundry", "circuit", 60, 199, 100.0, 50.0, 60.0, 60.0, members=3, lr_cuts=True,
           val_start="2009-07-01"),
    Target("water_heater_ac", "circuit", 60, 99, 500.0, 250.0, 120.0, 60.0),
)

APPLIANCES = (
    # kettle on at 750 W: the best on/off F1 on the validation set (0.81 vs 0.71 at 1 kW)
    Target("kettle", "appliance", 6, 99, 750.0, 375.0, 12.0, 0.0, "KETTLE",
           ("KETTLE/dev_5AE2CA/mode0",), (0.85, 1.6), (0.6, 2.2)),  # 1.5-3 kW, 40 s-5 min
    Target("fridge", "appliance", 6, 199, 50.0, 25.0, 60.0, 12.0, "REFRIGERATOR",
           ("REFRIGERATOR/dev20111228/mode0", "REFRIGERATOR/dev20111228/mode1"),
           (0.7, 3.0), on_share=0.5),  # compressors: 40-200 W
    Target("microwave", "appliance", 6, 99, 200.0, 100.0, 12.0, 30.0, "MICROWAVE",
           ("MICROWAVE/dev_98A0D3/mode0",), (0.6, 1.4), (0.3, 2.0)),  # 0.8-1.8 kW, 30 s-13 min
    # washing machine: a fifth of the windows on a wash (validation MAE 5.0 W vs 8.7 W at 0.5)
    Target("washing_machine", "appliance", 6, 299, 20.0, 10.0, 300.0, 160.0, "WASHINGMACHINE",
           ("WASHINGMACHINE/ECO-H1/mode3",), duration_range=(0.7, 1.5), on_share=0.2),
    # AMBAL has a single dishwasher model: its test runs use unseen power/duration variations
    Target("dishwasher", "appliance", 6, 299, 20.0, 10.0, 300.0, 300.0, "DISHWASHER", (),
           on_share=0.5),
)

ALL_TARGETS = {t.name: t for t in CIRCUITS + APPLIANCES}

# Other AMBAL types added as distractors, with mean activations per day
DISTRACTORS = {
    "TOASTER": 0.8, "IRON": 0.3, "COFFEEMAKER": 1.5, "COOKINGSTOVE": 0.6,
    "VACUUMCLEANER": 0.3, "TV": 1.0, "PC": 1.0, "PRINTER": 0.5, "DRYER": 0.2,
    "BREADCUTTER": 0.3, "AMPLIFIER": 0.5, "CDPLAYER": 0.3,
}
# Mean activations per day of the targets (the fridge cycles all day instead)
USES_PER_DAY = {"kettle": 4.0, "microwave": 2.5, "washing_machine": 0.6, "dishwasher": 0.6}
