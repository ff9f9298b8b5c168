"""Terminate latency, idle-worker memory and 1,000 concurrent processes, for the same rows
run by wasmp-bench.

Usage: python3 scale.py terminate N      -> {"terminate": [s, ...]}
       python3 scale.py uss WORKERS       -> {"uss_kb": [kb per idle worker, ...]}
       python3 scale.py scale N           -> {"seconds": s, "memory_kb": kb}
"""
import json
import multiprocessing as mp
import os
import sys
import time


def spin():
    while True:
        pass


def noop(_=None):
    pass


def round_trip(ready, go):
    ready.put(os.getpid())
    go.get()


def uss_kb(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def available_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def main():
    ctx = mp.get_context("fork")
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "terminate":
        times = []
        for _ in range(n):
            p = ctx.Process(target=spin)
            p.start()
            time.sleep(0.05)
            start = time.perf_counter()
            p.terminate()
            p.join()
            times.append(time.perf_counter() - start)
        json.dump({"terminate": times}, sys.stdout)
    elif mode == "uss":
        with ctx.Pool(n) as pool:
            pool.map(noop, range(n * 4))
            time.sleep(0.2)
            pids = [c.pid for c in mp.active_children()]
            json.dump({"uss_kb": [uss_kb(pid) for pid in pids]}, sys.stdout)
    elif mode == "scale":
        ready, go = ctx.Queue(), ctx.Queue()
        before = available_kb()
        start = time.perf_counter()
        procs = [ctx.Process(target=round_trip, args=(ready, go)) for _ in range(n)]
        for p in procs:
            p.start()
        for _ in range(n):
            ready.get()
        peak = before - available_kb()
        for _ in range(n):
            go.put(1)
        for p in procs:
            p.join()
            assert p.exitcode == 0
        json.dump({"seconds": time.perf_counter() - start, "memory_kb": peak}, sys.stdout)


if __name__ == "__main__":
    main()
