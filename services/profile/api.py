"""REST routes: read a profile by id or identifier, page its events, erase it; fit the purchase
models behind the predictive scores, show them, backtest them."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.api import RelayDep, StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.bus import write_outbox
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.events import Event, ProfileDeleted
from services.profile import features
from services.profile.features import FeatureRules
from services.profile.fits import PredictionFits
from services.profile.handlers import SOURCE
from services.profile.identity import Identifier, new_profile_id, parse_identifier
from services.profile.predictions import BacktestReport, BgNbdParams, GammaGammaParams
from services.profile.schemas import (
    BacktestOut,
    BacktestRequest,
    CalibrationRowOut,
    Engagement,
    ErasureAccepted,
    FitOut,
    PredictionModelOut,
    Predictions,
    PredictiveScores,
    ProfileEventOut,
    ProfileEventPage,
    ProfileList,
    ProfileOut,
    ProfileOutcomeOut,
    PurchaseModelOut,
    RfmScores,
    ValueModelOut,
)
from services.profile.settings import ProfileSettings
from services.profile.state import ProfileState
from services.profile.store import Connection, FitRecord, ProfileStore, StoredProfile

# More trait filters than anyone types, few enough to keep the query small.
_MAX_TRAIT_FILTERS = 10
ProfileIdPath = Annotated[
    str,
    Path(
        pattern=r"^prf_[0-9A-Za-z_-]{1,124}$",
        description="A profile id; a merged profile's id redirects (308) to its survivor.",
    ),
]
# A merged profile's id answers with its survivor's URL; an unknown one with 404.
_FOUND_ELSEWHERE: dict[int | str, dict[str, Any]] = {
    308: {"description": "Merged into another profile: `Location` is the survivor's URL."},
    **error_responses(404),
}


profile_router = APIRouter(
    prefix="/profiles",
    tags=["profiles"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)


class ProfileTransaction:
    """A route's transaction: the store, and the driver connection its statements run on."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self.session = session
        self.store = ProfileStore(schema)

    async def connection(self) -> Connection:
        return await self.store.connection(self.session)


Stores = Annotated[
    StoreTransactions[ProfileTransaction], Depends(transactions_of(ProfileTransaction))
]
SettingsDep = Annotated[ProfileSettings, Depends(from_state("settings", ProfileSettings))]
RulesDep = Annotated[FeatureRules, Depends(from_state("feature_rules", FeatureRules))]
fits_from_state = from_state("fits", PredictionFits)
FitsDep = Annotated[PredictionFits, Depends(fits_from_state)]


@profile_router.get("/{profile_id}", response_model=ProfileOut, responses=_FOUND_ELSEWHERE)
async def get_profile(
    profile_id: ProfileIdPath, stores: Stores, settings: SettingsDep, rules: RulesDep
) -> ProfileOut | Response:
    """The profile; a merged profile's id redirects to its survivor."""
    async with stores() as transaction:
        store, connection = transaction.store, await transaction.connection()
        stored = await store.profile(connection, profile_id)
        if stored is None:
            return await _redirect_or_404(store, connection, profile_id, "")
        predictions = await _predictions(
            store, connection, stored.state, settings.profile_churn_horizon_days
        )
    return _profile_out(stored, rules, predictions)


@profile_router.get("", response_model=ProfileList)
async def find_profiles(
    stores: Stores,
    settings: SettingsDep,
    rules: RulesDep,
    identifier: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`<type>:<value>`, e.g. `email:a@b.c`, `user_id:u1`: its profile only.",
        ),
    ] = None,
    trait: Annotated[
        list[str],
        Query(
            max_length=_MAX_TRAIT_FILTERS,
            description="`<name>:<value>`, e.g. `plan:pro`, repeatable: profiles whose trait "
            'equals the value as text (`age:42` matches 42 and "42").',
        ),
    ] = [],  # noqa: B006 (FastAPI copies a default list; it is never shared)
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[
        str | None, Query(max_length=128, description="`next_after` of the previous page.")
    ] = None,
) -> ProfileList:
    """Profiles in pages, in id order: all of them, those with the given traits, or the one an
    identifier belongs to."""
    wanted = None if identifier is None else _identifier_filter(identifier, settings)
    traits = [_trait_filter(text) for text in trait]
    _refuse_nul(after or "", "after")
    async with stores() as transaction:
        store, connection = transaction.store, await transaction.connection()
        owner = None
        if wanted is not None:
            owner = await store.owner_of(connection, wanted)
            if owner is None:
                return ProfileList(profiles=[], next_after=None)
        found = await store.profiles_page(
            connection, after=after, limit=limit, traits=traits, profile_id=owner
        )
        latest_fit = await store.last_fit(connection) if _needs_latest_fit(found) else None
    horizon = settings.profile_churn_horizon_days
    return ProfileList(
        profiles=[
            _profile_out(stored, rules, _predictions_of(stored.state, horizon, latest_fit))
            for stored in found
        ],
        next_after=found[-1].id if len(found) == limit else None,
    )


def _identifier_filter(identifier: str, settings: ProfileSettings) -> Identifier:
    try:
        if "\x00" in identifier:
            raise ValueError("an identifier cannot contain NUL characters")
        return parse_identifier(identifier, tuple(settings.profile_external_id_kinds))
    except ValueError as error:
        raise ApiError(422, "invalid_identifier", str(error), "identifier") from None


def _trait_filter(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name:
        raise ApiError(
            422, "invalid_trait", f"{text!r} is not `<name>:<value>`, e.g. `plan:pro`.", "trait"
        )
    _refuse_nul(text, "trait")
    return name, value


def _refuse_nul(text: str, field: str) -> None:
    # PostgreSQL text cannot hold NUL: refused here, not failed in the database.
    if "\x00" in text:
        raise ApiError(422, "invalid_request", f"`{field}` cannot contain NUL characters.", field)


@profile_router.get(
    "/{profile_id}/events", response_model=ProfileEventPage, responses=_FOUND_ELSEWHERE
)
async def profile_events(
    profile_id: ProfileIdPath,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="`next_before` of a page.")
    ] = None,
    *,
    stores: Stores,
) -> ProfileEventPage | Response:
    """The profile's recent events, newest first, in pages."""
    async with stores() as transaction:
        store, connection = transaction.store, await transaction.connection()
        if await store.profile(connection, profile_id) is None:
            return await _redirect_or_404(store, connection, profile_id, "/events")
        events = await store.recent_events(connection, profile_id, limit, before)
    return ProfileEventPage(
        events=[ProfileEventOut.model_validate(e, from_attributes=True) for e in events],
        next_before=events[-1].seq if len(events) == limit else None,
    )


@profile_router.delete(
    "/{profile_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureAccepted,
    responses=error_responses(404),
)
async def erase_profile(
    profile_id: ProfileIdPath, stores: Stores, relay: RelayDep
) -> ErasureAccepted:
    """Erase the person (a merged id erases its survivor) and tell every service to."""
    async with stores() as transaction:
        store, connection = transaction.store, await transaction.connection()
        locked = await store.lock(connection, (), [profile_id])
        target = locked.current.get(profile_id)  # a merged id's survivor
        if target is None or not await store.erase(connection, target):
            raise _not_found(profile_id)
        deleted = _deleted(target)
        await write_outbox(transaction.session, store.schema, [deleted])
    relay.notify()
    request_id = deleted.data.erasure_request_id
    return ErasureAccepted(erasure_request_id=request_id, profile_id=target)


async def _redirect_or_404(
    store: ProfileStore, connection: Connection, profile_id: str, suffix: str
) -> Response:
    survivor = await store.survivor_of(connection, profile_id)
    if survivor is None:
        raise _not_found(profile_id)
    return RedirectResponse(f"/profiles/{survivor}{suffix}", status_code=308)


def _not_found(profile_id: str) -> ApiError:
    return ApiError(404, "profile_not_found", f"No profile {profile_id}.", "profile_id")


def _deleted(profile_id: str) -> Event[ProfileDeleted]:
    requested_at = datetime.now(UTC)
    request_id = "era_" + new_profile_id(requested_at.timestamp()).removeprefix("prf_")
    return Event(
        data=ProfileDeleted(
            profile_id=profile_id, erasure_request_id=request_id, requested_at=requested_at
        ),
        key=profile_id,
        source=SOURCE,
    )


def _profile_out(
    stored: StoredProfile, rules: FeatureRules, predictions: Predictions
) -> ProfileOut:
    state, now = stored.state, time.time()
    stage = state.lifecycle_stage(now, rules)
    rfm = features.rfm(state.orders, state.revenue, state.last_order_at, now, rules)
    half_life = rules.category_half_life_days
    return ProfileOut(
        id=stored.id,
        created_at=datetime.fromtimestamp(stored.created_at, UTC),
        first_seen=_time(state.first_seen),
        last_seen=_time(state.last_seen),
        identifiers=sorted(str(identifier) for identifier in stored.identifiers),
        traits=state.traits,
        tags=state.tags(),
        counters=state.counters,
        lifecycle_stage=stage,
        scores=None
        if rfm is None
        else RfmScores(
            rfm=rfm.score, recency=rfm.recency, frequency=rfm.frequency, monetary=rfm.monetary
        ),
        orders=state.orders,
        revenue=state.revenue,
        top_categories=features.top_categories(state.categories, now, half_life),
        category_scores={
            name: round(features.decayed_value(score, now, half_life), 4)
            for name, score in state.categories.items()
        },
        segments=state.segments,
        engagement=Engagement(
            by_channel=state.engagement,
            last_engaged_at=_time(state.last_engaged_at),
            attributed_conversions=round(state.attributed_conversions, 6),
            attributed_revenue={c: round(v, 6) for c, v in state.attributed_revenue.items()},
        ),
        predictions=predictions,
    )


async def _predictions(
    store: ProfileStore, connection: Connection, state: ProfileState, horizon_days: float
) -> Predictions:
    """The profile's predictive scores, or why it has none."""
    latest_fit = await store.last_fit(connection) if _unscored_buyer(state) else None
    return _predictions_of(state, horizon_days, latest_fit)


def _predictions_of(
    state: ProfileState, horizon_days: float, latest_fit: FitRecord | None
) -> Predictions:
    """The scores, or why there are none: `latest_fit` says it for an unscored buyer."""
    predicted = state.predicted
    if predicted is not None:
        scores = PredictiveScores(
            **predicted.values,
            churn_horizon_days=horizon_days,
            scored_at=datetime.fromtimestamp(predicted.scored_at, UTC),
            fit_id=predicted.fit_id,
        )
        return Predictions(scores=scores, unscored_because=None)
    if state.purchases is None:
        return Predictions(scores=None, unscored_because="no purchase yet")
    return Predictions(scores=None, unscored_because=_why_unscored(latest_fit))


def _unscored_buyer(state: ProfileState) -> bool:
    return state.predicted is None and state.purchases is not None


def _needs_latest_fit(found: Sequence[StoredProfile]) -> bool:
    return any(_unscored_buyer(stored.state) for stored in found)


def _why_unscored(latest: FitRecord | None) -> str:
    if latest is None:
        return "the purchase models have not been fitted yet"
    fitted_at = datetime.fromtimestamp(latest.fitted_at, UTC).isoformat()
    if latest.error is not None:
        return f"the purchase models could not be fitted at {fitted_at}: {latest.error}"
    return f"not scored yet by the fit at {fitted_at}: its re-score is under way"


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


predictions_router = APIRouter(
    prefix="/predictions",
    tags=["predictions"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)


@predictions_router.post("/fit", response_model=FitOut)
async def fit(fits: FitsDep) -> FitOut:
    """Fit the purchase models over every profile with purchases now, and re-score every
    such profile before answering (announcing the scores that changed). 422 when there are
    too few purchase histories to fit."""
    record = await fits.fit_now()
    if record.error is not None:
        raise ApiError(422, "not_enough_purchases", record.error)
    return _fit_out(record)


@predictions_router.get("/model", response_model=PredictionModelOut)
async def model(fits: FitsDep) -> PredictionModelOut:
    """The fit whose models score profiles now, and the latest fit (failed or not)."""
    current, latest = await fits.latest()
    return PredictionModelOut(
        current=None if current is None else _fit_out(current),
        latest=None if latest is None else _fit_out(latest),
        churn_horizon_days=fits.churn_horizon_days,
    )


@predictions_router.post("/backtest", response_model=BacktestOut)
async def backtest(request: BacktestRequest, fits: FitsDep) -> BacktestOut:
    """Fit on the purchases before `cutoff`, predict the `horizon_days` after it, and
    compare with the purchases that followed. 422 when the horizon has not passed yet or
    there are too few purchase histories before the cutoff."""
    cutoff = request.cutoff if request.cutoff.tzinfo else request.cutoff.replace(tzinfo=UTC)
    if cutoff > datetime.now(UTC) - timedelta(days=request.horizon_days):
        raise ApiError(
            422,
            "horizon_not_over",
            "cutoff + horizon_days is in the future: choose an earlier cutoff, or a shorter "
            "horizon, so that what happened after the cutoff is known.",
            "cutoff",
        )
    try:
        report = await fits.backtest(
            cutoff, request.horizon_days, with_outcomes=request.include_profiles
        )
    except ValueError as error:
        raise ApiError(
            422, "not_enough_purchases", f"before the cutoff: {error}", "cutoff"
        ) from None
    return _backtest_out(report, cutoff)


def _fit_out(record: FitRecord) -> FitOut:
    models = None if record.model is None else record.model.models
    return FitOut(
        fit_id=record.id,
        fitted_at=datetime.fromtimestamp(record.fitted_at, UTC),
        profiles=record.profiles,
        repeat_buyers=record.repeat_buyers,
        error=record.error,
        purchase_model=None if models is None else _purchase_model(models.purchases),
        value_model=None if models is None else _value_model(models.value),
        rescored=record.rescored,
        announced=record.announced,
        rescored_at=_time(record.rescored_at),
    )


def _purchase_model(params: BgNbdParams) -> PurchaseModelOut:
    return PurchaseModelOut(r=params.r, alpha=params.alpha, a=params.a, b=params.b)


def _value_model(params: GammaGammaParams) -> ValueModelOut:
    return ValueModelOut(
        p=_finite(params.p),
        q=_finite(params.q),
        v=_finite(params.v),
        fallback_mean=params.fallback_mean,
        population_mean=params.population_mean,
    )


def _backtest_out(report: BacktestReport, cutoff: datetime) -> BacktestOut:
    return BacktestOut(
        cutoff=cutoff,
        horizon_days=report.horizon_days,
        profiles=report.profiles,
        purchase_model=_purchase_model(report.params),
        correlation=_finite(report.correlation),
        predicted_total=report.predicted_total,
        actual_total=report.actual_total,
        churn_auc=_finite(report.churn_auc),
        calibration=[
            CalibrationRowOut(
                past_repeats=row.past_repeats,
                profiles=row.profiles,
                mean_predicted=_finite(row.mean_predicted),
                mean_actual=_finite(row.mean_actual),
            )
            for row in report.calibration
        ],
        outcomes=None
        if report.outcomes is None
        else [
            ProfileOutcomeOut(
                profile_id=outcome.profile_id,
                repeat_purchases=outcome.history.frequency,
                recency_days=outcome.history.recency,
                age_days=outcome.history.age,
                predicted_purchases=outcome.predicted_purchases,
                actual_purchases=outcome.actual_purchases,
                churn_risk=outcome.churn_risk,
            )
            for outcome in report.outcomes
        ],
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN: a figure the data does not determine is null."""
    return value if math.isfinite(value) else None
