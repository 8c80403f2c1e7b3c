from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import broker_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with broker_url() as url:
        yield url
