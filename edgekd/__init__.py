"""edgekd: distill, export and measure compact object detectors for edge deployment.

`edgekd.load`, `edgekd.distill`, `edgekd.export` and `edgekd.Predictor` (the Python API, edgekd/api.py) are loaded
on first use, so `import edgekd` imports neither torch nor the runtimes."""

from edgekd._version import __version__

_API_NAMES = ("Predictor", "distill", "export", "load")
__all__ = ["__version__", *_API_NAMES]


def __getattr__(name: str) -> object:
    if name in _API_NAMES:
        from edgekd import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
