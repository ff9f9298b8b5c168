"""A wasmp worker in Python exporting `greet` (declared in wit/world.wit).

The host calls it by name: `wasmp run --invoke 'greet("world")' {{name}}.wasm`.
`wasmp_guest` (vendored beside this file) is the wasmp SDK: `Queue`, `getpid`, `getppid`,
`current_process_name`, named after `multiprocessing` and `os`.
"""

import wit_world
from wasmp_guest import getpid, getppid


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        print(f"greeting {name} from pid {getpid()} (host pid {getppid()})", flush=True)
        return f"hello, {name}"
