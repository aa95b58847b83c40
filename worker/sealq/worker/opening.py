"""Opening a batch of messages: on the event loop when that is cheap, else in one call on a
crypto thread.

RSA and ECDH release the GIL, so threads use more cores; but handing work to a thread and
back costs about as much CPU as a P-256 open (measured: 155 vs 122 us of CPU per message
through the pool), so P-256 batches (~80 us a message, under 1 ms for ten) run inline and
everything slower (RSA, P-384, P-521) goes to the threads, where it cannot stall the loop.
For more P-256 throughput, run more processes (`--processes`).
"""

from __future__ import annotations

from sealq.envelope.jwe import OpeningKey, ParsedToken, decrypt
from sealq.envelope.jwk import Alg
from sealq.envelope.raw import open_raw
from sealq.errors import OpenError

Job = tuple[ParsedToken | None, OpeningKey, str]


def open_batch(jobs: list[Job]) -> list[bytes | OpenError]:
    """Plaintext or the OpenError for each job, in order; `None` parsed means raw mode."""
    out: list[bytes | OpenError] = []
    for parsed, key, body in jobs:
        try:
            out.append(open_raw(body, key) if parsed is None else decrypt(parsed, key))
        except OpenError as exc:
            out.append(exc)
    return out


def runs_inline(key: OpeningKey) -> bool:
    """Cheap enough to open on the event loop (see the module docstring)."""
    return key.alg is Alg.ECDH_ES_A256KW and key.curve == "P-256"
