"""observe_many exports what as many observe calls would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.runtime.metrics import RuntimeMetrics, observe_many


def exported(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    """Every sample but the creation times, which differ by when each was made."""
    return [
        (s.name, s.labels, s.value)
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    ]


amounts = st.floats(min_value=0, max_value=10, allow_nan=False) | st.sampled_from(
    [0.0005, 0.001, 0.5, 1.0, 5.0, 5.0000001, 1e9]
)


@given(st.lists(st.tuples(amounts, st.integers(1, 50)), max_size=6))
def test_the_same_exported_values_as_observing_one_by_one(batches: list[tuple[float, int]]) -> None:
    one, many = RuntimeMetrics.create(), RuntimeMetrics.create()
    for amount, count in batches:
        for _ in range(count):
            one.handler_seconds.labels("intake").observe(amount)
        observe_many(many.handler_seconds.labels("intake"), amount, count)
    assert repr(exported(many.registry)) == repr(exported(one.registry))


def test_nan_is_observed_as_observe_does() -> None:
    one, many = RuntimeMetrics.create(), RuntimeMetrics.create()
    one.handler_seconds.labels("x").observe(float("nan"))
    observe_many(many.handler_seconds.labels("x"), float("nan"), 1)
    assert repr(exported(many.registry)) == repr(exported(one.registry))
