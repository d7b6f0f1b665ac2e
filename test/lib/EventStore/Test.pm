# EventStore::Test -- the helpers the TAP tests of eventstore share.
#
# test/t/*.pl load it with "use EventStore::Test"; `make installcheck` puts
# test/lib on prove's include path (PROVE_FLAGS in the Makefile).  Every
# helper is written here once:
#
#   clusters     es_node, es_python, es_have_citus, es_citus_cluster
#   processes    es_process_query, es_wait_process, es_poll, es_kill_backend,
#                es_reap_children
#   sessions     es_quiet_query, es_drop_session, es_connect_follower
#   waiting      es_wait_for
#   files        es_slurp_lines, es_write_file, es_head
#   server log   es_no_crash_in_log, es_no_errors_in
#   load         es_seed, es_marker_json, es_append_sql, es_batch_sql,
#                es_sleep_sql, es_mixed_writer_script,
#                EventStore::Test::Writers (psql processes running scripts)
#   follower     EventStore::Test::Follower (pages through read_all),
#                es_check_follower, es_check_commits, es_check_out_of_order
#
# Writers mark each event with {"c": client, "s": transaction, "i": index}
# and print "ACK client transaction" once their COMMIT was acknowledged; a
# follower receives rows "position|stream|version|c|s|i" (the first column
# is always the global position).

package EventStore::Test;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  es_node es_python es_have_citus es_citus_cluster
  es_process_query es_wait_process es_poll es_kill_backend es_reap_children
  es_quiet_query es_drop_session es_connect_follower
  es_wait_for
  es_slurp_lines es_write_file es_head
  es_no_crash_in_log es_no_errors_in
  es_seed es_marker_json es_append_sql es_batch_sql es_sleep_sql
  es_mixed_writer_script
  es_check_follower es_check_commits es_check_out_of_order
);

# test/eventstore.conf: the settings every test instance runs with (the
# extension preloaded), shared with pg_regress and pg_isolation_regress.
my $conf_file = dirname(__FILE__) . '/../../eventstore.conf';

# ---------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------

# es_node($name, %opt): a new node, initialised, configured and started,
# with the extension created in database postgres.  Options:
#   streaming  => 1          initialise for a streaming standby
#   preload    => 0          leave out test/eventstore.conf (no preloading)
#   conf       => TEXT       more postgresql.conf lines
#   extensions => [NAMES]    what to create (default: eventstore)
sub es_node
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init($opt{streaming} ? (allows_streaming => 1) : ());
	$node->append_conf('postgresql.conf', slurp_file($conf_file))
	  unless defined $opt{preload} && !$opt{preload};
	$node->append_conf('postgresql.conf', $opt{conf}) if defined $opt{conf};
	$node->start;
	my @ext = @{ $opt{extensions} // ['eventstore'] };
	$node->safe_psql('postgres', join(' ', map { "CREATE EXTENSION $_;" } @ext))
	  if @ext;
	return $node;
}

# es_have_citus($node): whether Citus is installed into the PostgreSQL under
# test (citus.so in its pkglibdir; $node, initialised or not, names the
# installation, else the pg_config on PATH).  A test skips without it:
#   plan skip_all => 'Citus is not installed (bash scripts/citus.sh ...)'
sub es_have_citus
{
	my ($node) = @_;
	my $libdir;
	if ($node)
	{
		$libdir = $node->config_data('--pkglibdir');
	}
	else
	{
		IPC::Run::run([ 'pg_config', '--pkglibdir' ], '>', \$libdir, '2>', \my $err)
		  or return 0;
		chomp $libdir;
	}
	return -f "$libdir/citus.so" ? 1 : 0;
}

# es_citus_cluster($name, $nworkers, %opt): a Citus cluster on unix sockets,
# ($coordinator, @workers), every node started with Citus and the extension
# preloaded (citus first: it refuses to load after another library's
# hooks), prepared transactions (Citus commits a transaction that wrote on
# several nodes in two phases) and wal_level = logical (shard moves).
# citus.node_conninfo is set before CREATE EXTENSION citus, which otherwise
# turns ssl on and makes the nodes require it of each other;
# citus.local_hostname is the node's socket directory (a node connects to
# itself for shard moves, by default to "localhost" over TCP).  Citus is
# created on every node; the coordinator registers itself and adds the
# workers; then eventstore is created on the coordinator, which propagates
# it to the workers (created on a worker by hand if it did not).  Options:
#   conf => TEXT    more postgresql.conf lines for every node
sub es_citus_cluster
{
	my ($name, $nworkers, %opt) = @_;
	my $conf = "shared_preload_libraries = 'citus,eventstore'\n"
	  . "max_prepared_transactions = 20\n"
	  . "wal_level = logical\n"
	  . "citus.node_conninfo = 'sslmode=disable'\n"
	  . ($opt{conf} // '');
	my @nodes = map {
		es_node($_ ? "${name}_worker$_" : "${name}_coordinator",
			preload => 0, conf => $conf, extensions => ['citus'])
	} 0 .. $nworkers;
	my ($coordinator, @workers) = @nodes;
	for my $node (@nodes)
	{
		die $node->name . ' does not listen on a unix socket (' . $node->host . ')'
		  unless $node->host =~ m{^/};
		$node->append_conf('postgresql.conf',
			"citus.local_hostname = '" . $node->host . "'\n");
		$node->reload;
	}

	$coordinator->safe_psql('postgres',
		join("\n",
			"SELECT citus_set_coordinator_host('" . $coordinator->host . "', " . $coordinator->port . ");",
			map { "SELECT citus_add_node('" . $_->host . "', " . $_->port . ');' } @workers));
	$coordinator->safe_psql('postgres', 'CREATE EXTENSION eventstore');
	for my $worker (@workers)
	{
		next
		  if $worker->safe_psql('postgres',
			"SELECT count(*) FROM pg_extension WHERE extname = 'eventstore'") eq '1';
		note $worker->name . ': CREATE EXTENSION eventstore was not propagated; created there';
		$worker->safe_psql('postgres', 'CREATE EXTENSION eventstore');
	}
	return @nodes;
}

# es_python(): python3, once psycopg2 is known to be there (the client
# examples and test/t/subscription_clients.py need it).
sub es_python
{
	my $python = '/usr/bin/python3';
	system($python, '-c', 'import psycopg2') == 0
	  or BAIL_OUT('python3-psycopg2 is not installed (apt-get install python3-psycopg2)');
	return $python;
}

# ---------------------------------------------------------------------------
# The extension's processes, and crashes
# ---------------------------------------------------------------------------

# es_process_query($kind, $db): the query for the PIDs of the eventstore
# processes of one kind (launcher, worker, projector), of database $db if
# given.
sub es_process_query
{
	my ($kind, $db) = @_;
	my $q = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventstore $kind'";
	$q .= " AND datname = '$db'" if defined $db;
	return $q;
}

# es_poll($node, $query, $db): poll_query_until, also across a crash
# restart.  After a SIGKILL the postmaster restarts every process, and a
# psql started in that window can find no server and exit before IPC::Run
# has written its query ("Broken pipe").  Such attempts are repeated; a
# real timeout is not.
sub es_poll
{
	my ($node, $query, $db) = @_;
	$db //= 'postgres';
	for my $attempt (1 .. 20)
	{
		my $found = eval { $node->poll_query_until($db, $query) };
		return $found if defined $found;
		die $@ unless $@ =~ /Broken pipe|connection to server|No such file or directory/;
		usleep(100_000);
	}
	return 0;
}

# es_wait_process($node, $kind, %opt): wait until exactly one process of
# $kind runs (for database db => ..., default postgres; none for the
# launcher) other than not => PID; returns its PID, or undef on timeout.
sub es_wait_process
{
	my ($node, $kind, %opt) = @_;
	my $db = $kind eq 'launcher' ? undef : ($opt{db} // 'postgres');
	my $not = $opt{not} // 0;
	my $q = "SELECT pid FROM (" . es_process_query($kind, $db) . ") p WHERE pid <> $not";
	es_poll($node, "SELECT count(*) = 1 FROM ($q) n") or return undef;
	return $node->safe_psql('postgres', $q);
}

# es_kill_backend($node, $pid, $timeout): SIGKILL a server process and wait
# until the postmaster has gone through crash-restart and takes queries
# again.  False after $timeout seconds (default twice timeout_default).
sub es_kill_backend
{
	my ($node, $pid, $timeout) = @_;
	$timeout //= 2 * $PostgreSQL::Test::Utils::timeout_default;
	my $offset = -s $node->logfile;
	kill 'KILL', $pid;
	es_wait_for(
		'crash-restart',
		$timeout,
		sub {
			$node->log_contains(qr/all server processes terminated; reinitializing/,
				$offset);
		}) or return 0;
	return es_poll($node, 'SELECT true');
}

# es_reap_children(\%pids, $timeout): wait for forked children (keys of
# %pids) to exit; those still running after $timeout seconds are killed.
# Reaped PIDs leave %pids.  True if all had exited by themselves.
sub es_reap_children
{
	my ($pids, $timeout) = @_;
	my $stopped = es_wait_for(
		'children to stop',
		$timeout,
		sub {
			for my $pid (keys %$pids)
			{
				delete $pids->{$pid} if waitpid($pid, WNOHANG) != 0;
			}
			return %$pids ? 0 : 1;
		});
	for my $pid (keys %$pids)
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
		delete $pids->{$pid};
	}
	return $stopped;
}

# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------

# es_quiet_query($session, $sql): BackgroundPsql's query, kept out of the
# test log (it notes every query and its result; followers and pollers
# issue thousands).  Whitespace runs become one space.
sub es_quiet_query
{
	my ($session, $sql) = @_;
	$sql =~ s/\s+/ /g;
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	return $session->query($sql);
}

# es_drop_session($session): forget a session whose server went away.
sub es_drop_session
{
	my ($session) = @_;
	eval { $session->{run}->kill_kill; };
	return;
}

# es_connect_follower($node, $name): a session for a follower that pages
# through the log: errors do not stop it (the caller decides), and each
# query has the whole timeout.
sub es_connect_follower
{
	my ($node, $name) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->set_query_timer_restart;
	$session->query_safe("SET application_name = '$name'");
	return $session;
}

# ---------------------------------------------------------------------------
# Waiting for a condition checked in Perl
# ---------------------------------------------------------------------------

# es_wait_for($what, $timeout, $cond): poll $cond, which returns > 0 when
# the condition holds, 0 to go on waiting and < 0 to give up.  False (with
# a diag) after $timeout seconds or when given up.
sub es_wait_for
{
	my ($what, $timeout, $cond) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $res = $cond->() || 0;
		return 1 if $res > 0;
		if ($res < 0)
		{
			diag("gave up waiting for $what");
			return 0;
		}
		usleep(20_000);
	}
	diag("timed out waiting for $what");
	return 0;
}

# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

# es_slurp_lines($file): its lines without newlines; none if it is missing.
sub es_slurp_lines
{
	my ($file) = @_;
	return () unless -e $file;
	open(my $fh, '<', $file) or die "could not open $file: $!";
	my @lines = <$fh>;
	close($fh);
	chomp @lines;
	return @lines;
}

# es_write_file($file, $text): replace the file's contents.
sub es_write_file
{
	my ($file, $text) = @_;
	# written aside and renamed into place: a reader polling for $file (a
	# consumer taking a linger request) never sees it empty or half written
	my $tmp = "$file.tmp.$$";
	open(my $fh, '>', $tmp) or die "could not open $tmp: $!";
	print $fh $text;
	close($fh) or die "could not close $tmp: $!";
	rename($tmp, $file) or die "could not rename $tmp to $file: $!";
	return;
}

# es_head($n, @list): the first $n elements, for a diag of a long list.
sub es_head
{
	my ($n, @list) = @_;
	return @list <= $n ? @list : @list[ 0 .. $n - 1 ];
}

# ---------------------------------------------------------------------------
# The server log and the clients' logs
# ---------------------------------------------------------------------------

# es_no_crash_in_log($node): no PANIC, assertion failure or process killed
# by a signal in the server log.
sub es_no_crash_in_log
{
	my ($node) = @_;
	return ok(!$node->log_contains('(?:PANIC|TRAP|terminated by signal)'),
		'no crash in the server log');
}

# es_no_errors_in($label, @files): a client may report a lost connection
# (FATAL, "server closed the connection", "connection refused"), never an
# ERROR of a statement.
sub es_no_errors_in
{
	my ($label, @files) = @_;
	my @errors = grep { /\bERROR:/ } map { es_slurp_lines($_) } @files;
	return is(scalar(@errors), 0, $label) || diag(join("\n", es_head(10, @errors)));
}

# ---------------------------------------------------------------------------
# Load: writers running generated psql scripts
# ---------------------------------------------------------------------------

# es_seed(): seed rand() from ES_TAP_SEED, or from the clock, and say which
# (to replay a run).
sub es_seed
{
	my $seed = $ENV{ES_TAP_SEED};
	$seed = (int(time() * 1000) ^ $$) % 1_000_000 unless defined $seed && $seed ne '';
	srand($seed);
	note "random seed: $seed (set ES_TAP_SEED=$seed to replay)";
	return $seed;
}

sub es_marker_json
{
	my ($c, $s, $i) = @_;
	return qq({"c": $c, "s": $s, "i": $i});
}

# es_append_sql($stream, $c, $s, $i, $report, $expected): an append of one
# marked event.  With $report it prints "EV c s stream last_version 1" (for
# scripts run with -A -t), else nothing (scripts run with \o /dev/null).
# $expected, if given, is the expected_version (SQL text: a number, NULL, a
# psql variable).
sub es_append_sql
{
	my ($stream, $c, $s, $i, $report, $expected) = @_;
	my $call = "eventstore.append('$stream', 'Marked', '" . es_marker_json($c, $s, $i) . "'"
	  . (defined $expected ? ", NULL, $expected)" : ')');
	return $report
	  ? "SELECT 'EV $c $s $stream ' || stream_version || ' 1' FROM $call;\n"
	  : "SELECT $call;\n";
}

# es_batch_sql($stream, $c, $s, $first, $n, $report, $expected): an
# append_events of $n marked events, indexes from $first; $report and
# $expected as for es_append_sql.
sub es_batch_sql
{
	my ($stream, $c, $s, $first, $n, $report, $expected) = @_;
	my @ev = map { qq({"type": "Batched", "data": ) . es_marker_json($c, $s, $_) . '}' }
	  ($first .. $first + $n - 1);
	my $call = "eventstore.append_events('$stream', '[" . join(', ', @ev) . "]'"
	  . (defined $expected ? ", $expected)" : ')');
	return $report
	  ? "SELECT 'EV $c $s $stream ' || stream_version || ' $n' FROM $call;\n"
	  : "SELECT $call;\n";
}

# es_sleep_sql($seconds, $report): a pg_sleep that prints nothing.
sub es_sleep_sql
{
	my ($seconds, $report) = @_;
	return sprintf("SELECT pg_sleep(%.3f)%s\n", $seconds, $report ? ' \g /dev/null' : ';');
}

# es_mixed_writer_script($c, $ntx, \%expect): the script of writer $c: $ntx
# transactions of every shape that makes commits come out of position
# order -- rolled back after drawing positions, late commits holding a low
# position, several streams in one transaction, batches, a stream all
# writers share (one per transaction at most: no lock-order deadlocks),
# autocommit appends.  $expect->{"c:s"} is set to the number of events each
# transaction writes if it commits (0 for those that roll back).
sub es_mixed_writer_script
{
	my ($c, $ntx, $expect) = @_;
	my $sql = "\\o /dev/null\nSET application_name = 'writer $c';\n";
	my $short = sub { es_sleep_sql(rand(0.03)) };

	for my $s (1 .. $ntx)
	{
		my $own = "w$c-" . int(rand(3));
		my $r = rand();
		my $key = "$c:$s";

		if ($r < 0.12)
		{
			$sql .= "BEGIN;\n" . es_append_sql($own, $c, $s, 1) . $short->();
			$sql .= es_batch_sql($own, $c, $s, 2, 2) if rand() < 0.5;
			$sql .= "ROLLBACK;\n";
			$expect->{$key} = 0;
			next;
		}
		elsif ($r < 0.20)
		{
			$sql .= "BEGIN;\n" . es_append_sql($own, $c, $s, 1);
			$sql .= es_sleep_sql(0.15 + rand(0.5));
			$sql .= "COMMIT;\n";
			$expect->{$key} = 1;
		}
		elsif ($r < 0.30)
		{
			$sql .= "BEGIN;\n" . es_append_sql("w$c-m1", $c, $s, 1) . $short->();
			$sql .= es_append_sql("w$c-m2", $c, $s, 2);
			$sql .= es_batch_sql("w$c-m3", $c, $s, 3, 2) . $short->();
			$sql .= "COMMIT;\n";
			$expect->{$key} = 4;
		}
		elsif ($r < 0.40)
		{
			my $n = 2 + int(rand(4));
			if (rand() < 0.5)
			{
				$sql .= es_batch_sql($own, $c, $s, 1, $n);
			}
			else
			{
				$sql .= "BEGIN;\n" . es_batch_sql($own, $c, $s, 1, $n) . $short->() . "COMMIT;\n";
			}
			$expect->{$key} = $n;
		}
		elsif ($r < 0.55)
		{
			$sql .= "BEGIN;\n" . es_append_sql('shared-' . int(rand(2)), $c, $s, 1);
			$sql .= $short->() . "COMMIT;\n";
			$expect->{$key} = 1;
		}
		elsif ($r < 0.75)
		{
			$sql .= es_append_sql($own, $c, $s, 1);
			$expect->{$key} = 1;
		}
		else
		{
			$sql .= "BEGIN;\n" . $short->() . es_append_sql($own, $c, $s, 1) . $short->() . "COMMIT;\n";
			$expect->{$key} = 1;
		}
		$sql .= "\\echo ACK $c $s\n";
	}
	return $sql;
}

# ---------------------------------------------------------------------------
# Checks of what a follower received
# ---------------------------------------------------------------------------

# es_check_follower($label, \@got, \@committed): the rows the follower
# received are the committed ones, each once, in ascending position order.
sub es_check_follower
{
	my ($label, $got, $committed) = @_;

	my @pos = map { (split /\|/)[0] } @$got;
	my @bad = grep { $pos[$_] <= $pos[ $_ - 1 ] } 1 .. $#pos;
	ok(!@bad, "$label: follower positions strictly increase")
	  or diag("not increasing at: "
		  . join(', ', map { "$pos[$_-1] -> $pos[$_]" } es_head(10, @bad)));

	my %have = map { $_ => 1 } @$got;
	my %want = map { $_ => 1 } @$committed;
	my @missed = grep { !$have{$_} } @$committed;
	my @extra = grep { !$want{$_} } @$got;
	is(scalar(@$got), scalar(@$committed),
		"$label: follower received as many events as were committed");
	ok(!@missed, "$label: follower missed no committed event")
	  or diag("missed: " . join(' ', es_head(20, @missed)));
	ok(!@extra, "$label: follower received nothing that is not committed")
	  or diag("extra: " . join(' ', es_head(20, @extra)));
	is(join("\n", @$got), join("\n", @$committed),
		"$label: follower sequence equals the committed events in position order");
	return;
}

# es_check_commits($label, \@committed, $acked, \%expect, \@clients,
# \@crashed): per transaction of @clients, all of its events or none:
# every acknowledged one is in the log, complete; none that rolled back is;
# none that was not acknowledged is, except at most one per writer of
# @crashed, after its last ACK (in flight at a crash, it may have committed
# unseen by its writer).  $acked is a Writers->acknowledged result.
sub es_check_commits
{
	my ($label, $committed, $acked, $expect, $clients, $crashed) = @_;
	my %crashed = map { $_ => 1 } @{ $crashed // [] };
	my %client = map { $_ => 1 } @$clients;

	my %count;
	for my $row (@$committed)
	{
		my (undef, undef, undef, $c, $s) = split /\|/, $row;
		$count{"$c:$s"}++;
	}
	my (@lost, @partial, @ghost, @rolled_back);
	for my $key (sort keys %$acked)
	{
		push @lost, $key unless $count{$key};
	}
	my %in_flight;    # client => unacknowledged committed transaction
	my %last_ack;
	for my $key (keys %$acked)
	{
		my ($c, $s) = split /:/, $key;
		$last_ack{$c} = $s if !defined $last_ack{$c} || $s > $last_ack{$c};
	}
	for my $key (sort keys %count)
	{
		my ($c, $s) = split /:/, $key;
		next unless $client{$c};
		push @partial, "$key ($count{$key} of $expect->{$key})"
		  if $count{$key} != $expect->{$key} && $expect->{$key} > 0;
		if ($expect->{$key} == 0)
		{
			push @rolled_back, $key;
		}
		elsif (!$acked->{$key})
		{
			if ($crashed{$c} && !$in_flight{$c} && $s > ($last_ack{$c} // 0))
			{
				$in_flight{$c} = $key;
			}
			else
			{
				push @ghost, $key;
			}
		}
	}
	ok(%$acked > 0, "$label: writers acknowledged commits (" . scalar(keys %$acked) . ")");
	ok(!@lost, "$label: every acknowledged commit is in the log")
	  or diag("lost: @lost");
	ok(!@partial, "$label: every committed transaction has all of its events")
	  or diag("partial: @partial");
	ok(!@rolled_back, "$label: no rolled-back transaction is in the log")
	  or diag("rolled back but present: @rolled_back");
	ok(!@ghost, "$label: no unacknowledged commit besides one in flight at a crash")
	  or diag("unexplained: @ghost");
	note "$label: in flight at the crash and committed: "
	  . join(' ', map { $in_flight{$_} } sort keys %in_flight)
	  if %in_flight;
	return;
}

# es_check_out_of_order($label, \@got, \@naive): a naive reader (position >
# checkpoint on the events table, no horizon) must have been fooled at
# least once, or the load did not commit out of position order and proved
# nothing.
sub es_check_out_of_order
{
	my ($label, $got, $naive) = @_;
	my %naive_have = map { $_ => 1 } @$naive;
	my $missed = grep { !$naive_have{$_} } @$got;
	return cmp_ok($missed, '>', 0,
		"$label: commits happened out of position order (a naive reader missed $missed events)");
}

# ---------------------------------------------------------------------------
# EventStore::Test::Writers: psql processes, each running a script.  Output
# and errors go to files in $workdir (writer-C.out, writer-C.err).
# ---------------------------------------------------------------------------

package EventStore::Test::Writers;

use POSIX qw(WNOHANG);
use PostgreSQL::Test::Utils;

# new($node, $workdir, @psql_args): @psql_args go before -f (e.g. -A -t).
sub new
{
	my ($class, $node, $workdir, @psql_args) = @_;
	return bless {
		node => $node,
		workdir => $workdir,
		psql => $node->installed_command('psql'),
		args => [@psql_args],
		pid => {},
	}, $class;
}

sub out_file { my ($self, $c) = @_; return "$self->{workdir}/writer-$c.out"; }
sub err_file { my ($self, $c) = @_; return "$self->{workdir}/writer-$c.err"; }

# start(\@clients, $script): start a writer per client, running the script
# $script->($client) returns.  Forked children leave with POSIX::_exit, so
# that no END block of the test framework runs there.
sub start
{
	my ($self, $clients, $script) = @_;
	for my $c (@$clients)
	{
		my $file = "$self->{workdir}/writer-$c.sql";
		open my $fh, '>', $file or die "$file: $!";
		print $fh $script->($c);
		close $fh;

		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			open STDIN, '<', '/dev/null';
			open STDOUT, '>', $self->out_file($c);
			open STDERR, '>', $self->err_file($c);
			exec($self->{psql}, '-X', '-q', @{ $self->{args} }, '-v', 'ON_ERROR_STOP=1',
				'-d', $self->{node}->connstr('postgres'), '-f', $file)
			  or POSIX::_exit(127);
		}
		$self->{pid}{$c} = $pid;
	}
	return;
}

# reap(\%codes, $wait): reap finished writers (with $wait, all of them),
# their exit codes by client into %codes; returns how many still run.
sub reap
{
	my ($self, $codes, $wait) = @_;
	my $pid = $self->{pid};
	for my $c (keys %$pid)
	{
		my $r = waitpid($pid->{$c}, $wait ? 0 : WNOHANG);
		if ($r == $pid->{$c})
		{
			$codes->{$c} = $? >> 8;
			delete $pid->{$c};
		}
	}
	return scalar(keys %$pid);
}

# errors(@clients): the writers' stderr, for a diag.
sub errors
{
	my ($self, @clients) = @_;
	return join("\n", map { "writer-$_.err: " . slurp_file($self->err_file($_)) } @clients);
}

# acknowledged(@clients): { "c:s" => 1 } for every acknowledged commit.
sub acknowledged
{
	my ($self, @clients) = @_;
	my %acked;
	for my $c (@clients)
	{
		open my $fh, '<', $self->out_file($c) or die $self->out_file($c) . ": $!";
		while (<$fh>)
		{
			$acked{"$1:$2"} = 1 if /^ACK (\d+) (\d+)$/;
		}
		close $fh;
	}
	return \%acked;
}

# ---------------------------------------------------------------------------
# EventStore::Test::Follower: a session that pages through the log with a
# query built from its checkpoint, and moves the checkpoint to the first
# column of the last row received.
# ---------------------------------------------------------------------------

package EventStore::Test::Follower;

# new($session, $query, %opt): $query->($checkpoint) is the SQL of one
# page.  Options: checkpoint => where to start (0); retry => a pattern of
# errors after which the page is asked again (e.g. a recovery conflict on a
# standby); any other error is fatal.
sub new
{
	my ($class, $session, $query, %opt) = @_;
	return bless {
		session => $session,
		query => $query,
		checkpoint => $opt{checkpoint} // 0,
		retry => $opt{retry},
		rows => [],
		pages => 0,
		retried => {},
	}, $class;
}

# session($new): the session (after a crash, the new one to go on with).
sub session
{
	my ($self, $new) = @_;
	$self->{session} = $new if $new;
	return $self->{session};
}

sub checkpoint { return $_[0]->{checkpoint}; }
sub rows { return $_[0]->{rows}; }
sub pages { return $_[0]->{pages}; }
sub retried { return $_[0]->{retried}; }

# page(): one page; returns the number of rows received.
sub page
{
	my ($self) = @_;
	my $session = $self->{session};
	my ($out, $err) =
	  EventStore::Test::es_quiet_query($session, $self->{query}->($self->{checkpoint}));
	$self->{pages}++;
	if ($err)
	{
		my $msg = $session->{stderr};
		$session->{stderr} = '';
		die "read failed: $msg" unless $self->{retry} && $msg =~ $self->{retry};
		$self->{retried}{$msg}++;
		return 0;
	}
	my $n = 0;
	for my $row (split /\n/, $out)
	{
		next if $row eq '';
		push @{ $self->{rows} }, $row;
		($self->{checkpoint}) = split /\|/, $row;
		$n++;
	}
	return $n;
}

# drain($max, $timeout): page until the checkpoint reaches $max; true if it
# did within $timeout seconds.
sub drain
{
	my ($self, $max, $timeout) = @_;
	my $deadline = Time::HiRes::time() + $timeout;
	while ($self->{checkpoint} < $max)
	{
		return 0 if Time::HiRes::time() > $deadline;
		Time::HiRes::usleep(10_000) if $self->page() == 0;
	}
	return 1;
}

1;
