"""`/api/webhooks`: your endpoints (add, list, test, disable, enable, rotate the secret, delete) and their
delivery log with resend. Management is account administration: `keys:write` to change, `keys:read` to read
(or a signed-in session). The rules live in `backend/services/webhooks/service.py`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from backend.api.deps import ReadKeys, WriteKeys
from backend.api.errors import ApiErrorEnvelope, error_responses
from backend.api.view_models import model_of
from backend.services.webhooks import service as webhooks
from backend.services.webhooks.destinations import MAX_URL_CHARS

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], responses=error_responses(ApiErrorEnvelope))


class EndpointIn(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="A public http(s) URL")
    events: list[str] = Field(min_length=1, description=f"Any of {', '.join(webhooks.EVENTS)}")


EndpointOut = model_of("EndpointOut", webhooks.EndpointView)
EndpointWithSecretOut = model_of("EndpointWithSecretOut", webhooks.EndpointView, secret=(str, Field(
    description="The signing secret (Standard Webhooks `whsec_…`), shown this once")))
DeliveryOut = model_of("DeliveryOut", webhooks.DeliveryView)


class SecretOut(BaseModel):
    secret: str


@router.post("", status_code=201, response_model=EndpointWithSecretOut, summary="Add an endpoint")
def create_endpoint(body: EndpointIn, principal: WriteKeys) -> EndpointWithSecretOut:
    endpoint, secret = webhooks.create_endpoint(principal.owner, body.url, body.events)
    return EndpointWithSecretOut(**vars(endpoint), secret=secret)


@router.get("", summary="Your endpoints")
def list_endpoints(principal: ReadKeys) -> dict[str, list[EndpointOut]]:  # type: ignore[valid-type]
    return {"data": [EndpointOut(**vars(e)) for e in webhooks.list_endpoints(principal.owner)]}


@router.post("/{endpoint_id}/test", status_code=202, response_model=DeliveryOut, summary="Send a test event")
def send_test(endpoint_id: str, principal: WriteKeys) -> DeliveryOut:
    return DeliveryOut(**vars(webhooks.send_test(principal.owner, endpoint_id)))


@router.post("/{endpoint_id}/disable", response_model=EndpointOut, summary="Stop sending to an endpoint")
def disable(endpoint_id: str, principal: WriteKeys) -> EndpointOut:
    return EndpointOut(**vars(webhooks.set_enabled(principal.owner, endpoint_id, False)))


@router.post("/{endpoint_id}/enable", response_model=EndpointOut, summary="Send to an endpoint again")
def enable(endpoint_id: str, principal: WriteKeys) -> EndpointOut:
    return EndpointOut(**vars(webhooks.set_enabled(principal.owner, endpoint_id, True)))


@router.post("/{endpoint_id}/rotate-secret", response_model=SecretOut, summary="A new signing secret")
def rotate_secret(endpoint_id: str, principal: WriteKeys) -> SecretOut:
    return SecretOut(secret=webhooks.rotate_secret(principal.owner, endpoint_id))


@router.delete("/{endpoint_id}", status_code=204, summary="Delete an endpoint and its delivery log")
def delete_endpoint(endpoint_id: str, principal: WriteKeys) -> None:
    webhooks.delete_endpoint(principal.owner, endpoint_id)


@router.get("/deliveries", summary="The delivery log, newest first")
def list_deliveries(principal: ReadKeys, endpoint_id: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, list[DeliveryOut]]:
    return {"data": [DeliveryOut(**vars(d)) for d in webhooks.list_deliveries(principal.owner, endpoint_id, limit)]}


@router.post("/deliveries/{delivery_id}/resend", status_code=202, response_model=DeliveryOut,
             summary="Try a failed delivery again now")
def resend(delivery_id: str, principal: WriteKeys) -> DeliveryOut:
    return DeliveryOut(**vars(webhooks.resend(principal.owner, delivery_id)))
