"""multiprocessing.Queue and Pipe moving messages between two processes.

Usage: python3 queue_bench.py throughput COUNT SIZE   -> {"queue": s, "pipe": s}
       python3 queue_bench.py pingpong ROUNDS         -> {"pipe": s, "queue": s}
Times are seconds from starting the two processes to joining both.
"""
import json
import multiprocessing as mp
import sys
import time


def q_producer(q, count, size):
    message = b"\xa5" * size
    for _ in range(count):
        q.put(message)
    q.put(None)


def q_consumer(q):
    while q.get() is not None:
        pass


def pipe_producer(conn, count, size):
    message = b"\xa5" * size
    for _ in range(count):
        conn.send_bytes(message)
    conn.send_bytes(b"")


def pipe_consumer(conn):
    while conn.recv_bytes():
        pass


def pipe_ping(conn, rounds):
    for i in range(rounds):
        conn.send_bytes(i.to_bytes(8, "little"))
        conn.recv_bytes()
    conn.send_bytes(b"")


def pipe_pong(conn):
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def q_ping(out, back, rounds):
    for i in range(rounds):
        out.put(i.to_bytes(8, "little"))
        back.get()
    out.put(None)


def q_pong(inbox, back):
    while True:
        m = inbox.get()
        if m is None:
            return
        back.put(m)


def timed(*procs):
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return time.perf_counter() - start


def main():
    ctx = mp.get_context("fork")
    mode = sys.argv[1]
    if mode == "throughput":
        count, size = int(sys.argv[2]), int(sys.argv[3])
        q = ctx.Queue()
        t_queue = timed(ctx.Process(target=q_producer, args=(q, count, size)),
                        ctx.Process(target=q_consumer, args=(q,)))
        a, b = ctx.Pipe(duplex=False)
        t_pipe = timed(ctx.Process(target=pipe_producer, args=(b, count, size)),
                       ctx.Process(target=pipe_consumer, args=(a,)))
        json.dump({"queue": t_queue, "pipe": t_pipe}, sys.stdout)
    elif mode == "pingpong":
        rounds = int(sys.argv[2])
        a, b = ctx.Pipe(duplex=True)
        t_pipe = timed(ctx.Process(target=pipe_ping, args=(a, rounds)),
                       ctx.Process(target=pipe_pong, args=(b,)))
        out, back = ctx.Queue(), ctx.Queue()
        t_queue = timed(ctx.Process(target=q_ping, args=(out, back, rounds)),
                        ctx.Process(target=q_pong, args=(out, back)))
        json.dump({"pipe": t_pipe, "queue": t_queue}, sys.stdout)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
