"""Command line `energy-tracker-models`: prepare, train, export, report, evaluate, finetune,
forecast. Global options such as --cache go before the command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from energy_tracker_addon.nilm import DEFAULT_BUNDLE, NilmBundleError

from .data import DataError
from .forecast_train import add_arguments as add_forecast_arguments
from .targets import ALL_TARGETS

DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache"


def positive_int(text: str) -> int:
    """An --epochs of 0 fits nothing yet used to overwrite the checkpoint, then crash."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def version(text: str) -> str:
    """The add-on shows the bundle's version; a blank one would say nothing."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="energy-tracker-models", description=__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="prepared data and checkpoints (default models/.cache); "
                        "before the command")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="UCI + synthetic appliance data sets")
    p_train = sub.add_parser("train", help="train Keras models (needs the models extra)")
    p_train.add_argument("--targets", nargs="+", choices=sorted(ALL_TARGETS),
                         default=list(ALL_TARGETS))
    p_train.add_argument("--epochs", type=positive_int, default=30)
    p_export = sub.add_parser("export", help="int8 TFLite + bundle.json")
    p_export.add_argument("--targets", nargs="+", choices=sorted(ALL_TARGETS),
                          default=list(ALL_TARGETS))
    p_export.add_argument("--out", type=Path, default=DEFAULT_BUNDLE)
    p_export.add_argument("--version", required=True, type=version,
                          help="the bundle's version, e.g. 2.5.0+home for a fine-tuned one")
    p_export.add_argument("--keep-others", action="store_true",
                          help="keep the shipped bundle's models of the targets not exported")
    p_report = sub.add_parser("report", help="held-out evaluation with baselines, model card")
    p_report.add_argument("--models", type=Path, default=DEFAULT_BUNDLE)
    p_report.add_argument("--ukdale", type=Path, default=None,
                          help="UK-DALE CSV (default: the shipped test slice)")
    p_eval = sub.add_parser("evaluate", help="score a bundle on a CSV; JSON on the last line")
    p_eval.add_argument("--data", type=Path, required=True)
    p_eval.add_argument("--models", type=Path, default=None,
                        help="bundle folder (default: the add-on's shipped bundle)")
    p_tune = sub.add_parser("finetune", help="adapt trained models to a home's labels "
                            "(needs the models extra); then run export")
    p_tune.add_argument("--labels", type=Path, required=True,
                        help="the add-on's nilm_labels.jsonl (or GET /api/v1/labels)")
    p_tune.add_argument("--history", type=Path, required=True,
                        help="an add-on export (GET /api/v1/export) covering the labels")
    p_tune.add_argument("--targets", nargs="+", choices=sorted(ALL_TARGETS), default=None)
    p_tune.add_argument("--epochs", type=positive_int, default=5)
    add_forecast_arguments(sub.add_parser("forecast", help="energy forecast: train < 2010, "
                                          "test on 2010 against baselines"))
    args = parser.parse_args(argv)

    try:
        if args.command == "prepare":
            from .prepare import prepare

            for name, path in prepare(args.cache).items():
                print(f"{name}: {path}")
        elif args.command == "train":
            from .train import train

            for name in args.targets:
                print(f"saved {train(name, args.cache, args.epochs)}", flush=True)
        elif args.command == "export":
            from .export import export

            keep_from = DEFAULT_BUNDLE if args.keep_others else None
            print(f"wrote {export(args.targets, args.cache, args.out, args.version,
                                  keep_from=keep_from)}")
        elif args.command == "report":
            from .report import report

            print(f"wrote {report(args.cache, args.models, args.ukdale)}")
        elif args.command == "finetune":
            from .finetune import finetune

            print(json.dumps(finetune(args.labels, args.history, args.cache, args.epochs,
                                      args.targets)))
        elif args.command == "forecast":
            from .forecast_train import run as forecast

            return forecast(args)
        else:
            from .evaluate import evaluate_csv

            print(json.dumps(evaluate_csv(args.data, args.models), allow_nan=False))
    except (NilmBundleError, DataError, OSError) as err:  # a missing file, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
