"""Energy meters and measurement conditions wired into bench records (docs/energy.md): RAPL on a sysfs-shaped
powercap tree whose counter is rewritten, NVML through a `pynvml` module object answering as nvidia-ml-py documents,
Jetson tools (tegrastats, nvpmodel -q, jetson_clocks --show) as executables printing outputs captured in
tests/data/energy/ (see its README), jtop's stats dict, `edgekd bench` end to end and `edgekd report`'s energy parts."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from PIL import Image

from edgekd.bench import energy
from edgekd.bench.energy import (
    Conditions,
    EnergyReading,
    EnergyWindow,
    JetsonConditions,
    NvmlEnergyMeter,
    RaplMeter,
    TegrastatsMeter,
    decode_clock_reasons,
    device_conditions,
    nvml_conditions,
    open_energy_meter,
    parse_jetson_clocks,
    parse_nvpmodel,
    rapl_zones,
)
from edgekd.bench.report import write_report
from edgekd.bench.schema import validate_bench_payload
from edgekd.bench.system import clock_warning
from edgekd.errors import EdgeKDError
from tests.test_report_render import _accuracy, _record, _write_bench
from tests.usererror import run_edgekd

DATA = Path(__file__).parent / "data" / "energy"
MAX_RANGE_UJ = 262143328850  # max_energy_range_uj of an Intel client package


def _package(root: Path, energy_uj: int) -> Path:
    folder = root / "intel-rapl:0"
    folder.mkdir(parents=True)
    (folder / "name").write_text("package-0\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
    return folder / "energy_uj"


@pytest.fixture
def not_jetson(monkeypatch, tmp_path):
    """No L4T release file; a machine with tegrastats on PATH (a Jetson) skips."""
    monkeypatch.setattr(energy, "NV_TEGRA_RELEASE", tmp_path / "no_nv_tegra_release")
    if energy.is_jetson():
        pytest.skip("tegrastats is on PATH: a Jetson")


# ---------------------------------------------------------------- RAPL


@pytest.mark.parametrize(
    "start_uj, end_uj, expected_mj",
    [(1_000_000, 3_500_000, 2500.0), (MAX_RANGE_UJ - 400_000, 600_000, 1000.0)],  # plain, then wrapped once
)
def test_rapl_meter_counts_the_counter_delta(tmp_path, start_uj, end_uj, expected_mj):
    counter = _package(tmp_path, start_uj)
    meter = RaplMeter(rapl_zones(tmp_path)[0])
    assert meter.scope == "RAPL package-0 (the whole CPU package, all processes)"
    meter.start()
    counter.write_text(f"{end_uj}\n")
    assert meter.stop() == pytest.approx(expected_mj)


def test_cpu_backend_gets_rapl_or_says_why(monkeypatch, tmp_path, not_jetson):
    monkeypatch.setattr(energy, "POWERCAP", tmp_path / "powercap")
    meter, problem = open_energy_meter(gpu=False)
    assert meter is None and problem == f"no RAPL zones under {tmp_path / 'powercap'}"
    _package(tmp_path / "powercap", 5)
    meter, problem = open_energy_meter(gpu=False)
    assert isinstance(meter, RaplMeter) and problem is None


def test_window_without_counted_energy_says_why(tmp_path):
    _package(tmp_path, 42)
    window = EnergyWindow(RaplMeter(rapl_zones(tmp_path)[0]))
    window.start()
    window.stop()  # the counter file was not rewritten: nothing counted
    assert window.reading("compute", 3) is None and "no energy counted" in window.problem


# ---------------------------------------------------------------- NVML


def fake_pynvml(energy_mj: list[int] | None, power_mw: int, event_api: bool = True) -> types.ModuleType:
    """A `pynvml` module answering as nvidia-ml-py documents: clocks in MHz, temperature in C, power in mW, energy
    in mJ, NVMLError(NVML_ERROR_NOT_SUPPORTED) where the GPU lacks a feature; `event_api` False is a release before
    12.535, with only nvmlDeviceGetCurrentClocksThrottleReasons."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            self.value = value

        def __str__(self) -> str:
            return {3: "Not Supported", 9: "Driver Not Loaded"}.get(self.value, "Unknown Error")

    clocks = {1: 1755, 2: 7001}  # NVML_CLOCK_SM, NVML_CLOCK_MEM
    max_clocks = {1: 1950, 2: 7001}
    counter = list(energy_mj) if energy_mj is not None else None

    def total_energy(handle):
        if counter is None:
            raise NVMLError(3)
        return counter.pop(0) if len(counter) > 1 else counter[0]

    def persistence(handle):
        raise NVMLError(3)  # not supported (e.g. Windows WDDM)

    nvml.__dict__.update(
        NVMLError=NVMLError,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        NVML_TEMPERATURE_GPU=0,
        NVML_FEATURE_ENABLED=1,
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda index: f"handle{index}",
        nvmlDeviceGetName=lambda handle: b"NVIDIA RTX A2000 12GB",
        nvmlDeviceGetClockInfo=lambda handle, kind: clocks[kind],
        nvmlDeviceGetMaxClockInfo=lambda handle, kind: max_clocks[kind],
        nvmlDeviceGetTemperature=lambda handle, sensor: 71,
        nvmlDeviceGetPersistenceMode=persistence,
        nvmlDeviceGetEnforcedPowerLimit=lambda handle: 70000,
        nvmlDeviceGetTotalEnergyConsumption=total_energy,
        nvmlDeviceGetPowerUsage=lambda handle: power_mw,
    )
    reasons = 0x4 | 0x20 | 0x1  # sw power cap, sw thermal slowdown, gpu idle
    if event_api:
        nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda handle: reasons
    else:
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda handle: reasons
    return nvml


def test_gpu_backend_gets_the_nvml_counter(monkeypatch, not_jetson):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([5_000_000, 5_000_000, 5_012_345], 60000))
    meter, problem = open_energy_meter(gpu=True)
    assert isinstance(meter, NvmlEnergyMeter) and meter.counter and problem is None
    assert meter.scope.startswith("GPU 0 board power")
    window = EnergyWindow(meter)
    window.start()
    window.stop()
    reading = window.reading("end_to_end", 40)
    assert reading.window_mj == 12345 and reading.mj_per_frame == pytest.approx(12345 / 40)


def test_nvml_without_counter_integrates_power_samples():
    ticks: list[float] = []

    def clock() -> float:  # a fake clock a quarter second further at every call
        ticks.append(0.25 * len(ticks))
        return ticks[-1]

    meter = NvmlEnergyMeter(fake_pynvml(None, 65000), clock=clock)
    assert not meter.counter
    meter.start()
    mj = meter.stop()
    assert len(ticks) >= 2 and mj == pytest.approx(65000 * (ticks[-1] - ticks[0]))  # constant power x time


def test_gpu_backend_without_nvidia_ml_py_says_why(monkeypatch, not_jetson):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert open_energy_meter(gpu=True) == (
        None,
        "GPU backend: nvidia-ml-py is not installed (pip install nvidia-ml-py)",
    )
    conditions = device_conditions(gpu=True)
    assert conditions.gpu is None and "nvidia-ml-py is not installed" in conditions.unavailable


@pytest.mark.parametrize("event_api", [True, False])
def test_nvml_conditions_and_throttle_reasons(event_api):
    gpu = nvml_conditions(fake_pynvml([1], 1, event_api))
    assert (gpu.name, gpu.sm_mhz, gpu.sm_max_mhz, gpu.memory_mhz, gpu.memory_max_mhz) == (
        "NVIDIA RTX A2000 12GB",
        1755,
        1950,
        7001,
        7001,
    )
    assert (gpu.temperature_c, gpu.persistence_mode, gpu.power_limit_w) == (71, None, 70.0)
    assert gpu.clock_event_reasons == ["gpu_idle", "sw_power_cap", "sw_thermal_slowdown"]
    assert gpu.throttling == ["sw_power_cap", "sw_thermal_slowdown"]
    warning = clock_warning({"clocks.sm": "1755", "clocks.max.sm": "1950"}, gpu.throttling)
    assert "GPU clocks held down right after timing (NVML: sw_power_cap, sw_thermal_slowdown)" in warning
    assert clock_warning({"clocks.sm": "1900", "clocks.max.sm": "1950"}) is None


def test_clock_reason_bits_are_nvml_h_values():
    assert decode_clock_reasons(0) == []
    assert decode_clock_reasons(0x8 | 0x40 | 0x80) == ["hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"]
    assert decode_clock_reasons(0x2 | 0x10 | 0x100) == [
        "applications_clocks_setting",
        "sync_boost",
        "display_clock_setting",
    ]


# ---------------------------------------------------------------- Jetson


def test_nvpmodel_outputs():
    assert parse_nvpmodel((DATA / "nvpmodel_q_orin_nx.txt").read_text()) == ("15W", 0)
    assert parse_nvpmodel((DATA / "nvpmodel_q_xavier.txt").read_text()) == ("MODE_30W_4CORE", 5)
    assert parse_nvpmodel("nvpmodel: command failed") == (None, None)


def test_jetson_clocks_show_locked_unlocked_and_old_layout():
    locked = parse_jetson_clocks((DATA / "jetson_clocks_show_orin_locked.txt").read_text())
    assert locked.locked  # cpu4 is offline: not compared; EMC is not compared
    assert locked.clocks_mhz == {
        "cpu0": 1984.0,
        "cpu1": 1984.0,
        "cpu2": 1984.0,
        "cpu3": 1984.0,
        "cpu4": 729.6,
        "GPU": 918.0,
        "EMC": 3199.0,
    }
    unlocked = parse_jetson_clocks((DATA / "jetson_clocks_show_orin_unlocked.txt").read_text())
    assert not unlocked.locked and unlocked.clocks_mhz["GPU"] == 306.0 and unlocked.clocks_mhz["cpu0"] == 1190.4
    tx1 = parse_jetson_clocks((DATA / "jetson_clocks_show_tx1.txt").read_text())
    assert tx1.locked and tx1.clocks_mhz["GPU"] == 998.4 and tx1.clocks_mhz["EMC"] == 1600.0
    assert parse_jetson_clocks("ERROR: You must be root to run this script") is None


def test_jtop_stats_sample():
    conditions = JetsonConditions()
    conditions.add_jtop(json.loads((DATA / "jtop_stats_orin_nano.json").read_text()))
    assert conditions.nvpmodel == "15W" and conditions.clocks_locked is False
    assert conditions.temperatures_c["gpu"] == 47.906 and conditions.temperatures_c["tj"] == 48.5
    assert conditions.rails_mw == {"VDD_CPU_GPU_CV": 1432.0, "VDD_SOC": 1513.0, "TOT": 5118.0}
    assert "jetson_clocks is off" in conditions.warning() and "15W" in conditions.warning()


def test_tegrastats_window_holds_the_edges_and_needs_a_line():
    lines = (DATA / "tegrastats_orin_nx.txt").read_text().splitlines()
    meter = TegrastatsMeter()
    stamped = [(0.95, lines[0]), (1.1, lines[1]), (1.2, lines[2]), (1.35, lines[0])]  # the first and last outside
    mj = meter.energy_mj(stamped, start=1.0, end=1.3)
    expected = 0.1 * 8812 + 0.1 * (8812 + 8612) / 2 + 0.1 * 8612  # held 1.0-1.1, trapezoid 1.1-1.2, held 1.2-1.3
    assert mj == pytest.approx(expected)
    assert meter.method == "tegrastats VDD_IN rail every 100 ms, integrated (trapezoids)"
    with pytest.raises(energy.EnergyUnavailable, match="no tegrastats line inside the 0.050 s"):
        meter.energy_mj(stamped, start=1.25, end=1.3)


def _tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def jetson_tools(monkeypatch, tmp_path) -> Path:
    """tegrastats (prints the captured lines every --interval ms), nvpmodel and jetson_clocks as executables on PATH
    printing the captured outputs; jtop not installed."""
    tools = tmp_path / "bin"
    tools.mkdir()
    teg = DATA / "tegrastats_orin_nx.txt"
    _tool(tools, "tegrastats", f'while true; do while read -r l; do echo "$l"; sleep 0.05; done < "{teg}"; done\n')
    _tool(tools, "nvpmodel", f'cat "{DATA / "nvpmodel_q_orin_nx.txt"}"\n')
    _tool(tools, "jetson_clocks", f'cat "{DATA / "jetson_clocks_show_orin_unlocked.txt"}"\n')
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "jtop", None)
    return tools


def test_jetson_meter_and_conditions_from_the_tools(jetson_tools):
    assert energy.is_jetson()
    meter, problem = open_energy_meter(gpu=True)
    assert isinstance(meter, TegrastatsMeter) and problem is None
    window = EnergyWindow(meter)
    window.start()
    time.sleep(0.6)
    window.stop()
    reading = window.reading("end_to_end", 10)
    powers = [8412, 8812, 8612]  # VDD_IN of the captured lines: the mean power lies between their extremes
    assert min(powers) / 1000 * 0.98 <= reading.mean_power_w <= max(powers) / 1000 * 1.02
    conditions = device_conditions(gpu=True)
    jetson = conditions.jetson
    assert (jetson.nvpmodel, jetson.nvpmodel_id, jetson.clocks_locked) == ("15W", 0, False)
    assert jetson.clocks_mhz["GPU"] == 306.0 and jetson.clocks_mhz["EMC"] == 665.6  # jetson_clocks over tegrastats
    assert jetson.rails_mw["VDD_IN"] in powers and jetson.temperatures_c["tj"] > 0
    assert jetson.sources == ["tegrastats", "nvpmodel -q", "jetson_clocks --show"]
    assert conditions.warnings() and "not locked (jetson_clocks is off)" in conditions.warnings()[0]
    assert Conditions.from_dict(conditions.to_dict()) == conditions


# ---------------------------------------------------------------- records, schema, bench, report


def test_reading_json_round_trip_and_schema():
    reading = EnergyReading("end_to_end", "RAPL", "RAPL package-0", 900.0, 0.5, 12)
    data = reading.to_dict()
    assert data["mj_per_frame"] == 75.0 and data["mean_power_w"] == pytest.approx(1.8)
    assert EnergyReading.from_dict(data) == reading
    payload = {"format": "edgekd-bench-v1", "created": "t", "host": {}, "settings": {}, "records": []}
    record = _record(Path("m.onnx"), "ort-cpu", "fp32", "student", 3.0, energy=None)
    payload["records"] = [record]
    with pytest.raises(EdgeKDError, match="field 'energy_unavailable' must be the reason"):
        validate_bench_payload(payload, "b.json")
    record["energy"] = {**data, "frames": 0}
    with pytest.raises(EdgeKDError, match="energy: field 'frames' must be a positive integer"):
        validate_bench_payload(payload, "b.json")


def test_bench_record_energy_from_a_rapl_counter(capsys, monkeypatch, tmp_path, tiny_export, not_jetson):
    powercap = tmp_path / "powercap"
    counter = _package(powercap, 1_000_000)
    monkeypatch.setattr(energy, "POWERCAP", powercap)
    step_uj, done = 250, threading.Event()

    def advance() -> None:  # the package counter ticking, rewritten atomically as sysfs would show it
        value = 1_000_000
        while not done.is_set():
            value += step_uj
            counter.with_suffix(".tmp").write_text(f"{value}\n")
            os.replace(counter.with_suffix(".tmp"), counter)
            time.sleep(0.0002)

    ticker = threading.Thread(target=advance, daemon=True)
    ticker.start()
    out = tmp_path / "rapl.bench.json"
    # 200 timed calls (a fraction of a second): the ticker advances the counter many times inside the window even
    # on a loaded machine
    args = ("bench", tiny_export / "model.onnx", "--iters", "200", "--warmup", "1", "--backend", "ort-cpu")
    try:
        outcome = run_edgekd(capsys, monkeypatch, *args, "--json", out, "--quiet")
    finally:
        done.set()
        ticker.join()
    assert outcome.code == 0, outcome.err
    payload = json.loads(out.read_text())
    validate_bench_payload(payload, str(out))
    record = payload["records"][0]
    reading = record["energy"]
    assert reading is not None, record.get("energy_unavailable")
    assert reading["phase"] == "end_to_end" and reading["frames"] == 200 * record["batch"] == 200
    window_uj = round(reading["window_mj"] * 1000)
    assert window_uj > 0 and window_uj % step_uj == 0  # a whole number of counter steps between start and stop
    assert reading["mj_per_frame"] == pytest.approx(window_uj / 1000 / 200)
    assert reading["scope"] == "RAPL package-0 (the whole CPU package, all processes)"
    assert record["conditions"]["rapl"] == "readable" and "energy_unavailable" not in record

    monkeypatch.setattr(energy, "POWERCAP", tmp_path / "nothing")
    assert run_edgekd(capsys, monkeypatch, *args, "--json", out, "--quiet").code == 0
    record = json.loads(out.read_text())["records"][0]
    assert record["energy"] is None and record["energy_unavailable"] == f"no RAPL zones under {tmp_path / 'nothing'}"


def test_report_energy_column_and_plot(tmp_path):
    model = tmp_path / "export" / "model.onnx"
    reading = EnergyReading(
        "end_to_end", "RAPL", "RAPL package-0 (the whole CPU package, all processes)", 90.0, 1.5, 12
    )
    with_energy = _record(model, "ort-cpu", "fp32", "student", 4.0, accuracy=_accuracy(25.0, {"Car": 50.0}))
    with_energy["energy"] = reading.to_dict()
    _write_bench(tmp_path / "runs" / "e.bench.json", [with_energy])
    markdown, _, report = write_report([tmp_path / "runs"], tmp_path / "report")
    text = markdown.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run | artifact | precision"))
    row = next(line for line in text.splitlines() if line.startswith("| student | export/model.onnx | fp32"))
    assert header.endswith("| CV | mJ/frame |") and row.endswith("| 7.500 |")  # 90 mJ / 12 frames
    assert report.energy_plot == tmp_path / "report" / "energy_accuracy.png"
    assert "![accuracy vs energy per frame](energy_accuracy.png)" in text
    assert Image.open(report.energy_plot).size == (600, 500)
    points = json.loads((tmp_path / "report" / "report.json").read_text())["points"]
    assert points[0]["mj_per_frame"] == 7.5 and points[0]["coco_ap"] == 25.0

    without = _record(model, "ort-cpu", "fp32", "student", 4.0, accuracy=_accuracy(25.0, {"Car": 50.0}))
    _write_bench(tmp_path / "plain" / "p.bench.json", [without])
    markdown, _, report = write_report([tmp_path / "plain"], tmp_path / "report2")
    assert report.energy_plot is None and not (tmp_path / "report2" / "energy_accuracy.png").exists()
    assert "mJ/frame" not in markdown.read_text()
