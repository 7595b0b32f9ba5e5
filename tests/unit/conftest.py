import pytest

from adapters.clock import ManualClock
from booking import START, memory_deps
from concert_domain import Dependencies


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def deps(clock: ManualClock) -> Dependencies:
    return memory_deps(clock)
