# The stream lifecycle under load and across crashes.
#
# (a) Retention during concurrent appends, with a read_all follower.
#     Writers (psql processes running generated scripts) append to streams
#     with settings -- max_count, truncate_before raised while they write,
#     both at once, soft deletes repeated while they write -- and to plain
#     streams, in single appends, batches, multi-stream transactions, late
#     commits and rollbacks.  The worker (eventstore.maintenance_interval =
#     100ms, batches of 50) removes excluded events meanwhile.  A follower
#     pages through read_all(checkpoint, 100), moving its checkpoint to the
#     global horizon it read before a short page.  Asserted:
#       - the follower's positions strictly increase, and its checkpoint
#         reaches the final horizon;
#       - every event it received was committed (an acknowledged
#         transaction's event, at the version its append reported);
#       - every event stored at the end, at or below the final horizon,
#         was received;
#       - no event it received was excluded when it was read.  Sound
#         version: each page is read with the stream's state as seen by the
#         statement's snapshot, which is older than read_all's own (read_all
#         takes the latest snapshot); settings only tighten and heads only
#         grow, so an event excluded by that state was excluded for
#         read_all.  Also: nothing of a deleted stream at or below the
#         deleted version in a page requested after the delete returned;
#       - once the worker is done, the stored events are exactly those the
#         final settings allow, computed from the writers' record of what
#         they appended (versions gap-free per stream, 1..head).
# (b) Idempotent appends survive a restart and a crash: the retry of an
#     append with ids returns the original result and writes nothing.
# (c) Archiving survives a crash: a committed archive_stream is still
#     archived after an immediate stop, and read_stream returns the same
#     bytes (a TOASTed event included); an uncommitted archive that crashes
#     leaves the stream in the hot table.
# (d) A lifecycle marker (0.7.0) is atomic with its change across a crash.
#
# Set ES_TAP_SEED to replay a run (the seed is printed).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time clock_gettime CLOCK_MONOTONIC);
use EventStore::Test;

es_seed();

my $node = es_node('lifecycle', extensions => [ 'eventstore', 'amcheck' ], conf => q{
max_connections = 40
eventstore.maintenance_interval = 100ms
eventstore.maintenance_batch_size = 50
});

my $workdir = PostgreSQL::Test::Utils::tempdir;

sub mono { return clock_gettime(CLOCK_MONOTONIC); }

# ===========================================================================
# (a) retention during concurrent appends
# ===========================================================================

# Streams and their (final) settings.  tb-* and mix-0 get truncate_before
# raised during the load, del-* are deleted again and again.
my %max_count = ('mc-0' => 5, 'mc-1' => 2, 'mix-0' => 4);
my @tb_streams = ('tb-0', 'tb-1', 'mix-0');
my @del_streams = ('del-0', 'del-1');
my @streams = sort(keys(%max_count), 'tb-0', 'tb-1', @del_streams, 'plain-0', 'plain-1');
my %truncate_before;    # stream => the value last set
my %deleted_version;    # stream => the version last deleted

for my $s (sort keys %max_count)
{
	$node->safe_psql('postgres',
		"SELECT eventstore.set_stream_metadata('$s', max_count => $max_count{$s})");
}

# ---------------------------------------------------------------------------
# Writers.  Each append prints "EV client tx stream last_version n"; the
# script prints "ACK client tx" once COMMIT was acknowledged.  An event's
# data is {"c": client, "s": tx, "i": index in the transaction}.
# ---------------------------------------------------------------------------

my %expect_events;    # "c:s" => events the transaction writes if it commits

sub append_sql { return es_append_sql(@_, 1); }
sub batch_sql { return es_batch_sql(@_, 1); }
sub short_sleep { return es_sleep_sql(rand(0.02), 1); }

sub pick { return $streams[ int(rand(@streams)) ]; }

sub writer_script
{
	my ($c, $ntx) = @_;
	my $sql = "SET application_name = 'writer $c';\n";

	for my $s (1 .. $ntx)
	{
		my $key = "$c:$s";
		my $r = rand();
		my $stream = pick();

		if ($r < 0.10)
		{
			$sql .= "BEGIN;\n" . append_sql($stream, $c, $s, 1) . short_sleep();
			$sql .= batch_sql($stream, $c, $s, 2, 2) if rand() < 0.5;
			$sql .= "ROLLBACK;\n";
			$expect_events{$key} = 0;
			next;
		}
		elsif ($r < 0.20)
		{
			# a late commit
			$sql .= "BEGIN;\n" . append_sql($stream, $c, $s, 1);
			$sql .= es_sleep_sql(0.05 + rand(0.25), 1);
			$sql .= "COMMIT;\n";
			$expect_events{$key} = 1;
		}
		elsif ($r < 0.40)
		{
			my $n = 2 + int(rand(5));
			if (rand() < 0.5)
			{
				$sql .= batch_sql($stream, $c, $s, 1, $n);
			}
			else
			{
				$sql .= "BEGIN;\n" . batch_sql($stream, $c, $s, 1, $n) . short_sleep() . "COMMIT;\n";
			}
			$expect_events{$key} = $n;
		}
		elsif ($r < 0.55)
		{
			# two streams in one transaction, in name order (no deadlocks)
			my ($x, $y) = sort($stream, pick());
			$sql .= "BEGIN;\n" . append_sql($x, $c, $s, 1) . short_sleep();
			$sql .= batch_sql($y, $c, $s, 2, 2) . "COMMIT;\n";
			$expect_events{$key} = 3;
		}
		else
		{
			$sql .= append_sql($stream, $c, $s, 1);
			$expect_events{$key} = 1;
		}
		$sql .= "\\echo ACK $c $s\n";
	}
	return $sql;
}

my $writers = EventStore::Test::Writers->new($node, $workdir, '-A', '-t');

# The record of committed events: "stream|version" => "c|s|i", from the
# EV lines of acknowledged transactions.  The events of one append call
# are numbered from its first version; their "i" follow the call's order.
sub committed_record
{
	my ($clients) = @_;
	my %rec;
	my %acked;
	my @ev;
	for my $c (@$clients)
	{
		open my $fh, '<', $writers->out_file($c) or die $writers->out_file($c) . ": $!";
		while (<$fh>)
		{
			chomp;
			if (/^ACK (\d+) (\d+)$/) { $acked{"$1:$2"} = 1; }
			elsif (/^EV (\d+) (\d+) (\S+) (\d+) (\d+)$/) { push @ev, [ $1, $2, $3, $4, $5 ]; }
		}
		close $fh;
	}
	# per transaction: its calls in order, "i" counting from 1
	my %next_i;
	for my $e (@ev)
	{
		my ($c, $s, $stream, $last, $n) = @$e;
		my $i = $next_i{"$c:$s"} // 1;
		$next_i{"$c:$s"} = $i + $n;
		next unless $acked{"$c:$s"};
		for my $k (0 .. $n - 1)
		{
			my $v = $last - $n + 1 + $k;
			die "version $stream|$v recorded twice" if exists $rec{"$stream|$v"};
			$rec{"$stream|$v"} = "$c|$s|" . ($i + $k);
		}
	}
	return (\%rec, \%acked);
}

# ---------------------------------------------------------------------------
# The follower.  Each row carries the state of its stream as seen by the
# statement's snapshot: head, max_count, truncate_before, deleted version.
# ---------------------------------------------------------------------------

my $follower = es_connect_follower($node, 'follower');

my @got;    # [pos, stream, version, c, s, i, head, max_count, truncate_before, deleted_version, t_sent]
my @markers;    # lifecycle markers (0.7.0): [pos, marker stream, version, type, stream, value]
my $checkpoint = 0;
my $pages = 0;

sub follow_page
{
	my ($h, $err) = es_quiet_query($follower, "SELECT eventstore.global_horizon()");
	die "global_horizon failed: $follower->{stderr}" if $err;
	my $t_sent = mono();
	my ($out, $err2) = es_quiet_query($follower, qq{
		SELECT r.global_position, r.stream_id, r.stream_version,
		       r.data->>'c', r.data->>'s', r.data->>'i',
		       i.last_version, coalesce(i.max_count, 0), coalesce(i.truncate_before, 0),
		       coalesce(st.deleted_version, 0),
		       r.event_type, r.data->>'stream_id',
		       coalesce(r.data->>'deleted_version', r.data->>'truncate_before')
		  FROM eventstore.read_all($checkpoint, 100) r
		 CROSS JOIN LATERAL eventstore.stream_info(r.stream_id) i
		  LEFT JOIN eventstore.streams st ON st.stream_id = r.stream_id
		 ORDER BY r.global_position});
	die "read_all failed: $follower->{stderr}" if $err2;
	$pages++;
	my $n = 0;
	for my $row (split /\n/, $out)
	{
		next if $row eq '';
		my @f = split /\|/, $row, -1;
		if ($f[1] =~ /^\$\$/)
		{
			push @markers, [ @f[ 0 .. 2 ], @f[ 10 .. 12 ] ];
		}
		else
		{
			push @got, [ @f[ 0 .. 9 ], $t_sent ];
		}
		$checkpoint = $f[0];
		$n++;
	}
	# a short page: nothing more is readable up to the horizon read before
	$checkpoint = $h if $n < 100 && $h > $checkpoint;
	return $n;
}

# ---------------------------------------------------------------------------
# The controller: raises truncate_before and deletes streams while the
# writers run.  Each change is noted with the time its call returned.
# ---------------------------------------------------------------------------

my $ctl = $node->background_psql('postgres', on_error_stop => 1);
my @deletes;    # [stream, version, t_returned]
my @settings;    # [stream, truncate_before] of each set_stream_metadata

sub ctl_query
{
	my ($sql) = @_;
	my ($out, $err) = es_quiet_query($ctl, $sql);
	die "controller query failed: $ctl->{stderr}" if $err;
	return $out;
}

sub control_step
{
	my $r = rand();
	if ($r < 0.5)
	{
		my $s = $tb_streams[ int(rand(@tb_streams)) ];
		my $last = ctl_query("SELECT last_version FROM eventstore.stream_info('$s')");
		my $t = $last - 1;    # keep the newest two
		return if $t <= ($truncate_before{$s} // 1);
		my $mc = $max_count{$s} // 'NULL';
		ctl_query("SELECT eventstore.set_stream_metadata('$s', max_count => $mc, truncate_before => $t)");
		$truncate_before{$s} = $t;
		push @settings, [ $s, $t ];
	}
	else
	{
		my $s = $del_streams[ int(rand(@del_streams)) ];
		my $v = ctl_query("SELECT eventstore.delete_stream('$s')");
		my $t = mono();
		if ($v > 0)
		{
			push @deletes, [ $s, $v, $t ];
			$deleted_version{$s} = $v;
		}
	}
}

my @clients = (1 .. 5);
my %codes;
my $t0 = time();
# markers after this position are the controller's (the setup's settings made some before)
my $load_start = $node->safe_psql('postgres', 'SELECT last_value FROM eventstore.global_position_seq');
$writers->start(\@clients, sub { writer_script($_[0], 150) });
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
my $last_control = 0;
while ($writers->reap(\%codes, 0) > 0)
{
	die "writers did not finish in time" if time() > $deadline;
	if (time() - $last_control > 0.15)
	{
		control_step();
		$last_control = time();
	}
	usleep(2_000) if follow_page() == 0;
}
$writers->reap(\%codes, 1);
cmp_ok($node->safe_psql('postgres', 'SELECT coalesce(sum(removed_through), 0) FROM eventstore.streams'),
	'>', 0, '(a) the worker removed events while the writers ran');
is_deeply(\%codes, { map { $_ => 0 } @clients }, '(a) all writers succeeded')
  or diag($writers->errors(@clients));
# one more round of changes after the last append
control_step() for 1 .. 4;

my $horizon = $node->safe_psql('postgres', 'SELECT eventstore.global_horizon()');
{
	my $dl = time() + $PostgreSQL::Test::Utils::timeout_default;
	follow_page() while $checkpoint < $horizon && time() < $dl;
}
is($checkpoint, $horizon, "(a) the follower reached the final horizon $horizon");
note sprintf("(a) %d events received in %d pages, %.1f s; %d deletes, truncate_before %s",
	scalar(@got), $pages, time() - $t0, scalar(@deletes),
	join(' ', map { "$_=$truncate_before{$_}" } sort keys %truncate_before));

my ($rec, $acked) = committed_record(\@clients);

# the follower's positions strictly increase
my @bad = grep { $got[$_][0] <= $got[ $_ - 1 ][0] } 1 .. $#got;
ok(!@bad, '(a) follower positions strictly increase')
  or diag('not increasing at: ' . join(', ', map { "$got[$_-1][0] -> $got[$_][0]" } es_head(10, @bad)));

# every received event was committed, at the version its append reported
my @uncommitted = grep {
	my ($pos, $stream, $v, $c, $s, $i) = @$_;
	!defined $rec->{"$stream|$v"} || $rec->{"$stream|$v"} ne "$c|$s|$i"
} @got;
ok(!@uncommitted, '(a) every received event was committed')
  or diag('not committed: ' . join(' ', map { join('|', @$_[ 0 .. 5 ]) } es_head(10, @uncommitted)));

# the lifecycle markers: exactly one for each change the controller made
# (a delete that found the stream absent makes none), each stream's markers
# read in version order, none skipped
{
	my %want;
	$want{"\$deleted|$_->[0]|$_->[1]"}++ for @deletes;
	$want{"\$metadata|$_->[0]|$_->[1]"}++ for grep { $_->[0] !~ /^\$\$/ } @settings;
	my %seen;
	my %next_version;
	my @wrong;
	for my $m (@markers)
	{
		my ($pos, $mstream, $v, $type, $stream, $value) = @$m;
		$seen{"$type|$stream|$value"}++ if $pos > $load_start;
		push @wrong, join('|', @$m)
		  if $mstream ne "\$\$$stream" || $v != ($next_version{$mstream} // 1);
		$next_version{$mstream} = $v + 1;
	}
	is_deeply(\%seen, \%want,
		sprintf('(a) the follower received one lifecycle marker per change (%d deletes, %d settings)',
			scalar(@deletes), scalar(@settings)));
	ok(!@wrong, '(a) each stream\'s markers arrived in version order, none skipped')
	  or diag('out of order: ' . join(' ', es_head(10, @wrong)));
}

# no received event was excluded by the state its statement saw
my @excluded = grep {
	my ($pos, $stream, $v, $c, $s, $i, $head, $mc, $tb, $dv) = @$_;
	$v <= $dv || ($tb > 0 && $v < $tb) || ($mc > 0 && $v <= $head - $mc)
} @got;
ok(!@excluded, '(a) the follower received no event its stream\'s settings excluded')
  or diag('excluded: ' . join(' ', map { join('|', @$_[ 0 .. 9 ]) } es_head(10, @excluded)));

# nothing at or below a deleted version, once the delete had returned
my @after_delete;
for my $g (@got)
{
	for my $d (@deletes)
	{
		push @after_delete, join('|', @$g[ 0 .. 2 ]) . " (deleted through $d->[1])"
		  if $g->[1] eq $d->[0] && $g->[2] <= $d->[1] && $g->[10] > $d->[2];
	}
}
ok(!@after_delete, '(a) no event of a deleted stream was received after its delete returned')
  or diag(join(' ', es_head(10, @after_delete)));
cmp_ok(scalar(@deletes), '>', 0, '(a) streams were deleted during the load');

# ---------------------------------------------------------------------------
# The end state: wait for the worker, then compare the stored events with
# what the final settings allow.
# ---------------------------------------------------------------------------

my %head;
for my $key (keys %$rec)
{
	my ($stream, $v) = split /\|/, $key;
	$head{$stream} = $v if !defined $head{$stream} || $v > $head{$stream};
}
my @gaps;
for my $stream (sort keys %head)
{
	my @missing = grep { !exists $rec->{"$stream|$_"} } 1 .. $head{$stream};
	push @gaps, "$stream: " . join(',', @missing) if @missing;
}
ok(!@gaps, '(a) the committed versions of every stream are 1..head') or diag(join('; ', @gaps));

# the settings as the test set them, against the table
my $settings = $node->safe_psql('postgres', q{
	SELECT stream_id, coalesce(max_count, 0), coalesce(truncate_before, 0), coalesce(deleted_version, 0)
	  FROM eventstore.streams ORDER BY stream_id});
my $want_settings = join("\n",
	map { join('|', $_, $max_count{$_} // 0, $truncate_before{$_} // 0, $deleted_version{$_} // 0) }
	  grep { $max_count{$_} || $truncate_before{$_} || $deleted_version{$_} } @streams);
is($settings, $want_settings, '(a) eventstore.streams holds the settings that were set');

sub allowed
{
	my ($stream, $v) = @_;
	return 0 if $v <= ($deleted_version{$stream} // 0);
	return 0 if $v < ($truncate_before{$stream} // 0);
	return 0 if $max_count{$stream} && $v <= $head{$stream} - $max_count{$stream};
	return 1;
}
my @want = sort map { "$_|$rec->{$_}" } grep { allowed(split /\|/) } keys %$rec;
my $stored_sql = q{SELECT stream_id || '|' || stream_version || '|' || (data->>'c') || '|'
	|| (data->>'s') || '|' || (data->>'i') FROM eventstore.events ORDER BY 1};
my @stored;
{
	my $dl = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		@stored = sort split /\n/, $node->safe_psql('postgres', $stored_sql);
		last if join("\n", @stored) eq join("\n", @want) || time() > $dl;
		usleep(100_000);
	}
}
my %want = map { $_ => 1 } @want;
my %stored = map { $_ => 1 } @stored;
my @over_removed = grep { !$stored{$_} } @want;
my @left = grep { !$want{$_} } @stored;
ok(!@over_removed, '(a) the worker removed no event the settings allow')
  or diag('removed but allowed: ' . join(' ', es_head(10, @over_removed)));
ok(!@left, '(a) the worker removed every event the settings exclude')
  or diag('still stored: ' . join(' ', es_head(10, @left)));
cmp_ok(scalar(keys %$rec) - scalar(@want), '>', 100, '(a) the settings excluded many events ('
	  . (scalar(keys %$rec) - scalar(@want)) . ' of ' . scalar(keys %$rec) . ')');

# every stored event at or below the final horizon was received
my %received = map { ("$_->[1]|$_->[2]" => 1) } (@got, @markers);
my @stored_pos = split /\n/, $node->safe_psql('postgres',
	"SELECT stream_id || '|' || stream_version FROM eventstore.events WHERE global_position <= $horizon");
my @unseen = grep { !$received{$_} } @stored_pos;
ok(!@unseen, '(a) the follower received every event still stored at or below the horizon')
  or diag('unseen: ' . join(' ', es_head(10, @unseen)));

# numbering goes on: every stream's version is its head, and the next
# append gets head + 1
my @numbering;
for my $stream (sort keys %head)
{
	my $got = $node->safe_psql('postgres',
		"SELECT stream_version FROM eventstore.append('$stream', 'Last', '1')");
	push @numbering, "$stream: $got, want " . ($head{$stream} + 1) if $got != $head{$stream} + 1;
}
ok(!@numbering, '(a) appends after the removals number on from the head') or diag(join('; ', @numbering));

ok(eval {
		$node->safe_psql('postgres', q{
			SELECT bt_index_parent_check('eventstore.events_pkey', true),
			       bt_index_parent_check('eventstore.events_stream_version_key', true)});
		1;
	}, '(a) the events indexes pass amcheck') or diag($@);

$follower->quit;
$ctl->quit;

# ===========================================================================
# (b) idempotent appends survive a restart and a crash
# ===========================================================================

my $batch = q{'[{"type": "Opened", "data": {"n": 1}, "id": "b0000000-0000-0000-0000-000000000001"},
                {"type": "Named", "data": {"n": 2}, "id": "b0000000-0000-0000-0000-000000000002"}]'};
my $overlap = q{'[{"type": "Opened", "data": {"n": 1}, "id": "b0000000-0000-0000-0000-000000000001"},
                  {"type": "Other", "data": {"n": 3}, "id": "b0000000-0000-0000-0000-000000000003"}]'};
my $single = q{eventstore.append('idem-2', 'Opened', '{"n": 1}', NULL, NULL, 'b0000000-0000-0000-0000-00000000000a')};
my $count_sql = q{SELECT count(*) FROM eventstore.events WHERE stream_id IN ('idem-1', 'idem-2')};

my $first = $node->safe_psql('postgres', "SELECT * FROM eventstore.append_events('idem-1', $batch, 0)");
my $first_single = $node->safe_psql('postgres', "SELECT * FROM $single");
like($first, qr/^2\|\d+$/, "(b) the first append: $first");

for my $mode ('fast', 'immediate')
{
	$node->stop($mode);
	$node->start;
	is($node->safe_psql('postgres', "SELECT * FROM eventstore.append_events('idem-1', $batch, 0)"),
		$first, "(b) after a $mode stop, the retry expecting 0 returns the original result");
	is($node->safe_psql('postgres', "SELECT * FROM eventstore.append_events('idem-1', $batch, NULL)"),
		$first, "(b) after a $mode stop, the retry expecting any version returns the original result");
	is($node->safe_psql('postgres', "SELECT * FROM $single"),
		$first_single, "(b) after a $mode stop, the retry of a single append returns the original result");
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT * FROM eventstore.append_events('idem-1', $overlap, 0)",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ST001: events of the append overlap/,
		"(b) after a $mode stop, a partial overlap fails with ST001 (ST004 before 0.6.0)");
	is($node->safe_psql('postgres', $count_sql), '3', "(b) after a $mode stop, nothing was written twice");
}

# acknowledged just before the crash: no checkpoint in between (ids of
# its own: since 0.6.0 an event id is stored once in the whole store)
(my $batch3 = $batch) =~ s/b0000000-/b0000003-/g;
$first = $node->safe_psql('postgres', "SELECT * FROM eventstore.append_events('idem-3', $batch3, 0)");
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', "SELECT * FROM eventstore.append_events('idem-3', $batch3, 0)"),
	$first, '(b) an append acknowledged right before a crash is recognised after recovery');
is($node->safe_psql('postgres', q{SELECT count(*) FROM eventstore.events WHERE stream_id = 'idem-3'}),
	'2', '(b) and not written again');

# ===========================================================================
# (c) archiving survives a crash
# ===========================================================================

# five events, one of them large enough to be stored out of line (TOAST)
$node->safe_psql('postgres', q{
	SELECT eventstore.append_events(s, jsonb_build_array(
	  jsonb_build_object('type', 'Opened', 'data', jsonb_build_object('s', s)),
	  jsonb_build_object('type', 'Big', 'data', jsonb_build_object('blob',
	    (SELECT string_agg(md5(s || g::text), '') FROM generate_series(1, 8000) g)),
	    'metadata', jsonb_build_object('m', 1)),
	  jsonb_build_object('type', 'Noted', 'data', '[1, 2.50, "x", null, true]'::jsonb),
	  jsonb_build_object('type', 'Noted', 'data', 'null'::jsonb),
	  jsonb_build_object('type', 'Closed', 'data', jsonb_build_object('u', 'é ü ∂'))), 0)
	  FROM (VALUES ('arch-1'), ('arch-2')) v(s)});
my $read_sql = sub {
	my ($s) = @_;
	return "SELECT global_position, stream_version, created_at, event_id, event_type,
	               md5(jsonb_send(data)), md5(data::text), length(data::text), metadata::text
	          FROM eventstore.read_stream('$s') ORDER BY stream_version";
};
my $where_sql = sub {
	my ($s) = @_;
	return "SELECT (SELECT state FROM eventstore.stream_info('$s')),
	               (SELECT count(*) FROM eventstore.events WHERE stream_id = '$s'),
	               (SELECT count(*) FROM eventstore.archived_events WHERE stream_id = '$s')";
};
my $before1 = $node->safe_psql('postgres', $read_sql->('arch-1'));
my $before2 = $node->safe_psql('postgres', $read_sql->('arch-2'));
is(scalar(split /\n/, $before1), 5, '(c) arch-1 has five events');
cmp_ok($node->safe_psql('postgres', q{
	SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'eventstore.events'::regclass}),
	'>', 0, '(c) the big event is stored out of line');

is($node->safe_psql('postgres', "SELECT eventstore.archive_stream('arch-1')"), '5',
	'(c) archive_stream moved five events');

# an archive in flight at the crash
my $inflight = $node->background_psql('postgres', on_error_stop => 1);
$inflight->query_safe('BEGIN');
is($inflight->query_safe("SELECT eventstore.archive_stream('arch-2')"), '5',
	'(c) an uncommitted archive_stream moved five events');

$node->stop('immediate');
es_drop_session($inflight);
$node->start;

is($node->safe_psql('postgres', $where_sql->('arch-1')), 'archived|0|5',
	'(c) after the crash arch-1 is archived, its events in the archive');
is($node->safe_psql('postgres', $read_sql->('arch-1')), $before1,
	'(c) after the crash read_stream returns the archived events unchanged');
is($node->safe_psql('postgres', $where_sql->('arch-2')), 'active|5|0',
	'(c) the archive that crashed uncommitted left arch-2 in the hot table');
is($node->safe_psql('postgres', $read_sql->('arch-2')), $before2,
	'(c) arch-2 reads unchanged');
is($node->safe_psql('postgres', q{SELECT stream_version FROM eventstore.append('arch-2', 'After', '1')}),
	'6', '(c) arch-2 takes appends');

# and back, across another crash
is($node->safe_psql('postgres', "SELECT eventstore.restore_stream('arch-1')"), '5',
	'(c) restore_stream moved five events back');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $where_sql->('arch-1')), 'active|5|0',
	'(c) after another crash arch-1 is back in the hot table');
is($node->safe_psql('postgres', $read_sql->('arch-1')), $before1,
	'(c) and reads unchanged');
is($node->safe_psql('postgres', q{SELECT stream_version FROM eventstore.append('arch-1', 'After', '1')}),
	'6', '(c) arch-1 takes appends again');
ok(eval {
		$node->safe_psql('postgres', q{
			SELECT bt_index_parent_check('eventstore.events_stream_version_key', true),
			       bt_index_parent_check('eventstore.archived_events_stream_version_key', true)});
		1;
	}, '(c) the indexes of both tables pass amcheck') or diag($@);

# (d) A lifecycle marker is atomic with its change across a crash: a
# committed delete has its $deleted marker after an immediate stop; a
# tombstone in flight at the crash left neither the tombstone nor its
# marker, and the global log's follower reads on without a gap it must
# wait for.
$node->safe_psql('postgres', q{
	SELECT eventstore.append('mk-1', 'Placed', '1');
	SELECT eventstore.append('mk-2', 'Placed', '2');
	SELECT eventstore.delete_stream('mk-1')});
my $marker_sql = q{
	SELECT string_agg(e.stream_id || ' ' || e.event_type, ', ' ORDER BY e.global_position)
	  FROM eventstore.events e WHERE e.stream_id LIKE '$$mk-%'};
my $dying = $node->background_psql('postgres', on_error_stop => 1);
$dying->query_safe('BEGIN');
is($dying->query_safe("SELECT eventstore.tombstone_stream('mk-2')"), '1',
	'(d) an uncommitted tombstone_stream');
$node->stop('immediate');
es_drop_session($dying);
$node->start;
is($node->safe_psql('postgres', $marker_sql), '$$mk-1 $deleted',
	'(d) after the crash: the committed delete has its marker, the uncommitted tombstone none');
is($node->safe_psql('postgres', q{
	SELECT (eventstore.stream_info('mk-1')).state || ' ' || (eventstore.stream_info('mk-2')).state}),
	'deleted active', '(d) and the states agree with the markers');
is($node->safe_psql('postgres', q{
	SELECT string_agg(r.stream_id || ' ' || r.event_type, ', ' ORDER BY r.global_position)
	  FROM eventstore.read_all(0, NULL, stream_prefix => 'mk-') r}),
	'mk-2 Placed, $$mk-1 $deleted', '(d) read_all returns the live stream and the marker, in position order');
is($node->safe_psql('postgres', q{SELECT eventstore.tombstone_stream('mk-2')}), '1',
	'(d) the tombstone can be made again');
is($node->safe_psql('postgres', $marker_sql), '$$mk-1 $deleted, $$mk-2 $tombstoned',
	'(d) with its marker');

$node->stop;
done_testing();
