# Crash recovery of appends.
#
# Several client processes append in a loop (single events, batches of 3-10
# events, transactions over two streams, and appends to one stream all
# clients share) while the server is stopped in immediate mode, i.e. every
# server process is killed without a shutdown checkpoint, so the restart
# runs crash recovery from WAL.  This is repeated over several rounds; in
# every other round a checkpoint runs under load first, so that redo starts
# from it.  A client records a transaction in its acknowledgement file only
# after the server acknowledged its COMMIT.  After each restart:
#
#   - every acknowledged transaction is present with all of its events;
#   - no transaction is partial: all of its events exist or none (for
#     unacknowledged ones, both are allowed), and nothing exists that no
#     client attempted;
#   - each stream's versions are exactly 1..n, stream_version() is n, and the
#     events of one transaction are contiguous in each stream it wrote;
#   - global positions are unique and positive, and ascend with the version
#     within a stream; the indexes and the heap pass amcheck;
#   - appends resume where the streams left off: the clients of the next
#     round append with expected versions learned after the restart, and
#     finally a correct expected version succeeds and a stale one fails
#     with ST001;
#   - a retry of a batch with event ids, committed before a backend was
#     killed, returns the original result and stores nothing (0.6.0).
#
# The node runs with the test framework's fsync = off: killing processes
# does not lose what was written to the kernel, so this tests WAL replay,
# not a power failure.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Open2;
use POSIX qw(WNOHANG);
use Time::HiRes qw(usleep);
use EventStore::Test;

my $nclients = 4;
my $nrounds  = 4;
# acknowledged transactions each client must have before a crash
my $min_acks = 50;
my @own_suffixes = qw(a b c);

# restart_after_crash: the last step kills a single backend
my $node = es_node(
	'primary',
	extensions => [ 'eventstore', 'amcheck' ],
	conf => "restart_after_crash = on\n");

my $connstr = $node->connstr('postgres');
my $workdir = PostgreSQL::Test::Utils::tempdir;

sub ack_file     { my ($r, $c) = @_; return "$workdir/ack.r$r.c$c"; }
sub attempt_file { my ($r, $c) = @_; return "$workdir/attempt.r$r.c$c"; }
sub err_file     { my ($r, $c) = @_; return "$workdir/stderr.r$r.c$c"; }


# The JSON of one event of transaction "r-c-s": its index i among the
# transaction's n events.
sub event_json
{
	my ($type, $r, $c, $s, $i, $n) = @_;
	return
	  qq({"type": "$type", "data": {"m": "r$r-c$c-s$s", "r": $r, "c": $c, "s": $s, "i": $i, "n": $n}});
}

sub batch_sql
{
	my ($stream, $expected, $r, $c, $s, $first, $count, $n) = @_;
	my @events =
	  map { event_json('Batched', $r, $c, $s, $first + $_, $n) } 0 .. $count - 1;
	return
	  "SELECT eventstore.append_events('$stream', '["
	  . join(', ', @events)
	  . "]'::jsonb, $expected);";
}

sub single_sql
{
	my ($stream, $expected, $r, $c, $s, $i, $n) = @_;
	return
	  "SELECT eventstore.append('$stream', 'Single', "
	  . qq('{"m": "r$r-c$c-s$s", "r": $r, "c": $c, "s": $s, "i": $i, "n": $n}'::jsonb, )
	  . "NULL, $expected);";
}

# One client: a long-lived psql that runs one transaction after the other and
# prints "ack <marker>" (a psql \echo) only after the COMMIT succeeded; with
# ON_ERROR_STOP any error or a lost connection makes psql exit instead.  The
# client stops when psql's output ends.  Runs in a forked child, which leaves
# with POSIX::_exit so that no END block of the test framework runs there.
sub run_client
{
	my ($r, $c) = @_;

	open(STDERR, '>>', err_file($r, $c)) or POSIX::_exit(10);
	$SIG{PIPE} = 'IGNORE';
	srand(1000 * $r + $c);

	my $psql_pid =
	  open2(my $out, my $in, 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		'-d', $connstr);
	$in->autoflush(1);

	# Own streams are written by this client alone, so it knows their
	# versions and appends with an expected version half of the time.  Learn
	# them after the (re)start.
	my @own = map { "c$c-$_" } @own_suffixes;
	my %version;
	print $in "SELECT stream_id, eventstore.stream_version(stream_id) FROM unnest(ARRAY['"
	  . join("', '", @own)
	  . "']) AS stream_id;\n\\echo ready\n";
	while (my $line = <$out>)
	{
		chomp $line;
		last if $line eq 'ready';
		$version{$1} = $2 if $line =~ /^(c\d+-\w)\|(\d+)$/;
	}
	if (keys %version != @own)
	{
		waitpid($psql_pid, 0);
		POSIX::_exit(0);    # the server went away before we started
	}

	for (my $s = 1;; $s++)
	{
		my $kind = int(rand(4));
		my $ia = int(rand(@own));
		my $sa = $own[$ia];
		# another stream of our own, for transactions over two streams
		my $sb = $own[ ($ia + 1 + int(rand(@own - 1))) % @own ];
		my @stmts;
		my %count;

		my $exp = sub {
			my ($stream) = @_;
			return rand() < 0.5 ? $version{$stream} : 'NULL';
		};

		if ($kind == 0)
		{
			# one event
			@stmts = (single_sql($sa, $exp->($sa), $r, $c, $s, 0, 1));
			%count = ($sa => 1);
		}
		elsif ($kind == 1)
		{
			# a batch of 3-10 events
			my $k = 3 + int(rand(8));
			@stmts = (batch_sql($sa, $exp->($sa), $r, $c, $s, 0, $k, $k));
			%count = ($sa => $k);
		}
		elsif ($kind == 2)
		{
			# a batch and a single event on two streams of our own
			my $k = 3 + int(rand(8));
			@stmts = (
				batch_sql($sa, $exp->($sa), $r, $c, $s, 0, $k, $k + 1),
				single_sql($sb, $exp->($sb), $r, $c, $s, $k, $k + 1));
			%count = ($sa => $k, $sb => 1);
		}
		else
		{
			# a batch on our own stream, then one event on the stream all
			# clients share (any version, always taken last: no deadlocks)
			my $k = 3 + int(rand(8));
			@stmts = (
				batch_sql($sa, $exp->($sa), $r, $c, $s, 0, $k, $k + 1),
				single_sql('shared', 'NULL', $r, $c, $s, $k, $k + 1));
			%count = ($sa => $k, shared => 1);
		}

		my $marker = "r$r-c$c-s$s";
		my $total  = 0;
		$total += $_ for values %count;
		append_to_file(attempt_file($r, $c), "$marker $total\n");

		print $in "BEGIN;\n" . join("\n", @stmts) . "\nCOMMIT;\n\\echo ack $marker\n";

		my ($acked, $prev) = (0, '');
		while (my $line = <$out>)
		{
			chomp $line;
			if ($line eq "ack $marker")
			{
				$acked = ($prev eq 'COMMIT');
				last;
			}
			$prev = $line;
		}
		if (!$acked)
		{
			# psql exited: the transaction is not acknowledged
			close($in);
			waitpid($psql_pid, 0);
			print STDERR "client $c: psql exited with status "
			  . ($? >> 8)
			  . " during $marker\n";
			POSIX::_exit(0);
		}
		append_to_file(ack_file($r, $c), "$marker $total\n");
		for my $stream (keys %count)
		{
			$version{$stream} += $count{$stream} if exists $version{$stream};
		}
	}
}

sub query_rows
{
	my ($sql) = @_;
	my $res = $node->safe_psql('postgres', $sql);
	return map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $res;
}

my (%acked, %attempted);    # marker => number of events

sub verify
{
	my ($label) = @_;

	for my $r (1 .. $nrounds)
	{
		for my $c (1 .. $nclients)
		{
			for (es_slurp_lines(ack_file($r, $c)))
			{
				my ($m, $n) = split / /;
				$acked{$m} = $n;
			}
			for (es_slurp_lines(attempt_file($r, $c)))
			{
				my ($m, $n) = split / /;
				$attempted{$m} = $n;
			}
		}
	}

	# marker => [events, n (min), n (max), distinct indexes]
	my %found = map { $_->[0] => [ @$_[ 1 .. 4 ] ] } query_rows(
		q{SELECT data->>'m', count(*), min((data->>'n')::int),
		         max((data->>'n')::int), count(DISTINCT (data->>'i')::int)
		    FROM eventstore.events GROUP BY 1});

	my @missing = grep { !exists $found{$_} } sort keys %acked;
	is(scalar(@missing), 0,
		"$label: every acknowledged transaction is present")
	  or diag('missing: ' . join(' ', es_head(10, @missing)));

	my @short = grep { exists $found{$_} && $found{$_}[0] != $acked{$_} }
	  sort keys %acked;
	is(scalar(@short), 0,
		"$label: every acknowledged transaction has all its events")
	  or diag("incomplete: @short");

	my @partial = grep {
		my ($cnt, $nmin, $nmax, $distinct) = @{ $found{$_} };
		!($cnt == $nmin && $cnt == $nmax && $cnt == $distinct)
		  || (exists $attempted{$_} && $attempted{$_} != $cnt)
	} sort keys %found;
	is(scalar(@partial), 0,
		"$label: no transaction is partial or duplicated")
	  or diag("partial: @partial");

	my @phantom = grep { !exists $attempted{$_} } sort keys %found;
	is(scalar(@phantom), 0, "$label: no events that no client attempted")
	  or diag("phantom: @phantom");

	my @unacked = grep { !exists $acked{$_} } sort keys %attempted;
	my $survived = grep { exists $found{$_} } @unacked;
	note("$label: "
		  . scalar(keys %acked)
		  . " acknowledged transactions so far, "
		  . scalar(@unacked)
		  . " unacknowledged ($survived of them committed before the crash)");

	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) FROM (
			  SELECT stream_id, count(*) AS n,
			         count(DISTINCT stream_version) AS distinct_versions,
			         min(stream_version) AS first, max(stream_version) AS last
			    FROM eventstore.events GROUP BY stream_id) s
			 WHERE n <> distinct_versions OR first <> 1 OR last <> n
			    OR eventstore.stream_version(stream_id) <> n}),
		'0',
		"$label: each stream's versions are exactly 1..n, and stream_version() is n");

	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) FROM (
			  SELECT count(*) AS n, max(stream_version) - min(stream_version) + 1 AS span
			    FROM eventstore.events GROUP BY data->>'m', stream_id) s
			 WHERE n <> span}),
		'0',
		"$label: the events of a transaction are contiguous in each stream");

	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) = count(DISTINCT global_position)
			       AND coalesce(min(global_position) > 0, true)
			  FROM eventstore.events}),
		't',
		"$label: global positions are unique and positive");

	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) FROM (
			  SELECT global_position,
			         lag(global_position) OVER w AS prev_position,
			         (data->>'r')::int AS r, (data->>'s')::int AS s,
			         lag((data->>'r')::int) OVER wc AS prev_r,
			         lag((data->>'s')::int) OVER wc AS prev_s
			    FROM eventstore.events
			  WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version),
			         wc AS (PARTITION BY stream_id, data->>'c' ORDER BY stream_version)) e
			 WHERE global_position <= prev_position OR (r, s) < (prev_r, prev_s)}),
		'0',
		"$label: within a stream, positions ascend with versions and each client's transactions keep their order");

	# bt_index_check() raises an error on corruption, failing safe_psql
	is( $node->safe_psql(
			'postgres', q{
			SELECT bt_index_check('eventstore.events_pkey', true),
			       bt_index_check('eventstore.events_stream_version_key', true);
			SELECT count(*) FROM verify_heapam('eventstore.events')}),
		"|\n0",
		"$label: amcheck finds the indexes and the heap consistent");
	return;
}

for my $r (1 .. $nrounds)
{
	my %clients;    # pid => client id
	for my $c (1 .. $nclients)
	{
		my $pid = fork();
		die "fork failed: $!" unless defined $pid;
		if ($pid == 0)
		{
			eval { run_client($r, $c); };
			print STDERR "client $c died: $@" if $@;
			POSIX::_exit(1);
		}
		$clients{$pid} = $c;
	}

	# false if a client has exited: before the crash, none may
	my $alive = sub {
		my $ok = 1;
		for my $pid (keys %clients)
		{
			next if waitpid($pid, WNOHANG) == 0;
			my $status = $?;
			diag("client $clients{$pid} exited early (wait status $status), stderr:\n"
				  . join("\n", es_slurp_lines(err_file($r, $clients{$pid}))));
			delete $clients{$pid};
			$ok = 0;
		}
		return $ok;
	};
	my $acks_reached = sub {
		my ($min) = @_;
		return -1 unless $alive->();
		return (grep { (() = es_slurp_lines(ack_file($r, $_))) < $min } 1 .. $nclients) ? 0 : 1;
	};

	# Load builds up: every client has committed enough transactions.
	my $loaded = es_wait_for("round $r load", 60, sub { $acks_reached->($min_acks) });
	ok($loaded, "round $r: all $nclients clients are appending");

	# In even rounds a checkpoint runs under load, so that recovery starts
	# from it, with full-page images of pages the clients go on writing.
	if ($loaded && $r % 2 == 0)
	{
		$node->safe_psql('postgres', 'CHECKPOINT');
		$loaded = es_wait_for("round $r load after the checkpoint",
			60, sub { $acks_reached->(2 * $min_acks) });
		ok($loaded, "round $r: the clients go on appending after a checkpoint");
	}

	# let the clients get well into their next transactions
	usleep(200_000);
	ok($alive->(), "round $r: no client failed before the crash");

	$node->stop('immediate');

	# The clients notice that their connection is gone and stop.
	ok(es_reap_children(\%clients, 60), "round $r: all clients stopped after the crash");
	es_no_errors_in("round $r: no client got a statement error",
		map { err_file($r, $_) } 1 .. $nclients);

	$node->start;
	verify("after crash $r");
	last unless $loaded;
}

# Appends resume at the recovered versions: the right expected version
# succeeds with the next version and a position above every existing one, a
# stale one fails with ST001.
my ($n, $max_position) = split /\|/, $node->safe_psql('postgres',
	q{SELECT eventstore.stream_version('shared'), max(global_position) FROM eventstore.events});
cmp_ok($n, '>', 1, 'the shared stream has events');
is( $node->safe_psql(
		'postgres', qq{
		SELECT stream_version = $n + 1 AND global_position > $max_position
		  FROM eventstore.append('shared', 'AfterCrash', '{}', NULL, $n)}),
	't',
	'after the crashes, an append with the recovered version succeeds');
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres', qq{
	\\set VERBOSITY verbose
	SELECT eventstore.append('shared', 'AfterCrash', '{}', NULL, $n)});
isnt($ret, 0, 'a stale expected version fails');
like($stderr, qr/ST001/, 'with SQLSTATE ST001');
like($stderr, qr/actual version @{[ $n + 1 ]}/, 'naming the actual version');

# Exactly once per event id across crash-restarts (0.6.0).  A session
# commits a batch with ids, another append follows, and the session is
# killed (SIGKILL: the postmaster reinitialises, redo replays the commit):
# the client never saw the acknowledgement, so it retries, with any
# expected version, and gets the original result while nothing is stored
# again.  A batch whose transaction was in progress at the kill is gone
# with it: its retry writes it.
sub ids_batch
{
	return "'["
	  . join(', ',
		map { qq({"type": "Paid", "data": {}, "id": "c0000000-0000-0000-0000-00000000000$_"}) }
		  @_) . "]'";
}
my $victim_session = $node->background_psql('postgres');
my $victim = $victim_session->query_safe('SELECT pg_backend_pid()');
my $first = $victim_session->query_safe(
	"SELECT stream_version || '/' || global_position FROM eventstore.append_events('idem-crash', "
	  . ids_batch(1, 2) . ', 0)');
is($first =~ /^2\//, 1, 'the batch with ids is committed at version 2');
$node->safe_psql('postgres', q{SELECT eventstore.append('idem-crash', 'Noted', '{}')});
$victim_session->query_safe('BEGIN');
$victim_session->query_safe(
	"SELECT eventstore.append_events('idem-crash-2', " . ids_batch(3) . ', 0)');
ok(es_kill_backend($node, $victim), 'killing the appending session crash-restarts the server');
for my $expected ('NULL', '-1', '0')
{
	is( $node->safe_psql(
			'postgres',
			"SELECT stream_version || '/' || global_position FROM eventstore.append_events('idem-crash', "
			  . ids_batch(1, 2) . ", $expected)"),
		$first,
		"after the crash, the retry with expected version $expected returns the original result");
}
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(event_type || coalesce(':' || right(event_id::text, 1), ''), ' ' ORDER BY stream_version)
		    FROM (SELECT event_type, stream_version,
		                 CASE WHEN event_id::text LIKE 'c0000000-%' THEN event_id END AS event_id
		            FROM eventstore.events WHERE stream_id = 'idem-crash') e}),
	'Paid:1 Paid:2 Noted',
	'the retried events are stored once');
is( $node->safe_psql(
		'postgres',
		"SELECT stream_version FROM eventstore.append_events('idem-crash-2', " . ids_batch(3) . ', 0)'),
	'1',
	'the batch lost with its transaction is written by its retry');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM eventstore.events WHERE event_id::text LIKE 'c0000000-%'}),
	'3',
	'each id is stored once');

$node->stop;
done_testing();
