"""Logging, metrics and tracing helpers, imported by the places that report."""
