"""Guest SDK for wasmp workers written in Python (built with componentize-py).

The Python counterpart of the Rust crate `wasmp-guest`: the names follow
`multiprocessing` and `os`, over the `wasmp:worker` imports (wit/worker.wit)::

    from wasmp_guest import Queue, getpid, getppid

    results = Queue("results")
    for job in Queue("jobs"):          # ends when the host closes "jobs" and it is drained
        results.put(job.upper())

Messages are bytes; `put` also takes `str` (sent as UTF-8). A worker reaches only the queues
its host granted it.

Build (from the repository root; the world includes `wasmp:worker/worker@0.1.0`)::

    componentize-py -d wit -d my/wit -w my-world componentize -p my -p guests/sdk/python app -o app.wasm
"""

import queue as _stdlib_queue
from typing import Iterator, List, Optional, Union

from componentize_py_types import Err
from wit_world.imports import process as _process
from wit_world.imports import queue as _queue

__all__ = [
    "Closed",
    "Empty",
    "Full",
    "Queue",
    "QueueError",
    "current_process_name",
    "getpid",
    "getppid",
]

Message = Union[bytes, str]

# `get(timeout=...)` raises the standard library's exceptions, as multiprocessing's does.
Empty = _stdlib_queue.Empty
Full = _stdlib_queue.Full


class QueueError(Exception):
    """A queue call failed for a reason other than empty/full."""


class Closed(QueueError):
    """The queue is closed (and, for getters, drained)."""


def getpid() -> int:
    """This worker's OS process id (every worker runs in its own OS process)."""
    return _process.pid()


def getppid() -> int:
    """The OS process id of the host that started this worker."""
    return _process.ppid()


def current_process_name() -> str:
    """The name the host gave this worker (`multiprocessing.current_process().name`)."""
    return _process.name()


def _error(queue: str, error: Err) -> Exception:
    """The Python exception for a `queue-error` the host answered with."""
    value = error.value
    if isinstance(value, _queue.QueueError_Closed):
        return Closed(f"queue {queue!r} is closed")
    if isinstance(value, _queue.QueueError_Timeout):
        return Empty()
    if isinstance(value, _queue.QueueError_Full):
        return Full()
    if isinstance(value, _queue.QueueError_TooLarge):
        return QueueError(f"message over the host's limit of {value.value} bytes")
    if isinstance(value, _queue.QueueError_Unknown):
        return QueueError(f"no queue named {value.value!r} was granted to this worker")
    return QueueError(repr(value))


def _bytes(message: Message) -> bytes:
    return message.encode() if isinstance(message, str) else bytes(message)


class Queue:
    """A named queue owned by the host: FIFO, each message to exactly one getter."""

    def __init__(self, name: str) -> None:
        self.name = name

    def put(self, message: Message, block: bool = True) -> None:
        """Appends a message; blocks while the queue is full (raises `Full` if not `block`)."""
        try:
            if block:
                _queue.put(self.name, _bytes(message))
            else:
                _queue.try_put(self.name, _bytes(message))
        except Err as e:
            raise _error(self.name, e) from None

    def put_many(self, messages: List[Message]) -> None:
        """Appends several messages in order, in one call to the host."""
        try:
            _queue.put_many(self.name, [_bytes(m) for m in messages])
        except Err as e:
            raise _error(self.name, e) from None

    def get(self, block: bool = True, timeout: Optional[float] = None) -> bytes:
        """Takes the oldest message. Raises `Empty` when none came in time (or at once
        when not `block`), `Closed` when the queue is closed and drained."""
        try:
            if not block:
                message = _queue.try_get(self.name)
                if message is None:
                    raise Empty()
                return message
            timeout_ms = None if timeout is None else max(0, int(timeout * 1000))
            return _queue.get(self.name, timeout_ms)
        except Err as e:
            raise _error(self.name, e) from None

    def get_many(self, max_messages: int, timeout: Optional[float] = None) -> List[bytes]:
        """Takes between one and `max_messages` messages, waiting only for the first."""
        timeout_ms = None if timeout is None else max(0, int(timeout * 1000))
        try:
            return _queue.get_many(self.name, max_messages, timeout_ms)
        except Err as e:
            raise _error(self.name, e) from None

    def close(self) -> None:
        """No more puts; getters drain what is left, then see `Closed`."""
        try:
            _queue.close(self.name)
        except Err as e:
            raise _error(self.name, e) from None

    def qsize(self) -> int:
        """How many messages wait in the queue."""
        try:
            return _queue.len(self.name)
        except Err as e:
            raise _error(self.name, e) from None

    def empty(self) -> bool:
        return self.qsize() == 0

    def __iter__(self) -> Iterator[bytes]:
        """Every message until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except Closed:
                return
