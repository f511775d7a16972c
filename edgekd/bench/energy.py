"""Energy and measurement conditions of a benchmark: how the device was set, and what a frame costs in energy.

- CPU: the cpufreq governor of every core (`/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`) and package
  energy from RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`, also what AMD's RAPL driver exposes), where
  readable (recent kernels make `energy_uj` root-only); the counter wraps at `max_energy_range_uj`.
- NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`): the total energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
  millijoules, Volta and later) where supported, else power samples (`nvmlDeviceGetPowerUsage`, milliwatts)
  integrated over the timed window (trapezoids).
- Jetson: tegrastats lines (`RAM 2764/7620MB ... VDD_IN 4986mW/4986mW ...`, JetPack 5/6; `POM_5V_IN 3126/3126`,
  JetPack 4), parsed into rails (mW, instant and average), temperatures (C) and engine loads/clocks.

Readers take their roots and libraries as arguments so that tests exercise them on recorded files and values.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
CPUFREQ = Path("/sys/devices/system/cpu")
NVML_SAMPLE_SECONDS = 0.02
"""Power sampling period where the GPU has no energy counter (NVML refreshes power about every 20 ms or slower)."""


def cpu_governors(root: Path = CPUFREQ) -> dict[str, int] | None:
    """Governor name -> number of cores using it, or None where cpufreq is not exposed (VMs, containers)."""
    counts: dict[str, int] = {}
    for path in sorted(root.glob("cpu[0-9]*/cpufreq/scaling_governor")):
        try:
            name = path.read_text().strip()
        except OSError:
            continue
        counts[name] = counts.get(name, 0) + 1
    return counts or None


@dataclass(frozen=True)
class RaplZone:
    """One top-level RAPL domain (a CPU package): its name, counter file and wrap-around range (microjoules)."""

    name: str
    counter: Path
    max_range_uj: int


def rapl_zones(root: Path = POWERCAP) -> tuple[list[RaplZone], str | None]:
    """The package-level RAPL zones whose counter can be read, and why none can (None when some can)."""
    zones, unreadable = [], []
    for folder in sorted(root.glob("intel-rapl:[0-9]*")):
        if folder.name.count(":") != 1:  # intel-rapl:0:0 and deeper are sub-domains of a package
            continue
        try:
            name = (folder / "name").read_text().strip()
            int((folder / "energy_uj").read_text())
            max_range = int((folder / "max_energy_range_uj").read_text())
        except PermissionError:
            unreadable.append(folder.name)
            continue
        except (OSError, ValueError):
            continue
        zones.append(RaplZone(name, folder / "energy_uj", max_range))
    if zones:
        return zones, None
    if unreadable:
        return [], f"RAPL counters not readable ({', '.join(unreadable)}: root only on this kernel)"
    return [], f"no RAPL zones under {root}"


def rapl_read(zones: Sequence[RaplZone]) -> list[int]:
    return [int(zone.counter.read_text()) for zone in zones]


def rapl_energy_mj(zones: Sequence[RaplZone], start: Sequence[int], end: Sequence[int]) -> float:
    """Millijoules spent between two readings, summed over zones, a counter that wrapped counted once around."""
    total_uj = 0
    for zone, first, last in zip(zones, start, end):
        total_uj += last - first if last >= first else last + zone.max_range_uj - first
    return total_uj / 1000


def integrate_power_mj(samples: Sequence[tuple[float, float]]) -> float:
    """Millijoules from (seconds, milliwatts) samples by the trapezoid rule; fewer than two samples give 0."""
    ordered = sorted(samples)
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(ordered, ordered[1:]))


class NvmlEnergyMeter:
    """GPU energy over a timed window through NVML: `start()`, run the frames, `stop()` -> (mJ, method).

    `nvml` is the `pynvml` module (nvidia-ml-py) or an object with the same functions; `clock` returns seconds."""

    def __init__(self, nvml: object, index: int = 0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.nvml, self.clock = nvml, clock
        nvml.nvmlInit()
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.counter = True
        except nvml.NVMLError:
            self.counter = False
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_mj = 0

    @property
    def method(self) -> str:
        if self.counter:
            return "NVML total energy counter (nvmlDeviceGetTotalEnergyConsumption)"
        return f"NVML power samples every {NVML_SAMPLE_SECONDS * 1000:.0f} ms, integrated (trapezoids)"

    def sample(self) -> None:
        """Record one (time, milliwatts) power sample."""
        self._samples.append((self.clock(), float(self.nvml.nvmlDeviceGetPowerUsage(self.handle))))

    def start(self) -> None:
        if self.counter:
            self._start_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return
        self._samples = []
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(NVML_SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> float:
        """Millijoules since `start()`."""
        if self.counter:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self._start_mj)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        return integrate_power_mj(self._samples)


_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b")
_TEMPERATURE = re.compile(r"\b([A-Za-z0-9_]+)@(-?\d+(?:\.\d+)?)C\b")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB\b")
_ENGINE = re.compile(r"\b(GR3D_FREQ|EMC_FREQ) (\d+)%(?:@\[?(\d+)\]?)?")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
"""Rails that carry the whole module's input power: VDD_IN (Orin NX/Nano, Xavier NX; JetPack 5/6), POM_5V_IN
(Nano, TX2; JetPack 4). Modules without one (AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO) are
measured as the sum of their reported rails."""


def parse_tegrastats(line: str) -> dict:
    """One tegrastats line -> {"ram_mb": [used, total], "rails_mw": {rail: [instant, average]},
    "temperatures_c": {sensor: C}, "engines": {GR3D_FREQ/EMC_FREQ: {"load_percent", "mhz"}}, "input_rail": name}."""
    parsed: dict = {"rails_mw": {}, "temperatures_c": {}, "engines": {}}
    ram = _RAM.search(line)
    if ram:
        parsed["ram_mb"] = [int(ram.group(1)), int(ram.group(2))]
    without_ram = _RAM.sub("", line)
    for name, instant, average in _RAIL.findall(without_ram):
        parsed["rails_mw"][name] = [int(instant), int(average)]
    for sensor, value in _TEMPERATURE.findall(line):
        parsed["temperatures_c"][sensor] = float(value)
    for engine, load, mhz in _ENGINE.findall(line):
        parsed["engines"][engine] = {"load_percent": int(load), "mhz": int(mhz) if mhz else None}
    parsed["input_rail"] = next((rail for rail in INPUT_RAILS if rail in parsed["rails_mw"]), None)
    return parsed


def tegrastats_energy_mj(lines: Sequence[tuple[float, str]]) -> tuple[float, str] | None:
    """Millijoules from (seconds, tegrastats line) pairs and how: the module's input rail (INPUT_RAILS) where
    reported, else the sum of all rails; None when the lines report no rail."""
    samples, method = [], None
    for seconds, line in lines:
        parsed = parse_tegrastats(line)
        rails, rail = parsed["rails_mw"], parsed["input_rail"]
        if not rails:
            return None
        power = rails[rail][0] if rail is not None else sum(instant for instant, _ in rails.values())
        method = f"tegrastats {rail} rail" if rail is not None else "tegrastats, sum of " + ", ".join(rails)
        samples.append((seconds, float(power)))
    return integrate_power_mj(samples), method


def measurement_conditions(powercap: Path = POWERCAP, cpufreq: Path = CPUFREQ) -> dict:
    """How the CPU side was set for a benchmark: governors, and whether RAPL energy is readable (and why not)."""
    zones, problem = rapl_zones(powercap)
    return {
        "cpu_governors": cpu_governors(cpufreq),
        "rapl_zones": [zone.name for zone in zones],
        "rapl": problem or "readable",
    }
