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
use EventStore::Test;

es_seed();

my $node = es_node('follower', conf => "max_connections = 40\n");
my $workdir = PostgreSQL::Test::Utils::tempdir;

# Writers (EventStore::Test::Writers running es_mixed_writer_script):
# %expect_events records, per "c:s", the number of events a commit writes
# (0 for a transaction that rolls back).
my %expect_events;
my $writers = EventStore::Test::Writers->new($node, $workdir);

sub start_writers
{
	my ($clients, $ntx) = @_;
	$writers->start($clients,
		sub { es_mixed_writer_script($_[0], $ntx, \%expect_events) });
}

# ---------------------------------------------------------------------------
# The follower: one session paging through read_all.  A second session
# follows the events table naively (position > checkpoint ORDER BY position)
# as a control: it shows that the load really commits out of position order,
# i.e. that a reader without the horizon would skip events here.  Both keep
# their rows and checkpoints across the crash (a new session continues).
# ---------------------------------------------------------------------------

my $columns =
  "global_position, stream_id, stream_version, data->>'c', data->>'s', data->>'i'";
my ($follower, $naive);

sub connect_followers
{
	my $session = es_connect_follower($node, 'follower');
	$session->query_safe("SET default_transaction_isolation = 'read committed'");
	my $naive_session = es_connect_follower($node, 'naive follower');
	if ($follower)
	{
		$follower->session($session);
		$naive->session($naive_session);
		return;
	}
	$follower = EventStore::Test::Follower->new($session,
		sub { "SELECT $columns FROM eventstore.read_all($_[0], 100)" });
	$naive = EventStore::Test::Follower->new($naive_session,
		sub {
			"SELECT $columns FROM eventstore.events WHERE global_position > $_[0] ORDER BY global_position LIMIT 100";
		});
}

# Follow while writers run (and, with $until, until it returns true).
sub follow_while_writing
{
	my ($codes, $until) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while ($writers->reap($codes, 0) > 0)
	{
		die "writers did not finish in time" if time() > $deadline;
		return if $until && $until->();
		my $n = $follower->page();
		$naive->page();
		usleep(2_000) if $n == 0;    # be gentle on a small machine
	}
}

# After the writers stopped: page until the follower has reached the newest
# committed event.  No transaction is in flight, so the horizon must let it.
sub drain
{
	my $max = $node->safe_psql('postgres',
		'SELECT coalesce(max(global_position), 0) FROM eventstore.events');
	ok($follower->drain($max, $PostgreSQL::Test::Utils::timeout_default),
		"follower caught up with position $max")
	  or diag('stuck at ' . $follower->checkpoint);
	$naive->page() while $naive->checkpoint < $max;
}

# The follower's sequence against the committed events; acknowledged commits
# against the events table.  Writers of @crashed clients may have had one
# transaction in flight at the crash, which may or may not have committed.
sub check_log
{
	my ($label, $clients, $crashed) = @_;
	my @committed = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT $columns FROM eventstore.events ORDER BY global_position");
	es_check_follower($label, $follower->rows, \@committed);
	es_check_commits($label, \@committed, $writers->acknowledged(@$clients),
		\%expect_events, $clients, $crashed);
}

# ---------------------------------------------------------------------------
# Round 1: writers run to completion.
# ---------------------------------------------------------------------------

my $t0 = time();
connect_followers();
my %codes;
start_writers([ 1 .. 4 ], 120);
follow_while_writing(\%codes);
$writers->reap(\%codes, 1);
is_deeply(\%codes, { map { $_ => 0 } 1 .. 4 }, 'round 1: all writers succeeded')
  or diag($writers->errors(1 .. 4));
drain();
note sprintf("round 1: %d events in %d pages, %.1f s",
	scalar(@{ $follower->rows }), $follower->pages, time() - $t0);
check_log('round 1', [ 1 .. 4 ], []);
es_check_out_of_order('round 1', $follower->rows, $naive->rows);

# ---------------------------------------------------------------------------
# Round 2: crash (immediate shutdown) in the middle of the load.
# ---------------------------------------------------------------------------

%codes = ();
my $before = scalar(@{ $follower->rows });
start_writers([ 11 .. 14 ], 400);
follow_while_writing(\%codes, sub { scalar(@{ $follower->rows }) - $before >= 150 });
ok($writers->reap(\%codes, 0) > 0, 'round 2: writers are still running at the crash');
$node->stop('immediate');
$writers->reap(\%codes, 1);

# The follower's session is gone with the server.
ok(!eval { $follower->page(); 1 }, 'round 2: follower fails while the server is down');
es_drop_session($follower->session);
es_drop_session($naive->session);

$node->start;

# ---------------------------------------------------------------------------
# Round 3: restart, write more, the follower continues from its checkpoint.
# ---------------------------------------------------------------------------

%codes = ();
connect_followers();
start_writers([ 21 .. 24 ], 80);
follow_while_writing(\%codes);
$writers->reap(\%codes, 1);
is_deeply(\%codes, { map { $_ => 0 } 21 .. 24 }, 'round 3: all writers succeeded')
  or diag($writers->errors(21 .. 24));
drain();
note sprintf("rounds 1-3: %d events in %d pages, %.1f s",
	scalar(@{ $follower->rows }), $follower->pages, time() - $t0);
check_log('after the crash', [ 1 .. 4, 11 .. 14, 21 .. 24 ], [ 11 .. 14 ]);

$follower->session->quit;
$naive->session->quit;
$node->stop;
done_testing();
