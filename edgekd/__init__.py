"""edgekd: distill, export and measure compact object detectors for edge deployment."""

__version__ = "0.1.0"
