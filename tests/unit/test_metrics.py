"""Metrics: labelled children are looked up once, and a platform from the URL that is none of ours
does not open a series of its own."""

from __future__ import annotations

from gateway.metrics import Metrics


def _line(metrics: Metrics, prefix: str) -> str:
    return next(line for line in metrics.render()[0].decode().splitlines() if line.startswith(prefix))


def test_children_are_cached_and_counts_add_up() -> None:
    metrics = Metrics(targets=["u8-demo"])
    assert metrics.child(metrics.deliveries_total, "u8-demo", "delivered") is metrics.child(
        metrics.deliveries_total, "u8-demo", "delivered"
    )
    for _ in range(3):
        metrics.count_intake("taobao", "accepted")
        metrics.child(metrics.delivery_seconds, "u8-demo").observe(0.2)
    assert _line(metrics, 'intake_total{outcome="accepted",platform="taobao"}').endswith(" 3.0")
    assert _line(metrics, 'delivery_seconds_count{target="u8-demo"}').endswith(" 3.0")


def test_an_unknown_platform_is_counted_as_unknown() -> None:
    metrics = Metrics()
    metrics.count_intake("tao-bao-typo", "invalid")
    metrics.count_intake("another-typo", "invalid")
    text = metrics.render()[0].decode()
    assert "typo" not in text
    assert _line(metrics, 'intake_total{outcome="invalid",platform="unknown"}').endswith(" 2.0")
