"""A wasmp pool task in Python: `square` (declared in wit/world.wit).

`wasmp pool` reads one JSON array of arguments per line, runs the calls on a pool of
worker processes and writes one `{"result": ...}` line per task, in input order.
"""

import wit_world


class WitWorld(wit_world.WitWorld):
    def square(self, x: int) -> int:
        return (x * x) % 2**64
