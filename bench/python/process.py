"""Start -> join of a no-op multiprocessing.Process, per start method.

Prints one JSON object: {"fork": [seconds, ...], "spawn": [...], ...}.
Usage: python3 process.py ITERATIONS METHOD [METHOD ...]
"""
import json
import multiprocessing as mp
import sys
import time


def noop():
    pass


def main():
    iterations = int(sys.argv[1])
    results = {}
    for method in sys.argv[2:]:
        ctx = mp.get_context(method)
        # One untimed warm-up: the forkserver / spawn machinery starts on first use.
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            p = ctx.Process(target=noop)
            p.start()
            p.join()
            times.append(time.perf_counter() - start)
            assert p.exitcode == 0
        results[method] = times
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
