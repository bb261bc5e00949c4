"""CPU package and DRAM energy from Linux powercap (RAPL), where readable.

Only top-level package zones and `dram` zones are summed: `core`/`uncore` zones are nested inside their
package and would be counted twice. Counters wrap at max_energy_range_uj.
"""

from __future__ import annotations

from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


class RaplSource:
    def __init__(self, zones: dict[str, Path]):
        self.zones = zones
        self.max_uj = {name: int((path / "max_energy_range_uj").read_text()) for name, path in zones.items()}

    @classmethod
    def detect(cls, root: Path = POWERCAP) -> tuple[RaplSource | None, str | None]:
        if not root.is_dir():
            return None, f"no RAPL powercap interface ({root} missing): CPU energy unmeasured on this machine"
        zones: dict[str, Path] = {}
        for zone in sorted(root.glob("intel-rapl:*")):
            parts = zone.name.split(":")
            try:
                name = (zone / "name").read_text().strip()
                (zone / "energy_uj").read_text()
            except OSError as exc:
                return None, f"RAPL zone {zone.name} not readable ({exc.strerror}); run as root or grant read access"
            if len(parts) == 2 or name == "dram":  # package zones, plus DRAM sub-zones
                zones[f"{zone.name}:{name}"] = zone
        if not zones:
            return None, f"no readable RAPL zones under {root}: CPU energy unmeasured on this machine"
        return cls(zones), None

    def read_uj(self) -> dict[str, int]:
        return {name: int((path / "energy_uj").read_text()) for name, path in self.zones.items()}

    def delta_j(self, before: dict[str, int], after: dict[str, int]) -> float:
        total = 0
        for name, e1 in after.items():
            d = e1 - before[name]
            if d < 0:
                d += self.max_uj[name]
            total += d
        return total / 1e6
