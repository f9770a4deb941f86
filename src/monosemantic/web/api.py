"""The JSON API under /api: everything the pages show (OpenAPI schema at /openapi.json).

Feature cards are read on the event loop (milliseconds each); slower database endpoints
(search, map) are plain `def`s that FastAPI runs in its thread pool; `RunData` serialises the
SQLite access. Model endpoints await the `JobQueue`, which refuses work beyond its bound
with 503 instead of letting requests pile up.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from monosemantic.errors import UserError
from monosemantic.web.backend import ModelUnavailable
from monosemantic.web.jobs import QueueFull
from monosemantic.web.rundata import UnknownFeature
from monosemantic.web.schemas import FilterRequest, InspectRequest, SteerRequest

router = APIRouter(prefix="/api")


def _dumps(data: Any) -> bytes:
    try:
        import orjson
    except ImportError:
        return json.dumps(data, separators=(",", ":")).encode()
    return orjson.dumps(data)


def fast_json(data: Any) -> Response:
    """JSON of plain dicts/lists/numbers, skipping FastAPI's `jsonable_encoder` walk (it cost
    more than the database reads for a feature card or the 16k-point map); orjson when
    installed (the web extra), else the standard library."""
    return Response(_dumps(data), media_type="application/json")


def _state(request: Request) -> Any:
    return request.app.state


def _feature_id(text: str, n_features: int) -> int:
    """A feature id from a path segment, or a 4xx with the reason."""
    try:
        feature = int(text)
    except ValueError:
        raise HTTPException(422, f"feature id must be a whole number, got {text[:40]!r}") from None
    if not 0 <= feature < n_features:
        raise HTTPException(404, f"feature {feature} does not exist: this run has features 0 "
                                 f"to {n_features - 1}")
    return feature


@router.get("/overview", summary="Run overview: model, SAE, eval table, training curves, "
                                 "density histogram")
def overview(request: Request) -> Response:
    return fast_json(_state(request).data.overview())


@router.get("/features/{feature_id}", summary="One feature's card: statistics, histogram, "
                                               "intervals, examples, logit effects, neighbours, "
                                               "explanations, scores")
async def feature(feature_id: str, request: Request) -> Response:
    # Served on the event loop itself: a card takes a few ms of CPU, and under many clients
    # FIFO order on one thread gives shorter tails than thread-pool hops contending for the GIL.
    data = _state(request).data
    return fast_json(data.feature(_feature_id(feature_id, data.n_features)))


@router.get("/features", summary="Feature statistics, sorted and paged, with explanations")
def features(request: Request, start: int = Query(0, ge=0),
             limit: int = Query(100, ge=1, le=1000),
             sort: Literal["id", "density", "max_act", "mean_act"] = "id",
             order: Literal["asc", "desc"] = "asc",
             alive: bool = Query(False, description="only features that fired")) -> Response:
    data = _state(request).data
    rows = data.sorted_stats(sort, order == "desc", alive)
    page = [dict(r) for r in rows[start:start + limit]]
    labels = data.labels_of({r["id"] for r in page})
    for r in page:
        r["label"] = labels.get(r["id"])
    return fast_json({"n_features": data.n_features, "total": len(rows), "start": start,
                      "sort": sort, "order": order, "features": page})


@router.get("/search", summary="Search features by id, by words in explanations, or by the "
                                "token their top examples peak on")
def search(request: Request, q: str = Query(..., min_length=1, max_length=200),
           kind: Literal["auto", "id", "explanation", "token"] = "auto",
           limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    data = _state(request).data
    q = q.strip()
    hits: list[dict[str, Any]] = []
    if kind in ("auto", "id"):
        ids = [p.strip().lstrip("#") for p in q.replace(",", " ").split()]
        if ids and all(p.isdigit() for p in ids):
            for p in ids[:limit]:
                if int(p) < data.n_features:
                    hits.append(data.with_stats({"feature": int(p), "match": "id"}))
            return {"query": q, "kind": "id", "hits": hits}
        if kind == "id":
            raise HTTPException(422, f"not a feature id: {q[:40]!r}")
    if kind in ("auto", "explanation"):
        hits += data.search_explanations(q.split(), limit)
    if kind in ("auto", "token"):
        seen = {h["feature"] for h in hits}
        hits += [h for h in data.search_token(q, limit) if h["feature"] not in seen]
    return {"query": q, "kind": kind, "hits": hits[:limit]}


@router.get("/map", summary="2-D map of all features: columns id, x, y, cluster, density, label")
def feature_map(request: Request) -> Response:
    return fast_json(_state(request).data.map_points())


@router.get("/status", summary="Model status: loaded or not, jobs pending, limits")
def status(request: Request) -> dict[str, Any]:
    st = _state(request)
    return {"model_loaded": st.backend.loaded, "jobs_pending": st.jobs.pending,
            "max_pending": st.jobs.max_pending, "limits": st.limits}


def _check_prompt(text: str, limits: dict[str, Any]) -> None:
    if len(text) > limits["max_prompt_chars"]:
        raise HTTPException(413, f"the text has {len(text):,} characters; the limit is "
                                 f"{limits['max_prompt_chars']:,}")


async def _run_job(request: Request, fn: Any) -> Any:
    try:
        return await _state(request).jobs.run(fn)
    except (QueueFull, ModelUnavailable) as err:
        raise HTTPException(503, str(err)) from None
    except UserError as err:
        raise HTTPException(400, str(err)) from None


@router.post("/inspect", summary="Per-token features of a text (runs the model)")
async def inspect(body: InspectRequest, request: Request) -> dict[str, Any]:
    st = _state(request)
    _check_prompt(body.text, st.limits)
    if body.feature is not None:
        try:
            st.data.check_feature(body.feature)
        except UnknownFeature as err:
            raise HTTPException(404, str(err)) from None
    result = await _run_job(request, lambda: st.backend.inspect(body.text, body.top,
                                                                body.feature))
    if not result["tokens"]:
        raise HTTPException(422, "the text has no tokens besides special ones: give some text")
    return result


@router.post("/filter", summary="Features active on all positive prompts and no negative one "
                                "(runs the model)")
async def filter_prompts(body: FilterRequest, request: Request) -> dict[str, Any]:
    st = _state(request)
    prompts = body.positive + body.negative
    if len(prompts) > st.limits["max_filter_prompts"]:
        raise HTTPException(422, f"{len(prompts)} prompts; the limit is "
                                 f"{st.limits['max_filter_prompts']}")
    for text in prompts:
        if not text.strip():
            raise HTTPException(422, "a prompt is empty: give some text in each")
        _check_prompt(text, st.limits)
    hits = await _run_job(request, lambda: st.backend.filter(
        body.positive, body.negative, threshold=body.threshold, relative=body.relative,
        top=body.top))
    return {"hits": [st.data.with_stats(h) for h in hits]}


@router.post("/steer", summary="Unsteered vs steered continuations and side effects (runs "
                               "the model)")
async def steer(body: SteerRequest, request: Request) -> dict[str, Any]:
    st = _state(request)
    limits = st.limits
    _check_prompt(body.prompt, limits)
    if len(body.edits) > limits["max_edits"]:
        raise HTTPException(422, f"{len(body.edits)} features at once; the limit is "
                                 f"{limits['max_edits']}")
    if body.max_new_tokens > limits["max_new_tokens"]:
        raise HTTPException(422, f"max_new_tokens {body.max_new_tokens} is over the limit of "
                                 f"{limits['max_new_tokens']}")
    seen: set[int] = set()
    for e in body.edits:
        try:
            st.data.check_feature(e.feature)
        except UnknownFeature as err:
            raise HTTPException(404, str(err)) from None
        if e.feature in seen:
            raise HTTPException(422, f"feature {e.feature} is listed twice")
        seen.add(e.feature)
        if e.unit == "max" and abs(e.value) > limits["max_multiplier"]:
            raise HTTPException(422, f"multiplier {e.value:g}x for feature {e.feature} is out "
                                     f"of range [-{limits['max_multiplier']:g}, "
                                     f"{limits['max_multiplier']:g}]")
        if e.unit == "max" and not st.data.max_act_F[e.feature] > 0:
            raise HTTPException(422, f"feature {e.feature} never fired in the analysed tokens, "
                                     "so it has no max activation: use unit 'raw'")
    edits = [(e.feature, e.value, e.unit) for e in body.edits]
    return await _run_job(request, lambda: st.backend.steer(
        body.prompt, edits, mode=body.mode, max_new_tokens=body.max_new_tokens,
        temperature=body.temperature, top_p=body.top_p, seed=body.seed,
        include_special=body.include_special, max_multiplier=limits["max_multiplier"]))
