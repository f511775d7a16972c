"""Detector zoo and the adapter every KD method, exporter and benchmark talks to."""
