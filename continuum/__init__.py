"""Continuum: what every part shares (configuration, the event schema, the bus, the lake, the CLI)."""

__version__ = "0.1.0"
