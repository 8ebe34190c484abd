"""Reading the in-process Prometheus registry in tests: the sum of one family's samples."""

from __future__ import annotations

from multinic_ctrl.metrics import REGISTRY


def metric_sum(family: str, sample: str) -> float:
    """Sum over all label sets of the samples named `sample` of the metric family `family` (e.g. the family
    `multinic_reconcile` and its samples `multinic_reconcile_total`; a histogram's `..._count`)."""
    return sum(
        found.value
        for metric in REGISTRY.collect()
        if metric.name == family
        for found in metric.samples
        if found.name == sample
    )
