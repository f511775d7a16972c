"""The Python API (edgekd/api.py): `edgekd.load(...).predict` gives what the runtime's dataset path gives for the
same images, `.evaluate` what `edgekd eval` computes, bad images are refused naming them, and `import edgekd` and
an ONNX model's predictor stay torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgekd
from edgekd.data.loader import load_dataset
from edgekd.errors import EdgeKDError
from edgekd.evaluate import evaluate_detections
from edgekd.runtime import predict_artifact

ROOT = Path(__file__).resolve().parents[1]


def test_predict_on_paths_and_arrays_equals_the_runtime_on_the_dataset(tiny_export, tiny_kitti):
    model = tiny_export / "model.onnx"
    dataset = load_dataset(tiny_kitti, "val")
    reference = predict_artifact(model, dataset, batch=1)
    paths = [record.image_path for record in dataset.records]
    with edgekd.load(model, threads=1) as predictor:
        from_paths = predictor.predict(paths)
        one = predictor.predict(np.asarray(Image.open(paths[0]).convert("RGB")))
        result = predictor.evaluate(tiny_kitti, "val")
    assert len(from_paths) == len(paths)
    for record, found in zip(dataset.records, from_paths):
        expected = reference[record.image_id]
        np.testing.assert_array_equal(found.boxes, expected.boxes)
        np.testing.assert_array_equal(found.scores, expected.scores)
    np.testing.assert_array_equal(one.boxes, reference[dataset.records[0].image_id].boxes)
    assert result.to_dict() == evaluate_detections(dataset, reference).to_dict()


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        (np.zeros((4, 4), np.uint8), "shape (4, 4) and dtype uint8"),
        (np.zeros((4, 4, 3), np.float32), "dtype float32"),
        (7, "got int"),
    ],
)
def test_bad_images_are_refused_naming_them(tiny_export, image, needle):
    with edgekd.load(tiny_export / "model.onnx") as predictor, pytest.raises(EdgeKDError) as raised:
        predictor.predict([image])
    assert str(raised.value).startswith("image 0: ") and needle in str(raised.value)


def test_import_and_onnx_prediction_stay_torch_free(tiny_export, tiny_kitti):
    image = next((tiny_kitti / "image_2").iterdir())
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import edgekd, json\n"
        f"found = edgekd.load({str(tiny_export / 'model.onnx')!r}).predict({str(image)!r})\n"
        "print(json.dumps([len(found.scores), 'torch' in sys.modules and sys.modules['torch'] is not None]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count, torch_loaded = json.loads(result.stdout)
    assert count >= 0 and torch_loaded is False


def test_export_function_and_package_are_one_name(tiny_checkpoint, tmp_path):
    result = edgekd.export(tiny_checkpoint, out=tmp_path / "exported")
    assert result.onnx == tmp_path / "exported" / "model.onnx" and result.onnx.is_file() and result.report.passed
    assert callable(edgekd.export)  # still callable now that the edgekd.export package is imported


def test_distill_and_export_stay_callable_after_their_packages_are_imported(monkeypatch):
    import edgekd
    import edgekd.distill.recipe  # noqa: F401  binds the package to edgekd.distill
    import edgekd.export.run  # noqa: F401
    from edgekd import api

    monkeypatch.setattr(api, "distill", lambda *args, **kwargs: ("distill", args, kwargs))
    monkeypatch.setattr(api, "export", lambda *args, **kwargs: ("export", args, kwargs))
    assert edgekd.distill("t.pt", epochs=1) == ("distill", ("t.pt",), {"epochs": 1})
    assert edgekd.export("s.pt") == ("export", ("s.pt",), {})
