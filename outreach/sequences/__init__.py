"""Sequences: the YAML schema, the business calendar and the pure engine."""
