"""Feature cards are live only when their routes are served and the workers they need are up."""

from __future__ import annotations

from backend.services.features import FEATURES, RouteTable, feature_statuses
from backend.queue.heartbeat import WorkerInfo

ALL_ROUTES = {route for feature in FEATURES for route in feature.routes}


def statuses(served: set[str], workers: list[WorkerInfo]) -> dict[str, str]:
    return {card["key"]: card["status"] for card in feature_statuses(served, workers)}


def test_nothing_is_live_without_its_routes() -> None:
    assert set(statuses(set(), []).values()) == {"soon"}


def test_route_features_go_live_when_served() -> None:
    result = statuses(ALL_ROUTES, [])
    assert result["studio"] == result["keys"] == result["openai"] == "live"
    assert result["cloning"] == "soon", "cloning also needs a worker with a cloning engine"
    assert result["gpu_queue"] == "soon"


def test_worker_features_follow_the_live_workers() -> None:
    fish = WorkerInfo("gpu@box", ["gpu"], engines=[{"name": "fish-speech", "supports_cloning": True}])
    result = statuses(ALL_ROUTES, [fish])
    assert result["cloning"] == "live" and result["gpu_queue"] == "live"


def test_route_table_normalises_reflex_page_keys() -> None:
    RouteTable.register(["index", "studio/", "/v1/models"])
    assert {"/", "/studio", "/v1/models"} <= RouteTable.paths
