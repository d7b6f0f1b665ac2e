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
use EventStore::Test;

es_seed();

my $primary = es_node('primary', streaming => 1, conf => "max_connections = 40\n");
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
# Writers on the primary (as in 002_global_log_follower.pl), a follower on
# the standby, and a naive one (events table, position > checkpoint) as a
# control that the load commits out of position order.  A query cancelled
# by a recovery conflict is retried from the same checkpoint, as any
# standby client must do; anything else is fatal.
# ---------------------------------------------------------------------------

my %expect_events;    # "c:s" => events the transaction writes if it commits
my $writers = EventStore::Test::Writers->new($primary, $workdir);

my $conflict = qr/conflict with recovery/;
my $follower = EventStore::Test::Follower->new(
	es_connect_follower($standby, 'standby follower'),
	sub { "SELECT $columns FROM eventstore.read_all($_[0], 100)" },
	checkpoint => $high,
	retry => $conflict);
my $naive = EventStore::Test::Follower->new(
	es_connect_follower($standby, 'naive standby follower'),
	sub {
		"SELECT $columns FROM eventstore.events WHERE global_position > $_[0] ORDER BY global_position LIMIT 100";
	},
	checkpoint => $high,
	retry => $conflict);

my $t0 = time();
my %codes;
$writers->start([ 1 .. 4 ], sub { es_mixed_writer_script($_[0], 100, \%expect_events) });
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while ($writers->reap(\%codes, 0) > 0)
{
	die 'writers did not finish in time' if time() > $deadline;
	my $n = $follower->page();
	$naive->page();
	usleep(5_000) if $n == 0;
}
is_deeply(\%codes, { map { $_ => 0 } 1 .. 4 }, 'all writers succeeded')
  or diag($writers->errors(1 .. 4));

# Drain: the standby must reach the primary's newest committed event.
my $max = max_position();
ok(wait_standby_horizon($max), "the standby's recorded horizon reaches $max");
$follower->drain($max, $PostgreSQL::Test::Utils::timeout_default);
$naive->page() while $naive->checkpoint < $max;
is($follower->checkpoint, $max, "the standby follower caught up with position $max");
my %retried = (%{ $follower->retried }, %{ $naive->retried });
note sprintf("%d events in %d pages on the standby, %.1f s; retried after recovery conflicts: %s",
	scalar(@{ $follower->rows }), $follower->pages, time() - $t0,
	join('; ', map { "$retried{$_} x $_" } keys %retried) || 'none');

# ---------------------------------------------------------------------------
# Checks: the standby follower's sequence against the primary's log, and
# acknowledged commits, rollbacks, atomicity.
# ---------------------------------------------------------------------------

my @committed = split /\n/,
  $primary->safe_psql('postgres',
	"SELECT $columns FROM eventstore.events WHERE global_position > $high ORDER BY global_position");
es_check_follower('standby', $follower->rows, \@committed);
es_check_commits('standby', \@committed, $writers->acknowledged(1 .. 4),
	\%expect_events, [ 1 .. 4 ]);
es_check_out_of_order('standby', $follower->rows, $naive->rows);

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

$follower->session->quit;
$naive->session->quit;
$standby->stop;
$primary->stop;
done_testing();
