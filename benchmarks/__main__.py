"""``python -m benchmarks NAME [options]``: run one benchmark (see the package docstring)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import benchmarks


def available() -> list[str]:
    """The benchmark modules: every public module of the package that has ``add_arguments`` and ``run``."""
    names = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if hasattr(module, "add_arguments") and hasattr(module, "run"):
            names.append(info.name)
    return sorted(names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=benchmarks.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="what", required=True)
    for name in available():
        module = importlib.import_module(f"benchmarks.{name}")
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0]))
    args = parser.parse_args(argv)
    importlib.import_module(f"benchmarks.{args.what}").run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
