#!/usr/bin/env python3
"""Peak memory of one statement in a fresh PostgreSQL backend.

Connects (a new backend), learns the backend's pid, then runs the statement
while a thread samples /proc/<pid>/status every --interval seconds; prints one
CSV line:

  label,result,rows,seconds,param_bytes,start_rss_kb,start_anon_kb,
  start_shmem_kb,peak_anon_kb,peak_rss_kb,vmhwm_kb,end_anon_kb,end_shmem_kb,
  samples

peak_anon_kb is the largest RssAnon sampled (private memory: palloc'd memory,
malloc, the stack), vmhwm_kb the kernel's exact high-water mark of the whole
RSS, which also counts the shared buffers the backend touched (RssShmem) and
mapped files.  Statement parameters are sent as real protocol parameters
(PQexecParams, through ctypes and libpq), the way a driver binds a value, not
spliced into the SQL text: --param TEXT, or --param-sql SQL whose single value,
fetched first over another connection, becomes the parameter.  Rows are
fetched into the client (libpq) and thrown away.  Reading /proc of a backend
needs the server's user or root.
"""
import argparse
import ctypes
import sys
import threading
import time

libpq = ctypes.CDLL("libpq.so.5")
libpq.PQconnectdb.restype = ctypes.c_void_p
libpq.PQconnectdb.argtypes = [ctypes.c_char_p]
libpq.PQstatus.argtypes = [ctypes.c_void_p]
libpq.PQerrorMessage.restype = ctypes.c_char_p
libpq.PQerrorMessage.argtypes = [ctypes.c_void_p]
libpq.PQexecParams.restype = ctypes.c_void_p
libpq.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                               ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
libpq.PQresultStatus.argtypes = [ctypes.c_void_p]
libpq.PQresultErrorMessage.restype = ctypes.c_char_p
libpq.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
libpq.PQntuples.argtypes = [ctypes.c_void_p]
libpq.PQnfields.argtypes = [ctypes.c_void_p]
libpq.PQgetvalue.restype = ctypes.c_char_p
libpq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
libpq.PQclear.argtypes = [ctypes.c_void_p]
libpq.PQfinish.argtypes = [ctypes.c_void_p]

PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2


def connect(dsn):
    conn = libpq.PQconnectdb(dsn.encode())
    if libpq.PQstatus(conn) != 0:
        sys.exit("cannot connect: " + libpq.PQerrorMessage(conn).decode())
    return conn


def execute(conn, sql, params=()):
    """Run sql with text parameters; return (status, rows, first value)."""
    values = (ctypes.c_char_p * max(1, len(params)))(*params)
    res = libpq.PQexecParams(conn, sql.encode(), len(params), None, values, None, None, 0)
    status = libpq.PQresultStatus(res)
    if status not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
        msg = libpq.PQresultErrorMessage(res).decode()
        libpq.PQclear(res)
        sys.exit("statement failed: " + msg)
    rows = libpq.PQntuples(res)
    first = None
    if rows > 0 and libpq.PQnfields(res) > 0:
        first = libpq.PQgetvalue(res, 0, 0)
    libpq.PQclear(res)
    return status, rows, first


def status_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssShmem", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--sql", required=True)
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--param-sql", action="append", default=[],
                    help="a query whose single value becomes the next parameter")
    ap.add_argument("--setup", action="append", default=[],
                    help="statements run in the fresh backend before the measurement")
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the statement this many times in the backend (a leak grows the peak)")
    a = ap.parse_args()

    params = [p.encode() for p in a.param]
    if a.param_sql:
        helper = connect(a.dsn)
        for q in a.param_sql:
            _, _, value = execute(helper, q)
            params.append(value)
        libpq.PQfinish(helper)
    param_bytes = sum(len(p) for p in params)

    conn = connect(a.dsn)
    _, _, pid = execute(conn, "SELECT pg_backend_pid()")
    pid = int(pid)
    for s in a.setup:
        execute(conn, s)
    start = status_kb(pid)
    peak = {"RssAnon": start["RssAnon"], "VmRSS": start["VmRSS"]}
    samples = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                s = status_kb(pid)
            except (OSError, KeyError):
                break
            samples[0] += 1
            for k in peak:
                peak[k] = max(peak[k], s[k])
            time.sleep(a.interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        for _ in range(a.repeat):
            _, rows, first = execute(conn, a.sql, params)
    finally:
        done.set()
    seconds = time.monotonic() - t0
    t.join()
    end = status_kb(pid)
    for k in peak:
        peak[k] = max(peak[k], end[k])
    libpq.PQfinish(conn)

    result = (first or b"").decode().replace(",", ";")
    print(",".join(str(x) for x in (
        a.label, result, rows, f"{seconds:.3f}", param_bytes,
        start["VmRSS"], start["RssAnon"], start["RssShmem"],
        peak["RssAnon"], peak["VmRSS"], end["VmHWM"], end["RssAnon"], end["RssShmem"],
        samples[0])))


if __name__ == "__main__":
    main()
