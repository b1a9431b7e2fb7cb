"""The dispatch management API: channels, policies and preferences (admin bearer token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Response

from libs.common.api import StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.contact_policy import InvalidPolicy, Preferences, check_caps_kept, parse_policy
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.storable import StorableText
from services.dispatch.addresses import RefusedAddress, WebhookResolver
from services.dispatch.channels.config import (
    SECRET_FIELDS,
    InvalidConfig,
    WebhookConfig,
    parse_config,
    split_secrets,
)
from services.dispatch.schemas import (
    CHANNEL_PATTERN,
    PROFILE_PATTERN,
    TOPIC_PATTERN,
    ChannelList,
    ChannelRequest,
    ChannelResponse,
    PolicyDocument,
    PreferenceLink,
    PreferencesPage,
    PreferencesRequest,
    PreferencesResponse,
    ProfileMessage,
    ProfileMessages,
    TopicList,
    TopicRequest,
    TopicResponse,
)
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import ChannelRow, DispatchStore, TopicRow
from services.dispatch.subscriptions import SubscriptionTopic
from services.dispatch.tracking import preference_url

ChannelPath = Annotated[str, Path(pattern=CHANNEL_PATTERN)]
ProfilePath = Annotated[str, Path(pattern=PROFILE_PATTERN)]
TopicPath = Annotated[str, Path(pattern=TOPIC_PATTERN)]
_NOT_FOUND = error_responses(404)


router = APIRouter(dependencies=[Depends(require_admin)], responses=MANAGEMENT_ERRORS)
Stores = Annotated[StoreTransactions[DispatchStore], Depends(transactions_of(DispatchStore))]
SettingsDep = Annotated[DispatchSettings, Depends(from_state("settings", DispatchSettings))]
ResolverDep = Annotated[WebhookResolver, Depends(from_state("webhook_resolver", WebhookResolver))]


async def _checked_config(
    resolver: WebhookResolver, request: ChannelRequest, stored_secrets: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    values = {**stored_secrets, **request.config}
    try:
        config = parse_config(request.kind, values)
    except InvalidConfig as error:
        raise ApiError(422, "invalid_channel", str(error), error.field) from None
    if isinstance(config, WebhookConfig):
        await _check_webhook_url(resolver, config.url)
    return split_secrets(request.kind, config)


@router.post("/channels", status_code=201, tags=["channels"], responses=error_responses(409))
async def create_channel(
    request: ChannelRequest, stores: Stores, resolver: ResolverDep
) -> ChannelResponse:
    """Configure a channel; messages name it as their `channel`."""
    if request.name is None:
        raise ApiError(422, "invalid_request", "name: a new channel needs a name", "name")
    config, secrets = await _checked_config(resolver, request, {})
    async with stores() as store:
        row = await store.insert_channel(
            request.name, request.kind, config, secrets, request.rate_per_second
        )
    if row is None:
        raise ApiError(409, "channel_exists", f"Channel {request.name!r} exists.", "name")
    return _channel(row)


@router.get("/channels", tags=["channels"])
async def list_channels(stores: Stores) -> ChannelList:
    async with stores() as store:
        rows = await store.channels()
    return ChannelList(channels=[_channel(row) for row in rows])


@router.get("/channels/{name}", tags=["channels"], responses=_NOT_FOUND)
async def get_channel(name: ChannelPath, stores: Stores) -> ChannelResponse:
    async with stores() as store:
        row = await store.channel(name)
    return _channel(_found_channel(row, name))


@router.put("/channels/{name}", tags=["channels"], responses=_NOT_FOUND)
async def replace_channel(
    name: ChannelPath, request: ChannelRequest, stores: Stores, resolver: ResolverDep
) -> ChannelResponse:
    """Replace a channel's configuration; secrets left out keep their stored values."""
    if request.name is not None and request.name != name:
        raise ApiError(422, "name_mismatch", "The body's name differs from the path's.", "name")
    async with stores() as store:
        existing = _found_channel(await store.channel(name), name)
    kept = existing.secrets if existing.kind == request.kind else {}
    config, secrets = await _checked_config(resolver, request, kept)
    async with stores() as store:
        row = await store.update_channel(
            name, request.kind, config, secrets, request.rate_per_second
        )
    return _channel(_found_channel(row, name))


@router.delete("/channels/{name}", status_code=204, tags=["channels"], responses=_NOT_FOUND)
async def delete_channel(name: ChannelPath, stores: Stores) -> Response:
    async with stores() as store:
        if not await store.delete_channel(name):
            raise _channel_not_found(name)
    return Response(status_code=204)


@router.get("/policies", tags=["policies"])
async def get_policies(stores: Stores) -> dict[str, Any]:
    async with stores() as store:
        return await store.policy_document()


@router.put("/policies", tags=["policies"])
async def replace_policies(
    document: PolicyDocument, stores: Stores, settings: SettingsDep
) -> dict[str, Any]:
    """Replace the frequency caps, quiet hours and arbitration window; applied to every send
    decided after. Messages held for a longer window than the new one come due sooner."""
    stored = document.model_dump(exclude_none=True)
    try:
        policy = parse_policy(stored)
        check_caps_kept(policy, timedelta(days=settings.dispatch_send_retention_days))
    except InvalidPolicy as error:
        raise ApiError(422, "invalid_policy", str(error), error.path) from None
    async with stores() as store:
        await store.save_policy(stored)
        await store.release_holds(policy.arbitration.window)
    return stored


@router.get("/preferences", tags=["preferences"])
async def list_preferences(
    stores: Stores,
    settings: SettingsDep,
    after: Annotated[StorableText | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> PreferencesPage:
    """Every profile's stored answers, a page at a time (journey's dry run reads them all)."""
    async with stores() as store:
        rows = await store.preferences_after(after, limit)
    default = settings.dispatch_default_consent
    return PreferencesPage(
        preferences=[_preferences(profile, answers, default) for profile, answers in rows],
        default_consent=default,
        next=rows[-1][0] if len(rows) == limit else None,
    )


@router.get("/preferences/{profile_id}", tags=["preferences"])
async def get_preferences(
    profile_id: ProfilePath, stores: Stores, settings: SettingsDep
) -> PreferencesResponse:
    async with stores() as store:
        preferences = (await store.preferences([profile_id])).get(profile_id, Preferences())
    return _preferences(profile_id, preferences, settings.dispatch_default_consent)


@router.put("/preferences/{profile_id}", tags=["preferences"])
async def replace_preferences(
    profile_id: ProfilePath, request: PreferencesRequest, stores: Stores, settings: SettingsDep
) -> PreferencesResponse:
    """Replace a profile's consent answers, unsubscribed channels and topic answers."""
    preferences = Preferences(
        dict(request.consent), frozenset(request.unsubscribed), dict(request.topics)
    )
    async with stores() as store:
        known = {row.topic.topic_id for row in await store.topics()}
        unknown = sorted(set(request.topics) - known)
        if unknown:
            raise _topic_not_found(unknown[0], 422, f"topics.{unknown[0]}")
        await store.save_preferences(profile_id, preferences)
    return _preferences(profile_id, preferences, settings.dispatch_default_consent)


@router.post("/preferences/{profile_id}/link", tags=["preferences"])
async def preference_link(profile_id: ProfilePath, settings: SettingsDep) -> PreferenceLink:
    """A signed link to the person's preference page, to send them; it expires after
    `CLOSELOOP_DISPATCH_PREFERENCE_LINK_DAYS`."""
    expires_at = datetime.now(UTC) + timedelta(days=settings.dispatch_preference_link_days)
    url = preference_url(settings, profile_id, expires_at)
    if url is None:
        raise ApiError(
            409, "tracking_secret_unset", "CLOSELOOP_TRACKING_SECRET is not set: no link to sign."
        )
    return PreferenceLink(url=url, expires_at=expires_at)


@router.post("/topics", status_code=201, tags=["topics"], responses=error_responses(409))
async def create_topic(request: TopicRequest, stores: Stores) -> TopicResponse:
    """Define a subscription topic; sends, broadcasts and templates name it as their `topic`."""
    if request.topic_id is None:
        raise ApiError(422, "invalid_request", "topic_id: a new topic needs an id", "topic_id")
    async with stores() as store:
        if not await store.insert_topic(_topic(request.topic_id, request)):
            raise ApiError(409, "topic_exists", f"Topic {request.topic_id!r} exists.", "topic_id")
        row = await store.topic(request.topic_id)
    return _topic_response(_found_topic(row, request.topic_id))


@router.get("/topics", tags=["topics"])
async def list_topics(stores: Stores) -> TopicList:
    async with stores() as store:
        rows = await store.topics()
    return TopicList(topics=[_topic_response(row) for row in rows])


@router.get("/topics/{topic_id}", tags=["topics"], responses=_NOT_FOUND)
async def get_topic(topic_id: TopicPath, stores: Stores) -> TopicResponse:
    async with stores() as store:
        row = await store.topic(topic_id)
    return _topic_response(_found_topic(row, topic_id))


@router.put("/topics/{topic_id}", tags=["topics"], responses=_NOT_FOUND)
async def replace_topic(
    topic_id: TopicPath, request: TopicRequest, stores: Stores
) -> TopicResponse:
    if request.topic_id is not None and request.topic_id != topic_id:
        raise ApiError(
            422, "id_mismatch", "The body's topic_id differs from the path's.", "topic_id"
        )
    async with stores() as store:
        if not await store.update_topic(_topic(topic_id, request)):
            raise _topic_not_found(topic_id)
        row = await store.topic(topic_id)
    return _topic_response(_found_topic(row, topic_id))


@router.delete("/topics/{topic_id}", status_code=204, tags=["topics"], responses=_NOT_FOUND)
async def delete_topic(topic_id: TopicPath, stores: Stores) -> Response:
    """Remove a topic; messages that still name it are sent by the answers recorded for it."""
    async with stores() as store:
        if not await store.delete_topic(topic_id):
            raise _topic_not_found(topic_id)
    return Response(status_code=204)


@router.get("/profiles/{profile_id}/messages", tags=["messages"])
async def profile_messages(
    profile_id: ProfilePath,
    stores: Stores,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ProfileMessages:
    """The messages the ledger holds for a person, newest first, with where each stands."""
    async with stores() as store:
        rows = await store.messages_of(profile_id, limit)
    return ProfileMessages(
        profile_id=profile_id, messages=[ProfileMessage.model_validate(row) for row in rows]
    )


async def _check_webhook_url(resolver: WebhookResolver, url: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ApiError(
            422, "invalid_channel", "config.url: the port is not valid", "config.url"
        ) from None
    if not parts.hostname:
        raise ApiError(422, "invalid_channel", "config.url: the URL has no host", "config.url")
    try:
        await resolver.checked_address(parts.hostname, port)
    except RefusedAddress as error:
        raise ApiError(422, "webhook_address_refused", str(error), "config.url") from None


def _channel(row: ChannelRow) -> ChannelResponse:
    return ChannelResponse(
        name=row.name,
        kind=row.kind,
        config=row.config,
        secrets_set=sorted(name for name in SECRET_FIELDS[row.kind] if name in row.secrets),
        rate_per_second=row.rate_per_second,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _channel_not_found(name: str) -> ApiError:
    return ApiError(404, "channel_not_found", f"There is no channel {name!r}.")


def _found_channel(row: ChannelRow | None, name: str) -> ChannelRow:
    if row is None:
        raise _channel_not_found(name)
    return row


def _preferences(
    profile_id: str, preferences: Preferences, default_consent: bool
) -> PreferencesResponse:
    return PreferencesResponse(
        profile_id=profile_id,
        consent=dict(preferences.consent),
        unsubscribed=sorted(preferences.unsubscribed),
        topics={topic: dict(answers) for topic, answers in preferences.topics.items()},
        default_consent=default_consent,
    )


def _topic(topic_id: str, request: TopicRequest) -> SubscriptionTopic:
    return SubscriptionTopic(
        topic_id,
        request.name,
        request.description,
        tuple(dict.fromkeys(request.channels)),
        request.default_subscribed,
    )


def _topic_response(row: TopicRow) -> TopicResponse:
    topic = row.topic
    return TopicResponse(
        topic_id=topic.topic_id,
        name=topic.name,
        description=topic.description,
        channels=list(topic.channels),
        default_subscribed=topic.default_subscribed,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _topic_not_found(topic_id: str, status: int = 404, field: str | None = None) -> ApiError:
    return ApiError(status, "topic_not_found", f"There is no topic {topic_id!r}.", field)


def _found_topic(row: TopicRow | None, topic_id: str) -> TopicRow:
    if row is None:
        raise _topic_not_found(topic_id)
    return row
