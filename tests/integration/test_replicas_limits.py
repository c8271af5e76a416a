"""Limits that hold across replicas: two `worpen serve` replicas on one PostgreSQL database behind no
proxy, a client alternating between them as a round-robin load balancer would send it. Failed
authentications are throttled after the limit in all (one more at most, while the other replica learns of
it), not the limit on each, and every replica's dashboard counts them all; a key's terminal session open on
one replica counts on the other."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.docker_support import ENGINE_URL, Containers, wait_for
from tests.integration.replica_support import replicas
from tests.integration.support import WorpenServer, bearer
from tests.integration.test_docker_events_and_terminal import refused_terminal, terminal

pytestmark = pytest.mark.integration

LIMIT = 5
SETTINGS = {
    "WORPEN_AUTH_FAILURES_PER_MINUTE": str(LIMIT),
    "WORPEN_TERMINAL_SESSIONS_PER_KEY": "1",
    "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorpenServer]]:
    with replicas(tmp_path_factory.mktemp("replicas-limits"), 2, SETTINGS) as servers:
        yield servers


def test_failed_authentications_alternating_between_replicas_are_throttled_after_the_limit_in_all(
    pair: list[WorpenServer],
) -> None:
    a, b = pair
    admin = a.initial_admin_key()
    with (
        a.client("wpn_notAKeyThesReplicasKnowAbout00000000000") as on_a,
        b.client("wpn_notAKeyThesReplicasKnowAbout00000000000") as on_b,
    ):
        statuses = [
            (on_a, on_b)[attempt % 2].get("/api/v1/agents").status_code for attempt in range(2 * LIMIT)
        ]
        refused_a, refused_b = on_a.get("/api/v1/agents"), on_b.get("/api/v1/agents")

    unauthorized = statuses.index(429) if 429 in statuses else len(statuses)
    assert statuses[:unauthorized] == [401] * unauthorized
    assert LIMIT <= unauthorized <= LIMIT + 1, statuses  # not LIMIT on each replica
    assert set(statuses[unauthorized:]) == {429}, statuses
    for refused in (refused_a, refused_b):
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 61
    # A valid key from the throttled client still passes on both, and both dashboards count the failed
    # authentications of both replicas.
    for server in pair:
        with server.client() as anyone:
            assert anyone.get("/api/v1/agents", headers=bearer(admin)).status_code == 200
            stats = anyone.get("/api/v1/dashboard/stats", headers=bearer(admin)).json()
            assert stats["detail"]["failedAuthentications"]["count"] == unauthorized


def test_a_keys_terminal_open_on_one_replica_counts_on_the_other(
    pair: list[WorpenServer], containers: Containers
) -> None:
    a, b = pair
    container = containers.run("sleep 600")
    path = f"/api/v1/terminal/container/{container.id}"
    with a.client(a.initial_admin_key()) as admin:
        ops = admin.post("/api/v1/apikeys", json={"name": "ops", "role": "operator"}).json()["key"]
        with terminal(a, path, ops) as first:
            assert json.loads(first.recv(timeout=30))["type"] == "connected"
            with terminal(b, path, ops) as again:
                beyond_key = refused_terminal(again)
        wait_for(lambda: admin.get("/api/v1/terminal/sessions").json() == [], "the session to close")
        with terminal(b, path, ops) as reopened:  # given back when it closed
            assert json.loads(reopened.recv(timeout=30))["type"] == "connected"

    assert again.close_code == 4429
    assert beyond_key == "terminal sessions of this key: 1 open, the most it may have; close one first"
