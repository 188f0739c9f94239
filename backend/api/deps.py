"""Who may call a route, as the Annotated parameter types every router declares its caller with.

Declared once here so a scope is spelled in one place: a router says `key: WriteKey`, never which
dependency and scope that means. The dependencies themselves live in `backend/api/auth.py`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend.api.auth import Principal, require_key, require_principal, require_reader
from backend.services.keys.service import VerifiedKey

#: An API key holding `tts:read` (voice and job reads, `/v1/models`).
ReadKey = Annotated[VerifiedKey, Depends(require_key("tts:read"))]
#: An API key holding `tts:write` (synthesis, cloning, batches, `/v1/audio/speech`).
WriteKey = Annotated[VerifiedKey, Depends(require_key("tts:write"))]
#: The owner behind a `tts:read` key or a signed-in browser: what an `<audio>` element or a download link loads.
Reader = Annotated[str, Depends(require_reader("tts:read"))]
#: The owner behind a `keys:read` key or a signed-in browser: account pages a link opens (QA reports).
AccountReader = Annotated[str, Depends(require_reader("keys:read"))]
#: A key holding `keys:read`, or a signed-in user's token: account administration, read side (keys, logs,
#: audit trail, webhooks).
ReadKeys = Annotated[Principal, Depends(require_principal("keys:read"))]
#: A key holding `keys:write`, or a signed-in user's token: account administration, write side.
WriteKeys = Annotated[Principal, Depends(require_principal("keys:write"))]
#: Any valid key or signed-in user's token, whatever its scopes (whoami).
Caller = Annotated[Principal, Depends(require_principal())]
