"""How many ReceiveMessage calls to run at once: the adaptive receiving policy, pure.

Against real SQS every call takes tens of milliseconds, so a fixed two pollers of ten cap a
worker near 2 x 10 / round trip, far below what it can open. The policy follows the
evidence each receive brings back:

- full (as many as asked for) while there is room (free in-flight slots for one more batch,
  and the consumers not behind: `receiving.Receiver` decides): the queue holds more than
  we fetch, and the consumers are waiting on SQS, not the other way round: one poller more. Every poller
  that comes back full adds one, so the count doubles each round trip, like TCP slow start.
- empty (or failed): one poller fewer, down to `floor`: an idle queue costs `floor` long
  polls (each 20 s, so 3 requests a minute per poller), as SQS bills by request.
- partial: the queue is keeping up with us; no change.

Bounded by `cap` (the `--max-pollers` setting, and no more than `--max-in-flight` / 10
batches fit anyway). Fixed `--pollers N` is the policy with floor = cap = N. The I/O loop
(`receiving.Receiver`) asks this class and starts or ends poller tasks to match.
"""

from __future__ import annotations

IDLE_POLLERS = 1
"""Long polls left on an idle queue: one picks up the first message of a burst as soon as
it lands (the burst then grows the count), at 3 requests a minute per process."""


class PollerPolicy:
    """The target number of concurrent receives, updated after each receive."""

    def __init__(self, floor: int, cap: int) -> None:
        if not 1 <= floor <= cap:
            raise ValueError(f"need 1 <= floor ({floor}) <= cap ({cap})")
        self.floor = floor
        self.cap = cap
        self.target = floor

    @classmethod
    def fixed(cls, pollers: int) -> PollerPolicy:
        """`--pollers N`: always N."""
        return cls(pollers, pollers)

    @classmethod
    def adaptive(cls, max_pollers: int, max_in_flight: int, batch: int = 10) -> PollerPolicy:
        """Between IDLE_POLLERS and `max_pollers`, and never more pollers than batches of
        `batch` fit in `max_in_flight` (a poller takes its batch's slots before it asks)."""
        cap = max(1, min(max_pollers, max_in_flight // batch))
        return cls(min(IDLE_POLLERS, cap), cap)

    @property
    def adapts(self) -> bool:
        return self.floor != self.cap

    def received(self, got: int, asked: int, room: bool) -> int:
        """A receive asked for `asked` and got `got`; `room`: one more batch would fit and
        no received batch is waiting for a consumer. Returns the new target."""
        if got >= asked and room:
            self.target = min(self.cap, self.target + 1)
        elif got == 0:
            self.target = max(self.floor, self.target - 1)
        return self.target

    def failed(self) -> int:
        """A receive failed: ask less of a struggling SQS."""
        self.target = max(self.floor, self.target - 1)
        return self.target
