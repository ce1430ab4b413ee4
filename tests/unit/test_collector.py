"""A long-running process tunes the cycle collector once its start-up is done."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from outreach.runner import GC_YOUNG, tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_is_frozen_and_the_young_generation_collected_less_often(collector: None) -> None:
    made_at_start = [[] for _ in range(1000)]  # containers: the collector tracks them
    before = gc.get_freeze_count()
    middle, oldest = gc.get_threshold()[1:]
    tune_collector()
    assert gc.get_freeze_count() >= before + len(made_at_start), "what start-up made is out of the collector's scans"
    assert gc.get_threshold() == (GC_YOUNG, middle, oldest)
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1, "garbage made later is still collected"
