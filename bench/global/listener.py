#!/usr/bin/python3
"""Bench helper (suite "global"): one client attached to eventstore_events.

LISTEN on the channel, print "ready" once listening, then consume
notifications until SIGTERM or SIGINT, and print one summary line:

    notifications=N first=P last=Q events_read=E

N notifications were received, the first with payload P and the last with
payload Q (the newest readable position announced); with --follow the client
also catches up with eventstore.read_all after every wake-up, as
examples/subscriber.py does, and E events were read (0 without --follow).

    /usr/bin/python3 bench/global/listener.py --dsn "host=... dbname=bench"

Debian: apt-get install python3-psycopg2
"""
import argparse
import select
import signal
import sys

import psycopg2
import psycopg2.extensions

CHANNEL = "eventstore_events"
PAGE = 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--follow", action="store_true",
                        help="catch up with read_all after every wake-up")
    args = parser.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    conn = psycopg2.connect(args.dsn)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    cur = conn.cursor()
    cur.execute("LISTEN " + CHANNEL)
    checkpoint = 0
    if args.follow:
        # Start at the end of the log: the run's appends are what is followed.
        cur.execute("SELECT eventstore.global_horizon()")
        checkpoint = cur.fetchone()[0]
    print("ready", flush=True)

    seen = {"count": 0, "first": None, "last": None}

    def take_notifies():
        """Count the notifications received so far; true if there were any."""
        woke = bool(conn.notifies)
        for n in conn.notifies:
            seen["count"] += 1
            position = int(n.payload)
            if seen["first"] is None:
                seen["first"] = position
            seen["last"] = position
        conn.notifies.clear()
        return woke

    events_read = 0
    while not stop:
        readable, _, _ = select.select([conn], [], [], 0.1)
        if not readable:
            continue
        conn.poll()
        woke = take_notifies()
        if args.follow and woke:
            while True:
                cur.execute("SELECT * FROM eventstore.read_all(%s, %s)",
                            (checkpoint, PAGE))
                rows = cur.fetchall()
                if rows:
                    checkpoint = rows[-1][0]
                    events_read += len(rows)
                if len(rows) < PAGE:
                    break

    # Notifications that arrived just before the stop are counted too.
    conn.poll()
    take_notifies()
    first, last = seen["first"], seen["last"]
    print("notifications=%d first=%s last=%s events_read=%d"
          % (seen["count"], first if first is not None else "", last if last is not None else "",
             events_read), flush=True)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
