#!/usr/bin/python3
"""Follow the eventstore global log from any client.

LISTEN on the eventstore_events channel, catch up with eventstore.read_all()
from a checkpoint, print each event as one JSON line, and sleep until the
background worker says there is more.  A notification only says "the log has
grown up to position N"; read_all is what delivers events, exactly once and
in order, so a missed or coalesced notification costs latency, never events.

    python3 examples/subscriber.py --dsn "dbname=app" --after 0

Debian: apt-get install python3-psycopg2
"""
import argparse
import json
import select
import sys

import psycopg2
import psycopg2.extensions

CHANNEL = "eventstore_events"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="", help="libpq connection string")
    parser.add_argument("--after", type=int, default=0,
                        help="checkpoint: the last global_position already processed")
    parser.add_argument("--batch", type=int, default=1000, help="read_all page size")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="exit once this many events were printed (0: never)")
    parser.add_argument("--poll", type=float, default=5.0,
                        help="seconds to wait for a notification before reading anyway")
    args = parser.parse_args()

    conn = psycopg2.connect(args.dsn)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    cur = conn.cursor()
    # Listen first, then catch up: nothing committed in between is missed.
    cur.execute("LISTEN " + CHANNEL)

    checkpoint = args.after
    printed = 0
    while True:
        while True:
            cur.execute(
                "SELECT global_position, stream_id, stream_version, event_type,"
                "       data, metadata"
                "  FROM eventstore.read_all(%s, %s)",
                (checkpoint, args.batch))
            rows = cur.fetchall()
            for position, stream_id, version, event_type, data, metadata in rows:
                print(json.dumps({"global_position": position, "stream_id": stream_id,
                                  "stream_version": version, "event_type": event_type,
                                  "data": data, "metadata": metadata}))
                checkpoint = position
                printed += 1
            sys.stdout.flush()
            if args.stop_after and printed >= args.stop_after:
                return 0
            if len(rows) < args.batch:
                break

        # Sleep until the worker announces new events (or the poll interval).
        if select.select([conn], [], [], args.poll) != ([], [], []):
            conn.poll()
            conn.notifies.clear()


if __name__ == "__main__":
    sys.exit(main())
