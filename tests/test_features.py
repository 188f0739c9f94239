"""Feature cards are live only when their routes are served and the workers they need are up."""

from __future__ import annotations

from backend.services.status.features import FEATURES, RouteTable, feature_statuses
from backend.queue.heartbeat import WorkerInfo

ALL_ROUTES = {route for feature in FEATURES for route in feature.routes}


def statuses(served: set[str], workers: list[WorkerInfo]) -> dict[str, str]:
    return {card["key"]: card["status"] for card in feature_statuses(served, workers)}


def test_nothing_is_live_without_its_routes() -> None:
    assert set(statuses(set(), []).values()) == {"soon"}


PIPER = {"name": "piper", "device": "cpu", "voices": [{"id": "en_US-joe-medium", "name": "Joe"}]}


def test_route_features_go_live_when_served() -> None:
    result = statuses(ALL_ROUTES, [WorkerInfo("cpu@box", ["cpu"], engines=[PIPER])])
    assert result["studio"] == result["keys"] == result["openai"] == "live"
    assert result["cloning"] == "soon", "cloning also needs a worker with a cloning engine"
    assert result["gpu_queue"] == "soon"


def test_speaking_features_are_not_live_without_a_warm_engine() -> None:
    """Routes alone do not make the Studio live: with no worker its card says so; a warming one says that."""
    cards = {card["key"]: card for card in feature_statuses(ALL_ROUTES, [])}
    assert cards["studio"]["status"] == cards["openai"]["status"] == "down"
    assert "no worker is running" in cards["studio"]["detail"]
    assert cards["keys"] == {**cards["keys"], "status": "live", "detail": ""}
    warming = WorkerInfo("gpu@box", ["gpu"], engines=[{**PIPER, "name": "qwen3", "warming": True}])
    cards = {card["key"]: card for card in feature_statuses(ALL_ROUTES, [warming])}
    assert cards["studio"]["status"] == "warming" and "qwen3 is loading the model" in cards["studio"]["detail"]
    no_weights = WorkerInfo("gpu@box", ["gpu"], unavailable={"fish": "no weights: run `models pull fish`"})
    cards = {card["key"]: card for card in feature_statuses(ALL_ROUTES, [no_weights])}
    assert cards["openai"]["status"] == "down" and "fish: no weights" in cards["openai"]["detail"]


def test_worker_features_follow_the_live_workers() -> None:
    fish = WorkerInfo("gpu@box", ["gpu"], engines=[{"name": "fish-speech", "supports_cloning": True}])
    result = statuses(ALL_ROUTES, [fish])
    assert result["cloning"] == "live" and result["gpu_queue"] == "live"


def test_route_table_normalises_reflex_page_keys() -> None:
    RouteTable.register(["index", "studio/", "/v1/models"])
    assert {"/", "/studio", "/v1/models"} <= RouteTable.paths
