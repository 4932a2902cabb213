"""Command line: ``python -m skinlib {download,predict} ...`` (also installed as ``skinlib``)."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module providing add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS = {
    "download": ("skinlib.download", "fetch HAM10000 (and the ISIC 2018 test set) from Harvard Dataverse"),
    "predict": ("skinlib.predict", "classify images with an exported .keras model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skinlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        importlib.import_module(module).add_arguments(sub)
        sub.set_defaults(module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args.module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
