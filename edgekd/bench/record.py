"""`BenchRecord`: one benchmarked (artifact, backend, batch), and `BenchRun`: the records of one `edgekd bench`.

The benchmark makes them, the tables and `edgekd report` read them; `to_dict` / `from_dict` are the JSON layout
that `edgekd.bench.schema` documents and validates (kept key for key: committed results files use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekd.bench.energy import Conditions, EnergyReading
from edgekd.bench.schema import BENCH_FORMAT
from edgekd.bench.trtexec import TrtexecCheck
from edgekd.runtime import ModelInfo

_MODEL_KEYS = ("kind", "model", "classes", "input_size", "precision", "nms", "run", "source_sha256", "params", "gflops")
_RUN_KEYS = ("device", "timer", "file_size_mib")
_RESULT_KEYS = ("phases", "memory", "gpu_state", "warnings", "frames", "accuracy", "accuracy_data")
_ENERGY_KEYS = ("energy", "energy_unavailable", "conditions")
_HEAD_KEYS = ("artifact", "artifact_path", "backend", "batch")


@dataclass
class BenchRecord:
    """One artifact on one backend at one batch size: where and how it ran, what the model is, the phases'
    latency statistics (`edgekd.bench.timing.summarize_measurement` dicts by phase), memory, warnings and the
    accuracy paired by --eval (the `edgekd eval` JSON layout). A batch the artifact cannot run has `skipped`.
    `energy` is the energy of one phase's timed calls, or None with `energy_unavailable` saying why; `conditions`
    how the device was set (`edgekd.bench.energy`; both None in records written before they were measured)."""

    artifact: str  # as given on the command line
    artifact_path: str  # absolute
    backend: str
    batch: int
    skipped: str | None = None
    device: str = ""
    timer: str = ""
    file_size_mib: float | None = None
    kind: str | None = None
    model: str | None = None
    classes: list[str] = field(default_factory=list)
    input_size: list[int] = field(default_factory=list)
    precision: str = ""
    nms: str | None = None
    run: str = ""
    source_sha256: str | None = None
    params: int | None = None
    gflops: float | None = None
    extra: dict = field(default_factory=dict)  # per-kind facts: export_batch, tensorrt, role, compiled
    phases: dict[str, dict] = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    gpu_state: dict | None = None
    warnings: list[str] = field(default_factory=list)
    frames: str | None = None
    accuracy: dict | None = None
    accuracy_data: str | None = None
    energy: EnergyReading | None = None
    energy_unavailable: str | None = None
    conditions: Conditions | None = None
    trtexec: TrtexecCheck | None = None  # --backend trt: trtexec's timing beside ours (edgekd.bench.trtexec)

    @classmethod
    def head(cls, path: Path, backend: str, batch: int, **fields: object) -> BenchRecord:
        return cls(str(path), str(path.resolve()), backend, batch, **fields)

    def describe(self, info: ModelInfo) -> None:
        """Take the model's facts from the runner's `ModelInfo`."""
        data = info.to_dict()
        for key in _MODEL_KEYS:
            setattr(self, key, data.pop(key))
        self.extra = data

    @property
    def where(self) -> str:
        """'model.onnx [ort-cpu] batch 4': how warnings and notes name the record."""
        return f"{Path(self.artifact).name} [{self.backend}] batch {self.batch}"

    def latency(self, phase: str) -> dict | None:
        return self.phases.get(phase)

    def to_dict(self) -> dict:
        """The bench JSON layout of the record."""
        data: dict = {key: getattr(self, key) for key in _HEAD_KEYS}
        if self.skipped is not None:
            return {**data, "skipped": self.skipped}
        data |= {key: getattr(self, key) for key in (*_RUN_KEYS, *_MODEL_KEYS)}
        data |= self.extra
        data |= {"phases": self.phases, "memory": self.memory, "gpu_state": self.gpu_state, "warnings": self.warnings}
        if self.frames is not None:
            data["frames"] = self.frames
        data["accuracy"] = self.accuracy
        if self.accuracy_data is not None:
            data["accuracy_data"] = self.accuracy_data
        if self.energy is not None or self.energy_unavailable is not None:
            data["energy"] = None if self.energy is None else self.energy.to_dict()
            if self.energy is None:
                data["energy_unavailable"] = self.energy_unavailable
        if self.conditions is not None:
            data["conditions"] = self.conditions.to_dict()
        if self.trtexec is not None:
            data["trtexec"] = self.trtexec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BenchRecord:
        """A record of a bench JSON already checked by `edgekd.bench.schema.validate_bench_payload`."""
        known = (*_HEAD_KEYS, "skipped", *_RUN_KEYS, *_MODEL_KEYS, *_RESULT_KEYS)
        values = {key: data[key] for key in known if key in data and data[key] is not None}
        extra = {key: value for key, value in data.items() if key not in (*known, *_ENERGY_KEYS, "trtexec")}
        energy, conditions = data.get("energy"), data.get("conditions")
        return cls(
            **values,
            extra=extra,
            energy=EnergyReading.from_dict(energy) if energy else None,
            energy_unavailable=data.get("energy_unavailable"),
            conditions=Conditions.from_dict(conditions) if conditions else None,
            trtexec=TrtexecCheck.from_dict(data["trtexec"]) if data.get("trtexec") else None,
        )


@dataclass
class BenchRun:
    """The records of one `edgekd bench`, with the host, the settings and the command that made them."""

    created: str
    command: str
    host: dict
    settings: dict
    records: list[BenchRecord]

    def warnings(self) -> list[str]:
        """Every warning and skipped batch, prefixed with its artifact, backend and batch."""
        lines = []
        for record in self.records:
            if record.skipped is not None:
                lines.append(f"{record.where}: skipped, {record.skipped}")
            lines += [f"{record.where}: {warning}" for warning in record.warnings]
        return lines

    def to_dict(self) -> dict:
        """The bench JSON (`edgekd bench --json`)."""
        return {
            "format": BENCH_FORMAT,
            "created": self.created,
            "command": self.command,
            "host": self.host,
            "settings": self.settings,
            "records": [record.to_dict() for record in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BenchRun:
        """A bench JSON already checked by `edgekd.bench.schema.validate_bench_payload`."""
        records = [BenchRecord.from_dict(record) for record in data["records"]]
        return cls(data["created"], data.get("command", ""), data["host"], data["settings"], records)
