"""Automation's REST API on a real `worpen serve`: rules written by admins (checked, audited), scripts
dry-run in the real sandbox, MANUAL rules run by hand, backtests over the real event history, runs on
record, and who may do what.

Rules fired by events are created inactive or aimed at names no other test uses, so that they never act
on another test's containers on the shared server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.docker_support import Containers, wait_for
from tests.integration.support import Keys, WorpenServer

pytestmark = pytest.mark.integration

RULES = "/api/v1/automation/rules"
RUNS = "/api/v1/automation/runs"
DRY_RUN = "/api/v1/automation/dry-run"
BACKTEST = "/api/v1/automation/backtest"
EXAMPLE = """if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  docker.restart(container_id);
  notify.slack("#ops-alerts", "Restarted " + service);
}"""
STORM_DEFAULTS = {
    "cooldownSeconds": 30,
    "maxAttempts": 5,
    "attemptWindowSeconds": 3600,
    "backoffSeconds": 10,
    "maxBackoffSeconds": 300,
    "resetAfterSeconds": 600,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rule_body(**fields: Any) -> dict[str, Any]:
    """A rule no other test's container triggers: inactive, aimed at a name nobody uses."""
    return {
        "name": unique("api test"),
        "trigger": "CONTAINER_DIED",
        "targetService": unique("nobody"),
        "script": EXAMPLE,
        "active": False,
        **fields,
    }


def without_trigger() -> dict[str, Any]:
    return {name: value for name, value in rule_body().items() if name != "trigger"}


def created(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post(RULES, json=rule_body(**fields))
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def refused(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        assert body["field"] == field, body
    return body


def dry_run(client: httpx.Client, script: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"script": script}
    if context is not None:
        body["mockContext"] = context
    response = client.post(DRY_RUN, json=body)
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


@pytest.fixture(scope="module")
def viewer(fleet_server: WorpenServer, keys: Keys) -> Iterator[httpx.Client]:
    with fleet_server.client(keys.viewer.secret) as client:
        yield client


@pytest.fixture(scope="module")
def operator(fleet_server: WorpenServer, keys: Keys) -> Iterator[httpx.Client]:
    with fleet_server.client(keys.operator.secret) as client:
        yield client


def test_a_rule_is_created_read_changed_in_part_and_deleted(admin: httpx.Client) -> None:
    body = rule_body(cooldownSeconds=60)
    response = admin.post(RULES, json=body)
    assert response.status_code == 201, response.text
    rule = response.json()
    rule_id = rule["id"]

    assert rule == {
        "id": rule_id,
        "name": body["name"],
        "triggerEvent": "CONTAINER_DIED",
        "targetService": body["targetService"],
        "script": EXAMPLE,
        "active": False,
        "lastRun": None,
        "schedule": None,
        **STORM_DEFAULTS,
        "cooldownSeconds": 60,
        "createdAt": rule["createdAt"],
        "updatedAt": rule["createdAt"],
        "updatedBy": rule["updatedBy"],
    }
    assert datetime.fromisoformat(rule["createdAt"]).tzinfo is not None
    assert admin.get(f"{RULES}/{rule_id}").json() == rule
    names = [each["name"] for each in admin.get(RULES).json()]
    assert rule["name"] in names
    assert names == sorted(names)

    switched_on = admin.put(f"{RULES}/{rule_id}", json={"active": True, "maxAttempts": 3})
    assert switched_on.status_code == 200, switched_on.text
    changed = switched_on.json()
    assert (changed["active"], changed["maxAttempts"]) == (True, 3)
    partial = admin.put(f"{RULES}/{rule_id}", json={"active": False}).json()
    kept = {name: value for name, value in partial.items() if name not in {"active", "updatedAt"}}
    assert kept == {name: value for name, value in changed.items() if name not in {"active", "updatedAt"}}
    assert partial["active"] is False
    assert partial["updatedAt"] >= rule["updatedAt"]

    assert admin.delete(f"{RULES}/{rule_id}").status_code == 204
    refused(admin.get(f"{RULES}/{rule_id}"), 404)
    refused(admin.put(f"{RULES}/{rule_id}", json={"active": True}), 404)
    refused(admin.delete(f"{RULES}/{rule_id}"), 404)
    assert rule["name"] not in [each["name"] for each in admin.get(RULES).json()]


def test_the_trigger_is_taken_under_either_spelling(admin: httpx.Client) -> None:
    as_trigger = created(admin, trigger="CONTAINER_OOM_KILLED")
    spelled_out = {**without_trigger(), "triggerEvent": "CONTAINER_OOM_KILLED"}
    response = admin.post(RULES, json=spelled_out)
    assert response.status_code == 201, response.text
    as_trigger_event = response.json()
    both = created(admin, trigger="CONTAINER_UNHEALTHY", triggerEvent="CONTAINER_UNHEALTHY")

    assert as_trigger["triggerEvent"] == as_trigger_event["triggerEvent"] == "CONTAINER_OOM_KILLED"
    assert both["triggerEvent"] == "CONTAINER_UNHEALTHY"
    changed = admin.put(f"{RULES}/{both['id']}", json={"triggerEvent": "CONTAINER_DIED"})
    assert changed.json()["triggerEvent"] == "CONTAINER_DIED"

    refused(admin.post(RULES, json=without_trigger()), 422, "trigger")
    differing = rule_body(trigger="CONTAINER_DIED", triggerEvent="AGENT_OFFLINE")
    refused(admin.post(RULES, json=differing), 422, "triggerEvent")
    patch = {"trigger": "CONTAINER_DIED", "triggerEvent": "AGENT_OFFLINE"}
    refused(admin.put(f"{RULES}/{both['id']}", json=patch), 422, "triggerEvent")


def test_a_script_that_does_not_compile_is_refused_with_its_line_and_column(admin: httpx.Client) -> None:
    script = "log.info('fine');\nif (event.exit_code === 137 {\n  docker.restart(container_id);\n}"

    body = refused(admin.post(RULES, json=rule_body(script=script)), 422, "script")

    assert body["code"] == "script_invalid"
    assert body["line"] == 2
    assert isinstance(body["column"], int)
    assert "line 2" in body["detail"]
    rule = created(admin)
    on_update = refused(admin.put(f"{RULES}/{rule['id']}", json={"script": "let x = ;"}), 422, "script")
    assert (on_update["code"], on_update["line"]) == ("script_invalid", 1)
    assert admin.get(f"{RULES}/{rule['id']}").json()["script"] == EXAMPLE
    # Other errors keep their shape: no line or column.
    assert set(refused(admin.get(f"{RULES}/nope"), 404)) == {"status", "code", "detail", "field"}


def test_the_schema_says_where_a_script_does_not_compile(admin: httpx.Client) -> None:
    document = admin.get("/schema/openapi.json").json()

    error = document["components"]["schemas"]["ErrorOut"]
    assert {"line", "column"} <= set(error["properties"])
    assert "line" not in error["required"]
    refused_body = document["paths"][RULES]["post"]["responses"]["422"]["content"]["application/json"]
    assert refused_body["schema"]["$ref"].endswith("/ErrorOut")


def test_a_schedule_rule_needs_a_valid_cron_expression_and_only_it_has_one(admin: httpx.Client) -> None:
    without = rule_body(trigger="SCHEDULE")
    refused(admin.post(RULES, json=without), 422, "schedule")
    refused(
        admin.post(RULES, json=rule_body(trigger="SCHEDULE", schedule="every day at noon")), 422, "schedule"
    )
    refused(admin.post(RULES, json=rule_body(trigger="SCHEDULE", schedule="61 * * * *")), 422, "schedule")
    refused(admin.post(RULES, json=rule_body(schedule="*/5 * * * *")), 422, "schedule")

    scheduled = created(admin, trigger="SCHEDULE", schedule="0 3 * * *", script="log.info('nightly')")
    assert scheduled["schedule"] == "0 3 * * *"
    moved = admin.put(f"{RULES}/{scheduled['id']}", json={"trigger": "MANUAL"}).json()
    assert (moved["triggerEvent"], moved["schedule"]) == ("MANUAL", None)
    back = admin.put(f"{RULES}/{scheduled['id']}", json={"trigger": "SCHEDULE"})
    refused(back, 422, "schedule")
    again = admin.put(f"{RULES}/{scheduled['id']}", json={"trigger": "SCHEDULE", "schedule": "0 4 * * *"})
    assert again.json()["schedule"] == "0 4 * * *"
    refused(admin.put(f"{RULES}/{scheduled['id']}", json={"schedule": None}), 422, "schedule")


def test_a_name_already_taken_is_a_conflict(admin: httpx.Client) -> None:
    first = created(admin)
    body = refused(admin.post(RULES, json=rule_body(name=first["name"])), 409)
    assert body["code"] == "conflict"
    other = created(admin)
    refused(admin.put(f"{RULES}/{other['id']}", json={"name": first["name"]}), 409)


def test_bad_input_is_refused_with_the_field_named(admin: httpx.Client, operator: httpx.Client) -> None:
    refused(admin.post(RULES, json=rule_body(colour="blue")), 422)
    refused(admin.post(RULES, json=rule_body(name="")), 422, "name")
    refused(admin.post(RULES, json=rule_body(name="x" * 201)), 422, "name")
    refused(admin.post(RULES, json=rule_body(targetService="no spaces")), 422, "targetService")
    refused(admin.post(RULES, json=rule_body(trigger="CONTAINER_EXPLODED")), 422, "trigger")
    refused(admin.post(RULES, json=rule_body(script="x" * (64 * 1024 + 1))), 422, "script")
    refused(admin.post(RULES, json=rule_body(maxAttempts=0)), 422, "maxAttempts")
    refused(admin.post(RULES, json=rule_body(cooldownSeconds=-1)), 422, "cooldownSeconds")
    refused(admin.post(RULES, json=rule_body(backoffSeconds=600)), 422, "maxBackoffSeconds")
    refused(operator.post(DRY_RUN, json={"script": "x" * (64 * 1024 + 1)}), 422, "script")
    refused(operator.post(DRY_RUN, json={"script": "1", "mockContext": [1]}), 422, "mockContext")
    refused(operator.post(DRY_RUN, json={}), 422, "script")
    refused(admin.get(RUNS, params={"status": "EXPLODED"}), 422, "status")
    refused(admin.get(RUNS, params={"limit": 0}), 422, "limit")


def test_viewers_read_operators_also_test_and_run_and_only_admins_write(
    admin: httpx.Client, viewer: httpx.Client, operator: httpx.Client
) -> None:
    rule = created(admin)
    window = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}

    for reader in (viewer, operator):
        assert reader.get(RULES).status_code == 200
        assert reader.get(f"{RULES}/{rule['id']}").json() == rule
        assert reader.get(RUNS).status_code == 200
        refused(reader.post(RULES, json=rule_body()), 403)
        refused(reader.put(f"{RULES}/{rule['id']}", json={"active": True}), 403)
        refused(reader.delete(f"{RULES}/{rule['id']}"), 403)
    refused(viewer.post(DRY_RUN, json={"script": "log.info('hi')"}), 403)
    refused(viewer.post(f"{RULES}/{rule['id']}/backtest", json=window), 403)
    refused(viewer.post(f"{RULES}/{rule['id']}/run"), 403)
    assert operator.post(DRY_RUN, json={"script": "log.info('hi')"}).status_code == 200
    assert operator.post(f"{RULES}/{rule['id']}/backtest", json=window).status_code == 200
    assert operator.post(BACKTEST, json={"rule": rule_body(), **window}).status_code == 200
    assert admin.get(f"{RULES}/{rule['id']}").json() == rule


def test_a_dry_run_of_the_example_answers_the_plan_it_would_apply(operator: httpx.Client) -> None:
    context = {
        "event": {"type": "ContainerOomKilled", "exit_code": 137},
        "service": "saleor-api",
        "container_id": "3f2a9c1b7d4e",
        "node": "edge-7",
    }

    oom = dry_run(operator, EXAMPLE, context)
    other = dry_run(operator, EXAMPLE, {**context, "event": {"type": "ContainerDied", "exit_code": 1}})

    assert oom["status"] == "SUCCESS"
    assert oom["error"] is None
    assert oom["actions"] == [
        {"type": "docker.restart", "target": "3f2a9c1b7d4e", "params": {}},
        {"type": "notify.slack", "target": "#ops-alerts", "params": {"text": "Restarted saleor-api"}},
    ]
    assert oom["logs"] == [{"level": "warn", "message": "OOM Detected on saleor-api"}]
    assert oom["durationMs"] >= 0
    assert (other["status"], other["actions"], other["logs"]) == ("SUCCESS", [], [])


def test_a_dry_run_reports_a_script_that_loops_forever_or_does_not_compile(operator: httpx.Client) -> None:
    loop = dry_run(operator, "while (true) {}")
    broken = dry_run(operator, "log.info('a');\n\nlet = ;")

    assert loop["status"] == "TIMEOUT"
    assert loop["actions"] == []
    assert loop["error"]["message"]
    assert broken["status"] == "ERROR"
    assert broken["error"]["line"] == 3
    assert isinstance(broken["error"]["column"], int)


def test_context_fields_a_dry_run_leaves_out_are_undefined(operator: httpx.Client) -> None:
    script = "log.info([typeof event, typeof container, typeof metrics, typeof node, String(service)].join())"

    outcome = dry_run(operator, script)
    partial = dry_run(operator, "log.info(String(event.exit_code))", {"event": {"type": "ContainerDied"}})

    assert outcome["status"] == "SUCCESS"
    assert outcome["logs"] == [
        {"level": "info", "message": "undefined,undefined,undefined,undefined,undefined"}
    ]
    assert partial["logs"] == [{"level": "info", "message": "undefined"}]


def test_a_manual_rule_runs_by_hand_and_its_runs_are_on_record(
    admin: httpx.Client, operator: httpx.Client, keys: Keys
) -> None:
    script = "log.info('checked ' + service + ' on ' + node)"
    logs_only = created(admin, trigger="MANUAL", active=True, script=script)
    checks = created(
        admin,
        trigger="MANUAL",
        active=True,
        script="log.info('checked ' + service); incident.resolve('all good')",
    )
    switched_off = created(admin, trigger="MANUAL", script=script)
    assert "not active" in refused(operator.post(f"{RULES}/{switched_off['id']}/run"), 409)["detail"]

    ran = operator.post(f"{RULES}/{logs_only['id']}/run", json={"context": {"node": "edge-7"}})
    assert ran.status_code == 200, ran.text
    run = ran.json()
    succeeded = operator.post(f"{RULES}/{checks['id']}/run")
    assert succeeded.status_code == 200, succeeded.text

    assert run["ruleId"] == logs_only["id"]
    assert run["rule"] == logs_only["name"]
    assert (run["trigger"], run["eventId"], run["actor"]) == ("MANUAL", None, keys.operator.name)
    assert run["logs"] == [{"level": "info", "message": f"checked {logs_only['targetService']} on edge-7"}]
    assert (run["status"], run["matched"]) == ("NO_ACTION", False)  # it planned nothing to apply
    assert run["plan"] == run["applied"] == []
    assert run["context"]["event"]["by"] == keys.operator.name
    assert run["finishedAt"] is not None
    assert succeeded.json()["status"] == "SUCCEEDED"
    assert [step["type"] for step in succeeded.json()["applied"]] == ["incident.resolve"]
    assert all(step["ok"] for step in succeeded.json()["applied"])
    listed = admin.get(RUNS, params={"rule": logs_only["id"]}).json()
    assert [each["id"] for each in listed] == [run["id"]]
    assert admin.get(f"{RUNS}/{run['id']}").json() == run
    assert [
        each["id"] for each in admin.get(RUNS, params={"rule": checks["id"], "status": "SUCCEEDED"}).json()
    ] == [succeeded.json()["id"]]
    assert admin.get(RUNS, params={"rule": checks["id"], "status": "FAILED"}).json() == []
    assert admin.get(f"{RULES}/{logs_only['id']}").json()["lastRun"] == run["startedAt"]
    refused(admin.get(f"{RUNS}/run_nothing"), 404)


def test_only_manual_rules_run_by_hand(admin: httpx.Client, operator: httpx.Client) -> None:
    rule = created(admin)

    body = refused(operator.post(f"{RULES}/{rule['id']}/run"), 409)

    assert "MANUAL" in body["detail"]
    refused(operator.post(f"{RULES}/rule_nothing/run"), 404)
    assert admin.get(RUNS, params={"rule": rule["id"]}).json() == []


def test_a_backtest_replays_the_recorded_history_through_a_rule(
    admin: httpx.Client, operator: httpx.Client, containers: Containers
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    container = containers.run("exit 137")
    died = wait_for(lambda: _death_of(admin, str(container.id)), "the container's death in the journal")
    until = datetime.now(UTC) + timedelta(seconds=5)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    draft = rule_body(targetService=container.name)

    report = operator.post(BACKTEST, json={"rule": draft, **window})
    assert report.status_code == 200, report.text
    saved = created(admin, targetService=container.name)
    again = operator.post(f"{RULES}/{saved['id']}/backtest", json=window)

    body = report.json()
    assert body["rule"] == draft["name"]
    assert body["truncated"] is False
    assert body["totals"] == {
        "eventsMatched": 1,
        "runs": 1,
        "actions": {"docker.restart": 1, "notify.slack": 1},
        "targets": [f"local/{container.name}"],
        "deferred": 0,
        "suppressed": 0,
        "gaveUp": 0,
        "errors": 0,
    }
    [item] = body["items"]
    assert (item["eventId"], item["target"], item["node"]) == (died["seq"], container.name, "local")
    assert (item["trigger"], item["verdict"], item["status"], item["deferred"]) == (
        "CONTAINER_DIED",
        "RUN",
        "SUCCESS",
        False,
    )
    assert [action["type"] for action in item["actions"]] == ["docker.restart", "notify.slack"]
    assert item["actions"][0]["target"] == container.id
    assert item["logs"] == [{"level": "warn", "message": f"OOM Detected on {container.name}"}]
    assert again.status_code == 200, again.text
    assert again.json()["totals"] == body["totals"]
    assert admin.get(RUNS, params={"rule": saved["id"]}).json() == []  # a backtest applies nothing


def test_a_backtest_needs_a_window_and_a_rule_fired_by_events(
    admin: httpx.Client, operator: httpx.Client
) -> None:
    manual = created(admin, trigger="MANUAL")
    window = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}

    refused(operator.post(f"{RULES}/{manual['id']}/backtest", json=window), 422, "until")
    forward = {"since": window["until"], "until": window["since"]}
    refused(operator.post(f"{RULES}/{manual['id']}/backtest", json=forward), 422, "trigger")
    refused(operator.post(f"{RULES}/rule_nothing/backtest", json=forward), 404)
    refused(operator.post(BACKTEST, json={"rule": rule_body(script="if ("), **forward}), 422, "script")
    refused(operator.post(BACKTEST, json={"rule": rule_body(), **forward, "limit": 10_001}), 422, "limit")
    naive = {"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00Z"}
    refused(operator.post(BACKTEST, json={"rule": rule_body(), **naive}), 422, "since")
    assert manual["name"] in [rule["name"] for rule in admin.get(RULES).json()]


def test_rule_changes_are_audited(admin: httpx.Client) -> None:
    rule = created(admin)
    admin.put(f"{RULES}/{rule['id']}", json={"active": True, "targetService": unique("nobody")})
    admin.delete(f"{RULES}/{rule['id']}")

    def entries() -> list[dict[str, Any]] | None:
        found = [
            entry
            for action in ("rule.create", "rule.update", "rule.delete")
            for entry in admin.get("/api/v1/audit", params={"action": action}).json()
            if entry["target"] == rule["name"]
        ]
        return found if len(found) == 3 and all(entry["outcome"] == "SUCCEEDED" for entry in found) else None

    audited = wait_for(entries, "the rule's three audit entries")
    assert [entry["action"] for entry in audited] == ["rule.create", "rule.update", "rule.delete"]
    assert {entry["actor"] for entry in audited} == {rule["updatedBy"]}


def _death_of(client: httpx.Client, container_id: str) -> dict[str, Any] | None:
    events = client.get("/api/v1/events", params={"types": "ContainerDied"}).json()
    return next((event for event in events if event.get("containerId") == container_id), None)
