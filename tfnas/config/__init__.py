"""Config loading: typed schemas (``schemas``) and the one strict loader (``loader``)."""

from tfnas.config.loader import Options, Schema, format_errors, load_file, validate

__all__ = ["Options", "Schema", "format_errors", "load_file", "validate"]
