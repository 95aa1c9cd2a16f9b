"""Query model, result model, and the search backends with their shared conformance suite."""
