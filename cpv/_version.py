"""The package version, importable without importing anything else of cpv."""

__version__ = "0.1.0"
