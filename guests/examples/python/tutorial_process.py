"""Sections 1 and 2 of the tutorial, in Python, as a wasm worker: two functions taking two
strings, each printing its arguments, its own pid and its parent's pid. The host runs each in
its own OS process (`Process`) or as `Pool` tasks:

    wasmp run --invoke 'func1("func1...arg1", "func1...agr2")' tutorial_process.wasm

The original loops forever; these print three lines and return, so `join` ends.
"""

import time

import wit_world
from wasmp_guest import getpid, getppid

ROUNDS = 3
PAUSE = 0.2


def repeat(func: str, args1: str, args2: str) -> None:
    for round in range(ROUNDS):
        if round > 0:
            time.sleep(PAUSE)
        print(f"this is {func} with args: {args1}, {args2}---{getpid()}---{getppid()}", flush=True)


class WitWorld(wit_world.WitWorld):
    def func1(self, args1: str, args2: str) -> None:
        repeat("func1", args1, args2)

    def func2(self, args1: str, args2: str) -> None:
        repeat("func2", args1, args2)
