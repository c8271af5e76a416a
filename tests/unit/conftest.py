"""Fakes of core's ports, one fresh set per test."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock, FakeEventBus, FakeUnitOfWorkFactory


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus() -> FakeEventBus:
    return FakeEventBus()
