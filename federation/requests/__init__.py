"""Access requests: from a search to samples (issue 15; docs/requests.md)."""
