#!/usr/bin/python3
"""Clients of a durable subscription for test/t/008_subscription_consumers.pl.

    subscription_clients.py write   --dsn D --writer W --transactions N ...
    subscription_clients.py consume --dsn D --subscription S --name C --dir DIR ...

A writer appends to streams acct-00 .. acct-NN in transactions of one or two
streams (in stream order: no deadlocks), sometimes pausing inside the
transaction so that commits come out of position order, sometimes adding an
event to a stream no subscription matches, and rolling every tenth
transaction back.

A consumer runs the loop of README.md "Durable subscriptions": fetch in a
transaction of its own, then acknowledge and apply the events to the read
model in one transaction.  The ack comes first and must acknowledge every
event: its row locks decide who may apply the batch, so a consumer whose
expired lease was handed to someone else rolls back before writing anything.
test_apply() (created by the test) checks per-stream order and inserts with
a plain INSERT, so a duplicate delivery raises.

Both survive losing their connection (terminated backend, crash-restart) by
reconnecting; anything else is logged as ERROR and fails the test.  Log
lines (one file per client, line-buffered) start with a keyword:

    CONNECT pid | DELIVER pos stream version attempt fetch-start fetch-end |
    APPLIED pos,...
    NACKED n of pos,... | LOST_LEASE ... | STOLEN ... | VIOLATION ... |
    DUPLICATE ... |
    CONN phase message (connection lost) | ERROR sqlstate message

The test steers a consumer through files in --dir: when <name>.linger
exists after a fetch that returned events, the consumer deletes it and
stops for up to 10 s at the phase it names, announcing that in
<name>.state ("<seq> <phase> <backend pid>"):

    fetched     after the fetch, before its transaction (client sleeps)
    acked       after ack and apply, before COMMIT, idle in transaction
    acked-busy  after ack and apply, before COMMIT, in pg_sleep

so that the test can kill it, or its backend, in the middle of a batch.

With --nack-marker, events whose data has that key are rejected (error: the
marker), and so is what follows them in their stream in the same batch; with
--ignore-marker, such events (and what follows them) are left alone until
their leases expire.
"""
import argparse
import json
import os
import random
import sys
import time

import psycopg2
import psycopg2.errors


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def __call__(self, *words):
        self.f.write(" ".join(str(w) for w in words) + "\n")


def connect(dsn, log):
    """Connect, retrying while the server restarts (at most 60 s)."""
    deadline = time.time() + 60
    while True:
        conn = None
        try:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            log("CONNECT", pid)
            return conn, cur, pid
        except psycopg2.Error as e:
            if conn is not None:
                conn.close()
            if time.time() > deadline:
                raise
            log("CONNECT_FAILED", str(e).replace("\n", " "))
            time.sleep(0.1)


def connection_lost(conn, err):
    """True when err means the session is gone: terminated, crash-restart."""
    if conn.closed != 0 or (err.pgcode or "").startswith(("57P", "08")):
        return True
    # Errors the server reports have a SQLSTATE; libpq's own, such as
    # "server closed the connection unexpectedly", do not.
    return err.pgcode is None


def write(a):
    rnd = random.Random(a.writer)
    log = Log(a.log)
    conn, cur, _ = connect(a.dsn, log)
    for t in range(a.transactions):
        if a.stop and os.path.exists(a.stop):
            break
        streams = sorted(rnd.sample(range(a.streams), rnd.choice((1, 1, 2))))
        try:
            cur.execute("BEGIN")
            for s in streams:
                events = [{"type": "Deposited",
                           "data": {"n": rnd.randint(1, 100), "w": a.writer, "t": t}}
                          for _ in range(rnd.randint(1, 4))]
                cur.execute("SELECT eventstore.append_events(%s, %s::jsonb)",
                            ("acct-%02d" % s, json.dumps(events)))
                if rnd.random() < 0.3:
                    cur.execute("SELECT pg_sleep(%s)", (rnd.uniform(0, 0.03),))
            if rnd.random() < 0.2:
                cur.execute("SELECT eventstore.append(%s, 'Noise', '{}')",
                            ("other-%d" % rnd.randint(1, 5),))
            cur.execute("ROLLBACK" if t % 10 == 9 else "COMMIT")
        except psycopg2.Error as e:
            if not connection_lost(conn, e):
                log("ERROR", e.pgcode, str(e).replace("\n", " "))
                return 1
            log("CONN", "transaction", t, str(e).replace("\n", " "))
            conn.close()
            conn, cur, _ = connect(a.dsn, log)
        time.sleep(rnd.uniform(0, a.pause))
    return 0


class Consumer:
    def __init__(self, a):
        self.a = a
        self.log = Log(os.path.join(a.dir, a.name + ".log"))
        self.seq = 0
        self.pid = None
        self.phase = "connect"

    def state(self, phase):
        self.phase = phase
        self.seq += 1
        path = os.path.join(self.a.dir, self.a.name + ".state")
        with open(path + ".tmp", "w") as f:
            f.write("%d %s %s\n" % (self.seq, phase, self.pid))
        os.replace(path + ".tmp", path)

    def take_linger(self):
        path = os.path.join(self.a.dir, self.a.name + ".linger")
        try:
            with open(path) as f:
                phase = f.read().strip()
            os.unlink(path)
            return phase
        except FileNotFoundError:
            return None

    def linger(self, cur, phase, wanted):
        if phase != wanted:
            return
        self.state(phase)
        if phase == "acked-busy":
            cur.execute("SELECT pg_sleep(10)")
        else:
            time.sleep(10)
        self.log("LINGER_EXPIRED", phase)

    def run(self):
        a, log = self.a, self.log
        rnd = random.Random()
        stop = os.path.join(a.dir, a.stop)
        conn = None
        while not os.path.exists(stop):
            good = []
            if conn is None:
                self.state("connect")
                conn, cur, self.pid = connect(a.dsn, log)
            try:
                self.state("fetch")
                started = time.time()
                cur.execute(
                    "SELECT global_position, stream_id, stream_version, data, attempt"
                    "  FROM eventstore.subscription_fetch(%s, %s, %s)",
                    (a.subscription, a.name,
                     rnd.randint(1, a.max_count) if a.vary_count else a.max_count))
                rows = cur.fetchall()
                ended = time.time()
                if not rows:
                    time.sleep(0.02)
                    continue
                for pos, stream, version, _, attempt in rows:
                    log("DELIVER", pos, stream, version, attempt,
                        "%.3f" % started, "%.3f" % ended)
                linger = self.take_linger()
                self.linger(cur, linger, "fetched")
                if rnd.random() < a.slow:
                    time.sleep(rnd.uniform(1.2, 1.6))   # past a 1 s lease
                else:
                    time.sleep(rnd.uniform(0, a.hold))

                # Keep each stream's order: reject a poison event with what
                # follows it in the batch, in one nack, so that they wait
                # for the same retry time (else a follower could come back
                # on its own once the poison event is parked).  Events with the --ignore-marker (and
                # what follows them) are neither acknowledged nor rejected.
                good, bad, broken, stuck = [], [], set(), set()
                for row in rows:
                    if row[1] in stuck:
                        pass
                    elif row[1] in broken:
                        bad.append(row[0])
                    elif a.ignore_marker and row[3].get(a.ignore_marker):
                        stuck.add(row[1])
                    elif a.nack_marker and row[3].get(a.nack_marker):
                        broken.add(row[1])
                        bad.append(row[0])
                    else:
                        good.append(row)

                self.state("apply")
                cur.execute("BEGIN")
                cur.execute("SELECT eventstore.subscription_ack(%s, %s, %s)",
                            (a.subscription, a.name, [r[0] for r in good]))
                acked = cur.fetchone()[0]
                if acked != len(good):
                    # Legitimate only once the lease has expired: a fetch
                    # that took the events over committed before this ack
                    # returned, and it cannot have started its lease before
                    # ours ended.
                    if time.time() < started + a.lease_timeout - 0.005:
                        log("STOLEN", "acked", acked, "of", len(good), "within the lease")
                    else:
                        log("LOST_LEASE", "acked", acked, "of", len(good))
                    cur.execute("ROLLBACK")
                    continue
                for pos, stream, version, data, attempt in good:
                    cur.execute("SELECT test_apply(%s, %s, %s, %s, %s, %s, %s, %s)",
                                (a.subscription, a.name, a.strict_order, pos, stream,
                                 version, attempt, data.get("n", 0)))
                    violation = cur.fetchone()[0]
                    if violation:
                        log("VIOLATION", violation)
                self.linger(cur, linger, "acked")
                self.linger(cur, linger, "acked-busy")
                self.state("commit")
                cur.execute("COMMIT")
                if good:
                    log("APPLIED", ",".join(str(r[0]) for r in good))
                if bad:
                    cur.execute("SELECT eventstore.subscription_nack(%s, %s, %s, %s)",
                                (a.subscription, a.name, bad, a.nack_marker))
                    log("NACKED", cur.fetchone()[0], "of", ",".join(map(str, bad)))
            except psycopg2.Error as e:
                message = str(e).replace("\n", " ")
                if connection_lost(conn, e):
                    log("CONN", self.phase, message)
                    conn.close()
                    conn = None
                    continue
                try:
                    cur.execute("ROLLBACK")
                    if isinstance(e, psycopg2.errors.UniqueViolation):
                        # Logged, so the test fails; acknowledged without
                        # applying, so the run can still drain.
                        log("DUPLICATE", message)
                        cur.execute("SELECT eventstore.subscription_ack(%s, %s, %s)",
                                    (a.subscription, a.name, [r[0] for r in good]))
                    else:
                        log("ERROR", e.pgcode, message)
                except psycopg2.Error as e2:
                    log("ERROR", e2.pgcode, str(e2).replace("\n", " "))
                    conn.close()
                    conn = None
                time.sleep(0.1)
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("write", "consume"))
    p.add_argument("--dsn", required=True)
    # writer
    p.add_argument("--writer", type=int, default=1)
    p.add_argument("--transactions", type=int, default=100)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--pause", type=float, default=0.03)
    p.add_argument("--log")
    # consumer
    p.add_argument("--subscription")
    p.add_argument("--name")
    p.add_argument("--dir")
    p.add_argument("--stop", help="stop once this file exists (consumers: in --dir)")
    p.add_argument("--max-count", type=int, default=50)
    p.add_argument("--lease-timeout", type=float, default=1.0,
                   help="the subscription's, in seconds")
    p.add_argument("--vary-count", action="store_true",
                   help="fetch a random number of events, 1 to --max-count")
    p.add_argument("--hold", type=float, default=0.03,
                   help="sleep up to this many seconds between fetch and ack")
    p.add_argument("--slow", type=float, default=0,
                   help="probability of sleeping 1.2 to 1.6 s between fetch and ack")
    p.add_argument("--strict-order", action="store_true")
    p.add_argument("--nack-marker", help="reject events whose data has this key")
    p.add_argument("--ignore-marker", help="never ack nor nack events whose data has this key")
    a = p.parse_args()
    return write(a) if a.mode == "write" else Consumer(a).run()


if __name__ == "__main__":
    sys.exit(main())
