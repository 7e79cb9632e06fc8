"""Throughput of the serial line parsers on one core (goal: >= 300k RPICT lines/s).

Run: .venv/bin/python bench/bench_parser.py [--seconds 1.0]

The lines are realistic and varied (random household-like values, both separators, CRLF
and LF, -0.0 and the -127 no-probe marker), generated once up front so the timing covers
parsing only. Prints the best of several rounds, to keep other load on a shared machine
out of the figure as far as possible.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from energy_tracker_addon.protocol import (
    RPICT_MODELS,
    RpictParser,
    encode_command,
    frame,
    parse_board_line,
    parse_command_line,
)

GOAL_LINES_PER_S = 300_000
N_LINES = 20_000


def rpict3t1_lines(rng: random.Random) -> list[bytes]:
    lines = []
    for _ in range(N_LINES):
        sep = rng.choice((" ", ","))
        end = rng.choice(("\r\n", "\n"))
        powers = [rng.choice(("-0.0", f"{rng.uniform(-3000, 9000):.1f}")) for _ in range(3)]
        temp = rng.choice(("-127", f"{rng.uniform(5, 40):.2f}"))
        lines.append(sep.join(("11", *powers, temp)).encode() + end.encode())
    return lines


def rpict_lines(model: str, rng: random.Random) -> list[bytes]:
    """Generic lines for any model: the right number of in-range values."""
    parser = RpictParser(model)
    layout = {"rpict3v1": (3, 3, 1), "rpict4v3": (4, 4, 3), "rpict7v1": (7, 7, 1),
              "rpict8": (8, 0, 0)}[model]
    lines = []
    for _ in range(N_LINES // 4):
        fields = [f"{rng.uniform(-3000, 9000):.1f}" for _ in range(layout[0])]
        fields += [f"{rng.uniform(0, 40000):.1f}" for _ in range(layout[1])]
        fields += [f"{rng.uniform(220, 245):.1f}" for _ in range(layout[2])]
        lines.append(" ".join(("11", *fields)).encode() + b"\r\n")
    parser.parse(lines[0])
    return lines


def et1_lines(rng: random.Random) -> list[bytes]:
    lines = []
    for seq in range(N_LINES):
        relays = "".join(rng.choice("01") for _ in range(3))
        lines.append(frame("ETM", str(seq % 65536), f"{rng.uniform(220, 245):.1f}",
                           f"{rng.uniform(49.9, 50.1):.2f}", relays, str(seq * 3)))
    return lines


def rate(parse: Callable[[bytes], object], lines: list[bytes], seconds: float) -> float:
    """Best lines/s over rounds filling about `seconds`."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for line in lines:
            parse(line)
        elapsed = time.perf_counter() - start
        best = max(best, len(lines) / elapsed)
        if time.perf_counter() > deadline:
            return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure")
    args = parser.parse_args()
    rng = random.Random(1)

    default = rate(RpictParser("rpict3t1").parse, rpict3t1_lines(rng), args.seconds)
    print(f"RPICT rpict3t1      {default:>12,.0f} lines/s  "
          f"({default / GOAL_LINES_PER_S:.2f}x the {GOAL_LINES_PER_S:,} goal)")
    for model in RPICT_MODELS[1:]:
        figure = rate(RpictParser(model).parse, rpict_lines(model, rng), args.seconds / 2)
        print(f"RPICT {model:<13} {figure:>12,.0f} lines/s")
    et1 = rate(parse_board_line, et1_lines(rng), args.seconds)
    print(f"ET1 ETM frames      {et1:>12,.0f} frames/s")
    commands = [encode_command(i % 65535 + 1, "RELAY", str(i % 3 + 1), str(i % 2))
                for i in range(N_LINES)]
    cmd = rate(parse_command_line, commands, args.seconds / 2)
    print(f"ET1 ETC commands    {cmd:>12,.0f} frames/s")


if __name__ == "__main__":
    main()
