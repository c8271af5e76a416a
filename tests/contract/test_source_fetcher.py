"""The source fetcher on dulwich against real git repositories the tests make: the files of a branch head or
of a commit as a tar archive (modes, symlinks, directories, no .git), local repositories only below the
allowed directories, remote ones over HTTP (a real dulwich smart-HTTP server on loopback), and the errors a
pipeline run reports."""

from __future__ import annotations

import io
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import make_server

import pytest
from dulwich import porcelain
from dulwich.objects import Commit, ObjectID
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_wsgi_chain

from tests.integration.support import free_port
from worpen_core.pipelines.model import Source
from worpen_core.pipelines.ports import SourceFetcher
from worpen_core.shared.errors import InvalidInput, NotFound, TooLarge, Unavailable
from worpen_infra.git import GitSourceFetcher

AUTHOR = b"Ada Lovelace <ada@example.com>"
LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class Project:
    path: Path
    first: str
    second: str


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, content in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    porcelain.add(str(repo), paths=[str(repo / name) for name in files])
    sha = porcelain.commit(str(repo), message=message, author=AUTHOR, committer=AUTHOR)
    return sha.decode("ascii")


def make_project(path: Path) -> Project:
    """`main`: a first commit (a README, an executable script, a file in a subdirectory, a symlink) and a
    second that changes the README and adds a file; `feature` stays at the first."""
    path.mkdir(parents=True)
    porcelain.init(str(path)).close()
    porcelain.symbolic_ref(str(path), "main", force=True)
    (path / "run.sh").write_text("#!/bin/sh\necho built\n")
    (path / "run.sh").chmod(0o755)
    (path / "link").symlink_to("README.md")
    porcelain.add(str(path), paths=[str(path / "run.sh"), str(path / "link")])
    first = commit(path, {"README.md": "first\n", "src/app/main.py": "print('hi')\n"}, "First commit\n\nbody")
    second = commit(path, {"README.md": "second\n", "docs/guide.txt": "read me\n"}, "Second commit")
    porcelain.branch_create(str(path), "feature", objectish=first)
    return Project(path, first, second)


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    return tmp_path / "allowed"


@pytest.fixture
def project(roots: Path) -> Project:
    return make_project(roots / "project")


@pytest.fixture
def fetcher(roots: Path) -> SourceFetcher:
    return GitSourceFetcher([str(roots)], max_bytes=LIMIT, timeout=20)


def members(source: Source) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(source.archive)) as tar:
        return {info.name: info for info in tar.getmembers()}


def read(source: Source, name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(source.archive)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read().decode()


async def test_the_head_of_a_branch_as_an_archive(fetcher: SourceFetcher, project: Project) -> None:
    source = await fetcher.fetch(str(project.path), "main", None)

    assert source.commit == project.second
    assert source.author == "Ada Lovelace"
    assert source.message == "Second commit"
    files = members(source)
    assert set(files) == {
        "README.md",
        "run.sh",
        "link",
        "src",
        "src/app",
        "src/app/main.py",
        "docs",
        "docs/guide.txt",
    }
    assert read(source, "README.md") == "second\n"
    assert files["run.sh"].isfile()
    assert files["run.sh"].mode == 0o755
    assert files["README.md"].mode == 0o644
    assert files["link"].issym()
    assert files["link"].linkname == "README.md"
    assert files["src"].isdir()
    assert files["src/app"].isdir()
    assert not any(name == ".git" or name.startswith(".git/") for name in files)


async def test_another_branch(fetcher: SourceFetcher, project: Project) -> None:
    source = await fetcher.fetch(f"file://{project.path}", "feature", None)

    assert source.commit == project.first
    assert source.message == "First commit"
    assert read(source, "README.md") == "first\n"
    assert "docs/guide.txt" not in members(source)


@pytest.mark.parametrize("length", [40, 7, 4])
async def test_a_commit_by_full_or_abbreviated_sha(
    fetcher: SourceFetcher, project: Project, length: int
) -> None:
    source = await fetcher.fetch(str(project.path), "main", project.first[:length].upper())

    assert source.commit == project.first
    assert read(source, "README.md") == "first\n"


async def test_an_unknown_branch_or_commit_is_not_found(fetcher: SourceFetcher, project: Project) -> None:
    with pytest.raises(NotFound) as branch:
        await fetcher.fetch(str(project.path), "nope", None)
    assert (branch.value.kind, branch.value.identifier) == ("branch", "nope")

    with pytest.raises(NotFound) as commit:
        await fetcher.fetch(str(project.path), "main", "0" * 40)
    assert commit.value.kind == "commit"

    with Repo(str(project.path)) as repo:
        first = repo[ObjectID(project.first.encode())]
    assert isinstance(first, Commit)
    with pytest.raises(NotFound):  # a tree's sha, not a commit's
        await fetcher.fetch(str(project.path), "main", first.tree.decode())


async def test_a_commit_that_is_not_a_sha_is_refused(fetcher: SourceFetcher, project: Project) -> None:
    for commit in ("abc", "xyz1234", "HEAD~1"):
        with pytest.raises(InvalidInput) as refused:
            await fetcher.fetch(str(project.path), "main", commit)
        assert refused.value.field == "commit"


async def test_beyond_the_size_limit_is_too_large(roots: Path, project: Project) -> None:
    small = GitSourceFetcher([str(roots)], max_bytes=4096)

    with pytest.raises(TooLarge):
        await small.fetch(str(project.path), "main", None)


async def test_local_repositories_only_below_the_allowed_directories(
    tmp_path: Path, roots: Path, project: Project, fetcher: SourceFetcher
) -> None:
    outside = make_project(tmp_path / "outside")
    (roots / "escape").symlink_to(outside.path)

    for repository in (
        str(outside.path),
        f"file://{outside.path}",
        f"{roots}/../outside",
        f"file://{roots}/project/../../outside",
        f"{roots}/escape",
        f"file://{roots}/escape",
    ):
        assert fetcher.check(repository) is not None, repository
        with pytest.raises(InvalidInput) as refused:
            await fetcher.fetch(repository, "main", None)
        assert refused.value.field == "repository"

    assert fetcher.check(str(project.path)) is None
    assert fetcher.check(f"file://{project.path}") is None
    assert fetcher.check(f"{roots}/escape/../project") is not None
    nothing_allowed = GitSourceFetcher([], max_bytes=LIMIT)
    assert "not allowed" in (nothing_allowed.check(str(project.path)) or "")


async def test_a_git_file_pointing_outside_is_refused(
    tmp_path: Path, roots: Path, fetcher: SourceFetcher
) -> None:
    outside = make_project(tmp_path / "outside")
    disguised = roots / "disguised"
    disguised.mkdir(parents=True)
    (disguised / ".git").write_text(f"gitdir: {outside.path / '.git'}\n")

    assert fetcher.check(str(disguised)) is None
    with pytest.raises(InvalidInput):
        await fetcher.fetch(str(disguised), "main", None)


async def test_a_directory_that_is_no_repository_is_unavailable(roots: Path, fetcher: SourceFetcher) -> None:
    (roots / "empty").mkdir(parents=True)

    with pytest.raises(Unavailable):
        await fetcher.fetch(str(roots / "empty"), "main", None)


@pytest.mark.parametrize(
    "repository",
    [
        "https://git.example.com/team/app.git",
        "http://127.0.0.1:8080/app.git",
        "git://git.example.com/app.git",
        "ssh://git@git.example.com:2222/team/app.git",
        "git@github.com:team/app.git",
        "https://user:token@git.example.com/app.git",
    ],
)
def test_remote_addresses_are_accepted(fetcher: SourceFetcher, repository: str) -> None:
    assert fetcher.check(repository) is None


@pytest.mark.parametrize(
    "repository",
    [
        "",
        "   ",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "-oProxyCommand=touch /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "ssh://-oProxyCommand=calc/x",
        "git@-oProxyCommand=calc:x",
        "ftp://example.com/app.git",
        "relative/path",
        "file://otherhost/srv/app.git",
        "https://",
        "https://host/app\n.git",
    ],
)
async def test_other_addresses_are_refused(fetcher: SourceFetcher, repository: str) -> None:
    reason = fetcher.check(repository)

    assert reason
    with pytest.raises(InvalidInput) as refused:
        await fetcher.fetch(repository, "main", None)
    assert refused.value.detail == reason
    assert refused.value.field == "repository"


class GitHttpServer:
    """dulwich's smart-HTTP server for `repos` (served as /<name>.git), in a thread on loopback."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        served: dict[str, BackendRepo] = {f"/{name}.git": repo for name, repo in repos.items()}
        backend = DictBackend(served)
        self.port = free_port()
        self._server = make_server(
            "127.0.0.1",
            self.port,
            make_wsgi_chain(backend),
            handler_class=WSGIRequestHandlerLogger,
            server_class=WSGIServerLogger,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def served(project: Project) -> Iterator[str]:
    repo = Repo(str(project.path))
    with GitHttpServer({"project": repo}) as server:
        yield f"http://127.0.0.1:{server.port}/project.git"
    repo.close()


async def test_a_branch_head_over_http(fetcher: SourceFetcher, project: Project, served: str) -> None:
    source = await fetcher.fetch(served, "main", None)

    assert source.commit == project.second
    assert read(source, "README.md") == "second\n"
    assert members(source)["run.sh"].mode == 0o755

    feature = await fetcher.fetch(served, "feature", None)
    assert feature.commit == project.first


async def test_a_commit_over_http(fetcher: SourceFetcher, project: Project, served: str) -> None:
    source = await fetcher.fetch(served, "main", project.first[:8])

    assert source.commit == project.first
    assert read(source, "README.md") == "first\n"

    with pytest.raises(NotFound):
        await fetcher.fetch(served, "main", "deadbeef")
    with pytest.raises(NotFound):
        await fetcher.fetch(served, "nope", None)


async def test_a_large_pack_over_http_is_too_large(project: Project, served: str) -> None:
    commit(project.path, {"big.bin": os.urandom(64 * 1024).hex()}, "Big")
    small = GitSourceFetcher([], max_bytes=16 * 1024)

    with pytest.raises(TooLarge):
        await small.fetch(served, "main", None)


async def test_an_unreachable_server_is_unavailable_without_its_credentials(fetcher: SourceFetcher) -> None:
    repository = f"https://ada-9f3:s3cret-token@127.0.0.1:{free_port()}/x.git"
    started = time.monotonic()

    with pytest.raises(Unavailable) as unavailable:
        await fetcher.fetch(repository.replace("https", "http"), "main", None)

    assert time.monotonic() - started < 10
    assert "s3cret-token" not in str(unavailable.value)
    assert "ada-9f3" not in str(unavailable.value)
    assert unavailable.value.dependency.startswith("git repository http://***@127.0.0.1:")


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", free_port()))
    port = silent.getsockname()[1]
    fetcher = GitSourceFetcher([], max_bytes=LIMIT, timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as unavailable:
            await fetcher.fetch(f"http://127.0.0.1:{port}/x.git", "main", None)
    finally:
        silent.close()

    assert time.monotonic() - started < 5
    assert "no answer within 1 s" in str(unavailable.value)
