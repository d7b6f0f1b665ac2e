#!/usr/bin/env python3
"""Time bench_hot.loop_us(KIND, CALLS, data, metadata) in a fresh backend.

Prints "wall_us cpu_us": microseconds per call by the wall clock (what
loop_us returns) and by the backend's CPU time (user + system, from
/proc/<backend pid>/stat), which the load of other programs on the machine
does not inflate.  Reading /proc of a backend needs the server's user or
root.  Uses libpq through ctypes (no driver needed).
"""
import ctypes
import os
import sys

libpq = ctypes.CDLL("libpq.so.5")
V = ctypes.c_void_p
libpq.PQconnectdb.restype = V
libpq.PQconnectdb.argtypes = [ctypes.c_char_p]
libpq.PQstatus.argtypes = [V]
libpq.PQerrorMessage.restype = ctypes.c_char_p
libpq.PQerrorMessage.argtypes = [V]
libpq.PQexecParams.restype = V
libpq.PQexecParams.argtypes = [V, ctypes.c_char_p, ctypes.c_int, V,
                               ctypes.POINTER(ctypes.c_char_p), V, V, ctypes.c_int]
libpq.PQresultStatus.argtypes = [V]
libpq.PQresultErrorMessage.restype = ctypes.c_char_p
libpq.PQresultErrorMessage.argtypes = [V]
libpq.PQgetvalue.restype = ctypes.c_char_p
libpq.PQgetvalue.argtypes = [V, ctypes.c_int, ctypes.c_int]
libpq.PQclear.argtypes = [V]
libpq.PQfinish.argtypes = [V]


def value(conn, sql, params=()):
    arr = (ctypes.c_char_p * max(1, len(params)))(*[p.encode() for p in params])
    res = libpq.PQexecParams(conn, sql.encode(), len(params), None, arr, None, None, 0)
    if libpq.PQresultStatus(res) != 2:
        sys.exit("statement failed: " + libpq.PQresultErrorMessage(res).decode())
    v = libpq.PQgetvalue(res, 0, 0).decode()
    libpq.PQclear(res)
    return v


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    dsn, kind, calls, data, metadata = sys.argv[1:6]
    conn = libpq.PQconnectdb(dsn.encode())
    if libpq.PQstatus(conn) != 0:
        sys.exit("cannot connect: " + libpq.PQerrorMessage(conn).decode())
    pid = int(value(conn, "SELECT pg_backend_pid()"))
    # warm the caches (plans, relcache) outside the measurement
    value(conn, "SELECT bench_hot.loop_us($1, 100, $2::jsonb, $3::jsonb)", (kind, data, metadata))
    c0 = cpu_seconds(pid)
    wall = float(value(conn, "SELECT bench_hot.loop_us($1, $2::int, $3::jsonb, $4::jsonb)",
                       (kind, calls, data, metadata)))
    c1 = cpu_seconds(pid)
    libpq.PQfinish(conn)
    print(f"{wall:.3f} {(c1 - c0) * 1e6 / int(calls):.3f}")


if __name__ == "__main__":
    main()
