"""A Python guest for the integration tests: a trivial task, identity, a queue relay, an
exception, and per-instance state."""

import wit_world
from wasmp_guest import Queue, current_process_name, getpid, getppid

_calls = 0


class WitWorld(wit_world.WitWorld):
    def square(self, x: int) -> int:
        return x * x

    def identity(self) -> str:
        return f"{current_process_name()} {getpid()} {getppid()}"

    def relay(self, source: str, sink: str) -> int:
        out = Queue(sink)
        moved = 0
        for message in Queue(source):
            out.put(message.upper())
            moved += 1
        return moved

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def calls(self) -> int:
        global _calls
        _calls += 1
        return _calls
