# Competing consumers of a durable subscription under failures (README.md,
# "Durable subscriptions").
#
# Three writers append to 50 streams acct-00 .. acct-49 (transactions over
# one or two streams, pausing inside some so that commits come out of
# position order, a tenth rolled back, some events in streams the
# subscription does not match).  Consumers (test/t/subscription_clients.py)
# consume subscription "main" (lease_timeout 1 s, three lanes: fetches of
# different lanes run side by side, 0.9.0) as the README recommends:
# fetch in a transaction of its own, then acknowledge and apply the batch to
# a read model in one transaction.  The ack comes first and must count every
# event, else the consumer rolls back: an ack of a lease that was handed to
# someone else is not an error, it acknowledges nothing.  Each consumer
# checks per-stream order itself (every event's version is the stream's last
# applied version + 1) and inserts with a plain INSERT, so a duplicate
# delivery raises.  One consumer sometimes outlasts its lease between fetch
# and ack, so its events are taken over by the others.
#
# Meanwhile consumers are killed in the middle of a batch, each time while
# it holds leases: the client with SIGKILL after its fetch or after its ack
# (idle in the uncommitted transaction), replaced by a consumer of a new
# name; its backend with pg_terminate_backend in the uncommitted ack
# transaction (the client reconnects under its name); and once the backend
# with SIGKILL, so the server goes through crash-restart and everyone
# reconnects.  When the writers have stopped and the subscription has
# drained (no lag, nothing in flight):
#
#   - every matching committed event was delivered and applied exactly once,
#     no other event was, and no consumer saw a stream out of order;
#   - no event was delivered again while a lease on it was live (from the
#     consumers' logs: fetch times and attempt numbers);
#   - the events the killed consumers held were redelivered (attempt > 1);
#   - nothing is parked, in flight or waiting; the read model equals its
#     recomputation from eventstore.events, and equals the read model a new
#     subscription builds from the start of the log;
#   - the server crashed only when we crashed it; no deadlock.
#
# Poison events (subscription "poison", max_attempts 3, two lanes): a consumer rejects
# events carrying a marker (and, keeping its stream's order, what follows
# them in the same batch) and never answers for an event with another
# marker.  After three deliveries they are parked, by the nacks and by the
# expiry of the last lease; other streams flow meanwhile, and later events
# of the parked streams flow past them; subscription_replay_parked and a
# fixed consumer apply them, and the read model matches the log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Path qw(rmtree);
use POSIX ();
use Time::HiRes qw(usleep time);
use EventStore::Test;

my $python = es_python();
my $clients = 'test/t/subscription_clients.py';

# A hang must fail in a minute or two: poll_query_until gives up after
# 10 * timeout_default attempts.
$PostgreSQL::Test::Utils::timeout_default = 30;

my $node = es_node('consumers', conf => "restart_after_crash = on\n");

# The read model: applied events, and per stream the highest version, the
# number of events and the sum of their "n".  test_apply() is called by the
# consumers in their ack transaction.
$node->safe_psql('postgres', q{
CREATE TABLE applied (
    subscription    text NOT NULL,
    global_position bigint NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    consumer        text NOT NULL,
    attempt         integer NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (subscription, global_position));
CREATE TABLE stream_state (
    subscription text NOT NULL,
    stream_id    text NOT NULL,
    version      bigint NOT NULL,
    events       bigint NOT NULL,
    total        bigint NOT NULL,
    PRIMARY KEY (subscription, stream_id));
CREATE TABLE violations (
    subscription text, global_position bigint, stream_id text,
    stream_version bigint, previous bigint, consumer text);
CREATE FUNCTION test_apply(p_sub text, p_consumer text, p_strict boolean,
                           p_position bigint, p_stream text, p_version bigint,
                           p_attempt integer, p_n bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_last bigint;
BEGIN
    SELECT s.version INTO v_last FROM stream_state s
     WHERE s.subscription = p_sub AND s.stream_id = p_stream FOR UPDATE;
    INSERT INTO applied (subscription, global_position, stream_id, stream_version, consumer, attempt)
    VALUES (p_sub, p_position, p_stream, p_version, p_consumer, p_attempt);
    INSERT INTO stream_state AS s VALUES (p_sub, p_stream, p_version, 1, p_n)
    ON CONFLICT (subscription, stream_id) DO UPDATE
       SET version = greatest(s.version, excluded.version),
           events = s.events + 1, total = s.total + excluded.total;
    IF p_strict AND p_version <> coalesce(v_last, 0) + 1 THEN
        INSERT INTO violations VALUES (p_sub, p_position, p_stream, p_version, v_last, p_consumer);
        RETURN format('%s got %s version %s after version %s (position %s, attempt %s)',
                      p_consumer, p_stream, p_version, coalesce(v_last, 0), p_position, p_attempt);
    END IF;
    RETURN NULL;
END $$;
SELECT eventstore.create_subscription('main', stream_prefix => 'acct-',
                                      lease_timeout => '1 second', max_attempts => 100,
                                      lanes => 3);
});

my $dsn = $node->connstr('postgres');
# The clients' logs and state files, kept with the test's logs.
my $dir = "$PostgreSQL::Test::Utils::log_path/008_clients";
rmtree($dir);
mkdir($dir) or die "could not create $dir: $!";

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Run the client script in a forked child; its output goes to $out.
sub spawn
{
	my ($out, @args) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $out) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		# if exec fails: _exit, so that no END block of the framework runs
		exec($python, $clients, @args) or POSIX::_exit(127);
	}
	return $pid;
}

my %consumer_pid;    # name => pid of the client process, until reaped
my $consumers_started = 0;
my @writers;         # pids, until reaped

# If the test dies, do not leave clients behind.
my $test_pid = $$;
END
{
	kill 'KILL', values %consumer_pid, @writers if $$ == $test_pid;
}

sub start_consumer
{
	my ($subscription, @opts) = @_;
	my $name = 'c' . ++$consumers_started;
	$consumer_pid{$name} = spawn("$dir/$name.out", 'consume', '--dsn', $dsn,
		'--subscription', $subscription, '--name', $name, '--dir', $dir,
		'--stop', "stop-$subscription", @opts);
	return $name;
}

# (seq, phase, backend pid) from a consumer's state file
sub consumer_state
{
	my ($name) = @_;
	my ($line) = es_slurp_lines("$dir/$name.state");
	return split / /, ($line // '0 none 0');
}

# Stop a consumer in the middle of its next batch at $phase (see
# subscription_clients.py).  Returns its backend's PID, or undef.
sub linger
{
	my ($name, $phase) = @_;
	my ($seq) = consumer_state($name);
	es_write_file("$dir/$name.linger", $phase);
	my $backend;
	es_wait_for(
		"consumer $name to stop at $phase",
		30,
		sub {
			my ($s, $p, $pid) = consumer_state($name);
			$backend = $pid if $s > $seq && $p eq $phase;
			return defined $backend;
		});
	return $backend;
}

sub leased_to
{
	my ($subscription, $name) = @_;
	return split /,/, $node->safe_psql('postgres', qq{
		SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		  FROM eventstore._subscription_outstanding
		 WHERE subscription = '$subscription' AND consumer = '$name' AND state = 'leased'});
}

sub wait_backend_gone
{
	my ($pid) = @_;
	return $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $pid)");
}

sub applied_count
{
	my ($subscription) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM applied WHERE subscription = '$subscription'");
}

sub stop_consumers
{
	my ($subscription, @names) = @_;
	es_write_file("$dir/stop-$subscription", '');
	my %running = map { $consumer_pid{$_} => $_ } @names;
	ok(es_reap_children(\%running, 30), "the consumers of $subscription stopped");
	delete $consumer_pid{$_} for @names;
	return;
}

# Log lines of consumers that must never appear.
sub bad_lines
{
	my @names = @_;
	return map {
		my $name = $_;
		map { "$name: $_" }
		  grep { /^(ERROR|DUPLICATE|VIOLATION|STOLEN|LINGER_EXPIRED|Traceback)\b/ }
		  es_slurp_lines("$dir/$name.log"), es_slurp_lines("$dir/$name.out")
	} @names;
}

sub status
{
	my ($subscription) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT format('lag_events=%s in_flight=%s pending_retry=%s parked=%s position=%s pulled=%s',
		              lag_events, in_flight, pending_retry, parked,
		              position, pulled_position)
		  FROM eventstore.subscription_status WHERE name = '$subscription'});
}

# The read model of a subscription against its recomputation from the log:
# rows that differ, both ways.
sub read_model_diff
{
	my ($subscription, $prefix) = @_;
	return $node->safe_psql('postgres', qq{
		WITH model AS (
		    SELECT stream_id, version, events, total FROM stream_state
		     WHERE subscription = '$subscription'),
		rebuilt AS (
		    SELECT stream_id, max(stream_version) AS version, count(*) AS events,
		           sum((data->>'n')::bigint) AS total
		      FROM eventstore.events WHERE starts_with(stream_id, '$prefix')
		     GROUP BY stream_id)
		SELECT count(*) FROM ((TABLE model EXCEPT TABLE rebuilt)
		                      UNION ALL (TABLE rebuilt EXCEPT TABLE model)) d});
}

# ---------------------------------------------------------------------------
# Competing consumers, killed mid-batch, and a crash
# ---------------------------------------------------------------------------

for my $w (1 .. 3)
{
	push @writers,
	  spawn("$dir/writer-$w.out", 'write', '--dsn', $dsn, '--writer', $w,
		'--transactions', 5000, '--pause', 0.03, '--log', "$dir/writer-$w.log",
		'--stop', "$dir/stop-writers");
}
my @main_opts = ('--strict-order', '--max-count', 50, '--vary-count');
my @main = map { start_consumer('main', @main_opts) } 1 .. 3;
# One more consumer sometimes takes longer than the lease between fetch and
# ack, so that others take its events over; it is never killed.
my $slow = start_consumer('main', @main_opts, '--slow', 0.3);
my @main_all = (@main, $slow);    # also the killed ones

# Each action waits for the consumers to make progress first.  A kill
# leaves leases that expire after a second; "kill" replaces the consumer.
my @actions = qw(kill:fetched terminate kill:acked terminate crash
  kill:fetched terminate kill:acked kill:fetched terminate);
my (%held, @at_crash);    # position => what killed its holder
my %done = (kill => 0, terminate => 0, crash => 0);
for my $action (@actions)
{
	my $target = applied_count('main') + 150;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $target FROM applied WHERE subscription = 'main'")
	  or diag('consumers stalled: ' . status('main'));

	my ($what, $phase) = split /:/, $action;
	$phase //= 'acked-busy';
	my $victim = $main[ int(rand(@main)) ];
	my $backend = linger($victim, $phase);
	ok($backend, "$action: consumer $victim stopped at $phase") or next;
	my @positions = leased_to('main', $victim);
	ok(@positions, "$action: $victim holds leases (" . scalar(@positions) . ')');
	$held{$_} = "$action of $victim" for @positions;

	if ($what eq 'kill')
	{
		kill 'KILL', $consumer_pid{$victim};
		waitpid($consumer_pid{$victim}, 0);
		delete $consumer_pid{$victim};
		wait_backend_gone($backend);
		my $replacement = start_consumer('main', @main_opts);
		@main = ((grep { $_ ne $victim } @main), $replacement);
		push @main_all, $replacement;
	}
	elsif ($what eq 'terminate')
	{
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($backend)");
		wait_backend_gone($backend);
	}
	else
	{
		ok(es_kill_backend($node, $backend, 60),
			'crash: the postmaster reinitialised after the backend was killed');
		@at_crash = (@main, $slow);
	}
	$done{$what}++;
}
note("actions: $done{kill} consumer kills, $done{terminate} backend terminations, $done{crash} crash");

es_write_file("$dir/stop-writers", '');
while (my $pid = shift @writers)
{
	waitpid($pid, 0);
	is($? >> 8, 0, "writer $pid exited cleanly");
}
my @writer_errors = grep { /^ERROR/ } map { es_slurp_lines("$dir/writer-$_.log") } 1 .. 3;
is(scalar(@writer_errors), 0, 'no writer got an error') or diag(join("\n", @writer_errors));
is(scalar(grep { grep { /^CONN/ } es_slurp_lines("$dir/writer-$_.log") } 1 .. 3),
	3, 'every writer lost its connection in the crash and reconnected');

my $drained = $node->poll_query_until('postgres', q{
	SELECT lag_events = 0 AND in_flight = 0
	  FROM eventstore.subscription_status WHERE name = 'main'});
ok($drained, 'subscription main drained') or diag(status('main'));
stop_consumers('main', @main, $slow);

my $matching = $node->safe_psql('postgres',
	q{SELECT count(*) FROM eventstore.events WHERE starts_with(stream_id, 'acct-')});
my $other = $node->safe_psql('postgres',
	q{SELECT count(*) FROM eventstore.events WHERE NOT starts_with(stream_id, 'acct-')});
note("$matching matching events, $other in other streams; " . applied_count('main') . ' applied');
cmp_ok($matching, '>', 1000, 'the writers appended a few thousand events');

my @bad = bad_lines(@main_all);
is(scalar(@bad), 0, 'no consumer saw an error, a duplicate, an order violation or its live lease taken')
  or diag(join("\n", es_head(20, @bad)));
is($node->safe_psql('postgres', 'SELECT count(*) FROM violations'), '0',
	'no per-stream order violation was applied');
my @lost = grep { /^LOST_LEASE/ } map { es_slurp_lines("$dir/$_.log") } @main_all;
cmp_ok(scalar(@lost), '>', 0,
	'some batches of the slow consumer were taken over when their leases expired (its ack failed, it rolled back)');

# Competing consumers never hold one event: from the consumers' logs, each
# delivery of an event after the first ended at least a lease timeout (1 s)
# after the fetch that handed it out before started, and has an attempt
# number of its own.
my %deliveries;    # position => [ [attempt, fetch start, fetch end, consumer] ]
for my $name (@main_all)
{
	for (es_slurp_lines("$dir/$name.log"))
	{
		push @{ $deliveries{$1} }, [ $2, $3, $4, $name ]
		  if /^DELIVER (\d+) \S+ \d+ (\d+) ([\d.]+) ([\d.]+)$/;
	}
}
my @overlap;
for my $pos (sort { $a <=> $b } keys %deliveries)
{
	my @d = sort { $a->[0] <=> $b->[0] } @{ $deliveries{$pos} };
	for my $i (1 .. $#d)
	{
		my ($prev, $this) = @d[ $i - 1, $i ];
		push @overlap,
		  sprintf('%s: attempt %d to %s (fetched at %.3f), attempt %d to %s (fetched by %.3f)',
			$pos, @$prev[ 0, 3, 1 ], @$this[ 0, 3, 2 ])
		  if $this->[0] == $prev->[0] || $this->[2] < $prev->[1] + 0.998;
	}
}
is(scalar(keys %deliveries), $matching, 'every matching event was delivered');
is(scalar(@overlap), 0, 'no event was delivered again while its lease was live')
  or diag(join("\n", es_head(20, @overlap)));

is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM eventstore.events e
		 WHERE starts_with(e.stream_id, 'acct-')
		   AND NOT EXISTS (SELECT FROM applied a
		                    WHERE a.subscription = 'main' AND a.global_position = e.global_position)}),
	'0',
	'every matching committed event was applied');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM applied a
		 WHERE a.subscription = 'main'
		   AND NOT EXISTS (SELECT FROM eventstore.events e
		                    WHERE e.global_position = a.global_position
		                      AND e.stream_id = a.stream_id
		                      AND e.stream_version = a.stream_version
		                      AND starts_with(e.stream_id, 'acct-'))}),
	'0',
	'only matching committed events were applied, with their stream and version');
is(applied_count('main'), $matching, 'applied exactly once each');
is(read_model_diff('main', 'acct-'), '0',
	'the read model equals its recomputation from eventstore.events');

is( $node->safe_psql('postgres', q{
		SELECT format('%s %s %s %s %s', lag_events, in_flight, pending_retry, parked,
		              position = pulled_position)
		  FROM eventstore.subscription_status WHERE name = 'main'}),
	'0 0 0 0 t',
	'status: no lag, nothing in flight, waiting or parked; checkpoint = pulled position');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM eventstore._subscription_outstanding WHERE subscription = 'main'}),
	'0', 'no outstanding events are left');

is($done{crash}, 1, 'the server crashed once');
my @not_back = grep { (grep { /^CONNECT/ } es_slurp_lines("$dir/$_.log")) < 2 } @at_crash;
is(scalar(@not_back), 0, 'every consumer reconnected after the crash') or diag("@not_back");
my @held = sort { $a <=> $b } keys %held;
my %redelivered = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	'SELECT global_position, attempt FROM applied WHERE subscription = \'main\' AND global_position IN ('
	  . join(',', @held, 0) . ')');
my @not_redelivered = grep { ($redelivered{$_} // 0) < 2 } @held;
is(scalar(@not_redelivered), 0,
	scalar(@held) . ' events held by killed consumers were redelivered and applied')
  or diag(join("\n", map { "$_ ($held{$_}): attempt " . ($redelivered{$_} // 'none') } @not_redelivered));
note($node->safe_psql('postgres', q{
	SELECT format('%s applied at a redelivery, %s consumers applied events',
	              count(*) FILTER (WHERE attempt > 1), count(DISTINCT consumer))
	  FROM applied WHERE subscription = 'main'}));

my $log = slurp_file($node->logfile);
# "server process (PID n) was terminated ..." until PostgreSQL 17, "client
# backend (PID n) ..." from 18 on (the process's type); any process counts.
my @signals = $log =~ /(\(PID \d+\) was terminated by signal \d+)/g;
is(scalar(@signals), 1, 'one server process died of a signal: the one we killed')
  or diag(join("\n", @signals));
unlike($log, qr/deadlock detected/, 'no deadlock');
unlike($log, qr/TRAP:|PANIC:/, 'no assertion failure or PANIC');

# Rebuild from scratch: a new subscription (of one lane) replays the whole
# log into a read model of its own, which must equal the one built under
# failures.
$node->safe_psql('postgres',
	q{SELECT eventstore.create_subscription('rebuild', stream_prefix => 'acct-')});
my $rebuilder = start_consumer('rebuild', '--strict-order', '--max-count', 200, '--hold', 0);
ok( $node->poll_query_until('postgres', q{
		SELECT lag_events = 0 AND in_flight = 0
		  FROM eventstore.subscription_status WHERE name = 'rebuild'}),
	'subscription rebuild replayed the log') or diag(status('rebuild'));
stop_consumers('rebuild', $rebuilder);
@bad = bad_lines($rebuilder);
is(scalar(@bad), 0, 'the rebuild saw no error and no order violation') or diag(join("\n", @bad));
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM ((SELECT stream_id, version, events, total FROM stream_state WHERE subscription = 'main'
		                       EXCEPT SELECT stream_id, version, events, total FROM stream_state WHERE subscription = 'rebuild')
		                      UNION ALL
		                      (SELECT stream_id, version, events, total FROM stream_state WHERE subscription = 'rebuild'
		                       EXCEPT SELECT stream_id, version, events, total FROM stream_state WHERE subscription = 'main')) d}),
	'0',
	'the read model rebuilt from scratch equals the one built under failures');
is(applied_count('rebuild'), $matching, 'the rebuild applied every matching event once');

# ---------------------------------------------------------------------------
# Poison events
# ---------------------------------------------------------------------------

$node->safe_psql('postgres', q{
	SELECT eventstore.create_subscription('poison', stream_prefix => 'p-',
	                                      lease_timeout => '1 second', max_attempts => 3,
	                                      lanes => 2)});

# p-2 ends with a poison event; p-3 starts with one, followed by an event
# the consumer rejects with it (order); p-5 has an event the consumer never
# acknowledges nor rejects (its lease expires).
sub append_p
{
	my ($stream, $n, $marker) = @_;
	my $data = $marker ? qq({"n": $n, "$marker": true}) : qq({"n": $n});
	return $node->safe_psql('postgres',
		"SELECT (eventstore.append('$stream', 'Happened', '$data')).global_position");
}
my @p_ok = (append_p('p-1', 1), append_p('p-1', 2), append_p('p-2', 3), append_p('p-2', 4));
my @p_poison = (append_p('p-2', 5, 'poison'), append_p('p-3', 6, 'poison'));
my $p_follower = append_p('p-3', 7);
my $p_stuck = append_p('p-5', 8, 'stuck');

my $buggy = start_consumer('poison', '--nack-marker', 'poison', '--ignore-marker', 'stuck',
	'--max-count', 10, '--hold', 0);
ok( $node->poll_query_until('postgres', q{
		SELECT pending_retry = 3 FROM eventstore.subscription_status WHERE name = 'poison'}),
	'the poison events and the follower are rejected and wait for a retry') or diag(status('poison'));

# Other streams flow while they wait.
my @p_other = map { append_p('p-4', 10 + $_) } 1 .. 3;
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 3 FROM applied WHERE global_position IN (' . join(',', @p_other) . ')'),
	'events of another stream are applied while the poison events wait');

ok( $node->poll_query_until('postgres', q{
		SELECT parked = 4 AND in_flight = 0 AND pending_retry = 0 AND lag_events = 0
		  FROM eventstore.subscription_status WHERE name = 'poison'}),
	'after three deliveries the poison events are parked') or diag(status('poison'));
is( $node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s v%s %s: %s', global_position, stream_id, stream_version,
		                         attempts, last_error), E'\n' ORDER BY global_position)
		  FROM eventstore.subscription_parked('poison')}),
	join("\n",
		"$p_poison[0] p-2 v3 3: poison",
		"$p_poison[1] p-3 v1 3: poison",
		"$p_follower p-3 v2 3: poison",
		"$p_stuck p-5 v1 3: lease expired"),
	'subscription_parked lists them with their attempts and last error');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM applied a
		 WHERE a.subscription = 'poison'
		   AND a.applied_at > (SELECT min(parked_at) FROM eventstore.subscription_parked('poison'))
		   AND a.stream_id = 'p-4'}),
	'0',
	'the other stream was applied before anything was parked');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM applied WHERE subscription = 'poison'}),
	join(',', @p_ok, @p_other),
	'everything else was applied');

# Parked events do not block their stream.
my @p_later = (append_p('p-2', 20), append_p('p-3', 21), append_p('p-5', 22));
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 3 FROM applied WHERE global_position IN (' . join(',', @p_later) . ')'),
	'later events of the parked streams flow past them');
stop_consumers('poison', $buggy);
unlink("$dir/stop-poison");

is( $node->safe_psql('postgres', q{SELECT eventstore.subscription_replay_parked('poison')}),
	'4', 'replay_parked makes the four events pending again');
my $fixed = start_consumer('poison', '--max-count', 10, '--hold', 0);
ok( $node->poll_query_until('postgres', q{
		SELECT parked = 0 AND in_flight = 0 AND pending_retry = 0 AND lag_events = 0
		  FROM eventstore.subscription_status WHERE name = 'poison'}),
	'the fixed consumer handled the replayed events') or diag(status('poison'));
stop_consumers('poison', $fixed);
is( $node->safe_psql('postgres', q{
		SELECT string_agg(format('%s %s', global_position, attempt), ',' ORDER BY global_position)
		  FROM applied WHERE subscription = 'poison' AND consumer = '} . $fixed . q{'}),
	join(',', map { "$_ 1" } @p_poison, $p_follower, $p_stuck),
	'it got exactly the replayed events, attempts counted from 1 again');
@bad = bad_lines($buggy, $fixed);
is(scalar(@bad), 0, 'no consumer error or duplicate in the poison case') or diag(join("\n", @bad));
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM eventstore.events e WHERE starts_with(e.stream_id, 'p-')
		   AND NOT EXISTS (SELECT FROM applied a WHERE a.subscription = 'poison'
		                                           AND a.global_position = e.global_position)}),
	'0', 'every poison-case event was applied, once');
is(read_model_diff('poison', 'p-'), '0',
	'the poison read model equals its recomputation from eventstore.events');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM eventstore._subscription_outstanding WHERE subscription = 'poison'}),
	'0', 'nothing is outstanding');

$node->stop;
done_testing();
