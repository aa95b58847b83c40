"""Loading the published public keys (a JWKS) and choosing the one to seal to.

Sources: a dict, a file path, an `s3://bucket/key` URL or an `https://` URL (plain `http://`
only to loopback, for tests: a JWKS fetched over an unauthenticated channel could carry an
attacker's key). The source is re-read every `refresh_s` and whenever no key is usable, so
clients pick up a rotation without a restart.

With `verify_with` (pinned signer keys, sealq.producer.pins) the source must be a signed key
set (sealq.producer.signed): one that fails verification is refused on load, and on refresh
the verified keys loaded before stay in use; once the signed document's `exp` passes, no key
is used until a fresh one verifies.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sealq.envelope.jwk import SealingKey, jwk_to_sealing_key
from sealq.errors import JwksError, NoUsableKeyError, SignedJwksExpiredError, UnsignedJwksError
from sealq.producer.pins import PinsInput, load_pins
from sealq.producer.signed import KeySetVerifier

log = logging.getLogger("sealq.producer")

JwksInput = str | Path | Mapping[str, Any]
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MIN_RETRY_S = 5.0


def parse_jwks(document: bytes | str | Mapping[str, Any]) -> tuple[SealingKey, ...]:
    """Validate a JWKS document; JwksError names the first problem found."""
    if isinstance(document, bytes | str):
        raw = document
        try:
            document = json.loads(raw)
        except ValueError as exc:
            text = raw if isinstance(raw, str) else raw.decode("latin-1")
            if text.strip().count(".") == 2 and not text.lstrip().startswith("{"):
                raise JwksError(
                    "this key set is signed (a compact JWS): pin its signer with verify_with= "
                    "or --verify-with (the key from `sealq keys signer-pem`)"
                ) from None
            raise JwksError(f"JWKS is not valid JSON: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise JwksError('JWKS must be a JSON object with a "keys" array')
    keys = tuple(jwk_to_sealing_key(jwk) for jwk in document["keys"])
    if not keys:
        raise JwksError("JWKS has no keys; publish one with `sealq keys publish`")
    kids = [k.kid for k in keys]
    if len(set(kids)) != len(kids):
        raise JwksError("JWKS lists the same kid twice")
    return keys


def choose_key(keys: tuple[SealingKey, ...], now: float) -> SealingKey:
    """The current key: among keys valid at `now`, the one with the latest not-before (then
    the latest expiry). A full tie goes to the key listed first, as `sealq keys publish`
    lists the newest key first."""
    usable = [k for k in keys if k.usable_at(now)]
    if not usable:
        latest = max((k.expires_at or 0 for k in keys), default=0)
        if latest and latest <= now:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(latest))
            hint = f"every key has expired (the last at {when})"
        else:
            hint = "no key is valid yet"
        raise NoUsableKeyError(
            f"no usable public key: {hint}; fetch the current JWKS or ask the operator to "
            "run `sealq keys rotate` and `sealq keys publish`"
        )
    return max(usable, key=lambda k: (k.not_before or 0, k.expires_at or float("inf")))


def _refusal(url: str, *, came_from: str | None = None) -> str | None:
    """Why `url` may not serve a JWKS, or None. Plain http only on loopback; a redirect may
    not step down from https to http, or a path attacker could hand out their own keys."""
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http"):
        return f"refusing to fetch a JWKS from {parsed.scheme or '?'}:// ; use https://"
    if came_from is not None and urlparse(came_from).scheme == "https" and parsed.scheme != "https":
        return f"refusing a redirect from {came_from} to plain http ({url}); serve the JWKS over https"
    if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
        return f"refusing to fetch a JWKS over plain http from {parsed.hostname}; use https://"
    return None


class _RefuseDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        problem = _refusal(newurl, came_from=req.full_url)
        if problem is not None:
            raise JwksError(problem)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Fetcher:
    """Reads one source, skipping the parse when it has not changed (content or ETag)."""

    def __init__(self, source: str | Path, s3_client: Any | None) -> None:
        self.source = source
        self._s3 = s3_client
        self._version: object = None
        self._opener = urllib.request.build_opener(_RefuseDowngrade)

    def fetch(self) -> bytes | None:
        """New document bytes, or None when unchanged since the last fetch."""
        src = str(self.source)
        if src.startswith("s3://"):
            return self._fetch_s3(src)
        if src.startswith(("https://", "http://")):
            return self._fetch_http(src)
        return self._fetch_file(Path(src))

    def _fetch_file(self, path: Path) -> bytes | None:
        # Compared by content, not mtime: a JWKS is small, and a rewrite within one mtime
        # tick (coarse filesystems) that keeps the size would otherwise go unnoticed.
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise JwksError(f"cannot read JWKS file {path}: {exc.strerror or exc}") from None
        if data == self._version:
            return None
        self._version = data
        return data

    def _fetch_http(self, url: str) -> bytes | None:
        problem = _refusal(url)
        if problem is not None:
            raise JwksError(problem)
        request = urllib.request.Request(url, headers={"Accept": "application/json, application/jose"})  # noqa: S310
        if isinstance(self._version, str):
            request.add_header("If-None-Match", self._version)
        try:
            with self._opener.open(request, timeout=10) as response:
                data: bytes = response.read(1024 * 1024 + 1)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise JwksError(f"cannot fetch JWKS from {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JwksError(f"cannot fetch JWKS from {url}: {reason}") from None
        if len(data) > 1024 * 1024:
            raise JwksError(f"JWKS at {url} is larger than 1 MiB")
        self._version = etag
        return data

    def _fetch_s3(self, url: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = url[len("s3://") :].partition("/")
        if not bucket or not key:
            raise JwksError(f"S3 URL {url!r} must look like s3://bucket/key")
        if self._s3 is None:
            from sealq.aws.clients import client

            self._s3 = client("s3")
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
            etag = response.get("ETag")
            if etag is not None and etag == self._version:
                return None
            data: bytes = response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise JwksError(f"cannot read JWKS {url}: {code}") from None
        except BotoCoreError as exc:
            raise JwksError(f"cannot read JWKS {url}: {exc}") from None
        self._version = etag
        return data


class PublicKeySet:
    """The published keys a producer seals to, refreshed from their source as they change.

    Thread-safe: one instance may serve a multi-threaded producer.
    """

    def __init__(
        self,
        source: JwksInput,
        *,
        refresh_s: float = 300.0,
        s3_client: Any | None = None,
        clock: Callable[[], float] = time.time,
        verify_with: PinsInput | None = None,
    ) -> None:
        self._clock = clock
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._fetcher: _Fetcher | None = None
        self._verifier = None if verify_with is None else KeySetVerifier(load_pins(verify_with))
        if isinstance(source, Mapping):
            if self._verifier is not None:
                raise UnsignedJwksError(
                    "a JWKS dict is unsigned but a signer is pinned (verify_with); pass the "
                    "signed document's location instead"
                )
            self._keys, self._valid_until = parse_jwks(source), float("inf")
        else:
            self._fetcher = _Fetcher(source, s3_client)
            data = self._fetcher.fetch()
            assert data is not None
            self._keys, self._valid_until = self._parse(data)
        self._loaded_at = self._clock()

    def _parse(self, data: bytes) -> tuple[tuple[SealingKey, ...], float]:
        """The keys in `data` and until when they may be used (the signed document's exp)."""
        if self._verifier is None:
            return parse_jwks(data), float("inf")
        signed = self._verifier.verify(data, self._clock())
        return parse_jwks(signed.jwks), float(signed.expires_at)

    @property
    def keys(self) -> tuple[SealingKey, ...]:
        return self._keys

    def refresh(self) -> bool:
        """Re-read the source now; True when the keys changed. Keeps the old keys on error."""
        if self._fetcher is None:
            return False
        with self._lock:
            self._loaded_at = self._clock()
            data = self._fetcher.fetch()
            if data is None:
                return False
            keys, self._valid_until = self._parse(data)
            changed = keys != self._keys
            self._keys = keys
            return changed

    def current(self) -> SealingKey:
        """The key to seal to now; re-reads the source when stale or when nothing is usable."""
        now = self._clock()
        if self._fetcher is not None and now - self._loaded_at >= self._refresh_s:
            self._refresh_quietly()
        if now >= self._valid_until:
            if self._fetcher is not None and now - self._loaded_at >= _MIN_RETRY_S:
                self._refresh_quietly()
            if now >= self._valid_until:
                raise SignedJwksExpiredError(
                    "the signed key set in use has expired and no fresh one verified; ask the "
                    "operator to run `sealq keys publish --sign-with KEY` again"
                )
        try:
            return choose_key(self._keys, now)
        except NoUsableKeyError:
            if self._fetcher is None or now - self._loaded_at < _MIN_RETRY_S:
                raise
            self._refresh_quietly()
            return choose_key(self._keys, now)

    def current_without_io(self) -> SealingKey | None:
        """The current key when that needs no read of the source, else None (then call
        `current`, e.g. in a thread): lets the async producer skip a thread hop per send."""
        now = self._clock()
        if (self._fetcher is not None and now - self._loaded_at >= self._refresh_s) or (
            now >= self._valid_until
        ):
            return None
        try:
            return choose_key(self._keys, now)
        except NoUsableKeyError:
            return None

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except JwksError as exc:
            # Old keys stay in use while they are valid; choose_key fails once they are not.
            log.warning("JWKS refresh failed, keeping the keys loaded before: %s", exc)
