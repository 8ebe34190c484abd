"""The integration tier: fixtures live in tests/conftest.py (shared with tests/e2e, one plane of each kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below tests/integration with ``integration`` (for ``-m`` selection)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
