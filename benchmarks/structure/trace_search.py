"""Follow ``tfnas search`` from the command line to the derived network, and count what it touches (issue 23).

Runs a tiny search (the test suite's tiny space and config, generated data, a synthetic table) through the CLI
entry point with a profiler hook on every Python call, and counts
- files: the project's modules (``tfnas``, ``tfnas_base``, ``profilers``) whose code ran;
- calls up: distinct (caller module, callee module) pairs where the callee sits in a higher layer than the
  caller. Layers, low to high: base (``tfnas_base``, ``profilers``), core (errors, registry, resources, config,
  utils), infrastructure (latency, train, export, data), families (MBV2: ``tfnas.mbv2``, and before issue 23
  ``tfnas.spaces``, ``tfnas.arch``, ``tfnas.ops``, ``tfnas.models``, ``tfnas.search``; DARTS), commands. A
  callback a lower layer is handed (a network's ``build``) counts: the reader still has to go up to read it.
Also the static import closure of ``tfnas.commands.search`` (module-level and function-level imports) and its
imports up: import edges from a module to one in a higher layer (a reader following the code goes back up).

    python benchmarks/structure/trace_search.py [--root REPO] [--json OUT]   # run from REPO; seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

LAYERS = [  # (rank, module prefixes), highest rank first so the longest-known prefix decides
    (4, ("tfnas.commands", "tfnas.cli", "tfnas.__main__")),
    (3, ("tfnas.mbv2", "tfnas.darts", "tfnas.spaces", "tfnas.arch", "tfnas.ops", "tfnas.models", "tfnas.search")),
    (2, ("tfnas.latency", "tfnas.train", "tfnas.export", "tfnas.data")),
    (1, ("tfnas.config", "tfnas.utils", "tfnas.errors", "tfnas.registry", "tfnas.resources", "tfnas")),
    (0, ("tfnas_base", "profilers")),
]
LAYER_NAMES = ["base", "core", "infrastructure", "family", "commands"]


def rank(module: str) -> int:
    for r, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return r
    raise ValueError(module)


def package(module: str) -> str:
    """``tfnas.mbv2.search.steps`` -> ``tfnas.mbv2``: the place a reader goes to."""
    return ".".join(module.split(".")[:2])


def module_of(filename: str, root: Path) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(root)
    except ValueError:
        return None
    if rel.parts[0] not in ("tfnas", "tfnas_base", "profilers") or rel.suffix != ".py":
        return None
    return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")


def static_closure(start: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The modules ``start`` imports, transitively, and every import edge among them (the test suite's graph)."""
    from tests.test_structure import _module_graph

    graph = _module_graph()
    seen, todo, edges = {start}, [start], set()
    while todo:
        name = todo.pop()
        for dep in graph[name]:
            edges.add((name, dep))
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen, edges


def tiny_search_args(work: Path) -> list[str]:
    """The test suite's tiny search, written as a config file (the same helpers the tests use)."""
    import yaml

    from tests.conftest import TINY_SPACE
    from tests.test_search_tfnas import _target, tiny_config

    try:
        from tfnas.mbv2.space import space_from_dict
    except ImportError:  # before issue 23
        from tfnas.spaces.mbv2 import space_from_dict
    space = space_from_dict(TINY_SPACE, "tiny.yaml")
    cfg = tiny_config(work, space, epochs=2, warmup_epochs=1)
    cfg["target_ms"] = _target(cfg, space, 0.5)
    path = work / "search.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "out"}))
    return ["search", "--config", str(path), "--out", str(work / "run"), "--no-progress"]


def trace(root: Path) -> dict:
    from tfnas.cli import main

    ran: set[str] = set()
    pairs: set[tuple[str, str]] = set()

    def hook(frame, event, arg):  # noqa: ARG001
        if event != "call":
            return
        callee = module_of(frame.f_code.co_filename, root)
        if callee is None:
            return
        ran.add(callee)
        caller = frame.f_back
        while caller is not None and module_of(caller.f_code.co_filename, root) is None:
            caller = caller.f_back  # through torch / the standard library to the project's frame that called
        if caller is not None:
            pairs.add((module_of(caller.f_code.co_filename, root), callee))

    with tempfile.TemporaryDirectory() as tmp:
        args = tiny_search_args(Path(tmp))
        sys.setprofile(hook)
        try:
            rc = main(args)
        finally:
            sys.setprofile(None)
    up = sorted(f"{a} -> {b}" for a, b in pairs if rank(b) > rank(a))
    tfnas_run = sorted(m for m in ran if m == "tfnas" or m.startswith("tfnas."))
    crossed = {(package(a), package(b)) for a, b in pairs if a.startswith("tfnas.") and b.startswith("tfnas.")}
    closure, edges = static_closure("tfnas.commands.search")
    imports_up = sorted(f"{a} -> {b}" for a, b in edges if rank(b) > rank(a))
    return {
        "rc": rc,
        "files_run": len(ran),
        "tfnas_files_run": len(tfnas_run),
        "package_pairs_crossed": len({(a, b) for a, b in crossed if a != b}),
        "trips_up": len(up),
        "static_import_closure": len(closure),
        "imports_up": len(imports_up),
        "layers": {LAYER_NAMES[r]: sorted(m for m in ran if rank(m) == r) for r in range(len(LAYER_NAMES))},
        "up_pairs": up,
        "imports_up_edges": imports_up,
        "calls": sorted(f"{a} -> {b}" for a, b in pairs if a != b),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="the checkout to trace (run from it: its tfnas is imported)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    doc = trace(root)
    print(
        f"tfnas search, command line to derived network: {doc['files_run']} project files run "
        f"({doc['tfnas_files_run']} of tfnas), {doc['package_pairs_crossed']} pairs of tfnas packages crossed, "
        f"{doc['trips_up']} calls up to a higher layer; static import closure {doc['static_import_closure']} files, "
        f"{doc['imports_up']} imports up to a higher layer"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
