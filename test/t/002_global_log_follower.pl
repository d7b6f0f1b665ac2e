# The global-log guarantee under load (DESIGN.md section 1): a follower that
# calls eventstore.read_all(checkpoint, 100) again and again, each time
# passing back the last global_position it received, sees every committed
# event exactly once, in ascending position order -- although concurrent
# writers commit in a different order than they drew positions (random sleeps
# inside open transactions, some of them long), roll back, append to several
# streams in one transaction and append batches.
#
# Round 1 runs the load to completion.  Round 2 stops the server with an
# immediate shutdown (a crash) in the middle of the load; round 3 restarts
# it and writes more, and the follower reconnects and continues from its
# checkpoint.  After each, the follower's sequence must equal the committed
# events in position order, and every acknowledged commit must be in it.
#
# Set ES_TAP_SEED to replay a run (the seed is printed).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use POSIX qw(WNOHANG);

my $seed = $ENV{ES_TAP_SEED};
$seed = (int(time() * 1000) ^ $$) % 1_000_000 unless defined $seed && $seed ne '';
srand($seed);
note "random seed: $seed (set ES_TAP_SEED=$seed to replay)";

my $node = PostgreSQL::Test::Cluster->new('follower');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'eventstore'
max_connections = 40
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION eventstore');

my $workdir = PostgreSQL::Test::Utils::tempdir;
my $psql = $node->installed_command('psql');

# ---------------------------------------------------------------------------
# Writers: each one is a psql running a generated script.  A transaction's
# events carry the marker {"c": client, "s": transaction, "i": event}; the
# script prints "ACK client transaction" once the server acknowledged its
# COMMIT.  %kind records, per "c:s", the number of events a commit writes
# (0 for a transaction that rolls back).
# ---------------------------------------------------------------------------

my %expect_events;    # "c:s" => events the transaction writes if it commits

sub marker_json
{
	my ($c, $s, $i) = @_;
	return qq({"c": $c, "s": $s, "i": $i});
}

sub append_sql
{
	my ($stream, $c, $s, $i) = @_;
	return "SELECT eventstore.append('$stream', 'Marked', '"
	  . marker_json($c, $s, $i) . "');\n";
}

sub batch_sql
{
	my ($stream, $c, $s, $first, $n) = @_;
	my @ev = map { qq({"type": "Batched", "data": ) . marker_json($c, $s, $_) . '}' }
	  ($first .. $first + $n - 1);
	return "SELECT eventstore.append_events('$stream', '[" . join(', ', @ev) . "]');\n";
}

sub short_sleep
{
	return sprintf("SELECT pg_sleep(%.3f);\n", rand(0.03));
}

sub writer_script
{
	my ($c, $ntx) = @_;
	my $sql = "\\o /dev/null\nSET application_name = 'writer $c';\n";

	for my $s (1 .. $ntx)
	{
		my $own = "w$c-" . int(rand(3));
		my $r = rand();
		my $key = "$c:$s";

		if ($r < 0.12)
		{
			# Rolled back, after drawing positions and sleeping.
			$sql .= "BEGIN;\n" . append_sql($own, $c, $s, 1) . short_sleep();
			$sql .= batch_sql($own, $c, $s, 2, 2) if rand() < 0.5;
			$sql .= "ROLLBACK;\n";
			$expect_events{$key} = 0;
			next;
		}
		elsif ($r < 0.20)
		{
			# A late commit: holds a low position while others commit
			# higher ones.
			$sql .= "BEGIN;\n" . append_sql($own, $c, $s, 1);
			$sql .= sprintf("SELECT pg_sleep(%.3f);\n", 0.15 + rand(0.5));
			$sql .= "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		elsif ($r < 0.30)
		{
			# Several streams in one transaction, one of them a batch.
			$sql .= "BEGIN;\n" . append_sql("w$c-m1", $c, $s, 1) . short_sleep();
			$sql .= append_sql("w$c-m2", $c, $s, 2);
			$sql .= batch_sql("w$c-m3", $c, $s, 3, 2) . short_sleep();
			$sql .= "COMMIT;\n";
			$expect_events{$key} = 4;
		}
		elsif ($r < 0.40)
		{
			# A batch, on its own or inside a transaction with a sleep.
			my $n = 2 + int(rand(4));
			if (rand() < 0.5)
			{
				$sql .= batch_sql($own, $c, $s, 1, $n);
			}
			else
			{
				$sql .= "BEGIN;\n" . batch_sql($own, $c, $s, 1, $n) . short_sleep() . "COMMIT;\n";
			}
			$expect_events{$key} = $n;
		}
		elsif ($r < 0.55)
		{
			# A stream every writer appends to (one shared stream per
			# transaction at most: no lock-order deadlocks).
			$sql .= "BEGIN;\n" . append_sql('shared-' . int(rand(2)), $c, $s, 1);
			$sql .= short_sleep() . "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		elsif ($r < 0.75)
		{
			$sql .= append_sql($own, $c, $s, 1);    # autocommit
			$expect_events{$key} = 1;
		}
		else
		{
			$sql .= "BEGIN;\n" . short_sleep() . append_sql($own, $c, $s, 1) . short_sleep() . "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		$sql .= "\\echo ACK $c $s\n";
	}
	return $sql;
}

my %writer_pid;    # client => pid

sub start_writers
{
	my ($clients, $ntx) = @_;
	for my $c (@$clients)
	{
		my $script = "$workdir/writer-$c.sql";
		open my $fh, '>', $script or die "$script: $!";
		print $fh writer_script($c, $ntx);
		close $fh;

		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			open STDIN, '<', '/dev/null';
			open STDOUT, '>', "$workdir/writer-$c.out";
			open STDERR, '>', "$workdir/writer-$c.err";
			exec($psql, '-X', '-q', '-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'), '-f', $script)
			  or POSIX::_exit(127);
		}
		$writer_pid{$c} = $pid;
	}
}

# Reap finished writers; returns how many still run.  With $wait, waits for
# all of them.  Returns exit codes by client in %$codes.
sub reap_writers
{
	my ($codes, $wait) = @_;
	for my $c (keys %writer_pid)
	{
		my $r = waitpid($writer_pid{$c}, $wait ? 0 : WNOHANG);
		if ($r == $writer_pid{$c})
		{
			$codes->{$c} = $? >> 8;
			delete $writer_pid{$c};
		}
	}
	return scalar(keys %writer_pid);
}

# "c:s" => 1 for every acknowledged commit of the given clients.
sub acknowledged
{
	my (@clients) = @_;
	my %acked;
	for my $c (@clients)
	{
		open my $fh, '<', "$workdir/writer-$c.out" or die "writer-$c.out: $!";
		while (<$fh>)
		{
			$acked{"$1:$2"} = 1 if /^ACK (\d+) (\d+)$/;
		}
		close $fh;
	}
	return \%acked;
}

# ---------------------------------------------------------------------------
# The follower: one session paging through read_all.  A second session
# follows the events table naively (position > checkpoint ORDER BY position)
# as a control: it shows that the load really commits out of position order,
# i.e. that a reader without the horizon would skip events here.
# ---------------------------------------------------------------------------

my $columns =
  "global_position, stream_id, stream_version, data->>'c', data->>'s', data->>'i'";
my @got;           # rows the follower received, as "pos|stream|version|c|s|i"
my $checkpoint = 0;
my $pages = 0;
my @naive_got;
my $naive_checkpoint = 0;
my ($follower, $naive);

sub connect_followers
{
	$follower = $node->background_psql('postgres', on_error_stop => 0);
	$follower->set_query_timer_restart;
	$follower->query_safe("SET application_name = 'follower'");
	$follower->query_safe("SET default_transaction_isolation = 'read committed'");
	$naive = $node->background_psql('postgres', on_error_stop => 0);
	$naive->set_query_timer_restart;
	$naive->query_safe("SET application_name = 'naive follower'");
}

# BackgroundPsql notes every query and its result in the test log; the
# followers issue thousands, so keep them out of it.
sub quiet_query
{
	my ($session, $sql) = @_;
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	return $session->query($sql);
}

sub drop_session
{
	my ($session) = @_;
	eval { $session->{run}->kill_kill; };
}

# One page.  Returns the number of rows received; dies on an error.
sub follow_page
{
	my ($out, $err) = quiet_query($follower,
		"SELECT $columns FROM eventstore.read_all($checkpoint, 100)");
	die "read_all failed: $follower->{stderr}" if $err;
	$pages++;
	my $n = 0;
	for my $row (split /\n/, $out)
	{
		next if $row eq '';
		push @got, $row;
		($checkpoint) = split /\|/, $row;
		$n++;
	}
	return $n;
}

sub naive_page
{
	my ($out, $err) = quiet_query($naive,
		"SELECT $columns FROM eventstore.events WHERE global_position > $naive_checkpoint ORDER BY global_position LIMIT 100"
	);
	die "naive read failed: $naive->{stderr}" if $err;
	for my $row (split /\n/, $out)
	{
		next if $row eq '';
		push @naive_got, $row;
		($naive_checkpoint) = split /\|/, $row;
	}
}

# Follow while writers run (and, with $until, until it returns true).
sub follow_while_writing
{
	my ($codes, $until) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (reap_writers($codes, 0) > 0)
	{
		die "writers did not finish in time" if time() > $deadline;
		return if $until && $until->();
		my $n = follow_page();
		naive_page();
		usleep(2_000) if $n == 0;    # be gentle on a small machine
	}
}

# After the writers stopped: page until the follower has reached the newest
# committed event.  No transaction is in flight, so the horizon must let it.
sub drain
{
	my $max = $node->safe_psql('postgres',
		'SELECT coalesce(max(global_position), 0) FROM eventstore.events');
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while ($checkpoint < $max)
	{
		if (time() > $deadline)
		{
			fail("follower caught up with position $max (stuck at $checkpoint)");
			return;
		}
		usleep(10_000) if follow_page() == 0;
	}
	naive_page() while $naive_checkpoint < $max;
	pass("follower caught up with position $max");
}

# The follower's sequence against the committed events; acknowledged commits
# against the events table.  Writers of @crashed clients may have had one
# transaction in flight at the crash, which may or may not have committed.
sub check_log
{
	my ($label, $clients, $crashed) = @_;
	my %crashed = map { $_ => 1 } @$crashed;

	my @pos = map { (split /\|/)[0] } @got;
	my @bad = grep { $pos[$_] <= $pos[ $_ - 1 ] } 1 .. $#pos;
	ok(!@bad, "$label: follower positions strictly increase")
	  or diag("not increasing at: "
		  . join(', ', map { "$pos[$_-1] -> $pos[$_]" } @bad[ 0 .. ($#bad > 9 ? 9 : $#bad) ]));

	my @committed = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT $columns FROM eventstore.events ORDER BY global_position");
	my %have = map { $_ => 1 } @got;
	my %want = map { $_ => 1 } @committed;
	my @missed = grep { !$have{$_} } @committed;
	my @extra = grep { !$want{$_} } @got;
	is(scalar(@got), scalar(@committed),
		"$label: follower received as many events as were committed");
	ok(!@missed, "$label: follower missed no committed event")
	  or diag("missed: " . join(' ', @missed[ 0 .. ($#missed > 19 ? 19 : $#missed) ]));
	ok(!@extra, "$label: follower received nothing that is not committed")
	  or diag("extra: " . join(' ', @extra[ 0 .. ($#extra > 19 ? 19 : $#extra) ]));
	is(join("\n", @got), join("\n", @committed),
		"$label: follower sequence equals the committed events in position order");

	# Per transaction: all of its events or none, and which ones.
	my %count;
	for my $row (@committed)
	{
		my (undef, undef, undef, $c, $s) = split /\|/, $row;
		$count{"$c:$s"}++;
	}
	my $acked = acknowledged(@$clients);
	my (@lost, @partial, @ghost, @rolled_back);
	for my $key (sort keys %$acked)
	{
		push @lost, $key unless $count{$key};
	}
	my %in_flight;    # client => unacknowledged committed transactions
	my %last_ack;
	for my $key (keys %$acked)
	{
		my ($c, $s) = split /:/, $key;
		$last_ack{$c} = $s if !defined $last_ack{$c} || $s > $last_ack{$c};
	}
	for my $key (sort keys %count)
	{
		my ($c, $s) = split /:/, $key;
		next unless grep { $_ == $c } @$clients;
		push @partial, "$key ($count{$key} of $expect_events{$key})"
		  if $count{$key} != $expect_events{$key} && $expect_events{$key} > 0;
		if ($expect_events{$key} == 0)
		{
			push @rolled_back, $key;
		}
		elsif (!$acked->{$key})
		{
			# Only a transaction in flight at the crash may commit unseen
			# by its writer: at most one per writer, after its last ACK.
			if ($crashed{$c} && !$in_flight{$c}
				&& $s > ($last_ack{$c} // 0))
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
}

# ---------------------------------------------------------------------------
# Round 1: writers run to completion.
# ---------------------------------------------------------------------------

my $t0 = time();
connect_followers();
my %codes;
start_writers([ 1 .. 4 ], 120);
follow_while_writing(\%codes);
reap_writers(\%codes, 1);
is_deeply(\%codes, { map { $_ => 0 } 1 .. 4 }, 'round 1: all writers succeeded')
  or diag(join("\n", map { "writer-$_.err: " . slurp_file("$workdir/writer-$_.err") } 1 .. 4));
drain();
note sprintf("round 1: %d events in %d pages, %.1f s",
	scalar(@got), $pages, time() - $t0);
check_log('round 1', [ 1 .. 4 ], []);

# The naive reader (no horizon) must have been fooled at least once, or this
# load did not commit out of position order and proved nothing.
my %naive_have = map { $_ => 1 } @naive_got;
my $naive_missed = grep { !$naive_have{$_} } @got;
cmp_ok($naive_missed, '>', 0,
	"round 1: commits happened out of position order (a naive reader missed $naive_missed events)");

# ---------------------------------------------------------------------------
# Round 2: crash (immediate shutdown) in the middle of the load.
# ---------------------------------------------------------------------------

%codes = ();
my $before = scalar(@got);
start_writers([ 11 .. 14 ], 400);
follow_while_writing(\%codes, sub { scalar(@got) - $before >= 150 });
ok(reap_writers(\%codes, 0) > 0, 'round 2: writers are still running at the crash');
$node->stop('immediate');
reap_writers(\%codes, 1);

# The follower's session is gone with the server.
ok(!eval { follow_page(); 1 }, 'round 2: follower fails while the server is down');
drop_session($follower);
drop_session($naive);

$node->start;

# ---------------------------------------------------------------------------
# Round 3: restart, write more, the follower continues from its checkpoint.
# ---------------------------------------------------------------------------

%codes = ();
connect_followers();
start_writers([ 21 .. 24 ], 80);
follow_while_writing(\%codes);
reap_writers(\%codes, 1);
is_deeply(\%codes, { map { $_ => 0 } 21 .. 24 }, 'round 3: all writers succeeded')
  or diag(join("\n", map { "writer-$_.err: " . slurp_file("$workdir/writer-$_.err") } 21 .. 24));
drain();
note sprintf("rounds 1-3: %d events in %d pages, %.1f s",
	scalar(@got), $pages, time() - $t0);
check_log('after the crash', [ 1 .. 4, 11 .. 14, 21 .. 24 ], [ 11 .. 14 ]);

$follower->quit;
$naive->quit;
$node->stop;
done_testing();
