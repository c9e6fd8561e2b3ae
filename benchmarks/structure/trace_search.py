"""Count what following ``tfnas search``'s configuration to the derived network touches (issue 23).

Files: the project modules reachable by imports (module-level and inside functions) from the search command's
module. Trips up: import edges in that closure whose target lives in a package that is an ancestor folder of the
importer's (``tfnas/search/run.py`` -> ``tfnas/arch.py`` goes up from ``tfnas/search`` to ``tfnas``).

    python benchmarks/structure/trace_search.py [--root REPO] [--start tfnas.commands.search] [--json OUT]
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path


def module_files(root: Path) -> dict[str, Path]:
    mods = {}
    for top in ("tfnas", "profilers", "tfnas_base"):
        for p in (root / top).glob("**/*.py"):
            name = ".".join(p.relative_to(root).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    return mods


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def package_of(name: str, mods: dict[str, Path]) -> str:
    return name if mods[name].name == "__init__.py" else name.rpartition(".")[0]


def trace(root: Path, start: str) -> dict:
    mods = module_files(root)
    seen, todo, edges = {start}, [start], []
    while todo:
        m = todo.pop()
        for d in sorted(imports_of(m, mods[m], mods)):
            edges.append((m, d))
            if d not in seen:
                seen.add(d)
                todo.append(d)
    up = []
    for a, b in edges:
        pa, pb = package_of(a, mods), package_of(b, mods)
        if pa != pb and pa.startswith(pb + "."):
            up.append(f"{a} -> {b}")
    return {"start": start, "files": len(seen), "trips_up": len(up), "modules": sorted(seen), "up_edges": sorted(up)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--start", default="tfnas.commands.search")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    doc = trace(Path(args.root), args.start)
    print(f"{doc['start']}: {doc['files']} files, {doc['trips_up']} trips up to a higher package")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
