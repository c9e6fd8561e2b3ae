"""What an MBV2 space needs of a latency table, and a table opened together with the space it serves.

``tfnas.latency.table.open_table`` knows no family; it checks a table against a ``TableNeeds``. Here is the
MBV2 one: the table must be profiled for the space and answer both ends of every op's width range (the
lookups interpolate in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.lut import LatencyTable
from tfnas.latency.table import Width, open_table
from tfnas.mbv2.keys import space_signatures
from tfnas.mbv2.space import MBV2Space, load_space


def required_entries(space: MBV2Space, resolution: int | None = None) -> list[tuple[str, Width]]:
    """(key, width) pairs a table must answer for every architecture of ``space``: range ends of each op."""
    out: list[tuple[str, Width]] = []
    for sig in space_signatures(space, resolution):
        if sig.width_range is None:
            out.append((sig.key, None))
        else:
            out += [(sig.key, sig.width_range[0]), (sig.key, sig.width_range[1])]
    return out


def missing_entries(table: LatencyTable, space: MBV2Space, resolution: int | None = None) -> list[tuple[str, Width]]:
    return table.missing(required_entries(space, resolution))


@dataclass(frozen=True)
class SpaceNeeds:
    """``TableNeeds`` of an MBV2 space."""

    space: MBV2Space

    @property
    def name(self) -> str:
        return self.space.name

    def required_entries(self, resolution: int | None) -> list[tuple[str, Width]]:
        return required_entries(self.space, resolution)


def open_space_table(
    name_or_path: str | Path, space: MBV2Space | str | None = None, **checks: Any
) -> tuple[LatencyTable, MBV2Space]:
    """``open_table`` checked against ``space`` (a space, its name or YAML; None: the space the table was
    profiled for), and that space. ``checks``: ``open_table``'s keywords."""
    chosen: list[MBV2Space] = []

    def needs(table: LatencyTable) -> SpaceNeeds:
        chosen.append(space if isinstance(space, MBV2Space) else load_space(space or table.space))
        return SpaceNeeds(chosen[0])

    table = open_table(name_or_path, needs, **checks)
    return table, chosen[0]
