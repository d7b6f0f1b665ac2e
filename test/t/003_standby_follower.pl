# The global-log guarantee on a hot standby (DESIGN.md section 1): a follower
# that pages through eventstore.read_all on a streaming standby sees every
# event committed on the primary exactly once, in ascending position order,
# although the standby cannot see the primary's in-flight appenders: it reads
# up to the horizon the primary's background worker records in
# eventstore.recorded_horizon.
#
# First a deterministic case (an appender holding a low position open while
# a higher one commits), then concurrent writers on the primary (rollbacks,
# late commits, multi-stream transactions, batches) with a follower on the
# standby; at the end its sequence must equal the primary's committed events.
# read_stream and stream_version must work on the standby too.
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

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'eventstore'
max_connections = 40
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION eventstore');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# The primary's worker publishes the horizon; wait until the standby has it.
sub max_position
{
	return $primary->safe_psql('postgres',
		'SELECT coalesce(max(global_position), 0) FROM eventstore.events');
}

sub wait_standby_horizon
{
	my ($target) = @_;
	$primary->wait_for_catchup($standby);
	return $standby->poll_query_until('postgres',
		"SELECT position >= $target FROM eventstore.recorded_horizon");
}

my $workdir = PostgreSQL::Test::Utils::tempdir;
my $psql = $primary->installed_command('psql');

# BackgroundPsql notes every query and its result in the test log; the
# followers issue thousands, so keep them out of it.
sub quiet_query
{
	my ($session, $sql) = @_;
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	return $session->query($sql);
}

my $columns =
  "global_position, stream_id, stream_version, data->>'c', data->>'s', data->>'i'";

# ---------------------------------------------------------------------------
# Deterministic: a position held by an open transaction on the primary stops
# the standby's reader below it, and the reader gets both events, in order,
# once it commits.
# ---------------------------------------------------------------------------

$primary->safe_psql('postgres',
	"SELECT eventstore.append('det', 'Warmup', '{}')");
my $base = max_position();
ok(wait_standby_horizon($base), 'standby has the horizon of the first event');

my $holder = $primary->background_psql('postgres');
my $low = $holder->query_safe(
	"BEGIN; SELECT (eventstore.append('det', 'Low', '{}')).global_position;");
my $high = $primary->safe_psql('postgres',
	"SELECT (eventstore.append('det-other', 'High', '{}')).global_position");
cmp_ok($high, '>', $low, "the later append drew a higher position ($low < $high)");

# The higher event reaches the standby; for a while (the worker's naptime is
# one second, and each commit wakes it) read_all there must still not
# return it.
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM eventstore.events WHERE global_position = $high"),
	'1', 'the higher event is replayed on the standby');
my $passed = 0;
for (1 .. 15)
{
	$primary->wait_for_catchup($standby);
	$passed++ if $standby->safe_psql('postgres',
		"SELECT count(*) FROM eventstore.read_all($base, 100)") ne '0';
	usleep(100_000);
}
is($passed, 0,
	'read_all on the standby never passes a position the primary still has in flight');
cmp_ok($standby->safe_psql('postgres', 'SELECT eventstore.global_horizon()'),
	'<', $low, 'the standby horizon stays below the in-flight position');

$holder->query_safe('COMMIT');
ok(wait_standby_horizon($high), 'the standby horizon passes both after the commit');
is($standby->safe_psql('postgres',
		"SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM eventstore.read_all($base, 100)"),
	"$low,$high", 'read_all on the standby returns both, in position order');
$holder->quit;

# ---------------------------------------------------------------------------
# Writers on the primary (as in 002_global_log_follower.pl).
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
			$sql .= "BEGIN;\n" . append_sql($own, $c, $s, 1) . short_sleep();
			$sql .= batch_sql($own, $c, $s, 2, 2) if rand() < 0.5;
			$sql .= "ROLLBACK;\n";
			$expect_events{$key} = 0;
			next;
		}
		elsif ($r < 0.22)
		{
			# A late commit: holds a low position while others commit.
			$sql .= "BEGIN;\n" . append_sql($own, $c, $s, 1);
			$sql .= sprintf("SELECT pg_sleep(%.3f);\n", 0.15 + rand(0.5));
			$sql .= "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		elsif ($r < 0.32)
		{
			$sql .= "BEGIN;\n" . append_sql("w$c-m1", $c, $s, 1) . short_sleep();
			$sql .= append_sql("w$c-m2", $c, $s, 2);
			$sql .= batch_sql("w$c-m3", $c, $s, 3, 2) . short_sleep();
			$sql .= "COMMIT;\n";
			$expect_events{$key} = 4;
		}
		elsif ($r < 0.42)
		{
			my $n = 2 + int(rand(4));
			$sql .= "BEGIN;\n" . batch_sql($own, $c, $s, 1, $n) . short_sleep() . "COMMIT;\n";
			$expect_events{$key} = $n;
		}
		elsif ($r < 0.55)
		{
			$sql .= "BEGIN;\n" . append_sql('shared-' . int(rand(2)), $c, $s, 1);
			$sql .= short_sleep() . "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		elsif ($r < 0.75)
		{
			$sql .= append_sql($own, $c, $s, 1);
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

my %writer_pid;

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
				'-d', $primary->connstr('postgres'), '-f', $script)
			  or POSIX::_exit(127);
		}
		$writer_pid{$c} = $pid;
	}
}

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

# ---------------------------------------------------------------------------
# The follower on the standby, and a naive one (events table, position >
# checkpoint) as a control that the load commits out of position order.
# A query cancelled by a recovery conflict is retried from the same
# checkpoint, as any standby client must do; anything else is fatal.
# ---------------------------------------------------------------------------

my $checkpoint = $high;
my (@got, @naive_got);
my $naive_checkpoint = $high;
my $pages = 0;
my %retried;

my $follower = $standby->background_psql('postgres', on_error_stop => 0);
$follower->set_query_timer_restart;
$follower->query_safe("SET application_name = 'standby follower'");
my $naive = $standby->background_psql('postgres', on_error_stop => 0);
$naive->set_query_timer_restart;

sub page
{
	my ($session, $sql, $list, $cp) = @_;
	my ($out, $err) = quiet_query($session, $sql);
	if ($err)
	{
		my $msg = $session->{stderr};
		$session->{stderr} = '';
		die "standby read failed: $msg"
		  unless $msg =~ /conflict with recovery/;
		$retried{$msg}++;
		return 0;
	}
	my $n = 0;
	for my $row (split /\n/, $out)
	{
		next if $row eq '';
		push @$list, $row;
		($$cp) = split /\|/, $row;
		$n++;
	}
	return $n;
}

sub follow_page
{
	$pages++;
	return page($follower,
		"SELECT $columns FROM eventstore.read_all($checkpoint, 100)",
		\@got, \$checkpoint);
}

sub naive_page
{
	return page($naive,
		"SELECT $columns FROM eventstore.events WHERE global_position > $naive_checkpoint ORDER BY global_position LIMIT 100",
		\@naive_got, \$naive_checkpoint);
}

my $t0 = time();
my %codes;
start_writers([ 1 .. 4 ], 100);
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (reap_writers(\%codes, 0) > 0)
{
	die 'writers did not finish in time' if time() > $deadline;
	my $n = follow_page();
	naive_page();
	usleep(5_000) if $n == 0;
}
is_deeply(\%codes, { map { $_ => 0 } 1 .. 4 }, 'all writers succeeded')
  or diag(join("\n", map { "writer-$_.err: " . slurp_file("$workdir/writer-$_.err") } 1 .. 4));

# Drain: the standby must reach the primary's newest committed event.
my $max = max_position();
ok(wait_standby_horizon($max), "the standby's recorded horizon reaches $max");
$deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while ($checkpoint < $max && time() < $deadline)
{
	usleep(10_000) if follow_page() == 0;
}
naive_page() while $naive_checkpoint < $max;
is($checkpoint, $max, "the standby follower caught up with position $max");
note sprintf("%d events in %d pages on the standby, %.1f s; retried after recovery conflicts: %s",
	scalar(@got), $pages, time() - $t0,
	join('; ', map { "$retried{$_} x $_" } keys %retried) || 'none');

# ---------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------

my @pos = map { (split /\|/)[0] } @got;
my @bad = grep { $pos[$_] <= $pos[ $_ - 1 ] } 1 .. $#pos;
ok(!@bad, 'standby follower positions strictly increase')
  or diag('not increasing at: ' . join(', ', map { "$pos[$_-1] -> $pos[$_]" } @bad));

my @committed = split /\n/,
  $primary->safe_psql('postgres',
	"SELECT $columns FROM eventstore.events WHERE global_position > $high ORDER BY global_position");
my %have = map { $_ => 1 } @got;
my %want = map { $_ => 1 } @committed;
my @missed = grep { !$have{$_} } @committed;
my @extra = grep { !$want{$_} } @got;
is(scalar(@got), scalar(@committed),
	'standby follower received as many events as the primary committed');
ok(!@missed, 'standby follower missed no event committed on the primary')
  or diag('missed: ' . join(' ', @missed[ 0 .. ($#missed > 19 ? 19 : $#missed) ]));
ok(!@extra, 'standby follower received nothing the primary did not commit')
  or diag('extra: ' . join(' ', @extra[ 0 .. ($#extra > 19 ? 19 : $#extra) ]));
is(join("\n", @got), join("\n", @committed),
	"standby follower's sequence equals the primary's committed events in position order");

# Acknowledged commits, rollbacks, atomicity.
my %count;
for my $row (@committed)
{
	my (undef, undef, undef, $c, $s) = split /\|/, $row;
	$count{"$c:$s"}++;
}
my (%acked, @lost, @wrong);
for my $c (1 .. 4)
{
	open my $fh, '<', "$workdir/writer-$c.out" or die $!;
	while (<$fh>) { $acked{"$1:$2"} = 1 if /^ACK (\d+) (\d+)$/ }
	close $fh;
}
push @lost, grep { !$count{$_} } sort keys %acked;
push @wrong, map { "$_ ($count{$_} of $expect_events{$_})" }
  grep { $count{$_} != $expect_events{$_} || !$acked{$_} } sort keys %count;
ok(%acked > 0, 'writers acknowledged commits (' . scalar(keys %acked) . ')');
ok(!@lost, 'every acknowledged commit reached the standby follower') or diag("lost: @lost");
ok(!@wrong, 'only acknowledged transactions, each with all of its events, are in the log')
  or diag("unexpected: @wrong");

my %naive_have = map { $_ => 1 } @naive_got;
my $naive_missed = grep { !$naive_have{$_} } @got;
cmp_ok($naive_missed, '>', 0,
	"commits happened out of position order (a naive standby reader missed $naive_missed events)");

# ---------------------------------------------------------------------------
# Stream reads on the standby.
# ---------------------------------------------------------------------------

my $stream_cols = 'global_position, stream_id, stream_version, event_id, event_type, data, metadata, created_at';
my @stream_reads = (
	[ 'read_stream forward', "SELECT $stream_cols FROM eventstore.read_stream('shared-0')" ],
	[ 'read_stream from a version, limited', "SELECT $stream_cols FROM eventstore.read_stream('w1-0', 2, 3)" ],
	[ 'read_stream backward', "SELECT $stream_cols FROM eventstore.read_stream('w2-m3', NULL, NULL, true)" ],
	[ 'stream_version', "SELECT eventstore.stream_version('shared-1'), eventstore.stream_version('w3-1'), eventstore.stream_version('no such stream')" ],
	[ 'filtered read_all', "SELECT $stream_cols FROM eventstore.read_all(0, 50, ARRAY['Batched'], 'w4-')" ]);
for my $read (@stream_reads)
{
	my ($label, $query) = @$read;
	my $on_primary = $primary->safe_psql('postgres', $query);
	my ($rc, $on_standby, $err) = $standby->psql('postgres', $query);
	is($rc, 0, "$label runs on the standby") or diag("$query: $err");
	isnt($on_primary, '', "$label returns rows on the primary");
	is($on_standby, $on_primary, "$label: same result on the standby as on the primary");
}

my ($rc, $out, $err) = $standby->psql('postgres',
	"SELECT eventstore.append('on-standby', 'Nope', '{}')");
isnt($rc, 0, 'append on the standby fails');
like($err, qr/read-only transaction|recovery/, 'append on the standby fails cleanly')
  or diag($err);
ok($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 't',
	'the standby is still up and in recovery');

$follower->quit;
$naive->quit;
$standby->stop;
$primary->stop;
done_testing();
