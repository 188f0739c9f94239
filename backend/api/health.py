"""Health endpoints: `/health/live` for process supervisors, `/health` for people and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.services.status.health import health_report

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="The process is up")
def live() -> dict[str, str]:
    """Answers as long as the web process can serve a request; checks no dependency."""
    return {"status": "ok"}


@router.get("/health", summary="Every dependency, with latency",
            responses={503: {"description": "A required dependency is down"}})
def health() -> JSONResponse:
    """Runs every check; 200 when all required parts are ok, 503 otherwise."""
    report = health_report()
    return JSONResponse(report.as_dict(), status_code=200 if report.status == "ok" else 503,
                        headers={"Cache-Control": "no-store"})
