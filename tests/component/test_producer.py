"""Producer and AsyncProducer against in-process SQS (moto) or small fakes, and the JWKS
sources a producer reads (file, loopback http, https, refusal of plain http elsewhere)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sealq.aws.limits import SQS_MAX_MESSAGE_BYTES
from sealq.envelope.attributes import ATTR_CLIENT_ID, ATTR_KEY_ID
from sealq.envelope.jwe import open_token
from sealq.envelope.jwk import public_key_to_jwk
from sealq.errors import InvalidAttributeError, JwksError, NoUsableKeyError, SendError
from sealq.producer import AsyncProducer, OutgoingMessage, Producer, PublicKeySet
from tests.conftest import KeyPair

NOW = 1_800_000_000.0
DAY = 86400


def _jwks(*pairs: KeyPair, nbf: float = NOW - DAY, exp: float = NOW + DAY) -> dict[str, Any]:
    return {
        "keys": [public_key_to_jwk(p.public, p.kid, not_before=int(nbf), expires_at=int(exp)) for p in pairs]
    }


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws_creds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def sqs(aws_creds: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName="sealq-test")["QueueUrl"])


class Recording:
    """Wraps a real client and records the size of each SendMessageBatch call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []

    def send_message(self, **kwargs: Any) -> Any:
        return self.inner.send_message(**kwargs)

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.batches.append([e["Id"] for e in kwargs["Entries"]])
        return self.inner.send_message_batch(**kwargs)


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            return out
        out += got


def _attr(message: dict[str, Any], name: str) -> str:
    return str(message["MessageAttributes"][name]["StringValue"])


# --- Producer on moto ---------------------------------------------------------------------


def test_send_one_message(sqs: Any, queue_url: str, ec_pair: KeyPair) -> None:
    producer = Producer(queue_url, _jwks(ec_pair), client_id="shop-1", clock=Clock())
    message_id = producer.send(b"order 17")
    (received,) = _drain(sqs, queue_url)
    assert received["MessageId"] == message_id
    assert _attr(received, ATTR_KEY_ID) == ec_pair.kid
    assert _attr(received, ATTR_CLIENT_ID) == "shop-1"
    assert open_token(received["Body"], ec_pair.opening) == b"order 17"


def test_empty_attribute_values_are_refused_before_any_call(ec_pair: KeyPair) -> None:
    class NoCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"SQS {name} called")

    with pytest.raises(InvalidAttributeError, match="client-id must not be empty"):
        Producer("q", _jwks(ec_pair), client_id="", sqs_client=NoCalls(), clock=Clock())
    with pytest.raises(InvalidAttributeError, match="client-id must not be empty"):
        AsyncProducer("q", _jwks(ec_pair), client_id="", sqs_client=NoCalls(), clock=Clock())
    producer = Producer("q", _jwks(ec_pair), sqs_client=NoCalls(), clock=Clock())
    with pytest.raises(InvalidAttributeError, match="content-type must not be empty"):
        producer.send_batch([b"a", OutgoingMessage(b"b", content_type="")])
    with pytest.raises(InvalidAttributeError, match="trace must not be empty"):
        producer.send(OutgoingMessage(b"c", attributes={"trace": ""}))


def test_producer_creates_its_own_client(sqs: Any, queue_url: str, rsa_pair: KeyPair) -> None:
    producer = Producer(queue_url, _jwks(rsa_pair), clock=Clock())  # no sqs_client given
    producer.send("hello", content_type="text/plain")
    (received,) = _drain(sqs, queue_url)
    assert open_token(received["Body"], rsa_pair.opening) == b"hello"
    assert _attr(received, "content-type") == "text/plain"


def test_send_batch_of_25_goes_in_chunks_of_at_most_10(sqs: Any, queue_url: str, ec_pair: KeyPair) -> None:
    client = Recording(sqs)
    producer = Producer(queue_url, _jwks(ec_pair), sqs_client=client, clock=Clock())
    result = producer.send_batch([f"msg {i}".encode() for i in range(25)])
    assert result.ok
    assert [s.index for s in result.sent] == list(range(25))
    assert [len(b) for b in client.batches] == [10, 10, 5]
    bodies = sorted(open_token(m["Body"], ec_pair.opening) for m in _drain(sqs, queue_url))
    assert bodies == sorted(f"msg {i}".encode() for i in range(25))


def test_send_batch_splits_by_size(sqs: Any, queue_url: str, ec_pair: KeyPair) -> None:
    # Four ~400 KB sealed bodies: two fit in one 1 MiB batch, three do not.
    client = Recording(sqs)
    producer = Producer(queue_url, _jwks(ec_pair), sqs_client=client, clock=Clock())
    plaintexts = [bytes([65 + i]) * 300_000 for i in range(4)] + [b"small"]
    result = producer.send_batch(plaintexts)
    assert result.ok, result.failed
    assert client.batches == [["0", "1"], ["2", "3", "4"]]
    received = _drain(sqs, queue_url)
    assert sorted(open_token(m["Body"], ec_pair.opening) for m in received) == sorted(plaintexts)


def test_too_large_message_fails_alone(sqs: Any, queue_url: str, ec_pair: KeyPair) -> None:
    producer = Producer(queue_url, _jwks(ec_pair), clock=Clock())
    too_big = b"x" * (SQS_MAX_MESSAGE_BYTES * 3 // 4)
    result = producer.send_batch([b"first", too_big, b"last"])
    assert [(f.index, f.code, f.sender_fault) for f in result.failed] == [(1, "MessageTooLarge", True)]
    assert "s3_bucket" in result.failed[0].message
    assert sorted(s.index for s in result.sent) == [0, 2]
    received = sorted(open_token(m["Body"], ec_pair.opening) for m in _drain(sqs, queue_url))
    assert received == [b"first", b"last"]


def test_whole_call_failure_is_a_send_error(sqs: Any, ec_pair: KeyPair) -> None:
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    producer = Producer(missing, _jwks(ec_pair), clock=Clock())
    with pytest.raises(SendError, match=r"SendMessageBatch failed:.*check the queue URL"):
        producer.send_batch([b"a"])
    with pytest.raises(SendError, match=r"SendMessage failed:.*check the queue URL"):
        producer.send(b"a")


# --- per-entry failures (fake client) -----------------------------------------------------

Responder = Callable[[int, list[dict[str, Any]]], dict[str, Any]]


class FakeSqs:
    """send_message_batch answers with whatever `respond(call_number, entries)` says."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.calls: list[list[str]] = []
        self.singles: list[dict[str, Any]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.calls.append([e["Id"] for e in Entries])
        return self.respond(len(self.calls), Entries)

    def send_message(self, **kwargs: Any) -> Any:
        self.singles.append(kwargs)
        return {"MessageId": "single"}


class FakeAsyncSqs(FakeSqs):
    async def send_message_batch(
        self,
        QueueUrl: str,
        Entries: list[dict[str, Any]],
    ) -> Any:
        return FakeSqs.send_message_batch(self, QueueUrl, Entries)

    async def send_message(self, **kwargs: Any) -> Any:
        self.singles.append(kwargs)
        return {"MessageId": "async-single"}


def _ok(entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"Id": e["Id"], "MessageId": f"m{e['Id']}"} for e in entries]


def _flaky(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """First call: entry 1 is the sender's fault, entries 2 and 3 fail transiently."""
    if call == 1:
        good = [e for e in entries if e["Id"] not in {"1", "2", "3"}]
        return {
            "Successful": _ok(good),
            "Failed": [
                {"Id": "1", "Code": "InvalidParameterValue", "Message": "no", "SenderFault": True},
                {"Id": "2", "Code": "InternalError", "Message": "try again", "SenderFault": False},
                {"Id": "3", "Code": "ServiceUnavailable", "SenderFault": False},
            ],
        }
    return {"Successful": _ok(entries)}


def test_per_entry_failures_are_reported_and_transient_ones_retried(ec_pair: KeyPair) -> None:
    fake = FakeSqs(_flaky)
    producer = Producer("q", _jwks(ec_pair), sqs_client=fake, clock=Clock())
    result = producer.send_batch([b"a", b"b", b"c", b"d", b"e"])
    assert fake.calls == [["0", "1", "2", "3", "4"], ["2", "3"]]  # sender fault not retried
    assert sorted(s.index for s in result.sent) == [0, 2, 3, 4]
    assert [(f.index, f.code, f.sender_fault) for f in result.failed] == [(1, "InvalidParameterValue", True)]


def test_transient_failures_give_up_after_retries(ec_pair: KeyPair) -> None:
    def always_failing(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in entries]}

    fake = FakeSqs(always_failing)
    producer = Producer("q", _jwks(ec_pair), sqs_client=fake, retries=2, clock=Clock())
    result = producer.send_batch([b"a", b"b"])
    assert len(fake.calls) == 3
    assert result.sent == []
    assert [(f.index, f.code) for f in result.failed] == [
        (0, "RetriesExhausted"),
        (1, "RetriesExhausted"),
    ]


def test_entries_missing_from_the_response_are_retried(ec_pair: KeyPair) -> None:
    def forgetful(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Successful": _ok(entries[:1])}  # answers for the first entry only

    fake = FakeSqs(forgetful)
    result = Producer("q", _jwks(ec_pair), sqs_client=fake, clock=Clock()).send_batch([b"a", b"b"])
    assert fake.calls == [["0", "1"], ["1"]]
    assert sorted(s.index for s in result.sent) == [0, 1]


def test_whole_call_failure_mid_batch_says_how_many_were_sent(ec_pair: KeyPair) -> None:
    from botocore.exceptions import ClientError

    def throttled_later(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        if call == 1:
            return {"Successful": _ok(entries)}
        error = {"Error": {"Code": "RequestThrottled", "Message": "slow down"}}
        raise ClientError(error, "SendMessageBatch")  # type: ignore[arg-type]

    producer = Producer("q", _jwks(ec_pair), sqs_client=FakeSqs(throttled_later), clock=Clock())
    with pytest.raises(SendError, match="RequestThrottled: slow down") as info:
        producer.send_batch([f"m{i}" for i in range(25)])
    assert info.value.sent_count == 10


# --- AsyncProducer (fake aiobotocore client) ----------------------------------------------


async def test_async_producer_sends_and_retries(ec_pair: KeyPair) -> None:
    fake = FakeAsyncSqs(_flaky)
    messages = [OutgoingMessage(f"m{i}", client_id="cli") for i in range(25)]
    async with AsyncProducer("q", _jwks(ec_pair), sqs_client=fake, clock=Clock()) as producer:
        assert await producer.send(b"one") == "async-single"
        result = await producer.send_batch(messages)
    (single,) = fake.singles
    assert open_token(single["MessageBody"], ec_pair.opening) == b"one"
    assert [len(c) for c in fake.calls] == [10, 2, 10, 5]  # ids 2 and 3 retried once
    assert sorted(s.index for s in result.sent) == [i for i in range(25) if i != 1]
    assert [(f.index, f.code) for f in result.failed] == [(1, "InvalidParameterValue")]


async def test_async_producer_seals_to_the_current_key(ec_pair: KeyPair) -> None:
    seen: list[dict[str, Any]] = []

    def capture(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        seen.extend(entries)
        return {"Successful": _ok(entries)}

    async with AsyncProducer(
        "q", _jwks(ec_pair), client_id="c1", sqs_client=FakeAsyncSqs(capture), clock=Clock()
    ) as producer:
        await producer.send_batch([b"hello"])
    (entry,) = seen
    assert entry["MessageAttributes"][ATTR_KEY_ID]["StringValue"] == ec_pair.kid
    assert entry["MessageAttributes"][ATTR_CLIENT_ID]["StringValue"] == "c1"
    assert open_token(entry["MessageBody"], ec_pair.opening) == b"hello"


async def test_async_producer_outside_context_says_how_to_use_it(ec_pair: KeyPair) -> None:
    producer = AsyncProducer("q", _jwks(ec_pair), sqs_client=FakeAsyncSqs(_flaky))
    with pytest.raises(RuntimeError, match="async with"):
        await producer.send(b"x")


# --- JWKS refresh -------------------------------------------------------------------------


def test_file_jwks_rewritten_is_picked_up_after_refresh_s(
    tmp_path: Path, keypairs: dict[str, KeyPair]
) -> None:
    old, new = keypairs["P-256"], keypairs["P-384"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(old)))
    clock = Clock()
    keys = PublicKeySet(path, refresh_s=60, clock=clock)
    fake = FakeSqs(lambda call, entries: {"Successful": _ok(entries)})
    producer = Producer("q", keys, sqs_client=fake, clock=clock)
    assert producer.seal(b"x").attributes[ATTR_KEY_ID]["StringValue"] == old.kid

    # The operator rotates: the new key starts now and is listed first.
    path.write_text(json.dumps({"keys": _jwks(new, nbf=NOW + 1)["keys"] + _jwks(old)["keys"]}))
    clock.now = NOW + 30  # within refresh_s: still the old key, the file is not re-read
    assert producer.seal(b"x").attributes[ATTR_KEY_ID]["StringValue"] == old.kid
    clock.now = NOW + 61
    entry = producer.seal(b"x")
    assert entry.attributes[ATTR_KEY_ID]["StringValue"] == new.kid
    assert open_token(entry.body, new.opening) == b"x"


def test_broken_rewrite_keeps_the_old_keys(
    tmp_path: Path, ec_pair: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(ec_pair)))
    clock = Clock()
    keys = PublicKeySet(path, refresh_s=60, clock=clock)
    path.write_text('{"keys": 5}')
    clock.now = NOW + 61
    with caplog.at_level(logging.WARNING, logger="sealq.producer"):
        assert keys.current().kid == ec_pair.kid
    assert "JWKS refresh failed" in caplog.text


def test_all_keys_expired_raises_with_a_helpful_message(ec_pair: KeyPair) -> None:
    expired = _jwks(ec_pair, nbf=NOW - 2 * DAY, exp=NOW - DAY)
    producer = Producer("q", expired, sqs_client=FakeSqs(_flaky), clock=Clock())
    with pytest.raises(NoUsableKeyError) as info:
        producer.send(b"x")
    message = str(info.value)
    assert "every key has expired (the last at 2027-01-14T08:00:00Z)" in message
    assert "fetch the current JWKS" in message and "sealq keys rotate" in message


def test_expired_file_jwks_is_re_read_when_no_key_is_usable(
    tmp_path: Path, keypairs: dict[str, KeyPair]
) -> None:
    old, new = keypairs["P-256"], keypairs["RSA-2048"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(old, exp=NOW + 10)))
    clock = Clock()
    keys = PublicKeySet(path, refresh_s=3600, clock=clock)
    clock.now = NOW + 20  # old key expired long before the refresh interval is over
    with pytest.raises(NoUsableKeyError):
        keys.current()  # nothing new published yet
    path.write_text(json.dumps(_jwks(new)))
    clock.now = NOW + 30
    assert keys.current().kid == new.kid


# --- http(s) sources ----------------------------------------------------------------------


class JwksServer:
    """Serves one JWKS document with an ETag and answers If-None-Match with 304."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.document = b"{}"
        self.requests: list[tuple[str | None, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(server.document).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    server.requests.append((self.headers.get("If-None-Match"), 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                server.requests.append((self.headers.get("If-None-Match"), 200))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(server.document)))
                self.end_headers()
                self.wfile.write(server.document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _etag_round_trip(url: str, server: JwksServer, keypairs: dict[str, KeyPair]) -> None:
    old, new = keypairs["P-256"], keypairs["RSA-2048"]
    server.document = json.dumps(_jwks(old)).encode()
    keys = PublicKeySet(url, refresh_s=60, clock=Clock())
    assert keys.current().kid == old.kid
    assert keys.refresh() is False  # unchanged: the server answered 304
    server.document = json.dumps(_jwks(new)).encode()
    assert keys.refresh() is True
    assert keys.current().kid == new.kid
    assert server.requests[0] == (None, 200)  # first fetch: no If-None-Match
    assert server.requests[1][1] == 304 and server.requests[1][0] is not None
    assert server.requests[2][1] == 200 and server.requests[2][0] == server.requests[1][0]


def test_loopback_http_source_with_etag(no_proxy: None, keypairs: dict[str, KeyPair]) -> None:
    server = JwksServer()
    try:
        _etag_round_trip(f"http://127.0.0.1:{server.port}/jwks.json", server, keypairs)
    finally:
        server.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealq test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_source_with_etag(
    no_proxy: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keypairs: dict[str, KeyPair],
) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = JwksServer(tls)
    url = f"https://127.0.0.1:{server.port}/jwks.json"
    try:
        server.document = json.dumps(_jwks(keypairs["P-256"])).encode()
        # Not trusted yet: certificate verification is on.
        with pytest.raises(JwksError, match=r"cannot fetch JWKS from https://127.0.0.1.*CERTIFICATE"):
            PublicKeySet(url)
        server.requests.clear()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        _etag_round_trip(url, server, keypairs)
    finally:
        server.close()


def _redirecting_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> ThreadingHTTPServer:
    """An https server (trusted through SSL_CERT_FILE) that answers every GET with a 302."""
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_https_jwks_redirected_to_plain_http_is_refused(
    no_proxy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keypairs: dict[str, KeyPair]
) -> None:
    # Whoever can answer plain http on the path would hand out their own key: the producer
    # must not follow the step down, even to a host it would otherwise accept over http.
    evil = JwksServer()
    evil.document = json.dumps(_jwks(keypairs["RSA-2048"])).encode()
    redirect = _redirecting_https(tmp_path, monkeypatch, f"http://127.0.0.1:{evil.port}/jwks.json")
    try:
        with pytest.raises(JwksError, match=r"refusing a redirect from https://.* to plain http"):
            PublicKeySet(f"https://127.0.0.1:{redirect.server_address[1]}/jwks.json")
        assert evil.requests == []
    finally:
        redirect.shutdown()
        redirect.server_close()
        evil.close()


def test_http_error_status_is_reported(no_proxy: None) -> None:
    server = JwksServer()
    try:
        with pytest.raises(JwksError, match=r"cannot fetch JWKS from http://127.*/nope: HTTP 404"):
            PublicKeySet(f"http://127.0.0.1:{server.port}/nope")
    finally:
        server.close()


@pytest.mark.parametrize(
    "url",
    ["http://example.com/jwks.json", "http://10.0.0.1/jwks.json", "http://127.0.0.1.evil.test/j"],
)
def test_plain_http_to_another_host_is_refused_without_connecting(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("must not connect")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(JwksError, match=r"refusing to fetch a JWKS over plain http.*use https://"):
        PublicKeySet(url)


def test_missing_jwks_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(JwksError, match=r"cannot read JWKS file .*nope\.json"):
        PublicKeySet(tmp_path / "nope.json")


def test_s3_source_is_read(aws_creds: None, ec_pair: KeyPair) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="jwks-bucket")
        s3.put_object(Bucket="jwks-bucket", Key="jwks.json", Body=json.dumps(_jwks(ec_pair)))
        keys = PublicKeySet("s3://jwks-bucket/jwks.json", clock=Clock())
        assert keys.current().kid == ec_pair.kid
        assert keys.refresh() is False
        with pytest.raises(JwksError, match="NoSuchKey"):
            PublicKeySet("s3://jwks-bucket/other.json")


def test_send_cli_reports_messages_sent_before_a_failure(
    monkeypatch: pytest.MonkeyPatch, ec_pair: KeyPair, tmp_path: Path
) -> None:
    import argparse
    import io

    from sealq.cli import send as cli
    from sealq.producer.message import BatchResult, SentEntry

    class HalfWay:
        calls = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def send_batch(self, chunk: list[OutgoingMessage]) -> BatchResult:
            HalfWay.calls += 1
            if HalfWay.calls == 1:
                return BatchResult(sent=[SentEntry(i, f"m{i}") for i in range(len(chunk))])
            raise SendError("SendMessageBatch failed: RequestThrottled", sent_count=30)

    monkeypatch.setattr(cli, "Producer", HalfWay)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"line\n" * 250)))
    args = argparse.Namespace(
        queue_url="q",
        jwks="j",
        client_id=None,
        content_type=None,
        file=None,
        json=True,
        s3_bucket=None,
        s3_prefix="",
        s3_always=False,
        verify_with=None,
        group_id=None,
        deduplication_id=None,
    )
    with pytest.raises(SendError) as info:
        cli.run_send(args)
    assert info.value.sent_count == 130
    assert "130 message(s) were sent before this failure" in str(info.value)


async def test_async_producer_picks_up_a_rotated_jwks_file(
    keypairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    old, new = keypairs["P-256"], keypairs["P-384"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks(old)))
    seen: list[dict[str, Any]] = []

    def capture(call: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        seen.extend(entries)
        return {"Successful": _ok(entries)}

    clock = Clock()
    async with AsyncProducer("q", str(path), sqs_client=FakeAsyncSqs(capture), clock=clock) as producer:
        await producer.send_batch([b"before"])
        path.write_text(
            json.dumps(_jwks(old, new) | {"keys": [*_jwks(old)["keys"], *_jwks(new, nbf=NOW)["keys"]]})
        )
        await producer.send_batch([b"still cached"])  # no refresh due yet: no read, old key
        clock.now += 301  # past the 5-minute refresh
        await producer.send_batch([b"after"])
    kids = [e["MessageAttributes"][ATTR_KEY_ID]["StringValue"] for e in seen]
    assert kids == [old.kid, old.kid, new.kid]


# --- through S3 (moto) --------------------------------------------------------------------


def test_large_messages_go_through_s3_single_and_batched(sqs: Any, queue_url: str, ec_pair: KeyPair) -> None:
    from sealq.aws.payloads import ATTR_PAYLOAD_SIZE, parse_pointer

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="sealq-big")
    producer = Producer(queue_url, _jwks(ec_pair), clock=Clock(), s3_bucket="sealq-big", s3_client=s3)
    big = b"y" * SQS_MAX_MESSAGE_BYTES
    producer.send(big)
    result = producer.send_batch([b"inline", big])
    assert result.ok, result.failed
    received = _drain(sqs, queue_url)
    pointers = [m for m in received if ATTR_PAYLOAD_SIZE in m["MessageAttributes"]]
    assert len(received) == 3 and len(pointers) == 2
    for message in pointers:
        pointer = parse_pointer(message["Body"])
        assert not isinstance(pointer, str)
        token = s3.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read().decode()
        assert _attr(message, ATTR_PAYLOAD_SIZE) == str(len(token))
        assert _attr(message, ATTR_KEY_ID) == ec_pair.kid
        # Ciphertext only: no run of the plaintext, raw or base64url (a 4-letter run would
        # occur by chance in a random token this long; 32 never does).
        assert "y" * 32 not in token and "eXl5" * 8 not in token
        assert open_token(token, ec_pair.opening, max_bytes=4 * SQS_MAX_MESSAGE_BYTES) == big


def test_failed_put_object_is_a_send_error_or_a_failed_entry(
    sqs: Any, queue_url: str, ec_pair: KeyPair
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")  # no such bucket
    producer = Producer(
        queue_url, _jwks(ec_pair), clock=Clock(), s3_bucket="sealq-none", s3_always=True, s3_client=s3
    )
    with pytest.raises(SendError, match="PutObject to bucket sealq-none failed: NoSuchBucket"):
        producer.send(b"a")
    result = producer.send_batch([b"a", b"b"])
    assert [(f.index, f.code, f.sender_fault) for f in result.failed] == [
        (0, "PutObjectFailed", False),
        (1, "PutObjectFailed", False),
    ]
    assert not _drain(sqs, queue_url)


def test_send_cli_passes_the_s3_flags_to_the_producer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sealq.cli import send as cli
    from sealq.cli.main import build_parser
    from sealq.errors import SealqError

    made: list[dict[str, Any]] = []

    class Made:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)

        def send(self, message: OutgoingMessage) -> str:
            return "m-1"

    monkeypatch.setattr(cli, "Producer", Made)
    (tmp_path / "big.bin").write_bytes(b"x")
    base = ["send", "--queue-url", "q", "--jwks", "j", "--file", str(tmp_path / "big.bin")]
    args = build_parser().parse_args([*base, "--s3-bucket", "b-1", "--s3-prefix", "p/", "--s3-always"])
    assert cli.run_send(args) == 0
    assert {k: made[0][k] for k in ("s3_bucket", "s3_prefix", "s3_always")} == {
        "s3_bucket": "b-1",
        "s3_prefix": "p/",
        "s3_always": True,
    }
    with pytest.raises(SealqError, match="--s3-always needs --s3-bucket"):
        cli.run_send(build_parser().parse_args([*base, "--s3-always"]))
