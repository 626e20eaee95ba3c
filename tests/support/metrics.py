"""Prometheus samples: of this process's registry, and of a /metrics text scraped from another."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ssftp.metrics import REGISTRY


def sample(name: str, /, **labels: str) -> float:
    """A metric's value in this process's registry (0 before it was ever counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
