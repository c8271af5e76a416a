"""Schemathesis hooks of test_openapi_schema.py, loaded by the schemathesis process (SCHEMATHESIS_HOOKS).

Before every request of every phase, whatever was generated, a request that changes the world is pointed
at what the test owns (named in the environment by the test; schemathesis.toml's overrides keep the
generator from varying these values, so normally nothing is left to change here):

- start, stop, restart and remove act on the test's own containers, never on a container a generated
  reference happens to name (a 4-character id prefix can match anyone's);
- a prune with a body is a dry run (one without is refused): a real one removes every stopped container
  and unused image of the node;
- a pull fetches the test's image from its registry on loopback, so the engine never looks up or
  contacts another host;
- the key the fuzzer authenticates with is never revoked.

Schemathesis validates a case again after this hook, so its checks judge what was really sent.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

LIFECYCLE = "WORPEN_FUZZ_LIFECYCLE_CONTAINER"
REMOVABLE = "WORPEN_FUZZ_REMOVABLE_CONTAINER"
IMAGE = "WORPEN_FUZZ_IMAGE"
OWN_KEY_ID = "WORPEN_FUZZ_KEY_ID"
UNKNOWN_KEY_ID = "000000000000"

CONTAINER_ACTIONS = {
    "POST /api/v1/containers/{container_id}/start": LIFECYCLE,
    "POST /api/v1/containers/{container_id}/stop": LIFECYCLE,
    "POST /api/v1/containers/{container_id}/restart": LIFECYCLE,
    "DELETE /api/v1/containers/{container_id}": REMOVABLE,
}
PRUNE = "POST /api/v1/docker/prune"
PULL = "POST /api/v1/images/pull"
REVOKE = "DELETE /api/v1/apikeys/{key_id}"


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    label = case.operation.label
    if label in CONTAINER_ACTIONS:
        owned = os.environ[CONTAINER_ACTIONS[label]]
        case.path_parameters = {**(case.path_parameters or {}), "container_id": owned}
    elif label == PRUNE and isinstance(case.body, dict):  # without a JSON object, a prune is refused
        case.body["dryRun"] = True
    elif label == PULL and isinstance(case.body, dict):
        case.body["image"] = os.environ[IMAGE]
    elif label == REVOKE and (case.path_parameters or {}).get("key_id") == os.environ[OWN_KEY_ID]:
        case.path_parameters = {**(case.path_parameters or {}), "key_id": UNKNOWN_KEY_ID}
