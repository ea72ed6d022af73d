"""The ``caloforge`` command: a thin argparse front that calls library functions.

Each sub-command lives in its own module with ``register(subparsers)``; the handler it sets returns an exit code.
User errors (``CaloforgeError``) print one line and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from caloforge import __version__
from caloforge.errors import CaloforgeError

# Order here is the order in ``caloforge --help``.
_COMMAND_MODULES = (
    "caloforge.cli.demo_cmd",
    "caloforge.cli.data_cmd",
    "caloforge.cli.simulate_cmd",
    "caloforge.cli.recipes_cmd",
    "caloforge.cli.train_cmd",
    "caloforge.cli.sample_cmd",
    "caloforge.cli.evaluate_cmd",
    "caloforge.cli.bench_cmd",
    "caloforge.cli.export_cmd",
    "caloforge.cli.adapt_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="caloforge",
        description="Calorimeter shower generators: make data, train, sample, evaluate (CaloChallenge protocol).",
    )
    parser.add_argument("--version", action="version", version=f"caloforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CaloforgeError as exc:
        print(f"caloforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("caloforge: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        from pathlib import Path

        from caloforge.outputs import disk_error_message

        msg = disk_error_message(Path(exc.filename or "."), exc)
        if msg is None:
            raise
        print(f"caloforge: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
