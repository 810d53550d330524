"""Exosphere state manager: the server side of the v0 workflow API."""

__version__ = "0.1.0"
