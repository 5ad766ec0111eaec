"""The package version, the one place it is written (pyproject.toml reads it; the front door,
the client's User-Agent and the CLI import it from here, never from the front door)."""

__version__ = "0.2.0"
