"""`/api/qa`: the HTML report of a recorded release QA run, for the dashboard's "open report" link.

A signed-in browser (session cookie) or a key with `keys:read` may read it. The report is pytest-html's
own page, so it is served sandboxed (an opaque origin, no network): whatever text a tested deployment
put into it cannot act as this site.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from backend.api.deps import AccountReader
from backend.api.errors import ApiErrorEnvelope, error_responses
from backend.services.status import qa_runs

router = APIRouter(prefix="/api/qa", tags=["qa"], responses=error_responses(ApiErrorEnvelope))
#: The report's inline scripts and styles run, in a sandbox with no origin, no requests and only data: images.
REPORT_POLICY = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
                 "style-src 'unsafe-inline'; img-src data:")
#: A sandboxed page has no origin, so `sessionStorage` throws and pytest-html's table would stay empty: give it
#: an in-memory one (the report keeps only its sort order and collapsed rows there).
SESSION_STORAGE_SHIM = (
    "<script>(function(){try{window.sessionStorage;}catch(e){var m={};Object.defineProperty(window,"
    "'sessionStorage',{value:{getItem:function(k){return Object.prototype.hasOwnProperty.call(m,k)?m[k]:null;},"
    "setItem:function(k,v){m[k]=String(v);},removeItem:function(k){delete m[k];}}});}})();</script>")


def sandboxed(report: str) -> str:
    """The report with the storage shim as its first script."""
    head = report.find("<head>")
    at = head + len("<head>") if head >= 0 else 0
    return report[:at] + SESSION_STORAGE_SHIM + report[at:]


@router.get("/runs/{run_id}/report", summary="The HTML report of a QA run", response_class=Response,
            responses={200: {"description": "pytest-html's self-contained report",
                             "content": {"text/html": {"schema": {"type": "string"}}}}})
def run_report(run_id: str, _reader: AccountReader) -> HTMLResponse:
    """The report as the suite wrote it (keys masked), from the data directory, sandboxed."""
    path = qa_runs.report_file(run_id)
    return HTMLResponse(sandboxed(path.read_text(encoding="utf-8", errors="replace")),
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": REPORT_POLICY})
