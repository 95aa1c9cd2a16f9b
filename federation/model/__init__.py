"""Canonical records and the vocabularies they are written in."""
