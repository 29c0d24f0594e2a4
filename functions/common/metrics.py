"""The functions' CloudWatch metrics (powertools EMF): one namespace, and a run's figures in one call."""

from __future__ import annotations

import os
from collections.abc import Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_NAMESPACE = "iotkpi"


def function_metrics() -> Metrics:
    """The handler's Metrics, in POWERTOOLS_METRICS_NAMESPACE (default iotkpi)."""
    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))


def add_counts(metrics: Metrics, counts: Mapping[str, float]) -> None:
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def record_run(
    metrics: Metrics, counts: Mapping[str, float], duration_ms: float, sizes: Mapping[str, float] | None = None
) -> None:
    """A scheduled run's metrics: what it counted, the bytes it moved (`sizes`), and RunDuration in ms."""
    add_counts(metrics, counts)
    for name, value in (sizes or {}).items():
        metrics.add_metric(name=name, unit=MetricUnit.Bytes, value=value)
    metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
