# Projections across crashes, restarts and rebuilds.
#
# Writers append in a loop (single events, batches, two streams in one
# transaction, appends rolled back to a savepoint or entirely) while the
# server or the background projector (which runs the projections) is
# killed.  Every read model is checked
# against a recomputation from eventstore.events: per stream, the number of
# matching events and the sum of their amounts, so that an event lost or
# applied twice shows.
#
#  1. An async projection with a slow handler, behind the writers, so that
#     it runs full batches of 50 events: the worker is killed with SIGKILL
#     (the postmaster restarts every process and runs crash recovery) and
#     with SIGTERM (the launcher restarts it) while it is inside a handler,
#     three times each.  The read model and a log of the positions it
#     handled show every event exactly once, and equal what a new
#     projection replaying the whole log builds.
#  2. An inline projection (created with replay, so it first catches up
#     through the worker) while the server is stopped in immediate mode,
#     and while an appending backend is killed: the read model is written
#     in the append transaction, so it equals the recomputation from the
#     events that survived, exactly.
#  3. rebuild_projection() and a TRUNCATE of the read model in one
#     transaction, under load, repeatedly: the worker replays the log, the
#     projection goes live again, and nothing is skipped or doubled across
#     the switch -- also when a second rebuild interrupts the catch-up, and
#     when the worker is terminated during it.
#  4. A failing async handler: the events before the failing one are
#     applied, the projection reports 'failing' with the failing position,
#     and keeps that state and its backoff across a SIGTERM and a SIGKILL of
#     the worker; once the handler is fixed, retry_projection() makes it
#     catch up -- whether the fix replaced the handler function or changed
#     only data the handler reads.
# Finally the async projection, disabled meanwhile, catches up over all of
# it, and the server log shows no crash other than the ones caused here.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep time);
use EventStore::Test;

my $node = es_node('projections', conf => q{
restart_after_crash = on
eventstore.projection_batch_size = 50
});

my $connstr = $node->connstr('postgres');
my $workdir = PostgreSQL::Test::Utils::tempdir;
my $t0      = time();

$node->safe_psql('postgres', q{
-- The writers run until told to stop.
CREATE TABLE load_control (stop boolean NOT NULL);
INSERT INTO load_control VALUES (false);

-- One writer: a transaction per iteration, committed by the procedure.
-- Amounts ("v") go into the read models; 1000 marks an event that is
-- always rolled back.
CREATE PROCEDURE load(writer int, pause float8)
LANGUAGE plpgsql AS $$
DECLARE
    own  text;
    typ  text;
    kind int;
BEGIN
    LOOP
        EXIT WHEN (SELECT stop FROM load_control);
        own  := format('acct-%s-%s', writer, floor(random() * 5)::int);
        typ  := (ARRAY['Deposited', 'Withdrawn', 'Noise'])[1 + floor(random() * 3)::int];
        kind := floor(random() * 6)::int;
        IF kind <= 1 THEN
            PERFORM eventstore.append(own, typ, jsonb_build_object('v', 1 + floor(random() * 100)::int));
        ELSIF kind = 2 THEN
            PERFORM eventstore.append_events(own, (
                SELECT jsonb_agg(jsonb_build_object(
                           'type', (ARRAY['Deposited', 'Withdrawn', 'Noise'])[1 + floor(random() * 3)::int],
                           'data', jsonb_build_object('v', 1 + floor(random() * 100)::int)))
                  FROM generate_series(1, 2 + floor(random() * 4)::int)));
        ELSIF kind = 3 THEN
            -- two streams, a while apart; the one all writers share is
            -- always taken last
            PERFORM eventstore.append(own, typ, jsonb_build_object('v', 1 + floor(random() * 100)::int));
            PERFORM pg_sleep(pause);
            PERFORM eventstore.append('acct-shared', 'Deposited', jsonb_build_object('v', 1 + floor(random() * 100)::int));
        ELSIF kind = 4 THEN
            -- rolled back to a savepoint, then an append that commits
            BEGIN
                PERFORM eventstore.append(own, 'Deposited', '{"v": 1000}');
                RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001';
            EXCEPTION WHEN raise_exception THEN
                NULL;
            END;
            PERFORM eventstore.append(own, typ, jsonb_build_object('v', 1 + floor(random() * 100)::int));
        ELSE
            PERFORM eventstore.append(own, 'Withdrawn', '{"v": 1000}');
            ROLLBACK;
            PERFORM pg_sleep(pause);
            CONTINUE;
        END IF;
        COMMIT;
        PERFORM pg_sleep(pause);
    END LOOP;
END $$;

-- The amount an event adds to a balance.
CREATE FUNCTION amount(e_type text, data jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE e_type WHEN 'Withdrawn' THEN -(data->>'v')::bigint ELSE (data->>'v')::bigint END $$;

-- Async read model, with a log of the positions handled.  The handler is
-- slow, by a pause per event: while the worker is killed, it runs slower
-- than the writers append, so that it has a backlog and runs full batches
-- of 50 events (half a second each) back to back.
CREATE TABLE rm_async (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
CREATE TABLE rm_async_seen (global_position bigint PRIMARY KEY, times int NOT NULL);
CREATE TABLE async_pause (seconds float8 NOT NULL);
INSERT INTO async_pause VALUES (0.01);
CREATE FUNCTION project_async(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(seconds) FROM async_pause;
    INSERT INTO rm_async AS r VALUES (e.stream_id, 1, amount(e.event_type, e.data))
        ON CONFLICT (stream_id) DO UPDATE SET n = r.n + 1, total = r.total + excluded.total;
    INSERT INTO rm_async_seen AS s VALUES (e.global_position, 1)
        ON CONFLICT (global_position) DO UPDATE SET times = s.times + 1;
END $$;

-- The same model, built by a projection that replays the log from scratch.
CREATE TABLE rm_replay (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
CREATE FUNCTION project_replay(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rm_replay AS r VALUES (e.stream_id, 1, amount(e.event_type, e.data))
        ON CONFLICT (stream_id) DO UPDATE SET n = r.n + 1, total = r.total + excluded.total;
END $$;

-- Inline read model.  The handler pauses now and then, so that a replay by
-- the worker lasts long enough to be interrupted.
CREATE TABLE rm_inline (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
CREATE FUNCTION project_inline(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.global_position % 8 = 0 THEN
        PERFORM pg_sleep(0.001);
    END IF;
    INSERT INTO rm_inline AS r VALUES (e.stream_id, 1, amount(e.event_type, e.data))
        ON CONFLICT (stream_id) DO UPDATE SET n = r.n + 1, total = r.total + excluded.total;
END $$;

SELECT eventstore.create_projection('async_proj', 'project_async(eventstore.event)',
                                    event_types => ARRAY['Deposited', 'Withdrawn'],
                                    mode => 'async');
});

my $worker_query = es_process_query('projector', 'postgres');

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Start $n writers, forked children that each run CALL load() in psql, and
# call it again when the connection was lost (the server crashed), until the
# stop file exists or the procedure returns (load_control.stop).  They leave
# with POSIX::_exit, so that no END block of the test framework runs there.
sub start_writers
{
	my ($tag, $n, $pause) = @_;
	unlink "$workdir/stop";
	$node->safe_psql('postgres', 'UPDATE load_control SET stop = false');
	my %pids;
	for my $w (1 .. $n)
	{
		my $pid = fork();
		die "fork failed: $!" unless defined $pid;
		if ($pid == 0)
		{
			open(STDOUT, '>', '/dev/null') or POSIX::_exit(10);
			open(STDERR, '>>', "$workdir/writer.$tag.$w") or POSIX::_exit(10);
			my $deadline = time() + 300;
			while (!-e "$workdir/stop" && time() < $deadline)
			{
				system('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr,
					'-c', "CALL load($w, $pause)");
				last if $? == 0;
				usleep(100_000);
			}
			POSIX::_exit(0);
		}
		$pids{$pid} = $w;
	}
	return { tag => $tag, pids => \%pids };
}

# Stop the writers and wait for them.  A writer may report a lost
# connection, never an ERROR of a statement.
sub stop_writers
{
	my ($writers) = @_;
	open(my $fh, '>', "$workdir/stop") or die "could not create the stop file: $!";
	close($fh);
	# the server may be down (an immediate stop): then the stop file does it,
	# and psql may die of a broken pipe before reading the statement
	eval { $node->psql('postgres', 'UPDATE load_control SET stop = true'); };

	ok(es_reap_children($writers->{pids}, 60), "$writers->{tag}: the writers stopped");
	es_no_errors_in("$writers->{tag}: no writer got a statement error",
		glob("$workdir/writer.$writers->{tag}.*"));
	return;
}

sub events_count
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM eventstore.events');
}

# Wait until at least $more events were appended since $from.
sub wait_events
{
	my ($from, $more) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) >= $from + $more FROM eventstore.events");
}

# The read model $table must hold, per stream, the count and the sum of the
# amounts of the events matching $filter.  One statement, so one snapshot:
# this holds even while writers append (for an inline projection).
sub check_model
{
	my ($label, $table, $filter) = @_;
	my $expected = qq{
		SELECT stream_id, count(*) AS n, sum(amount(event_type, data)) AS total
		  FROM eventstore.events WHERE $filter GROUP BY stream_id};
	my $diff = $node->safe_psql('postgres', qq{
		WITH expected AS ($expected),
		     actual AS (SELECT stream_id, n, total FROM $table),
		     missing AS (SELECT * FROM expected EXCEPT ALL SELECT * FROM actual),
		     extra AS (SELECT * FROM actual EXCEPT ALL SELECT * FROM expected)
		SELECT 'expected ' || m::text FROM missing m
		UNION ALL
		SELECT 'found ' || x::text FROM extra x});
	my @rows = grep { $_ ne '' } split /\n/, $diff;
	is(scalar(@rows), 0, "$label: $table equals the recomputation from the events")
	  or diag(join("\n", @rows[ 0 .. ($#rows < 19 ? $#rows : 19) ]));
	return;
}

sub worker_pid
{
	return $node->safe_psql('postgres', $worker_query);
}

# Wait for a worker other than $old (after a kill, also across the crash
# restart); returns its PID.
sub wait_new_worker
{
	my ($old) = @_;
	return es_wait_process($node, 'projector', not => $old);
}

# Send $signal to the worker while it is inside the handler of projection
# $name (sleeping in pg_sleep); returns its PID, or undef after $timeout
# seconds.  SIGTERM is sent by pg_terminate_backend() in the query that
# finds the worker there, so it arrives within microseconds; SIGKILL
# follows the query.
sub kill_worker_in_handler
{
	my ($signal, $name, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $found = qq{
		WITH w AS MATERIALIZED (
			$worker_query AND state = 'active'
			  AND query = 'eventstore: running a projection' AND wait_event = 'PgSleep'
			  AND (SELECT state IN ('running', 'catching_up') FROM eventstore.projection_status
			        WHERE name = '$name'))
		SELECT pid FROM w};
	$found .= ' WHERE pg_terminate_backend(pid)' if $signal eq 'TERM';
	while (time() < $deadline)
	{
		my $pid = $node->safe_psql('postgres', $found);
		if ($pid ne '')
		{
			kill 'KILL', $pid if $signal eq 'KILL';
			return $pid;
		}
		usleep(5_000);
	}
	return undef;
}

# An inline projection that catches up: wait_for_projection() returns once
# the replay has passed the horizon of the call, the worker then makes the
# projection live.  Only then does the read model follow every commit.
sub wait_live
{
	my ($label) = @_;
	is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('inline_proj', '60s')"),
		't', "$label caught up");
	ok($node->poll_query_until('postgres',
			"SELECT state = 'live' FROM eventstore.projection_status WHERE name = 'inline_proj'"),
		"$label is live");
	return;
}

sub status
{
	my ($name, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT $columns FROM eventstore.projection_status WHERE name = '$name'");
}

my $async_filter = q{event_type IN ('Deposited', 'Withdrawn')};
my $inline_filter =
  q{event_type IN ('Deposited', 'Withdrawn') AND starts_with(stream_id, 'acct-')};

# The async handler logs the positions it handled: each matching event
# exactly once, and nothing else.
sub check_seen
{
	my ($label) = @_;
	is( $node->safe_psql(
			'postgres', qq{
			SELECT (SELECT count(*) FROM rm_async_seen WHERE times <> 1),
			       (SELECT count(*) FROM eventstore.events e
			         WHERE $async_filter
			           AND NOT EXISTS (SELECT FROM rm_async_seen s
			                            WHERE s.global_position = e.global_position)),
			       (SELECT count(*) FROM rm_async_seen s
			         WHERE NOT EXISTS (SELECT FROM eventstore.events e
			                            WHERE e.global_position = s.global_position
			                              AND $async_filter))}),
		'0|0|0',
		"$label: every matching event was handled exactly once (none twice, none missed, none extra)");
	return;
}

# ---------------------------------------------------------------------------
# 1. Async projection: the worker is killed in the middle of batches.
# ---------------------------------------------------------------------------

my $writers = start_writers('async', 4, 0.02);
ok(wait_events(0, 300), 'async: the writers are appending');

my $log_offset = -s $node->logfile;
my $worker     = worker_pid();
for my $round (1 .. 6)
{
	my $signal = $round % 2 ? 'TERM' : 'KILL';
	# with a backlog, the worker runs full batches back to back
	ok($node->poll_query_until('postgres',
			"SELECT lag_events >= 50 FROM eventstore.projection_status WHERE name = 'async_proj'"),
		"async round $round: the projection lags behind the writers");
	my $pid = kill_worker_in_handler($signal, 'async_proj', 30);
	if (!defined $pid)
	{
		fail("async round $round: the worker is inside a handler");
		last;
	}
	$worker = wait_new_worker($pid);
	ok($worker, "async round $round: a new worker replaces the one killed with SIG$signal");
	last unless $worker;
	# the writers carry on (they reconnect after a crash)
	ok(wait_events(events_count(), 50), "async round $round: appends go on");
}

# The kills landed inside handlers, in the middle of batches: a terminated
# worker reports the event its handler was working on, the postmaster what
# a killed one was running.
my $log = slurp_file($node->logfile, $log_offset);
my $in_handler = () = $log =~
  /terminating background worker "eventstore projector" due to administrator command\n(?:\t.*\n|.*CONTEXT:.*\n)*?\tprojection "async_proj", event at global position \d+\n/g;
is($in_handler, 3, 'the three SIGTERMs reached the worker inside the handler');
my $in_batch = () = $log =~
  /"eventstore projector" \(PID \d+\) was terminated by signal 9: Killed\n.*Failed process was running: eventstore: running a projection\n/g;
is($in_batch, 3, 'the three SIGKILLs hit the worker while it ran a batch');
ok($node->log_contains(qr/all server processes terminated; reinitializing/, $log_offset),
	'the postmaster went through crash recovery');

ok(wait_events(0, 3000), 'async: the writers appended 3000 events');
stop_writers($writers);
my $nevents = events_count();
$node->safe_psql('postgres', 'UPDATE async_pause SET seconds = 0.002');

is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('async_proj', '90s')"),
	't', 'async: the projection catches up after the kills');
check_model('async', 'rm_async', $async_filter);
check_seen('async');
is(status('async_proj', 'state, error_count, lag_events'), 'running|0|0',
	'async: the projection is running, without errors or lag');

# A projection that replays the whole log from scratch builds the same.
$node->safe_psql('postgres', q{
	SELECT eventstore.create_projection('async_replay', 'project_replay(eventstore.event)',
	                                    event_types => ARRAY['Deposited', 'Withdrawn'],
	                                    mode => 'async', replay => true)});
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('async_replay', '60s')"),
	't', 'async: a new projection replays the log');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM ((TABLE rm_async EXCEPT ALL TABLE rm_replay)
		                      UNION ALL (TABLE rm_replay EXCEPT ALL TABLE rm_async)) d}),
	'0',
	'async: the read model equals the one rebuilt from scratch');
note(sprintf('part 1 took %.1f s', time() - $t0));

# The slow projection sits out parts 2 to 4; it catches up at the end.
$node->safe_psql('postgres', "SELECT eventstore.disable_projection('async_proj')");

# ---------------------------------------------------------------------------
# 2. Inline projection: immediate shutdown, and a killed appender.
# ---------------------------------------------------------------------------

my $t1 = time();
$writers = start_writers('inline-crash-1', 3, 0.02);
ok(wait_events($nevents, 200), 'inline: the writers are appending');

# Created with replay while writers append: it catches up through the worker
# first, then goes live.
$node->safe_psql('postgres', q{
	SELECT eventstore.create_projection('inline_proj', 'project_inline(eventstore.event)',
	                                    event_types => ARRAY['Deposited', 'Withdrawn'],
	                                    stream_prefix => 'acct-')});
wait_live('inline: the new projection');
my $n = events_count();
ok(wait_events($n, 200), 'inline: appends go on with the live projection');
check_model('inline: under load', 'rm_inline', $inline_filter);

# Immediate shutdown under load.  The writers see the stop file when they
# fail to reconnect.
open(my $stop_fh, '>', "$workdir/stop") or die "could not create the stop file: $!";
close($stop_fh);
$node->stop('immediate');
stop_writers($writers);
$node->start;
check_model('inline: after an immediate shutdown', 'rm_inline', $inline_filter);

# SIGKILL of a backend in the middle of an appending transaction (between
# its two appends): crash recovery, and the writers reconnect and carry on.
$writers = start_writers('inline-crash-2', 3, 0.02);
$n = events_count();
ok(wait_events($n, 200), 'inline: the writers are appending again');
my $victim = '';
for (1 .. 1000)
{
	$victim = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		 WHERE query LIKE 'CALL load(%' AND backend_xid IS NOT NULL AND wait_event = 'PgSleep'
		 ORDER BY pid LIMIT 1});
	last if $victim ne '';
	usleep(5_000);
}
ok($victim, "inline: found a writer backend in an appending transaction ($victim)");
!$victim or es_kill_backend($node, $victim) or die 'no crash restart after the SIGKILL';
ok(es_poll($node,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'CALL load(%'"),
	'inline: the writers are back after crash recovery');
$n = events_count();
ok(wait_events($n, 200), 'inline: appends go on after the crash');
check_model('inline: after a killed appender, under load', 'rm_inline', $inline_filter);
stop_writers($writers);
check_model('inline: after a killed appender', 'rm_inline', $inline_filter);
note(sprintf('part 2 took %.1f s', time() - $t1));

# ---------------------------------------------------------------------------
# 3. Rebuild under load.
# ---------------------------------------------------------------------------

my $t2 = time();
$writers = start_writers('rebuild', 3, 0.02);

# rebuild_projection() and the TRUNCATE in one transaction; returns the
# state the projection has when the transaction commits
sub rebuild_inline
{
	my $out = $node->safe_psql('postgres', q{
		BEGIN;
		SELECT eventstore.rebuild_projection('inline_proj');
		TRUNCATE rm_inline;
		SELECT state FROM eventstore.projection_status WHERE name = 'inline_proj';
		COMMIT;
	});
	return (split /\n/, $out)[-1];
}

for my $round (1 .. 3)
{
	$n = events_count();
	ok(wait_events($n, 100), "rebuild round $round: the writers are appending");
	is(rebuild_inline(), 'catching_up',
		"rebuild round $round: rebuilding under load, the projection catches up");

	if ($round == 2)
	{
		# rebuild again while the worker is replaying
		my $seen = '';
		my $deadline = time() + 30;
		while (time() < $deadline)
		{
			$seen = $node->safe_psql('postgres', q{
				SELECT CASE WHEN state = 'catching_up' AND position > 0 THEN 'replaying'
				            WHEN state = 'live' THEN 'live' END
				  FROM eventstore.projection_status WHERE name = 'inline_proj'});
			last if $seen ne '';
			usleep(10_000);
		}
		is($seen, 'replaying', "rebuild round $round: the replay is under way");
		is(rebuild_inline(), 'catching_up',
			"rebuild round $round: a second rebuild starts it over");
	}
	elsif ($round == 3)
	{
		# terminate the worker inside the handler, in the middle of the replay
		$log_offset = -s $node->logfile;
		my $pid = kill_worker_in_handler('TERM', 'inline_proj', 30);
		ok($pid, "rebuild round $round: the worker is terminated while replaying");
		if ($pid)
		{
			ok(wait_new_worker($pid), "rebuild round $round: the terminated worker is replaced");
			ok($node->log_contains(
					qr/terminating background worker "eventstore projector" due to administrator command\n(?:\t.*\n|.*CONTEXT:.*\n)*?\tprojection "inline_proj", event at global position \d+\n/,
					$log_offset),
				"rebuild round $round: the worker was terminated inside the handler");
		}
	}

	wait_live("rebuild round $round: the projection");
	$n = events_count();
	ok(wait_events($n, 100), "rebuild round $round: appends go on with the live projection");
	check_model("rebuild round $round: under load", 'rm_inline', $inline_filter);
}
stop_writers($writers);
check_model('rebuild: at rest', 'rm_inline', $inline_filter);
note(sprintf('part 3 took %.1f s', time() - $t2));

# ---------------------------------------------------------------------------
# 4. A failing async handler, and the worker killed during its backoff.
# ---------------------------------------------------------------------------

my $t3 = time();
# A long backoff: the kills land in it, and a restarted worker that retried
# early would show.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET eventstore.projection_retry_delay = '60s';
	SELECT pg_reload_conf();
	CREATE TABLE rm_fail (global_position bigint PRIMARY KEY, stream_id text NOT NULL);
	CREATE FUNCTION project_fail(e eventstore.event) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
	    IF e.data ? 'poison' THEN
	        RAISE EXCEPTION 'poisoned event %', e.data->>'poison';
	    END IF;
	    INSERT INTO rm_fail VALUES (e.global_position, e.stream_id);
	END $$;
	SELECT eventstore.create_projection('fail_proj', 'project_fail(eventstore.event)',
	                                    stream_prefix => 'poison-', mode => 'async',
	                                    replay => false);
	-- a healthy projection of the same events, run after fail_proj in
	-- every pass of the worker (by name): once it has seen an event, the
	-- worker has looked at fail_proj too
	CREATE TABLE rm_probe (global_position bigint PRIMARY KEY);
	CREATE FUNCTION project_probe(e eventstore.event) RETURNS void
	    LANGUAGE sql AS $$ INSERT INTO rm_probe VALUES (e.global_position) $$;
	SELECT eventstore.create_projection('probe', 'project_probe(eventstore.event)',
	                                    stream_prefix => 'poison-', mode => 'async',
	                                    replay => false);
});

# 120 events (more than two batches), the poisoned one, 30 more.
$node->safe_psql('postgres', q{
	SELECT eventstore.append_events('poison-1',
	    (SELECT jsonb_agg(jsonb_build_object('type', 'Checked', 'data', jsonb_build_object('i', i)))
	       FROM generate_series(1, 120) i))});
my $poison = $node->safe_psql('postgres',
	q{SELECT global_position FROM eventstore.append('poison-1', 'Checked', '{"poison": "a"}')});
$node->safe_psql('postgres', q{
	SELECT eventstore.append_events('poison-1',
	    (SELECT jsonb_agg(jsonb_build_object('type', 'Checked', 'data', jsonb_build_object('i', i)))
	       FROM generate_series(121, 150) i))});

ok($node->poll_query_until('postgres', qq{
	SELECT state = 'failing' AND error_position = $poison AND position = $poison - 1
	  FROM eventstore.projection_status WHERE name = 'fail_proj'}),
	"failing: the projection fails at the poisoned event ($poison) and holds before it");
my $applied_before = qq{
	SELECT (SELECT count(*) FROM rm_fail),
	       (SELECT count(*) FROM eventstore.events e
	         WHERE stream_id = 'poison-1' AND global_position < $poison
	           AND NOT EXISTS (SELECT FROM rm_fail f WHERE f.global_position = e.global_position)),
	       (SELECT count(*) FROM rm_fail WHERE global_position >= $poison)};
is($node->safe_psql('postgres', $applied_before), '120|0|0',
	'failing: exactly the 120 events before the poisoned one are applied');
like(status('fail_proj', 'last_error'), qr/poisoned event a/, 'failing: the error is reported');
is(status('fail_proj', 'error_count'), '1', 'failing: one failure so far');
my $retry_at = status('fail_proj', 'retry_at');

# The worker commits its state asynchronously; make it durable before the
# crash, so that what follows checks the restart, not the WAL writer.
$node->safe_psql('postgres', 'CHECKPOINT');

for my $signal ('TERM', 'KILL')
{
	my $pid = worker_pid();
	kill $signal, $pid;
	$worker = wait_new_worker($pid);
	ok($worker, "failing: a new worker after SIG$signal during the backoff");
	# Once the probe has seen a new event, the new worker has passed over
	# fail_proj as well.
	$node->safe_psql('postgres', q{SELECT eventstore.append('poison-1', 'Checked', '{}')});
	is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('probe', '30s')"),
		't', "failing: after SIG$signal the worker runs projections again");
	is(status('fail_proj', "state, error_position, position, error_count, retry_at = '$retry_at'"),
		"failing|$poison|" . ($poison - 1) . '|1|t',
		"failing: after SIG$signal still failing at $poison, same backoff, not retried early");
	is($node->safe_psql('postgres', $applied_before), '120|0|0',
		"failing: after SIG$signal the events before the poisoned one are applied, nothing after");
}

# Fix the handler and retry: the projection catches up over everything.
$node->safe_psql('postgres', q{
	CREATE TABLE poison_allowed (marker text PRIMARY KEY);
	CREATE OR REPLACE FUNCTION project_fail(e eventstore.event) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
	    IF e.data ? 'poison'
	       AND NOT EXISTS (SELECT FROM poison_allowed WHERE marker = e.data->>'poison') THEN
	        RAISE EXCEPTION 'poisoned event %', e.data->>'poison';
	    END IF;
	    INSERT INTO rm_fail VALUES (e.global_position, e.stream_id);
	END $$;
	INSERT INTO poison_allowed VALUES ('a');
});
$node->safe_psql('postgres', "SELECT eventstore.retry_projection('fail_proj')");
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('fail_proj', '20s')"),
	't', 'failing: after the fix, retry_projection() makes the projection catch up');
my $all_applied = q{
	SELECT (SELECT count(*) FROM eventstore.events WHERE stream_id = 'poison-1')
	       = (SELECT count(*) FROM rm_fail)
	   AND NOT EXISTS (SELECT global_position FROM eventstore.events WHERE stream_id = 'poison-1'
	                   EXCEPT SELECT global_position FROM rm_fail)};
is($node->safe_psql('postgres', $all_applied), 't',
	'failing: every event of the stream is applied once');
is(status('fail_proj', "state, error_count, coalesce(error_position::text, 'none')"),
	'running|0|none', 'failing: the projection is running again, its error cleared');

# The same with a fix that changes no definition (the handler now lets
# poisons listed in a table through): retry_projection() alone must make
# the worker try again, long before the 60 s backoff ends.
$poison = $node->safe_psql('postgres',
	q{SELECT global_position FROM eventstore.append('poison-1', 'Checked', '{"poison": "b"}')});
ok($node->poll_query_until('postgres', qq{
	SELECT state = 'failing' AND error_position = $poison
	  FROM eventstore.projection_status WHERE name = 'fail_proj'}),
	"failing: a second poisoned event ($poison) fails");
$node->safe_psql('postgres', "INSERT INTO poison_allowed VALUES ('b')");
$node->safe_psql('postgres', "SELECT eventstore.retry_projection('fail_proj')");
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('fail_proj', '5s')"),
	't', 'failing: retry_projection() after a fix outside the handler makes it catch up')
  or diag('status: '
	  . status('fail_proj', 'state, position, error_position, error_count, retry_at, now()'));
is($node->safe_psql('postgres', $all_applied), 't',
	'failing: every event of the stream is applied once, the second poison included');
note(sprintf('part 4 took %.1f s', time() - $t3));

# ---------------------------------------------------------------------------
# The disabled async projection catches up over everything since.
# ---------------------------------------------------------------------------

$node->safe_psql('postgres', q{
	UPDATE async_pause SET seconds = 0;
	SELECT eventstore.enable_projection('async_proj');
});
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('async_proj', '60s')"),
	't', 'the re-enabled async projection catches up');
check_model('async at the end', 'rm_async', $async_filter);
check_model('replay at the end', 'rm_replay', $async_filter);
check_seen('async at the end');

$node->stop('fast');
ok(!$node->log_contains(qr/PANIC|TRAP|terminated by signal (?!9\b)/),
	'no crash in the server log other than the SIGKILLs sent by the test');
note(sprintf('total %.1f s', time() - $t0));

done_testing();
