"""multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor doing the pool rows.

Usage: python3 pool_bench.py start
       python3 pool_bench.py apply COUNT [square]
       python3 pool_bench.py map COUNT
       python3 pool_bench.py cpu TASKS ROUNDS
Prints {"pool": seconds, "executor": seconds} (cpu: also "serial").
"""
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor

WORKERS = 2


def noop():
    pass


def square(x):
    return x * x


def cpu(rounds):
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for i in range(rounds):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        x = (x + i) & mask
    return x


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    ctx = mp.get_context("fork")
    mode = sys.argv[1]
    out = {}
    if mode == "start":
        def pool():
            with ctx.Pool(WORKERS) as p:
                p.apply_async(square, (1,)).get()
        def executor():
            with ProcessPoolExecutor(WORKERS, mp_context=ctx) as e:
                e.submit(square, 1).result()
        out = {"pool": timed(pool), "executor": timed(executor)}
    elif mode == "apply":
        count = int(sys.argv[2])
        # `square` (7 * 7) matches the Python guest's task; the default is a no-op.
        task, args = (square, (7,)) if sys.argv[3:] == ["square"] else (noop, ())
        with ctx.Pool(WORKERS) as p:
            p.apply_async(noop).get()
            def run():
                results = [p.apply_async(task, args) for _ in range(count)]
                for r in results:
                    r.get()
            out["pool"] = timed(run)
        with ProcessPoolExecutor(WORKERS, mp_context=ctx) as e:
            e.submit(noop).result()
            def run():
                futures = [e.submit(task, *args) for _ in range(count)]
                for f in futures:
                    f.result()
            out["executor"] = timed(run)
    elif mode == "map":
        count = int(sys.argv[2])
        with ctx.Pool(WORKERS) as p:
            p.apply_async(noop).get()
            out["pool"] = timed(lambda: p.map(square, range(count)))
        with ProcessPoolExecutor(WORKERS, mp_context=ctx) as e:
            e.submit(noop).result()
            chunk = max(1, count // (WORKERS * 4))
            out["executor"] = timed(lambda: list(e.map(square, range(count), chunksize=chunk)))
    elif mode == "cpu":
        tasks, rounds = int(sys.argv[2]), int(sys.argv[3])
        out["serial"] = timed(lambda: [cpu(rounds) for _ in range(tasks)])
        with ctx.Pool(WORKERS) as p:
            p.apply_async(noop).get()
            out["pool"] = timed(lambda: p.map(cpu, [rounds] * tasks, chunksize=1))
        with ProcessPoolExecutor(WORKERS, mp_context=ctx) as e:
            e.submit(noop).result()
            out["executor"] = timed(lambda: list(e.map(cpu, [rounds] * tasks)))
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
