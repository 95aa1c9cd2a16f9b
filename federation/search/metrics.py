"""What the search service counts for `/metrics`: search latency, the answer cache and the
privacy budget (docs/metrics.md).

Plain prometheus-client metrics: in a gateway under gunicorn the library writes them to
the multiprocess folder the gunicorn settings create (`PROMETHEUS_MULTIPROC_DIR`), so a
scrape of any worker sums every worker; elsewhere (the CLI, tests) they stay in memory.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from federation.search.backend import SearchBackend

# The gateway's own metrics live here, not in prometheus-client's default registry (which
# also holds process metrics that multiprocess mode cannot report per worker).
REGISTRY = CollectorRegistry(auto_describe=True)

# Searches take milliseconds on the embedded backend and up to the request timeout (10 s)
# on a loaded engine: buckets from 5 ms to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SEARCH_SECONDS = Histogram(
    "biofed_search_duration_seconds",
    "Time the search service took to answer one search (backend, release, budget, audit).",
    ["backend"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ANSWER_CACHE = Counter(
    "biofed_answer_cache_lookups",
    "Lookups in the embedded backend's answer cache, by result (hit or miss).",
    ["result"],
    registry=REGISTRY,
)
BUDGET_REFUSED_FIGURES = Counter(
    "biofed_privacy_budget_refused_figures",
    "Noised figures the privacy budget could not pay for, released coarser instead.",
    registry=REGISTRY,
)
BUDGET_FALLBACK_SEARCHES = Counter(
    "biofed_privacy_budget_fallback_searches",
    "Searches in which at least one figure fell back to the budget's coarser release.",
    registry=REGISTRY,
)


def backend_label(backend: SearchBackend) -> str:
    """The backend as the `backend` setting names it: embedded, opensearch, elasticsearch."""
    config = getattr(backend, "config", None)
    return str(getattr(config, "distribution", backend.name))


def searched(backend: SearchBackend, seconds: float, refused_figures: int) -> None:
    """Count one answered search."""
    SEARCH_SECONDS.labels(backend=backend_label(backend)).observe(seconds)
    if refused_figures:
        BUDGET_REFUSED_FIGURES.inc(refused_figures)
        BUDGET_FALLBACK_SEARCHES.inc()


def answer_cache_lookup(hit: bool) -> None:
    """Count one lookup in the answer cache."""
    ANSWER_CACHE.labels(result="hit" if hit else "miss").inc()
