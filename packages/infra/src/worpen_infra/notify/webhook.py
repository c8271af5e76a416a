"""HttpWebhookSender: posts notifications with httpx, refusing addresses inside the network Worpen runs in.

A channel's URL is an admin's, but what it resolves to can change (DNS rebinding), and a webhook that
reaches a cloud metadata service or an internal admin port is a server-side request forgery. So the
check is made where the connection is made: each new connection resolves the host, refuses it if ANY of
its addresses is loopback, link-local (169.254.0.0/16, where cloud metadata lives; fe80::/10), private
(10/8, 172.16/12, 192.168/16, fc00::/7), unspecified, multicast, reserved or otherwise not global, or an
IPv4-mapped (or NAT64) form of one of these, and connects to an address it checked, never to one
resolved again after. Redirects are not followed and no proxy is taken from the environment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import httpcore
import httpx

from worpen_core.shared.errors import EngineFailed, InvalidInput, TimedOut, Unavailable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
ANSWER_EXCERPT = 200
"""Characters of a refusing receiver's answer kept in the delivery's error."""
ALLOW_HINT = "set WORPEN_ALLOW_PRIVATE_WEBHOOKS=true to allow addresses inside your network"


def refusal(address: Address) -> str | None:
    """Why a webhook may not be sent to `address`, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(embedded)
            if reason is not None:
                return f"{reason} (as {embedded}, embedded in an IPv6 address)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


class AddressGuard:
    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def vetted(self, host: str, port: int) -> list[str]:
        """The addresses of `host`, all of them allowed; raises InvalidInput(field="url") when any is
        refused, Unavailable when the host does not resolve (now)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unavailable("DNS", f"{host!r} does not resolve: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            for text in addresses:
                reason = refusal(ipaddress.ip_address(text))
                if reason is not None:
                    raise InvalidInput(f"{host} resolves to {text}, {reason}: refused ({ALLOW_HINT})", "url")
        return addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that connects only to addresses the guard allowed."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self._guard.vetted(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise InvalidInput("webhooks are sent over TCP only", "url")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections go through the guard. httpx takes no
    network backend of its own, so its pool is replaced by one built the same way with ours."""

    def __init__(self, guard: AddressGuard) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedNetworkBackend(guard),
        )


def _origin(url: str) -> tuple[str, int]:
    """The host and port `url` names (what the guard checks); InvalidInput for a URL that has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"is not a valid URL: {exc}", "url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("must be an http:// or https:// URL with a host", "url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class HttpWebhookSender:
    """WebhookSender over httpx: each attempt has `timeout` seconds in all (connect, write, read)."""

    def __init__(self, *, allow_private: bool, timeout: float) -> None:
        self._guard = AddressGuard(allow_private=allow_private)
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        """Made at the first send, in the loop that serves (none at import or construction time)."""

    async def check(self, url: str) -> None:
        host, port = _origin(url)
        try:
            async with asyncio.timeout(self._timeout):
                await self._guard.vetted(host, port)
        except TimeoutError:
            raise InvalidInput(f"{host!r} did not resolve within {self._timeout:g} s", "url") from None
        except Unavailable as exc:
            raise InvalidInput(f"{host!r} does not resolve", "url") from exc

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        host, _ = _origin(url)
        where = f"webhook {host}"
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=_GuardedTransport(self._guard),
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": "Worpen-Notifier/1"},
            )
        try:
            async with self._client.stream("POST", url, content=body, headers=dict(headers)) as response:
                if response.is_success:
                    return
                answer = await _excerpt(response)
        except httpx.TimeoutException as exc:
            raise TimedOut(f"{where}: no answer within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(where, str(exc) or type(exc).__name__) from exc
        status = response.status_code
        detail = f"answered {status} {response.reason_phrase}" + (f": {answer}" if answer else "")
        if status in (408, 429) or status >= 500:
            raise Unavailable(where, detail)
        if response.is_redirect:
            detail += " (redirects are not followed)"
        raise EngineFailed(where, detail)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body (read no further: a receiver may answer with anything)."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= ANSWER_EXCERPT:
            break
    return read[:ANSWER_EXCERPT].decode("utf-8", "replace").strip()
