"""Lab tests boot qemu guests (minutes of TCG): every ``lab`` test is ``slow`` too, so the
quick selection (``-m "not slow ..."``) never boots one; ``-m lab`` runs them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every ``lab`` test ``slow`` as well."""
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.slow)
