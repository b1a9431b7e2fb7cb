"""Whatever JSON a client posts, ingest answers it without a server error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.devstack.services import ServiceProcess
from tests.integration.ingest.support import CreatedSource

pytestmark = pytest.mark.integration

PATHS = [
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
]
_SEGMENT_KEYS = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "messageId",
        "event",
        "timestamp",
        "sentAt",
        "context",
        "properties",
        "traits",
        "integrations",
        "groupId",
        "previousId",
        "name",
        "batch",
        "writeKey",
    ]
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_SEGMENT_KEYS | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=20,
)
# Bodies shaped like calls and batches, so the fuzzing reaches validation, not only the parser.
_bodies = (
    _json
    | st.dictionaries(_SEGMENT_KEYS, _json, max_size=8)
    | st.fixed_dictionaries(
        {"batch": st.lists(st.dictionaries(_SEGMENT_KEYS, _json, max_size=8), max_size=4)}
    )
)


def test_arbitrary_json_never_gets_a_server_error(
    ingest: ServiceProcess, source: CreatedSource
) -> None:
    with httpx.Client(base_url=ingest.url, auth=source.auth, timeout=30) as client:

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(path=st.sampled_from(PATHS), body=_bodies)
        def post(path: str, body: Any) -> None:
            response = client.post(path, json=body)
            assert response.status_code < 500, (path, body, response.text)

        post()
