from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from multinic_ctrl.db import Database, Repository
from tests.dbsupport import fresh_database


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    async with fresh_database() as db:
        yield db


@pytest.fixture
def repo(database: Database) -> Repository:
    return Repository(database)
