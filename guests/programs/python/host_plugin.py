"""A Python plugin calling back into its host through the embedder's interfaces
`app:host/log` and `app:host/kv` (guests/programs/wit/app-host.wit)."""

import wit_world
from wit_world.imports import kv, log
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def run(self, name: str) -> str:
        log.log(log.Level.INFO, f"{name} starting (python)")
        try:
            runs = kv.incr("runs", 1)
        except Err as e:
            return f"{name}: {e.value}"
        kv.set(f"last-run-by-{name}", str(runs))
        greeting = kv.get("greeting") or "hello"
        return f"{greeting} from {name} (python, run {runs})"
