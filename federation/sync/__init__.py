"""Sync runs: pull from a connector, validate, quarantine, publish a generation."""
