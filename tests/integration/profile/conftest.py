"""The profile service as a real process on the test stack, shared by this folder's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.stack import Stack
from tests.integration.profile.harness import ProfileService, running_profile_service


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def profile_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    async with running_profile_service(stack, tmp_path_factory) as service:
        yield service
