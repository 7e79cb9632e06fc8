"""Command line `energy-tracker-addon`: run the add-on service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

# A backup (backup_pre / backup_post: SIGUSR1 / SIGUSR2 through s6) while the service is
# still importing must not end it, their default action: ignored until _run handles them.
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)

from .config import Options, OptionsError, load_options  # noqa: E402
from .service import AddonService, ServiceNotStarted  # noqa: E402

EXIT_BAD_OPTIONS = 2
EXIT_CANNOT_START = 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="energy-tracker-addon",
        description="Energy Tracker add-on service: serial meter -> power and energy -> API.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("/data"),
                        help="directory with options.json; token and counters are kept here")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    parser.add_argument("--port", type=int, default=8099, help="TCP port of the API")
    return parser.parse_args(argv)


def _make_private(data_dir: Path) -> None:
    """What earlier releases left readable by others (0.3.13 and before) becomes private."""
    for path in (data_dir.rglob("*") if data_dir.is_dir() else ()):
        try:
            mode = path.lstat().st_mode
            if mode & 0o077 and not path.is_symlink():
                path.chmod(mode & 0o700)
        except OSError:
            continue  # gone meanwhile, or not ours to change: nothing to protect then


async def _run(options: Options, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    service = AddonService(options, args.data_dir, args.host, args.port)
    # The Supervisor's backup_pre / backup_post (config.yaml) send these through s6; set
    # before the start, whose default action for them is to end the process.
    backups: set[asyncio.Task[None]] = set()

    def hold_for_backup() -> None:
        try:
            history = service.analytics.history
        except ServiceNotStarted:
            logging.getLogger(__name__).info("Backup while starting: no history to hold yet")
            return
        task = asyncio.create_task(history.hold_for_backup(), name="history held for a backup")
        backups.add(task)
        task.add_done_callback(backups.discard)

    def resume_after_backup() -> None:
        with contextlib.suppress(ServiceNotStarted):
            service.analytics.history.resume_after_backup()

    loop.add_signal_handler(signal.SIGUSR1, hold_for_backup)
    loop.add_signal_handler(signal.SIGUSR2, resume_after_backup)
    try:
        await service.start()
    except OSError as error:
        # The port taken by another program, a data folder that cannot be written: what
        # to fix, in one line (start() has undone what it started).
        logging.getLogger(__name__).error("Cannot start: %s", error)
        return EXIT_CANNOT_START
    try:
        await stop.wait()
        logging.getLogger(__name__).info("Stopping")
    finally:
        await service.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the add-on writes is its own: the history says when people are home, the
    # token opens the API (files were created 0644, folders 0755).
    os.umask(0o077)
    args = _parse_args(argv)
    _make_private(args.data_dir)
    # Before the options are read: what reading them warns about is a log line like any
    # other (time, level), not a bare line; the level is the option's once it is known.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = load_options(args.data_dir)
    except OptionsError as error:
        print(f"energy-tracker-addon: invalid option {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    logging.getLogger().setLevel(options.log_level.upper())
    return asyncio.run(_run(options, args))


if __name__ == "__main__":
    sys.exit(main())
