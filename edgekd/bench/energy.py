"""Energy and measurement conditions of a benchmark: how the device was set, and what a frame costs in energy.

- CPU: the cpufreq governor of every core (`/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`) and package
  energy from RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`, also what AMD's RAPL driver exposes), where
  readable (recent kernels make `energy_uj` root-only); the counter wraps at `max_energy_range_uj`.
- NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`): the total energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
  millijoules, Volta and later) where supported, else power samples (`nvmlDeviceGetPowerUsage`, milliwatts)
  integrated over the timed window (trapezoids).
- Jetson: tegrastats lines (`RAM 2764/7620MB ... VDD_IN 4986mW/4986mW ...`, JetPack 5/6; `POM_5V_IN 3126/3126`,
  JetPack 4), parsed into rails (mW, instant and average), temperatures (C) and engine loads/clocks.

Meters (`EnergyMeter`: `start()`, `stop()` -> millijoules, `method` and `scope` in words) wrap these for one timed
window: `RaplMeter`, `NvmlEnergyMeter`, `TegrastatsMeter`; `open_energy_meter` picks one for a runner and platform,
`EnergyWindow` runs it around `edgekd.bench.timing.measure`'s timed calls and gives an `EnergyReading`.
`device_conditions` says how the device was set for one record (`Conditions`: governors, RAPL, NVML clocks and
throttle reasons, or Jetson nvpmodel / jetson_clocks / temperatures / rails). What each meter measures and its
caveats: docs/energy.md.

Readers take their roots and libraries as arguments so that tests exercise them on recorded files and values.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

POWERCAP = Path("/sys/class/powercap")
CPUFREQ = Path("/sys/devices/system/cpu")
NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
"""Present on every Jetson (L4T); with `tegrastats` on PATH, how `is_jetson` recognises one."""
TEGRASTATS_INTERVAL_MS = 100
"""tegrastats sampling period during a timed window (its default, 1000 ms, misses short windows)."""
COMMAND_TIMEOUT = 10.0
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
        self.nvml, self.clock, self.index = nvml, clock, index
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

    @property
    def scope(self) -> str:
        return f"GPU {self.index} board power (NVML: the whole board, every process using it)"

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


def tegrastats_power_mw(line: str) -> tuple[float, str] | None:
    """The module's power (mW) in one tegrastats line and which rails: the input rail (INPUT_RAILS) where reported,
    else the sum of all rails; None when the line reports no rail."""
    parsed = parse_tegrastats(line)
    rails, rail = parsed["rails_mw"], parsed["input_rail"]
    if not rails:
        return None
    if rail is not None:
        return float(rails[rail][0]), f"tegrastats {rail} rail"
    return float(sum(instant for instant, _ in rails.values())), "tegrastats, sum of " + ", ".join(rails)


def tegrastats_energy_mj(lines: Sequence[tuple[float, str]]) -> tuple[float, str] | None:
    """Millijoules from (seconds, tegrastats line) pairs and how (`tegrastats_power_mw`); None when a line reports
    no rail."""
    samples, method = [], None
    for seconds, line in lines:
        power = tegrastats_power_mw(line)
        if power is None:
            return None
        samples.append((seconds, power[0]))
        method = power[1]
    return integrate_power_mj(samples), method


def measurement_conditions(powercap: Path = POWERCAP, cpufreq: Path = CPUFREQ) -> dict:
    """How the CPU side was set for a benchmark: governors, and whether RAPL energy is readable (and why not)."""
    zones, problem = rapl_zones(powercap)
    return {
        "cpu_governors": cpu_governors(cpufreq),
        "rapl_zones": [zone.name for zone in zones],
        "rapl": problem or "readable",
    }


class EnergyUnavailable(Exception):
    """A meter that cannot tell the energy of a window (no sample inside it); the message says why."""


class EnergyMeter(Protocol):
    """Energy over one window: `start()`, the work, `stop()` -> millijoules; `method` (how) and `scope` (what the
    number covers: a CPU package, a GPU board, a Jetson module) in words."""

    @property
    def method(self) -> str: ...

    @property
    def scope(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> float: ...


class RaplMeter:
    """CPU package energy from the RAPL counters of `zones` (`rapl_zones`), read at start and stop."""

    method = "RAPL energy counter (powercap energy_uj), wrap-around counted"

    def __init__(self, zones: Sequence[RaplZone]) -> None:
        self.zones = list(zones)
        self._start: list[int] = []

    @property
    def scope(self) -> str:
        names = ", ".join(zone.name for zone in self.zones)
        return f"RAPL {names} (the whole CPU package, all processes)"

    def start(self) -> None:
        self._start = rapl_read(self.zones)

    def stop(self) -> float:
        return rapl_energy_mj(self.zones, self._start, rapl_read(self.zones))


class TegrastatsMeter:
    """Jetson module power from `tegrastats --interval MS` run during the window, each line stamped when it arrives;
    the power of the lines inside the window is integrated (trapezoids), held flat from the window's start to the
    first line and from the last line to its end. A window without a line has no energy (EnergyUnavailable)."""

    def __init__(
        self,
        command: Sequence[str] = ("tegrastats",),
        interval_ms: int = TEGRASTATS_INTERVAL_MS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.command, self.interval_ms, self.clock = list(command), interval_ms, clock
        self.method = f"tegrastats every {interval_ms} ms, integrated (trapezoids)"
        self.scope = "Jetson module input power (VDD_IN / POM_5V_IN: the whole module, all processes)"
        self._lines: list[tuple[float, str]] = []
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._start = 0.0

    def start(self) -> None:
        self._lines = []
        self._process = subprocess.Popen(
            [*self.command, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._start = self.clock()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._lines.append((self.clock(), line))

    def stop(self) -> float:
        end = self.clock()
        self._process.terminate()
        self._process.wait(timeout=COMMAND_TIMEOUT)
        self._reader.join(timeout=COMMAND_TIMEOUT)
        return self.energy_mj(self._lines, self._start, end)

    def energy_mj(self, lines: Sequence[tuple[float, str]], start: float, end: float) -> float:
        """Millijoules between `start` and `end` from stamped lines (see the class doc); sets `method` and `scope`."""
        samples = []
        for seconds, line in lines:
            power = tegrastats_power_mw(line) if start <= seconds <= end else None
            if power is not None:
                samples.append((seconds, power[0]))
                self.method = f"{power[1]} every {self.interval_ms} ms, integrated (trapezoids)"
                if "sum of" in power[1]:
                    self.scope = "Jetson module, sum of its reported rails (no input rail on this module)"
        if not samples:
            raise EnergyUnavailable(
                f"no tegrastats line inside the {end - start:.3f} s timed window (interval {self.interval_ms} ms): "
                "time longer (--seconds)"
            )
        return integrate_power_mj([(start, samples[0][1]), *samples, (end, samples[-1][1])])


def is_jetson(release: Path | None = None) -> bool:
    """A Jetson: L4T's release file exists, or tegrastats is on PATH."""
    return (release or NV_TEGRA_RELEASE).exists() or shutil.which("tegrastats") is not None


def open_energy_meter(gpu: bool) -> tuple[EnergyMeter | None, str | None]:
    """The meter for a runner, or None and why: on a Jetson tegrastats (the module's input rail covers CPU and GPU),
    for a GPU backend NVML (nvidia-ml-py, imported here only), for a CPU backend RAPL where readable."""
    if is_jetson():
        tegrastats = shutil.which("tegrastats")
        if tegrastats is None:
            return None, "Jetson without tegrastats on PATH"
        return TegrastatsMeter((tegrastats,)), None
    if gpu:
        try:
            import pynvml
        except ImportError:
            return None, "GPU backend: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        try:
            return NvmlEnergyMeter(pynvml), None
        except pynvml.NVMLError as error:
            return None, f"NVML: {error}"
    zones, problem = rapl_zones(POWERCAP)
    return (RaplMeter(zones), None) if zones else (None, problem)


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one timed window: which phase's timed calls, how and over what it was measured, the window's
    millijoules and seconds, and the frames it processed (timed calls x batch)."""

    phase: str
    method: str
    scope: str
    window_mj: float
    window_s: float
    frames: int

    @property
    def mj_per_frame(self) -> float:
        return self.window_mj / self.frames

    @property
    def mean_power_w(self) -> float:
        return self.window_mj / self.window_s / 1000 if self.window_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "mj_per_frame": self.mj_per_frame, "mean_power_w": self.mean_power_w}

    @classmethod
    def from_dict(cls, data: dict) -> EnergyReading:
        return cls(data["phase"], data["method"], data["scope"], data["window_mj"], data["window_s"], data["frames"])


class EnergyWindow:
    """A meter around `edgekd.bench.timing.measure`'s timed calls (its `window`): `reading` gives the energy, or
    `problem` says why there is none."""

    def __init__(self, meter: EnergyMeter, clock: Callable[[], float] = time.perf_counter) -> None:
        self.meter, self.clock = meter, clock
        self.millijoules: float | None = None
        self.seconds = 0.0
        self.problem: str | None = None
        self._start = 0.0

    def start(self) -> None:
        self.meter.start()
        self._start = self.clock()

    def stop(self) -> None:
        self.seconds = self.clock() - self._start
        try:
            self.millijoules = self.meter.stop()
        except EnergyUnavailable as error:
            self.problem = str(error)
            return
        if self.millijoules <= 0:
            self.problem = (
                f"{self.meter.method}: no energy counted in the {self.seconds:.3f} s timed window (the counter "
                "updates less often): time longer (--seconds)"
            )
            self.millijoules = None

    def reading(self, phase: str, frames: int) -> EnergyReading | None:
        if self.millijoules is None:
            return None
        return EnergyReading(phase, self.meter.method, self.meter.scope, self.millijoules, self.seconds, frames)


NVML_CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
"""NVML's clocks event (formerly throttle) reason bits, as nvml.h defines them (nvmlClocksEventReason*), by name.
Kept here rather than read from pynvml: older nvidia-ml-py releases name them nvmlClocksThrottleReason*."""
THROTTLING_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)
"""Reasons that mean the clocks were held down by power or heat (the stable-run guard flags them)."""


def decode_clock_reasons(mask: int) -> list[str]:
    """An NVML clocks event reasons bit mask -> reason names (NVML_CLOCK_EVENT_REASONS order)."""
    return [name for bit, name in NVML_CLOCK_EVENT_REASONS if mask & bit]


@dataclass
class GpuConditions:
    """A GPU as NVML reports it right after the timed calls: clocks (MHz) and their maxima, temperature (C),
    persistence mode, enforced power limit (W) and the active clock event reasons (None: not reported)."""

    name: str
    sm_mhz: int | None
    sm_max_mhz: int | None
    memory_mhz: int | None
    memory_max_mhz: int | None
    temperature_c: int | None
    persistence_mode: bool | None
    power_limit_w: float | None
    clock_event_reasons: list[str] | None

    @property
    def throttling(self) -> list[str]:
        return [reason for reason in self.clock_event_reasons or () if reason in THROTTLING_REASONS]


def nvml_conditions(nvml: object, index: int = 0) -> GpuConditions:
    """GPU `index` through `nvml` (the pynvml module of nvidia-ml-py); a value the GPU does not report is None."""
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(index)

    def read(function: str, *args: object) -> object:
        try:
            return getattr(nvml, function)(handle, *args)
        except nvml.NVMLError:
            return None

    name = read("nvmlDeviceGetName")
    persistence = read("nvmlDeviceGetPersistenceMode")
    limit_mw = read("nvmlDeviceGetEnforcedPowerLimit")
    # nvidia-ml-py >= 12.535 names it ClocksEventReasons; older releases only have ClocksThrottleReasons
    reasons_function = (
        "nvmlDeviceGetCurrentClocksEventReasons"
        if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
        else "nvmlDeviceGetCurrentClocksThrottleReasons"
    )
    mask = read(reasons_function)
    return GpuConditions(
        name=name.decode() if isinstance(name, bytes) else str(name),
        sm_mhz=read("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_SM),
        sm_max_mhz=read("nvmlDeviceGetMaxClockInfo", nvml.NVML_CLOCK_SM),
        memory_mhz=read("nvmlDeviceGetClockInfo", nvml.NVML_CLOCK_MEM),
        memory_max_mhz=read("nvmlDeviceGetMaxClockInfo", nvml.NVML_CLOCK_MEM),
        temperature_c=read("nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU),
        persistence_mode=None if persistence is None else persistence == nvml.NVML_FEATURE_ENABLED,
        power_limit_w=None if limit_mw is None else limit_mw / 1000,
        clock_event_reasons=None if mask is None else decode_clock_reasons(int(mask)),
    )


_NVPMODEL = re.compile(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)?")
_CLOCK_LINE = re.compile(
    r"^(cpu\d+|GPU|EMC):?\s+(?:Online=(\d)\s+)?(?:Go[n]?vernor=\S+\s+)?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)",
    re.MULTILINE,
)


def parse_nvpmodel(text: str) -> tuple[str | None, int | None]:
    """`nvpmodel -q` output ("NV Power Mode: MAXN" then the mode's number) -> (mode name, mode number)."""
    match = _NVPMODEL.search(text + "\n")
    if match is None:
        return None, None
    return match.group(1), int(match.group(2)) if match.group(2) else None


@dataclass(frozen=True)
class JetsonClocks:
    """`jetson_clocks --show`: current clocks (MHz) and whether they are locked (every online CPU core and the GPU
    at MinFreq = MaxFreq = CurrentFreq, what `jetson_clocks` sets; the EMC is not compared)."""

    clocks_mhz: dict[str, float]
    locked: bool


def parse_jetson_clocks(text: str) -> JetsonClocks | None:
    """`jetson_clocks --show` output -> JetsonClocks; None when it lists no CPU or GPU clock. CPU frequencies are
    in kHz, GPU and EMC in Hz."""
    clocks, locked, seen = {}, True, False
    for name, online, low, high, current in _CLOCK_LINE.findall(text):
        scale = 1e3 if name.startswith("cpu") else 1e6
        clocks[name] = int(current) / scale
        if name == "EMC" or online == "0":
            continue
        seen = True
        locked = locked and int(low) == int(high) == int(current)
    return JetsonClocks(clocks, locked) if seen else None


@dataclass
class JetsonConditions:
    """How a Jetson was set: nvpmodel mode, whether jetson_clocks locked the clocks (None: unknown), clocks (MHz),
    temperatures (C), rail power (mW), where each came from and what could not be read."""

    nvpmodel: str | None = None
    nvpmodel_id: int | None = None
    clocks_locked: bool | None = None
    clocks_mhz: dict[str, float] = field(default_factory=dict)
    temperatures_c: dict[str, float] = field(default_factory=dict)
    rails_mw: dict[str, float] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add_jtop(self, stats: dict) -> None:
        """jetson-stats' `jtop().stats`: 'nvp model', 'jetson_clocks' ('ON'/'OFF'), 'Temp NAME' (C) and
        'Power NAME' (mW; 'Power TOT' the total)."""
        self.sources.append("jtop")
        self.nvpmodel = stats.get("nvp model", self.nvpmodel)
        if stats.get("jetson_clocks") in ("ON", "OFF"):
            self.clocks_locked = stats["jetson_clocks"] == "ON"
        for key, value in stats.items():
            if key.startswith("Temp ") and isinstance(value, (int, float)):
                self.temperatures_c[key[5:]] = float(value)
            elif key.startswith("Power ") and isinstance(value, (int, float)):
                self.rails_mw[key[6:]] = float(value)

    def add_tegrastats(self, line: str) -> None:
        """One tegrastats line: temperatures, rails (instant mW) and GPU/EMC clocks where the line has them."""
        self.sources.append("tegrastats")
        parsed = parse_tegrastats(line)
        self.temperatures_c.update(parsed["temperatures_c"])
        self.rails_mw.update({rail: float(values[0]) for rail, values in parsed["rails_mw"].items()})
        for engine, name in (("GR3D_FREQ", "GPU"), ("EMC_FREQ", "EMC")):
            mhz = parsed["engines"].get(engine, {}).get("mhz")
            if mhz is not None:
                self.clocks_mhz.setdefault(name, float(mhz))

    def add_nvpmodel(self, text: str) -> None:
        self.sources.append("nvpmodel -q")
        self.nvpmodel, self.nvpmodel_id = parse_nvpmodel(text)

    def add_jetson_clocks(self, text: str) -> None:
        shown = parse_jetson_clocks(text)
        if shown is None:
            self.problems.append("jetson_clocks --show: no clocks listed (run as root)")
            return
        self.sources.append("jetson_clocks --show")
        self.clocks_mhz.update(shown.clocks_mhz)
        self.clocks_locked = shown.locked

    def warning(self) -> str | None:
        """The record's warning when the clocks are not known to be locked."""
        if self.clocks_locked:
            return None
        state = "not locked (jetson_clocks is off)" if self.clocks_locked is False else "not known to be locked"
        return (
            f"Jetson clocks {state}, power mode {self.nvpmodel or 'unknown'}: DVFS moves the clocks during timing; "
            "run `sudo jetson_clocks` for stable numbers"
        )


def _command_output(command: Sequence[str]) -> tuple[str | None, str | None]:
    """A tool's stdout, or None and why it could not run."""
    path = shutil.which(command[0])
    if path is None:
        return None, f"{command[0]} not on PATH"
    try:
        result = subprocess.run([path, *command[1:]], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{' '.join(command)}: {error}"
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        return None, f"{' '.join(command)}: {last[0]}"
    return result.stdout, None


def _tegrastats_line() -> str | None:
    """One tegrastats line (the first it prints), or None."""
    meter = TegrastatsMeter((shutil.which("tegrastats") or "tegrastats",))
    try:
        meter.start()
    except OSError:
        return None
    deadline = time.perf_counter() + 3 * meter.interval_ms / 1000 + 1
    while not meter._lines and time.perf_counter() < deadline:
        time.sleep(meter.interval_ms / 1000)
    meter._process.terminate()
    meter._process.wait(timeout=COMMAND_TIMEOUT)
    return meter._lines[0][1] if meter._lines else None


def jetson_conditions() -> JetsonConditions:
    """The Jetson's state: jtop (jetson-stats) where installed, else one tegrastats line; then `nvpmodel -q` and
    `jetson_clocks --show` where they run (the latter needs root on recent JetPacks)."""
    conditions = JetsonConditions()
    try:
        from jtop import jtop
    except ImportError:
        jtop = None
    if jtop is not None:
        with jtop() as jetson:
            conditions.add_jtop(jetson.stats)
    else:
        line = _tegrastats_line()
        if line is None:
            conditions.problems.append("tegrastats printed no line")
        else:
            conditions.add_tegrastats(line)
    for command, add in (
        (["nvpmodel", "-q"], conditions.add_nvpmodel),
        (["jetson_clocks", "--show"], conditions.add_jetson_clocks),
    ):
        text, problem = _command_output(command)
        if text is None:
            conditions.problems.append(problem)
        else:
            add(text)
    return conditions


@dataclass
class Conditions:
    """How the device of one bench record was set (see the module doc): CPU governors and RAPL readability always,
    the GPU through NVML for GPU backends, the Jetson's state on a Jetson; `unavailable` says what could not be
    read."""

    cpu_governors: dict[str, int] | None
    rapl: str
    gpu: GpuConditions | None = None
    jetson: JetsonConditions | None = None
    unavailable: str | None = None

    def warnings(self) -> list[str]:
        jetson = self.jetson.warning() if self.jetson else None
        return [jetson] if jetson else []

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Conditions:
        gpu, jetson = data.get("gpu"), data.get("jetson")
        return cls(
            data.get("cpu_governors"),
            data["rapl"],
            GpuConditions(**gpu) if gpu else None,
            JetsonConditions(**jetson) if jetson else None,
            data.get("unavailable"),
        )


def device_conditions(gpu: bool) -> Conditions:
    """The conditions of a record whose runner runs on the GPU (`gpu`) or the CPU, read now."""
    zones, problem = rapl_zones(POWERCAP)
    conditions = Conditions(cpu_governors(CPUFREQ), problem or "readable")
    if is_jetson():
        conditions.jetson = jetson_conditions()
    elif gpu:
        try:
            import pynvml
        except ImportError:
            conditions.unavailable = "GPU clocks: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return conditions
        try:
            conditions.gpu = nvml_conditions(pynvml)
        except pynvml.NVMLError as error:
            conditions.unavailable = f"GPU clocks: NVML: {error}"
    return conditions
