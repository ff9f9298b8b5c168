"""Section 3 of the tutorial, in Python, as a wasm worker: a writer puts 'A'..'D' with
pauses, a reader prints them as they come. The host owns the queue and grants it to both.

Unlike the original, the reader needs no `while True` and no `terminate()`: when the host
closes the queue, the reader drains what is left and its loop ends.
"""

import time

import wit_world
from wasmp_guest import Queue

PAUSE = 0.2


class WitWorld(wit_world.WitWorld):
    def writer(self, queue: str) -> None:
        q = Queue(queue)
        print("write start...", flush=True)
        for char in ("A", "B", "C", "D"):
            q.put(char)
            time.sleep(PAUSE)
        print("write end...", flush=True)

    def reader(self, queue: str) -> None:
        q = Queue(queue)
        print("read start...", flush=True)
        for value in q:
            print("read value " + value.decode(), flush=True)
        print("read end...", flush=True)
