"""SourceFetcher on dulwich: a repository's files at one commit, as a tar archive.

dulwich is pure Python, so neither the server nor the stages' images need a git binary. A remote
repository is fetched into a temporary bare repository (removed afterwards): the head of a branch alone and
one commit deep, or, for a commit named by its sha, the history of every branch and tag (a sha, abbreviated
or not, is only found among the commits that reach it). A local repository, allowed only below the
operator's directories, is read in place.

The archive is built here rather than with `dulwich.archive.tar_stream`, which writes symlinks as regular
files holding their target and leaves directories out."""

from __future__ import annotations

import asyncio
import io
import os
import re
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import urllib3
from dulwich.client import default_urllib3_manager, get_transport_and_path
from dulwich.object_store import BaseObjectStore, DiskObjectStore
from dulwich.objects import S_ISGITLINK, Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from worpen_core.pipelines.model import Source
from worpen_core.shared.errors import InvalidInput, NotFound, TooLarge, Unavailable, WorpenError

REMOTE_SCHEMES = frozenset({"http", "https", "git", "ssh"})
HISTORY_ALLOWANCE = 16
"""A fetch for a commit downloads the history, which may outweigh the files: it may take this many times
the archive's limit. A branch head's pack of one commit holds the same files as the archive, compressed
and without tar's headers, so the archive's limit bounds it."""

_SCP = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>.+)$")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
_UNSAFE_NAMES = frozenset({b"", b".", b"..", b".git"})


class _Expired(Exception):
    """The deadline passed while a pack was still arriving."""


class _PackTooLarge(Exception):
    """The pack grew beyond what the fetch may download."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What `check` accepted: a remote URL, or the real path of a local repository."""

    location: str
    local: bool


class GitSourceFetcher:
    def __init__(self, local_roots: Sequence[str], max_bytes: int, timeout: float = 120.0) -> None:
        self._roots = tuple(os.path.realpath(root) for root in local_roots if root)
        self._max_bytes = max_bytes
        self._timeout = timeout

    def check(self, repository: str) -> str | None:
        try:
            self._target(repository)
        except InvalidInput as exc:
            return exc.detail
        return None

    async def fetch(self, repository: str, branch: str, commit: str | None) -> Source:
        target = self._target(repository)
        wanted = _commit_prefix(commit) if commit is not None else None
        shown = redact(repository)
        deadline = time.monotonic() + self._timeout
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._fetch, target, shown, branch, wanted, deadline), self._timeout
            )
        except TimeoutError:
            raise Unavailable(f"git repository {shown}", f"no answer within {self._timeout:g} s") from None

    def _target(self, repository: str) -> _Target:
        text = repository.strip()
        if not text:
            raise InvalidInput("no repository given", "repository")
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise InvalidInput("a repository address holds no spaces or control characters", "repository")
        if text.startswith("-"):
            raise InvalidInput("a repository address cannot start with '-'", "repository")
        scheme, sep, _ = text.partition("://")
        if sep:
            scheme = scheme.lower()
            if scheme == "file":
                return self._local(_file_url_path(text))
            if scheme not in REMOTE_SCHEMES:
                raise InvalidInput(
                    f"Worpen fetches git repositories over http, https, git or ssh (or file:// below "
                    f"the allowed directories), not {scheme}://",
                    "repository",
                )
            parts = urlsplit(text)
            if not parts.hostname or parts.hostname.startswith("-"):
                raise InvalidInput(f"{redact(text)} names no valid host", "repository")
            if parts.username is not None and parts.username.startswith("-"):
                raise InvalidInput(f"{redact(text)} names no valid user", "repository")
            return _Target(text, local=False)
        if text.startswith("/"):
            return self._local(text)
        if _SCP.match(text) and not text.split(":", 1)[1].startswith(("-", ":")):
            return _Target(text, local=False)
        raise InvalidInput(
            "a repository is an http(s)://, git://, ssh:// or file:// URL, user@host:path, "
            "or an absolute path below the allowed directories",
            "repository",
        )

    def _local(self, path: str) -> _Target:
        if not self._roots:
            raise InvalidInput(
                "local repositories are not allowed (WORPEN_PIPELINE_LOCAL_REPOS allows directories)",
                "repository",
            )
        real = os.path.realpath(path)
        if not self._allowed(real):
            raise InvalidInput(
                f"{path} is outside the directories allowed for local repositories "
                "(WORPEN_PIPELINE_LOCAL_REPOS)",
                "repository",
            )
        return _Target(real, local=True)

    def _allowed(self, real: str) -> bool:
        return any(os.path.commonpath((root, real)) == root for root in self._roots)

    def _fetch(self, target: _Target, shown: str, branch: str, commit: str | None, deadline: float) -> Source:
        dependency = f"git repository {shown}"
        try:
            if target.local:
                return self._read_local(target.location, branch, commit)
            return self._fetch_remote(target.location, branch, commit, deadline)
        except WorpenError:
            raise
        except _Expired:
            raise Unavailable(dependency, f"no answer within {self._timeout:g} s") from None
        except _PackTooLarge:
            raise TooLarge(
                f"{shown} sends more than {self._fetch_limit(commit)} bytes for this fetch"
            ) from None
        except Exception as exc:
            reason = _redact_text(f"{type(exc).__name__}: {exc}", target.location)
            raise Unavailable(dependency, reason) from exc

    def _read_local(self, path: str, branch: str, commit: str | None) -> Source:
        with Repo(path) as repo:
            self._confine(repo)
            refs = repo.get_refs()
            return self._source(repo.object_store, refs, branch, commit)

    def _confine(self, repo: Repo) -> None:
        """A `.git` file, a linked worktree's common directory or an alternates file can point a repository
        below the allowed directories at objects elsewhere: all must stay below them too."""
        store = repo.object_store
        places = [repo.controldir(), repo.commondir()]
        if isinstance(store, DiskObjectStore):
            places.append(os.fspath(store.path))
            places.extend(store._read_alternate_paths())
        for place in places:
            if not self._allowed(os.path.realpath(place)):
                raise InvalidInput(
                    "the repository's git data lies outside the directories allowed for local repositories",
                    "repository",
                )

    def _fetch_remote(self, url: str, branch: str, commit: str | None, deadline: float) -> Source:
        client, path = get_transport_and_path(url, quiet=True, pool_manager=_http_pool(url, self._timeout))
        seen: dict[Ref, ObjectID] = {}
        head = _branch_ref(branch)

        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            seen.update(refs)
            if commit is None:
                return [refs[head]] if head in refs else []
            return sorted({sha for name, sha in refs.items() if _fetchable(name)})

        limit = self._fetch_limit(commit)
        with tempfile.TemporaryDirectory(prefix="worpen-source-") as scratch:
            repo = Repo.init_bare(os.path.join(scratch, "repo"), mkdir=True)
            try:
                with open(os.path.join(scratch, "incoming.pack"), "w+b") as pack:
                    received = 0

                    def write(data: bytes) -> int:
                        nonlocal received
                        received += len(data)
                        if received > limit:
                            raise _PackTooLarge
                        if time.monotonic() > deadline:
                            raise _Expired
                        return pack.write(data)

                    client.fetch_pack(
                        path,
                        wants,
                        repo.get_graph_walker(),
                        write,
                        depth=1 if commit is None else None,
                        ref_prefix=[head] if commit is None else None,
                    )
                    if received:
                        pack.seek(0)
                        repo.object_store.add_thin_pack(pack.read, None)
                return self._source(repo.object_store, seen, branch, commit)
            finally:
                repo.close()

    def _fetch_limit(self, commit: str | None) -> int:
        return self._max_bytes if commit is None else self._max_bytes * HISTORY_ALLOWANCE

    def _source(
        self, store: BaseObjectStore, refs: Mapping[Ref, ObjectID], branch: str, commit: str | None
    ) -> Source:
        found = _resolve(store, refs, branch, commit)
        tree = store[found.tree]
        assert isinstance(tree, Tree)
        archive = _archive(store, tree, found.commit_time, self._max_bytes)
        author = found.author.split(b" <", 1)[0]
        first_line = found.message.strip().split(b"\n", 1)[0].strip()
        return Source(
            commit=found.id.decode("ascii"),
            archive=archive,
            author=_text(author, found.encoding) or None,
            message=_text(first_line, found.encoding) or None,
        )


def redact(repository: str) -> str:
    """The address without the credentials a URL may carry (`https://user:token@host/...`)."""
    scheme, sep, rest = repository.partition("://")
    if not sep:
        return repository
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return repository
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def _redact_text(text: str, url: str) -> str:
    """`text` (an error from the transport) with the URL's credentials taken out, raw or percent-decoded."""
    _, sep, rest = url.partition("://")
    authority = rest.partition("/")[0]
    if not sep or "@" not in authority:
        return text
    userinfo = authority.rsplit("@", 1)[0]
    secrets = {userinfo, unquote(userinfo), *userinfo.split(":"), *unquote(userinfo).split(":")}
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _http_pool(url: str, timeout: float) -> urllib3.PoolManager | None:
    """For http(s), dulwich's connection pool (proxies from the environment) with a timeout on every
    connection and read, so a server that stops answering ends the fetch's thread, not only its wait."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    pool = default_urllib3_manager(None, base_url=url, timeout=timeout)
    return pool if isinstance(pool, urllib3.PoolManager) else None


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput("a file:// URL names a path on this server, not on another host", "repository")
    if parts.query or parts.fragment:
        raise InvalidInput("a file:// URL carries no query or fragment", "repository")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InvalidInput("a file:// URL holds an absolute path", "repository")
    return path


def _commit_prefix(commit: str) -> str:
    wanted = commit.strip().lower()
    if not _HEX.match(wanted):
        raise InvalidInput(f"{commit!r} is not a commit sha (4 to 64 hexadecimal digits)", "commit")
    return wanted


def _branch_ref(branch: str) -> Ref:
    name = branch.strip().removeprefix("refs/heads/")
    return Ref(b"refs/heads/" + name.encode("utf-8"))


def _fetchable(name: bytes) -> bool:
    return name.startswith((b"refs/heads/", b"refs/tags/")) and not name.endswith(b"^{}")


def _resolve(store: BaseObjectStore, refs: Mapping[Ref, ObjectID], branch: str, commit: str | None) -> Commit:
    if commit is None:
        sha = refs.get(_branch_ref(branch))
        found = store[sha] if sha is not None and sha in store else None
        if not isinstance(found, Commit):
            raise NotFound("branch", branch)
        return found
    if len(commit) in (40, 64):
        exact = ObjectID(commit.encode("ascii"))
        if exact not in store or not isinstance(found := store[exact], Commit):
            raise NotFound("commit", commit)
        return found
    prefix = commit.encode("ascii")
    matches = [sha for sha in store if sha.startswith(prefix) and isinstance(store[sha], Commit)]
    if not matches:
        raise NotFound("commit", commit)
    if len(matches) > 1:
        raise InvalidInput(f"{commit!r} is the start of more than one commit: give more digits", "commit")
    found = store[matches[0]]
    assert isinstance(found, Commit)
    return found


def _archive(store: BaseObjectStore, tree: Tree, mtime: int, limit: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:

        def add(info: tarfile.TarInfo, content: bytes | None = None) -> None:
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
            if buffer.tell() > limit:
                raise TooLarge(f"the repository's files are more than {limit} bytes")

        _walk(store, tree, "", add)
    archive = buffer.getvalue()
    if len(archive) > limit:
        raise TooLarge(f"the repository's files are more than {limit} bytes")
    return archive


def _walk(
    store: BaseObjectStore,
    tree: Tree,
    prefix: str,
    add: Callable[[tarfile.TarInfo, bytes | None], None],
) -> None:
    for entry in tree.iteritems():
        name, mode, sha = entry.path, entry.mode, entry.sha
        assert name is not None
        assert mode is not None
        assert sha is not None
        if name.lower().rstrip(b". ") in _UNSAFE_NAMES or b"/" in name or b"\x00" in name:
            raise InvalidInput(f"the repository holds an unsafe path {name!r}", "repository")
        path = prefix + os.fsdecode(name)
        info = tarfile.TarInfo(path)
        if stat.S_ISDIR(mode) or S_ISGITLINK(mode):
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            add(info, None)
            if stat.S_ISDIR(mode):
                subtree = store[sha]
                assert isinstance(subtree, Tree)
                _walk(store, subtree, path + "/", add)
            continue
        blob = store[sha]
        assert isinstance(blob, Blob)
        if stat.S_ISLNK(mode):
            info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.fsdecode(blob.data)
            add(info, None)
        else:
            data = blob.data
            info.size, info.mode = len(data), 0o755 if mode & 0o111 else 0o644
            add(info, data)


def _text(raw: bytes, encoding: bytes | None) -> str:
    try:
        return raw.decode(encoding.decode("ascii") if encoding else "utf-8", errors="replace").strip()
    except LookupError:
        return raw.decode("utf-8", errors="replace").strip()
