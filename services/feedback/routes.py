"""Thin HTTP routes: authenticate, validate, call the service layer, map errors to the envelope."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from llmops_common.errors import APIError
from services.feedback.auth import Principal, get_principal
from services.feedback.datasets import DatasetExporter, ExportRefused
from services.feedback.drift_monitor import DriftMonitor
from services.feedback.schemas import DatasetOut, ExportIn, FeedbackIn, FeedbackOut, LabelIn, ListOut
from services.feedback.service import FeedbackService
from services.feedback.store.queries import Ambiguous, Conflict, NotFound, RequestFilter

router = APIRouter(prefix="/v1", tags=["feedback"])
Caller = Annotated[Principal, Depends(get_principal)]


def _service(request: Request) -> FeedbackService:
    return request.app.state.service


def _own_team(who: Principal, team: str | None) -> str | None:
    """The team a request addresses: a key's own (naming another is a 403), or what the admin named (or None)."""
    if who.is_admin:
        return team
    if team is not None and team != who.team:
        raise APIError(403, "team_forbidden", "a team key can only act on its own team", param="team")
    return who.team


def _ambiguous(request_id: str) -> APIError:
    return APIError(
        409, "ambiguous_request_id", f"several teams used request id '{request_id}'; pass the team", param="team"
    )


def filters(
    since: Annotated[float | None, Query(description="Unix seconds, inclusive.")] = None,
    until: Annotated[float | None, Query(description="Unix seconds, exclusive.")] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    endpoint: Literal["chat", "completions", "rag"] | None = None,
    rating_min: Annotated[int | None, Query(ge=1, le=5)] = None,
    rating_max: Annotated[int | None, Query(ge=1, le=5)] = None,
    thumbs: Literal["up", "down"] | None = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    has_feedback: bool | None = None,
    team: Annotated[str | None, Query(description="Admin only; a team key always sees its own team.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # SQL BIGINT: a larger offset answered 500
) -> RequestFilter:
    """Query parameters shared by the request and feedback listings."""
    return RequestFilter(
        team=team,
        since=since,
        until=until,
        model=model,
        endpoint=endpoint,
        rating_min=rating_min,
        rating_max=rating_max,
        thumbs=thumbs,
        category=category,
        has_feedback=has_feedback,
        limit=limit,
        offset=offset,
    )


Filters = Annotated[RequestFilter, Depends(filters)]


@router.post("/feedback", status_code=201, response_model=FeedbackOut)
async def post_feedback(body: FeedbackIn, who: Caller, request: Request) -> dict[str, Any]:
    """Record feedback on a request your team made (thumbs or 1-5 rating, categories, comment, correction)."""
    team = _own_team(who, body.team)
    try:
        return await _service(request).submit(who, body, team)
    except NotFound as exc:
        raise APIError(
            404, "request_not_found", f"no request '{body.request_id}' for your team", param="request_id"
        ) from exc
    except Ambiguous as exc:
        raise _ambiguous(body.request_id) from exc


@router.get("/feedback", response_model=ListOut)
async def list_feedback(who: Caller, f: Filters, request: Request) -> dict[str, Any]:
    """Feedback of your team, newest first, filtered by time (feedback time), model, rating, thumbs, category."""
    data = await _service(request).list_feedback(who, f)
    return {"object": "list", "data": data, "limit": f.limit, "offset": f.offset}


@router.get("/requests", response_model=ListOut)
async def list_requests(who: Caller, f: Filters, request: Request) -> dict[str, Any]:
    """Stored requests of your team, newest first, filtered by time, model, endpoint and their feedback."""
    data = await _service(request).list_requests(who, f)
    return {"object": "list", "data": data, "limit": f.limit, "offset": f.offset}


@router.get("/requests/{request_id}")
async def get_request(
    request_id: str,
    who: Caller,
    request: Request,
    team: Annotated[str | None, Query(description="Admin only: the team, when several teams used this id.")] = None,
) -> dict[str, Any]:
    """One stored request of your team with its feedback (another team's request with this id is not yours: 404)."""
    try:
        return await _service(request).get_request(request_id, _own_team(who, team))
    except NotFound as exc:
        raise APIError(404, "request_not_found", f"no request '{request_id}' for your team") from exc
    except Ambiguous as exc:
        raise _ambiguous(request_id) from exc


@router.get("/drift")
async def get_drift(
    who: Caller,
    request: Request,
    current_s: Annotated[float | None, Query(gt=0, description="Current window length (ends now).")] = None,
    reference_s: Annotated[
        float | None, Query(gt=0, description="Reference window length (ends where current starts).")
    ] = None,
    reference_start: Annotated[float | None, Query(description="Fixed reference window start (unix seconds).")] = None,
    reference_end: Annotated[float | None, Query(description="Fixed reference window end (unix seconds).")] = None,
    team: Annotated[str | None, Query(description="Admin only: one team; default all teams.")] = None,
) -> dict[str, Any]:
    """Drift scores of the current window against the reference window, per signal, with thresholds and alerts."""
    if (reference_start is None) != (reference_end is None):
        raise APIError(400, "invalid_request", "give both reference_start and reference_end, or neither")
    if reference_start is not None and reference_end is not None and reference_start >= reference_end:
        raise APIError(400, "invalid_request", "reference_start must be before reference_end")
    monitor: DriftMonitor = request.app.state.drift
    return await monitor.compute(
        who.team if not who.is_admin else team,
        current_s=current_s,
        reference_s=reference_s,
        reference_start=reference_start,
        reference_end=reference_end,
    )


@router.get("/labeling/next")
async def next_item(who: Caller, request: Request) -> dict[str, Any]:
    """Reserve the most urgent open labeling item of your team; `item` is null when the queue is empty."""
    return {"item": await _service(request).next_item(who)}


def _item_error(exc: Exception, item_id: int) -> APIError:
    if isinstance(exc, NotFound):
        return APIError(404, "item_not_found", f"no labeling item {item_id} for your team")
    return APIError(409, "item_closed", str(exc))


@router.post("/labeling/items/{item_id}/label")
async def label_item(item_id: int, body: LabelIn, who: Caller, request: Request) -> dict[str, Any]:
    """Label an item ('good' keeps the answer for training; a corrected answer replaces it)."""
    try:
        return await _service(request).label(who, item_id, body)
    except (NotFound, Conflict) as exc:
        raise _item_error(exc, item_id) from exc


@router.post("/labeling/items/{item_id}/skip")
async def skip_item(item_id: int, who: Caller, request: Request) -> dict[str, Any]:
    """Take an item out of the queue without labeling it."""
    try:
        return await _service(request).skip(who, item_id)
    except (NotFound, Conflict) as exc:
        raise _item_error(exc, item_id) from exc


@router.get("/labeling/stats")
async def labeling_stats(who: Caller, request: Request) -> dict[str, Any]:
    """Labeling items per status for your team."""
    return {"counts": await _service(request).queue_counts(who)}


@router.post("/datasets/export", status_code=201, response_model=DatasetOut)
async def export_dataset(body: ExportIn, who: Caller, request: Request) -> dict[str, Any]:
    """Export labeled and positively rated examples as a deduplicated, PII-redacted chat JSONL dataset version."""
    _own_team(who, body.team)
    exporter: DatasetExporter = request.app.state.exporter
    try:
        return await exporter.export(body, who)
    except ExportRefused as exc:
        raise APIError(400, "invalid_request", str(exc), param="name") from exc
