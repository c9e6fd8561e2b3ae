"""The ``tfnas`` command line.

Subcommands live in ``tfnas/commands/<module>.py``; each module exposes
``add_arguments(parser)`` and ``run(args) -> int``. The registry maps a
subcommand to its module and is imported lazily so ``tfnas --help`` stays fast
and a broken optional part never breaks the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from tfnas.registry import Registry
from tfnas_base.errors import UserError

# Optional packages a command may need; a missing one is "not available", any other missing module a bug.
OPTIONAL_MODULES = ("tensorrt", "cuda", "torchvision", "graphviz", "sklearn", "PIL")

# subcommand -> (module, one-line help), in the order ``tfnas --help`` lists them
COMMANDS: Registry[tuple[str, str]] = Registry("command")
COMMANDS.add("space", ("tfnas.commands.space", "show a search space and validate its YAML"))
COMMANDS.add("arch", ("tfnas.commands.arch", "validate a derived architecture; print FLOPs and params"))
COMMANDS.add("bundle", ("tfnas.commands.bundle", "write a profiling bundle (ONNX graphs + manifest)"))
COMMANDS.add("profile", ("tfnas.commands.profile", "bundle + profile locally: build a latency table"))
COMMANDS.add("predict", ("tfnas.commands.predict", "predict an architecture's latency from a table"))
COMMANDS.add("measure", ("tfnas.commands.measure", "export an architecture to ONNX and time it end to end"))
COMMANDS.add("search", ("tfnas.commands.search", "TF-NAS search under a latency target"))
COMMANDS.add("darts", ("tfnas.commands.darts", "DARTS-family cell search, evaluation and training"))
COMMANDS.add("train", ("tfnas.commands.train", "train a derived architecture from scratch (torchrun for DDP)"))
COMMANDS.add("calibrate", ("tfnas.commands.calibrate", "fit a latency table to end-to-end measurements"))
COMMANDS.add(
    "validate", ("tfnas.commands.validate", "check that a latency table describes this machine (verdict + plot)")
)
COMMANDS.add("export", ("tfnas.commands.export", "export a derived architecture to ONNX (checked, parity-tested)"))
COMMANDS.add("compare", ("tfnas.commands.compare", "a searched network vs random and uniform ones at the same latency"))
COMMANDS.add(
    "import-lut", ("tfnas.commands.import_lut", "convert an official TF-NAS latency pickle into a tfnas table")
)


def choose_omp_wait_policy() -> None:
    """Passive OpenMP waiting when the cores are already busy; the runtime's default otherwise.

    Spinning waiters collapse throughput 10-100x when another process holds a core (measured: BN
    48 ms vs 0.24 ms on a busy 2-core machine), while on an idle machine spinning is ~30% faster
    per step (benchmarks/search/README.md). OpenMP reads the variable when torch is first
    imported, so the CLI calls this before importing any command; a value set by the user wins.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    try:
        busy = os.getloadavg()[0] >= 0.75 * (os.cpu_count() or 1)
    except OSError:
        busy = False
    if busy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfnas", description="Hardware-aware, latency-constrained NAS: profile, search, deploy."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and notebooks swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_LineFormat())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class _LineFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def show_library_messages() -> None:
    """The library reports through ``logging``; the CLI shows its info lines and warnings on stderr."""
    logger = logging.getLogger("tfnas")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            try:
                COMMANDS.get(argv[0])
            except UserError as e:  # the registry's message: the known commands and the closest one
                parser.error(str(e))
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    choose_omp_wait_policy()
    show_library_messages()
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"tfnas {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UserError as e:  # the one root of user errors (TfnasError and the profilers' own)
        print(f"tfnas {name}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in OPTIONAL_MODULES:
            raise
        print(f"tfnas {name}: needs the optional package {e.name!r}, which is not installed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfnas {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
