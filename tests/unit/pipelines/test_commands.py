"""A definition as an operator writes it becomes stages, or a refusal that names the stage and the field
at fault."""

from __future__ import annotations

import pytest

from tests.fakes.pipelines_support import draft, pipeline_world, stage
from worpen_core.pipelines.commands import MAX_TIMEOUT_SECONDS, PipelineDraft, StageDraft, stages_of
from worpen_core.shared.errors import InvalidInput


def refusal(*stages: StageDraft) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        stages_of(stages)
    return caught.value


def test_a_stage_depends_on_the_previous_one_unless_told_otherwise() -> None:
    specs = stages_of((stage("build"), stage("test"), stage("lint", depends_on=()), stage("ship")))

    assert [spec.depends_on for spec in specs] == [(), ("build",), (), ("lint",)]


def test_explicit_dependencies_are_kept_once_each() -> None:
    specs = stages_of((stage("a"), stage("b", depends_on=()), stage("c", depends_on=("a", "b", "a"))))

    assert specs[2].depends_on == ("a", "b")


def test_a_dependency_on_an_unknown_stage_names_it_and_the_field() -> None:
    error = refusal(stage("build"), stage("test", depends_on=("biuld",)))

    assert error.field == "stages[1].dependsOn"
    assert "'biuld'" in error.detail
    assert "'test'" in error.detail


def test_a_stage_cannot_depend_on_itself() -> None:
    error = refusal(stage("build"), stage("test", depends_on=("test",)))

    assert error.field == "stages[1].dependsOn"
    assert "itself" in error.detail


def test_a_cycle_is_refused_showing_the_cycle() -> None:
    error = refusal(
        stage("a", depends_on=("c",)), stage("b", depends_on=("a",)), stage("c", depends_on=("b",))
    )

    assert error.field is not None
    assert error.field.endswith(".dependsOn")
    assert "cycle" in error.detail
    cycle = error.detail.split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c"]


def test_a_cycle_below_a_root_is_found() -> None:
    error = refusal(
        stage("root"),
        stage("x", depends_on=("root", "y")),
        stage("y", depends_on=("x",)),
    )

    assert "x -> y -> x" in error.detail or "y -> x -> y" in error.detail


def test_two_stages_cannot_share_a_name() -> None:
    error = refusal(stage("build"), stage("build"))

    assert error.field == "stages[1].name"


@pytest.mark.parametrize("name", ["", "-build", "build stage", "b" * 64, "étape"])
def test_a_stage_name_is_safe_in_container_names(name: str) -> None:
    assert refusal(stage(name)).field == "stages[0].name"


@pytest.mark.parametrize("image", ["", "Busybox", "busy box", "busybox:", "a" * 513])
def test_a_bad_image_is_refused(image: str) -> None:
    assert refusal(stage("build", image=image)).field == "stages[0].image"


def test_a_bad_env_name_is_refused() -> None:
    error = refusal(stage("build", env={"1X": "v"}))

    assert error.field == "stages[0].env"
    assert "'1X'" in error.detail


@pytest.mark.parametrize("name", ["my-token", "1TOKEN", ""])
def test_a_secret_name_must_also_be_an_env_name(name: str) -> None:
    assert refusal(stage("build", secrets=(name,))).field == "stages[0].secrets"


def test_a_name_both_in_env_and_in_secrets_is_refused() -> None:
    error = refusal(stage("build", env={"TOKEN": "x"}, secrets=("TOKEN",)))

    assert error.field == "stages[0].env"
    assert "TOKEN" in error.detail


@pytest.mark.parametrize("seconds", [0, -1, MAX_TIMEOUT_SECONDS + 1])
def test_a_timeout_out_of_bounds_is_refused(seconds: int) -> None:
    assert refusal(stage("build", timeout_seconds=seconds)).field == "stages[0].timeoutSeconds"


def test_timeouts_at_their_bounds_are_kept_and_the_default_applies_to_the_others() -> None:
    specs = stages_of(
        (stage("a", timeout_seconds=1), stage("b", timeout_seconds=MAX_TIMEOUT_SECONDS), stage("c")),
        default_timeout=120,
    )

    assert [spec.timeout_seconds for spec in specs] == [1, MAX_TIMEOUT_SECONDS, 120]


@pytest.mark.parametrize("commands", [(), ("   ",), ("echo\x00",), ("x" * 8193,)])
def test_commands_are_needed_and_not_blank(commands: tuple[str, ...]) -> None:
    error = refusal(StageDraft("build", "busybox:1", commands))

    assert error.field == "stages[0].commands"


def test_node_labels_are_checked_and_kept() -> None:
    specs = stages_of((stage("build", node_labels={"arch": "arm64"}),))
    assert specs[0].node_labels == {"arch": "arm64"}

    error = refusal(stage("build"), stage("test", node_labels={"arch": "arm 64"}))
    assert error.field == "stages[1].nodeSelector"
    assert error.detail.startswith("stage 'test': ")


def test_no_stage_is_refused() -> None:
    assert refusal().field == "stages"


def test_the_service_checks_the_definition_as_a_whole() -> None:
    world = pipeline_world()
    pipelines = world.pipelines
    world.fetcher.refused["file:///etc"] = "local repositories must lie below /srv/git"

    def field_of(wrong: PipelineDraft) -> str | None:
        with pytest.raises(InvalidInput) as caught:
            pipelines.check(wrong)
        return caught.value.field

    build = stage("build")
    assert field_of(draft(build, pipeline_id="no way")) == "id"
    assert field_of(draft(build, repository="file:///etc")) == "repository"
    assert field_of(draft(build, branch="../main")) == "branch"
    assert field_of(draft(build, cron="every day")) == "triggers.cron"
    assert field_of(draft(build, webhook_secret="short")) == "triggers.webhookSecret"
    assert pipelines.check(draft(stage("build"), cron="* * * * *", webhook_secret="long enough"))


def test_the_service_applies_its_default_timeout() -> None:
    world = pipeline_world()

    (spec,) = world.pipelines.check(draft(stage("build")))

    assert spec.timeout_seconds == 3600
