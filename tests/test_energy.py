"""Energy readers on recorded values: RAPL counters and cpufreq governors in a sysfs-shaped folder, NVML's energy
counter and power samples (pynvml's API answered with recorded numbers), and tegrastats lines written from the
format NVIDIA's Jetson Linux guide documents (JetPack 4 and 5/6 rail names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.bench.energy import (
    NvmlEnergyMeter,
    cpu_governors,
    integrate_power_mj,
    measurement_conditions,
    parse_tegrastats,
    rapl_energy_mj,
    rapl_read,
    rapl_zones,
    tegrastats_energy_mj,
)

ORIN_NX = (
    "12-02-2026 10:15:01 RAM 2764/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1984,5%@1984,0%@1984,"
    "3%@1984,off,off] EMC_FREQ 7%@3199 GR3D_FREQ 61%@[918,0] NVENC off NVDEC off NVJPG off VIC off OFA off "
    "APE 200 cpu@51.5C soc2@48.25C soc0@49.093C gpu@50.125C tj@51.5C soc1@48.5C "
    "VDD_IN 8412mW/7980mW VDD_CPU_GPU_CV 3205mW/2990mW VDD_SOC 2117mW/2051mW"
)
NANO_JETPACK4 = (
    "RAM 1512/3964MB (lfb 324x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [9%@1479,4%@1479,"
    "2%@1479,3%@1479] EMC_FREQ 4%@1600 GR3D_FREQ 99%@921 APE 25 PLL@26C CPU@29.5C PMIC@100C GPU@27.5C AO@35C "
    "thermal@28.25C POM_5V_IN 4562/4321 POM_5V_GPU 1954/1800 POM_5V_CPU 526/510"
)
AGX_ORIN = (
    "RAM 5410/30536MB (lfb 5x4MB) CPU [2%@2201,1%@2201] GR3D_FREQ 0%@[305,305] cpu@45.8C gpu@43.2C "
    "VDD_GPU_SOC 2400mW/2400mW VDD_CPU_CV 800mW/800mW VIN_SYS_5V0 3200mW/3200mW VDDQ_VDD2_1V8AO 600mW/600mW"
)


def _zone(root: Path, name: str, zone: str, energy_uj: int, max_uj: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "name").write_text(zone + "\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def test_rapl_reads_package_zones_and_counts_a_wrap_once(tmp_path):
    package0 = _zone(tmp_path, "intel-rapl:0", "package-0", 262143000000, 262143328850)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5, 262143328850)  # a sub-domain: not added to the package
    _zone(tmp_path, "intel-rapl:1", "package-1", 1000000, 262143328850)
    zones, problem = rapl_zones(tmp_path)
    assert problem is None and [zone.name for zone in zones] == ["package-0", "package-1"]
    start = rapl_read(zones)
    (package0 / "energy_uj").write_text("171150\n")  # wrapped past 262143328850
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("1500000\n")
    end = rapl_read(zones)
    wrapped_uj = 262143328850 - 262143000000 + 171150
    assert rapl_energy_mj(zones, start, end) == pytest.approx((wrapped_uj + 500000) / 1000)


def test_rapl_absent_or_root_only_says_why(tmp_path):
    assert rapl_zones(tmp_path)[1] == f"no RAPL zones under {tmp_path}"
    folder = _zone(tmp_path, "intel-rapl:0", "package-0", 1, 10)
    (folder / "energy_uj").chmod(0)
    zones, problem = rapl_zones(tmp_path)
    if zones:  # root reads a file whatever its mode
        pytest.skip("running as root: permissions do not apply")
    assert "not readable (intel-rapl:0" in problem


def test_cpu_governors_counted_per_core(tmp_path):
    assert cpu_governors(tmp_path) is None
    for core, governor in enumerate(["performance", "performance", "powersave"]):
        folder = tmp_path / f"cpu{core}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_governor").write_text(governor + "\n")
    assert cpu_governors(tmp_path) == {"performance": 2, "powersave": 1}
    conditions = measurement_conditions(tmp_path / "powercap", tmp_path)
    assert conditions["cpu_governors"] == {"performance": 2, "powersave": 1} and conditions["rapl_zones"] == []


def test_power_integration_is_the_trapezoid_rule():
    samples = [(0.04, 154000.0), (0.0, 150000.0), (0.02, 152000.0)]
    assert integrate_power_mj(samples) == pytest.approx(0.02 * 151000 + 0.02 * 153000)
    assert integrate_power_mj(samples[:1]) == 0


class RecordedNvml:
    """pynvml's functions answering with values recorded on a GPU (energy in mJ, power in mW)."""

    class NVMLError(Exception):
        pass

    def __init__(self, energy: list[int] | None, power: list[int]) -> None:
        self.energy, self.power = energy, list(power)

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if self.energy is None:
            raise self.NVMLError("Not Supported")
        return self.energy.pop(0) if len(self.energy) > 1 else self.energy[0]

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self.power.pop(0)


def test_nvml_energy_counter_where_supported():
    meter = NvmlEnergyMeter(RecordedNvml([987654321, 987654321, 987656821], []))
    assert meter.counter and "counter" in meter.method
    meter.start()
    assert meter.stop() == 2500


def test_nvml_power_samples_integrated_where_no_counter():
    ticks = iter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    meter = NvmlEnergyMeter(RecordedNvml(None, [60210, 71540, 71980, 70330, 70010, 61000]), clock=lambda: next(ticks))
    assert not meter.counter and "integrated" in meter.method
    for _ in range(6):
        meter.sample()
    expected = 0.1 * ((60210 + 71540) + (71540 + 71980) + (71980 + 70330) + (70330 + 70010) + (70010 + 61000)) / 2
    assert integrate_power_mj(meter._samples) == pytest.approx(expected)


def test_tegrastats_orin_nx_line():
    parsed = parse_tegrastats(ORIN_NX)
    assert parsed["ram_mb"] == [2764, 7620]
    assert parsed["rails_mw"] == {"VDD_IN": [8412, 7980], "VDD_CPU_GPU_CV": [3205, 2990], "VDD_SOC": [2117, 2051]}
    assert parsed["input_rail"] == "VDD_IN"
    assert parsed["temperatures_c"]["gpu"] == 50.125 and parsed["temperatures_c"]["tj"] == 51.5
    assert parsed["engines"]["GR3D_FREQ"] == {"load_percent": 61, "mhz": 918}
    assert parsed["engines"]["EMC_FREQ"] == {"load_percent": 7, "mhz": 3199}


def test_tegrastats_jetpack4_nano_line():
    parsed = parse_tegrastats(NANO_JETPACK4)
    assert parsed["rails_mw"] == {"POM_5V_IN": [4562, 4321], "POM_5V_GPU": [1954, 1800], "POM_5V_CPU": [526, 510]}
    assert parsed["input_rail"] == "POM_5V_IN" and parsed["temperatures_c"]["PMIC"] == 100.0
    assert parsed["engines"]["GR3D_FREQ"] == {"load_percent": 99, "mhz": 921}


def test_tegrastats_energy_from_the_input_rail_or_the_sum_of_rails():
    lines = [(0.0, ORIN_NX), (1.0, ORIN_NX.replace("VDD_IN 8412mW", "VDD_IN 8612mW"))]
    energy, method = tegrastats_energy_mj(lines)
    assert energy == pytest.approx((8412 + 8612) / 2) and method == "tegrastats VDD_IN rail"
    energy, method = tegrastats_energy_mj([(0.0, AGX_ORIN), (0.5, AGX_ORIN)])
    assert energy == pytest.approx(0.5 * (2400 + 800 + 3200 + 600)) and method.startswith("tegrastats, sum of")
    assert tegrastats_energy_mj([(0.0, "RAM 1/2MB")]) is None
