"""`lowerbound ...`: parse arguments, build a config, call the public API.  No logic lives here.

Every subcommand is a pair: `_add_NAME(subparsers)` declares its arguments and `_run_NAME(args)`
calls the library.  A UserError anywhere becomes one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one sentence and exit status 2 (its default code)."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"lowerbound: error: {message}.\n")


# ---------------------------------------------------------------- demo (issue 2)
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="small demonstrations of the probability tools")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    raise UserError("No demo is available yet.")


# ---------------------------------------------------------------- data (issue 3)
def _add_data(sub) -> None:
    p = sub.add_parser("data", help="list data sets, or describe one")
    p.set_defaults(run=_run_data)


def _run_data(args) -> int:
    raise UserError("The data command is not available yet.")


# ---------------------------------------------------------------- train / eval / sample (issue 4)
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or fit) a model family on a data set")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    raise UserError("The train command is not available yet.")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's bound on a split")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    raise UserError("The eval command is not available yet.")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a run and write a PNG grid")
    p.set_defaults(run=_run_sample)


def _run_sample(args) -> int:
    raise UserError("The sample command is not available yet.")


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowerbound", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_demo, _add_data, _add_train, _add_eval, _add_sample):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"lowerbound: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowerbound: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
