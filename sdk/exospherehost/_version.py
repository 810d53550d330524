"""The SDK's version, in one place (the package metadata in `sdk/pyproject.toml` must match)."""

__version__ = "0.1.0"
