"""The CO2 sensor's recommendations in Home Assistant's language.

The add-on words each recommendation in English; it also sends the figures, so a French
Home Assistant says them in French (with a decimal comma) instead of showing English
sentences among French states. Other languages keep the add-on's sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# How the add-on ends the sentence of the circuit to act on. Its own test (a share of 25 %
# or more) cannot be made again here: the share comes rounded (24.96 -> 25.0).
_BIGGEST_SHARE = ": the biggest share"


def recommendation_texts(recommendations: tuple[Mapping[str, Any], ...], language: str,
                         shown_name: Callable[[str], str]) -> list[str]:
    """One sentence per recommendation (largest share first, as the add-on sends them),
    naming each circuit as its entities do (`shown_name`: "Cuisine", not "Kitchen")."""
    if not language.lower().startswith("fr"):
        return [str(r["text"]) for r in recommendations]
    return [_french(r, shown_name) or str(r["text"]) for r in recommendations]


def _french(recommendation: Mapping[str, Any], shown_name: Callable[[str], str]) -> str | None:
    name = recommendation.get("name")
    figures = [v for key in ("share_pct", "energy_kwh", "co2_kg")
               if isinstance(v := recommendation.get(key), int | float)]
    if not isinstance(name, str) or len(figures) < 3:
        return None  # an add-on that sends only the sentence
    share, energy, co2 = figures
    text = (f"{shown_name(name)} a consommé {_share(share)} de l'énergie du jour "
            f"({_amount(energy, 'kWh', 'Wh')}, {_amount(co2, 'kg', 'g')} de CO2)")
    if _BIGGEST_SHARE in str(recommendation.get("text", "")):
        text += " : la plus grande part, là où décaler ou réduire la consommation économise " \
                "le plus"
    return text


def _share(percent: float) -> str:
    return "moins de 1 %" if percent < 1 else f"{percent:.0f} %"


def _amount(value: float, unit: str, small_unit: str) -> str:
    """As the add-on rounds them (0.25 kWh, or 4 Wh below 0.1 kWh), with a decimal comma."""
    shown = f"{value:.2f} {unit}" if value >= 0.1 else f"{value * 1000:.0f} {small_unit}"
    return shown.replace(".", ",")
