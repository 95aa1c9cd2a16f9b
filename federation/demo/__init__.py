"""Synthetic demo networks: biobanks exporting realistic, slightly dirty data in their formats."""

from federation.demo.export import BiobankSummary
from federation.demo.generator import NetworkSummary, generate_network

__all__ = ["BiobankSummary", "NetworkSummary", "generate_network"]
