"""The version of the source tree (the installed package's metadata says the same when installed)."""

__version__ = "0.1.0"
