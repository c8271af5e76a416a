"""API keys, authentication and the failed-authentication throttle, on fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.shared_limits import FakeFailedAuthLog
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import ANONYMOUS_ADMIN, KEY_PREFIX, Permission, Principal, Role, hash_secret
from worpen_core.access.service import ApiKeys, Authenticator, FailedAuthThrottle
from worpen_core.shared.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated


@pytest.fixture
def keys(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> ApiKeys:
    return ApiKeys(uow, clock)


@pytest.fixture
def authenticator(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> Authenticator:
    throttle = FailedAuthThrottle(clock, limit=3, window=timedelta(minutes=1))
    return Authenticator(uow, clock, cache_for=timedelta(seconds=5), throttle=throttle)


async def test_issued_secret_is_shown_once_and_only_its_hash_is_stored(
    keys: ApiKeys, uow: FakeUnitOfWorkFactory
) -> None:
    issued = await keys.issue(CreateApiKey("ci", Role.OPERATOR))

    assert issued.secret.startswith(KEY_PREFIX)
    stored = uow.store.api_keys[issued.key.id]
    assert stored.secret_hash == hash_secret(issued.secret)
    assert issued.secret not in repr(stored)


async def test_authenticate_resolves_the_role_and_bound_agents(
    keys: ApiKeys, authenticator: Authenticator
) -> None:
    issued = await keys.issue(CreateApiKey("bee", Role.AGENT, ("bee-001",)))

    principal = await authenticator.authenticate(issued.secret)

    assert principal.role is Role.AGENT
    assert principal.may_report_for("bee-001")
    assert not principal.may_report_for("bee-002")
    assert not principal.can(Permission.READ)


def test_a_report_is_authorized_for_an_agent_keys_own_agents_and_for_admins_only() -> None:
    bee = Principal("k1", "bee", Role.AGENT, frozenset({"bee-001"}))
    bee.authorize_report("bee-001")
    ANONYMOUS_ADMIN.authorize_report("bee-002")

    with pytest.raises(Forbidden, match=r"^this key may not report for agent 'bee-002'$"):
        bee.authorize_report("bee-002")
    for role in (Role.VIEWER, Role.OPERATOR):
        with pytest.raises(Forbidden, match="bee-001"):
            Principal("k2", "person", role).authorize_report("bee-001")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {Permission.READ}),
        (Role.OPERATOR, {Permission.READ, Permission.OPERATE}),
        (Role.ADMIN, set(Permission)),
        (Role.AGENT, {Permission.REPORT}),
    ],
)
async def test_roles_grant_exactly_their_permissions(
    keys: ApiKeys, authenticator: Authenticator, role: Role, allowed: set[Permission]
) -> None:
    agents = ("bee-001",) if role is Role.AGENT else ()
    principal = await authenticator.authenticate((await keys.issue(CreateApiKey("k", role, agents))).secret)
    assert {permission for permission in Permission if principal.can(permission)} == allowed


async def test_unknown_revoked_and_expired_keys_are_refused(
    keys: ApiKeys, authenticator: Authenticator, clock: FakeClock
) -> None:
    with pytest.raises(Unauthenticated, match="unknown"):
        await authenticator.authenticate("wpn_nope")

    revoked = await keys.issue(CreateApiKey("old", Role.VIEWER))
    await authenticator.authenticate(revoked.secret)
    authenticator.forget(await keys.revoke(revoked.key.id))
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.authenticate(revoked.secret)

    expiring = await keys.issue(CreateApiKey("short", Role.VIEWER, expires_in=timedelta(seconds=10)))
    await authenticator.authenticate(expiring.secret)
    clock.advance(10)
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate(expiring.secret)


async def test_a_revocation_by_another_process_takes_effect_within_the_cache_time(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, authenticator: Authenticator
) -> None:
    other_process = ApiKeys(uow, clock)
    issued = await other_process.issue(CreateApiKey("ci", Role.VIEWER))
    await authenticator.authenticate(issued.secret)

    await other_process.revoke(issued.key.id)
    await authenticator.authenticate(issued.secret)
    clock.advance(5)

    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.authenticate(issued.secret)


async def test_first_admin_is_issued_only_on_an_empty_database(keys: ApiKeys) -> None:
    first = await keys.issue_first_admin()
    assert first is not None
    assert first.key.role is Role.ADMIN
    assert await keys.issue_first_admin() is None


async def test_revoking_an_unknown_key_is_not_found(keys: ApiKeys) -> None:
    with pytest.raises(NotFound):
        await keys.revoke("nope")


def test_a_lifetime_must_be_positive() -> None:
    with pytest.raises(InvalidInput) as caught:
        CreateApiKey("k", Role.VIEWER, expires_in=timedelta(0))
    assert caught.value.field == "expiresIn"


@pytest.mark.parametrize(
    ("role", "agents", "field"),
    [(Role.AGENT, (), "agents"), (Role.VIEWER, ("bee-001",), "agents"), (Role.AGENT, ("bad id",), "agents")],
)
def test_agent_binding_rules(role: Role, agents: tuple[str, ...], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        CreateApiKey("k", role, agents)
    assert caught.value.field == field


def test_throttle_limits_failures_per_client_within_the_window(clock: FakeClock) -> None:
    throttle = FailedAuthThrottle(clock, limit=3, window=timedelta(minutes=1))
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.record_failure("10.0.0.1")

    with pytest.raises(RateLimited) as caught:
        throttle.check("10.0.0.1")
    assert caught.value.retry_after is not None
    assert 1 <= caught.value.retry_after <= 61
    throttle.check("10.0.0.2")

    clock.advance(60)
    throttle.check("10.0.0.1")


async def test_admit_takes_a_bearer_value_and_throttles_only_failed_attempts(
    keys: ApiKeys, authenticator: Authenticator
) -> None:
    issued = await keys.issue(CreateApiKey("ci", Role.VIEWER))
    assert (await authenticator.admit(f"Bearer {issued.secret}", "10.0.0.1")).role is Role.VIEWER

    for bad in ("Basic abc", "Bearer wpn_nope", "Bearer wpn_nope2"):
        with pytest.raises(Unauthenticated):
            await authenticator.admit(bad, "10.0.0.9")
    with pytest.raises(RateLimited):
        await authenticator.admit("Bearer wpn_nope3", "10.0.0.9")

    # A valid key from the throttled client still passes, and no credential at all is a 401, not a 429.
    assert (await authenticator.admit(f"bearer {issued.secret}", "10.0.0.9")).name == "ci"
    for missing in (None, "", "Bearer", "Bearer   "):
        with pytest.raises(Unauthenticated, match="missing credential"):
            await authenticator.admit(missing, "10.0.0.9")
    with pytest.raises(RateLimited):
        await authenticator.admit("Bearer wpn_nope3", "10.0.0.9")
    assert (await authenticator.admit(f"Bearer {issued.secret}", "10.0.0.1")).name == "ci"


async def test_replicas_sharing_a_failure_log_throttle_a_client_spread_over_them(
    keys: ApiKeys, uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log = FakeFailedAuthLog()
    a, b = (
        Authenticator(
            uow, clock, timedelta(seconds=5), FailedAuthThrottle(clock, 3, timedelta(minutes=1), log)
        )
        for _ in range(2)
    )
    issued = await keys.issue(CreateApiKey("ci", Role.VIEWER))

    # Alternating replicas: three failures in all spend the limit; the replica that did not see the
    # third learns of it from its own next failure (limit + replicas - 1 attempts at most).
    outcomes = []
    for attempt in range(6):
        clock.advance(1)
        try:
            await (a if attempt % 2 == 0 else b).admit("Bearer wpn_nope", "10.0.0.9")
        except (Unauthenticated, RateLimited) as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes == ["Unauthenticated"] * 4 + ["RateLimited"] * 2
    calls = log.calls
    assert (await a.admit(f"Bearer {issued.secret}", "10.0.0.9")).name == "ci"
    assert (await b.admit(f"Bearer {issued.secret}", "10.0.0.9")).name == "ci"
    assert log.calls == calls == 4  # a success and a refusal never reach the database

    # A learnt its block from the failures at seconds 1, 2 and 3: until the one at second 1 leaves the
    # window (61), when one more attempt tells it of B's failure at second 4.
    with pytest.raises(RateLimited) as caught:
        await a.admit("Bearer wpn_nope", "10.0.0.9")
    assert caught.value.retry_after == 56
    with pytest.raises(Unauthenticated):
        await a.admit("Bearer wpn_nope", "10.0.0.2")  # another client is not throttled
    clock.advance(55)
    with pytest.raises(Unauthenticated):
        await a.admit("Bearer wpn_nope", "10.0.0.9")
    with pytest.raises(RateLimited) as caught:
        await a.admit("Bearer wpn_nope", "10.0.0.9")
    assert caught.value.retry_after == 3  # until the failure at second 3 leaves the window


async def test_replicas_sharing_a_failure_log_count_every_replicas_failures_for_the_dashboard(
    clock: FakeClock,
) -> None:
    log = FakeFailedAuthLog()
    a, b = (FailedAuthThrottle(clock, 100, timedelta(minutes=1), log) for _ in range(2))
    await a.failed("10.0.0.1")
    clock.advance(1800)
    await b.failed("10.0.0.2")
    await b.failed("10.0.0.3")
    assert await a.failures_in_last_hour() == await b.failures_in_last_hour() == 3
    clock.advance(1801)  # the first failure is more than an hour old
    assert await a.failures_in_last_hour() == await b.failures_in_last_hour() == 2
