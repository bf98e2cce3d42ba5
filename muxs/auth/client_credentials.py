"""OAuth 2.0 client-credentials tokens (RFC 6749 section 4.4) for ``muxs.Client``.

Needs the ``oauth`` extra (``pip install "muxs[oauth]"``: httpx). Tokens are cached and
fetched again ``refresh_margin`` seconds before they expire; concurrent calls share one
fetch.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from muxs.errors import ConfigError, TokenError
from muxs.tls import is_loopback

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = 60.0
"""Seconds a token is reused when the endpoint does not say (no ``expires_in``)."""

AuthMethod = Literal["client_secret_basic", "client_secret_post"]


class ClientCredentials:
    """A token provider: ``Client(target, tls=..., token_provider=ClientCredentials(...))``.

    ``await credentials()`` returns a valid access token, from the cache or from
    ``token_url``; a failure raises ``muxs.TokenError`` saying what the endpoint answered.
    The client authenticates with HTTP Basic (``client_secret_basic``, the default) or with
    form fields (``client_secret_post``). ``verify`` is the TLS verification for httpx
    (an ``ssl.SSLContext``, or True for the system's CAs). Plain ``http://`` is refused
    except to a loopback address, unless ``allow_insecure_http``.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: Iterable[str] = (),
        *,
        auth_method: AuthMethod = "client_secret_basic",
        refresh_margin: float = 30.0,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if importlib.util.find_spec("httpx") is None:
            raise ConfigError(
                "token_url", 'ClientCredentials needs httpx: pip install "muxs[oauth]"'
            )
        url = urlsplit(token_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ConfigError("token_url", f"{token_url!r} is not an http(s) URL")
        if url.scheme == "http" and not is_loopback(url.hostname) and not allow_insecure_http:
            raise ConfigError(
                "token_url",
                f"refusing to send client credentials in plaintext to {url.hostname}: use https "
                "(or allow_insecure_http=True)",
            )
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = tuple(scopes)
        self.auth_method = auth_method
        self.refresh_margin = refresh_margin
        self._timeout = timeout
        self._verify = verify
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_url!r}, client_id={self.client_id!r})"

    async def __call__(self) -> str:
        """A valid access token: the cached one, or a new one fetched now."""
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, lifetime = await self._fetch()
                self._refresh_at = self._clock() + max(lifetime - self.refresh_margin, lifetime / 2)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        import httpx

        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        auth = None
        if self.auth_method == "client_secret_basic":
            # RFC 6749 section 2.3.1: both are form-encoded before Basic encoding.
            auth = httpx.BasicAuth(
                quote(self.client_id, safe=""), quote(self._client_secret, safe="")
            )
        else:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        try:
            async with httpx.AsyncClient(
                auth=auth, verify=self._verify, timeout=self._timeout
            ) as http:
                response = await http.post(
                    self.token_url, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise TokenError(
                f"cannot reach the token endpoint {self.token_url}: {reason}"
            ) from None
        body = _json(response)
        if response.status_code != 200:
            error = " ".join(
                str(body[key]) for key in ("error", "error_description") if key in body
            )
            raise TokenError(
                f"the token endpoint {self.token_url} refused the client-credentials grant: "
                f"HTTP {response.status_code}" + (f": {error}" if error else "")
            )
        return _parse_token(self.token_url, body)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _parse_token(token_url: str, body: dict[str, Any]) -> tuple[str, float]:
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError(f"the token endpoint {token_url} answered without an access_token")
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(f"the token endpoint {token_url} gave a {token_type!r} token, not Bearer")
    expires_in = body.get("expires_in", DEFAULT_LIFETIME)
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise TokenError(f"the token endpoint {token_url} gave an invalid expires_in")
    log.debug("fetched a token from %s, valid for %ss", token_url, expires_in)
    return token, float(expires_in)
