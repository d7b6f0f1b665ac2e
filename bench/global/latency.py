#!/usr/bin/python3
"""Bench helper (suite "global"): commit -> notification latency.

One process, two connections, one clock (time.monotonic):

  A appends one event in autocommit mode (eventstore.append; the commit has
    happened when the call returns): t0;
  B has run LISTEN eventstore_events and waits for the first notification
    whose payload (the newest readable position) is >= the position A got:
    t1.

latency = t1 - t0.  Before each sample the process sleeps a random pause
(--pause-min-ms .. --pause-max-ms) so commits land at every phase of the
background worker's cycle, and drops notifications already queued on B.
Stops after --samples samples or at --seconds, whichever comes first.

Prints one summary line (milliseconds):

    samples=N timeouts=T p50=.. p95=.. p99=.. max=.. mean=.. commit_p50=.. commit_p99=..

commit_* is A's round trip (append + commit).  With --csv, every sample is
appended to that file as "label,i,commit_ms,latency_ms" (latency empty for a
sample that timed out).

Debian: apt-get install python3-psycopg2
"""
import argparse
import math
import random
import select
import sys
import time

import psycopg2
import psycopg2.extensions

CHANNEL = "eventstore_events"
APPEND = ("SELECT global_position FROM eventstore.append(%s, %s, %s::jsonb)")


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def wait_for(conn, position, timeout):
    """Monotonic time at which a notification with payload >= position was
    seen on conn, or None after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        conn.poll()
        found = any(int(n.payload) >= position for n in conn.notifies)
        conn.notifies.clear()
        if found:
            return time.monotonic()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        select.select([conn], [], [], remaining)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="stop taking samples after this many seconds")
    parser.add_argument("--pause-min-ms", type=float, default=0.0)
    parser.add_argument("--pause-max-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for one notification")
    parser.add_argument("--stream", default="latency-probe")
    parser.add_argument("--label", default="")
    parser.add_argument("--csv", help="append every sample to this file")
    args = parser.parse_args()

    start = time.monotonic()
    appender = psycopg2.connect(args.dsn)
    appender.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener = psycopg2.connect(args.dsn)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    a = appender.cursor()
    listener.cursor().execute("LISTEN " + CHANNEL)

    # Warm-up (not counted): the worker is running and both sessions have
    # their caches filled.  Generous timeout: a worker may still be starting.
    for _ in range(3):
        a.execute(APPEND, (args.stream, "LatencyProbe", '{"warmup": true}'))
        if wait_for(listener, a.fetchone()[0], 30.0) is None:
            print("no notification within 30 s: is the eventstore worker running?",
                  file=sys.stderr)
            return 1

    rng = random.Random(20261129)
    latencies = []
    commits = []
    rows = []
    timeouts = 0
    for i in range(args.samples):
        if time.monotonic() - start >= args.seconds:
            break
        time.sleep(rng.uniform(args.pause_min_ms, args.pause_max_ms) / 1000.0)
        listener.poll()
        listener.notifies.clear()

        before = time.monotonic()
        a.execute(APPEND, (args.stream, "LatencyProbe", '{"sample": %d}' % i))
        position = a.fetchone()[0]
        t0 = time.monotonic()
        t1 = wait_for(listener, position, args.timeout)

        commit_ms = (t0 - before) * 1000.0
        commits.append(commit_ms)
        if t1 is None:
            timeouts += 1
            rows.append("%s,%d,%.3f," % (args.label, i, commit_ms))
        else:
            latencies.append((t1 - t0) * 1000.0)
            rows.append("%s,%d,%.3f,%.3f" % (args.label, i, commit_ms, latencies[-1]))

    if args.csv:
        with open(args.csv, "a") as f:
            for r in rows:
                f.write(r + "\n")

    latencies.sort()
    commits.sort()
    mean = sum(latencies) / len(latencies) if latencies else float("nan")
    print("samples=%d timeouts=%d p50=%.2f p95=%.2f p99=%.2f max=%.2f mean=%.2f"
          " commit_p50=%.2f commit_p99=%.2f"
          % (len(latencies) + timeouts, timeouts,
             percentile(latencies, 50), percentile(latencies, 95),
             percentile(latencies, 99), latencies[-1] if latencies else float("nan"),
             mean, percentile(commits, 50), percentile(commits, 99)), flush=True)
    appender.close()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
