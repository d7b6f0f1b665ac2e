# eventstore on Citus (issue 16): a coordinator and two workers on unix
# sockets, the store distributed by stream with eventstore.distribute(8).
# Every client call goes to the coordinator unless a case says otherwise;
# what is stored is read on each worker from its shard tables directly
# (events_<shardid>), never through the coordinator.
#
# (a) distribute(8) makes events, event_ids, streams, archived_events and
#     snapshots hash-distributed by stream_id, co-located, 8 shards each; a
#     second call is a no-op with a NOTICE.  Appends outside and inside
#     BEGIN/COMMIT reach the worker holding the stream in one hop (one
#     remote call, no two-phase commit) and land in the shard
#     get_shard_id_for_distribution_column() names, each stream on exactly
#     one worker, at the versions and positions the calls returned.  The
#     placeholder tables stay empty on every node (see placeholders_empty).
# (b) Concurrent writers (psql processes) through the coordinator: appends
#     to their own streams with right and deliberately wrong expected
#     versions, a hot stream every writer hits (NULL, -1 and optimistic
#     expected versions read just before), batches, late commits, random
#     ROLLBACKs, a wrong expected version inside a transaction.  Every
#     outcome is the predicted one (the hot stream's optimistic appends
#     either commit or fail with ST001); every error a writer got is ST001
#     (the SQLSTATE survives the hop); every stream is gapless 1..n with
#     increasing positions; every acknowledged commit is stored whole, no
#     rolled-back or failed one is.
# (c) Errors come back intact through the coordinator (ST001 with its
#     DETAIL, 42939, 22023, 22004) and nothing is written.
# (d) A transaction appending to streams on two workers fails cleanly:
#     an error, nothing written on either worker, nothing prepared on any
#     node.  Two streams on one worker (one shard, or two) in one
#     transaction commit together, in one phase.
# (e) A call that Citus does not delegate (the result's field selected)
#     runs where it is made: on a worker not holding the stream, and on the
#     coordinator, it fails with ST005 and writes nothing; on the worker
#     holding the stream it works.  A plain call on a worker is delegated
#     by Citus (workers have the metadata) and lands on the owner.
# (f) read_stream, stream_version, delete_stream, tombstone_stream and
#     handle_command through the coordinator agree with what was appended;
#     lifecycle markers are stored in their stream's shard; read_all,
#     global_horizon, inline projections, policies and (0.9.0) a
#     subscription of several lanes are refused with 0A000 on a distributed
#     store (for now).
# (g) citus_move_shard_placement (block_writes) of the shard holding the hot
#     stream, after a batch that puts the source worker's positions far
#     ahead of the target's: the shard's events are the same on the new
#     worker, appends go on at version n+1 with positions above every
#     earlier one of the shard.  Then a move back while writers run (as in
#     (b)), with commits before and after it: nothing lost or duplicated,
#     every outcome as predicted, positions increasing.
# (h) A follower of every partition (read_partitions on the coordinator,
#     a vector checkpoint) while writers run and a transaction that
#     appended to a stream of the hot stream's partition stays open: until
#     it commits, nothing of that partition above its position is
#     delivered, while the other worker's partitions go on; in the end
#     each partition was received whole, once, in position order.  (It
#     runs before (f), which deletes events.)
# (j) Shard splits: a shard holding a lifecycle marker of a stream that
#     Citus's hash places elsewhere ($$S is stored with S) is not split
#     (Citus refuses, nothing changes); a shard without one is split in two,
#     and after align_positions a follower's checkpoint from before the
#     split goes on: exactly the events appended after it, each once.
# (k) Notifications: the worker of each node notifies that node's
#     listeners when events commit in the partitions it holds (the payload
#     is a position of one of them).
# (l) Durable subscriptions on the coordinator, pulled per partition: three
#     competing consumers (test/t/subscription_clients.py) of a subscription
#     created at the current end of every partition while writers append
#     (as in (b)): every event appended after it is delivered and
#     acknowledged, each once (the read model's key), each stream in its
#     order, and the set equals the shards' events above the checkpoint
#     taken at creation.  A filtered subscription whose events are all in
#     one partition moves every partition's checkpoint past the events
#     that do not match.  The status view reports no lag (NULL) rather than
#     one server's count.
# (m) Async projections, run on the coordinator by its projector from every
#     partition with a vector checkpoint, owned by a role that is not a
#     superuser: one replayed from the start, one from its creation on, one
#     filtered by stream prefix, while writers append (as in (b)) and the
#     hot stream's shard moves.  A Poison event the handler refuses holds
#     its projections back (failing, its position and error recorded, not
#     in the read model) until the owner retries; then every read model
#     equals a recomputation from read_partitions, each event once, handled
#     as the owner.  An inline projection is refused with 0A000 and a HINT.
#     A rebuild reproduces the read model.  A projection recorded with a
#     search_path that plants operators before pg_catalog is pulled for
#     without running any of them.  An async projection created on
#     one server before distribute() (a) went on from where it stood.
# (n) One order of the whole log (eventstore.total_order, superusers only):
#     read_all on the coordinator merges the partitions; a follower of it
#     while writers append and a transaction stays open on one worker
#     delivers nothing above that transaction's position until it commits,
#     then every event once, in position order (read_partitions merged);
#     an event on one worker alone is delivered (the idle one is lifted).
#     Off, read_all is refused with 0A000 and a HINT.  A reader that is not
#     a superuser with planted operators before pg_catalog reads what the
#     owner reads, and nothing planted runs.
# (i) A NULL stream id through the coordinator: 22004 (last: Citus 13.2.2
#     crashes the coordinator on it, see there).
#
# Set ES_TAP_SEED to replay a run (the seed is printed).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Path qw(rmtree);
use POSIX ();
use Time::HiRes qw(usleep time);
use EventStore::Test;

plan skip_all =>
  'Citus is not installed (bash scripts/citus.sh ../shared/deps/citus-13.2.2.tar.gz)'
  unless es_have_citus();

es_seed();
my $t0 = time();

my ($coord, @workers) = es_citus_cluster('citus', 2);
my %worker_at = map { $_->port => $_ } @workers;    # node port => worker
my $workdir = PostgreSQL::Test::Utils::tempdir;

sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

# sql_state($node, $sql): run $sql (stopping at the first error) and return
# the SQLSTATE of the error ('' if none), stderr and stdout.
sub sql_state
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql", on_error_stop => 1);
	my ($state) = $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($state // '', $err, $out);
}

# The tables distribute() distributes, by stream_id.
my @dist_tables = qw(archived_events event_ids events snapshots streams);

# placement(@streams): { stream => "port|shardid" }, where the stream's shard
# of eventstore.events is placed now.
sub placement
{
	my @streams = @_;
	my $list = join(', ', map { "'$_'" } @streams);
	my %at;
	for my $row (split /\n/, sql($coord, qq{
		SELECT s, n.nodeport, p.shardid
		  FROM unnest(ARRAY[$list]::text[]) s
		  JOIN pg_dist_placement p
		    ON p.shardid = get_shard_id_for_distribution_column('eventstore.events', s)
		  JOIN pg_dist_node n USING (groupid)}))
	{
		my ($s, $port, $shard) = split /\|/, $row;
		$at{$s} = "$port|$shard";
	}
	return \%at;
}

# stored($columns, $where): the events stored in the shards, read on each
# worker from the shard tables of eventstore.events placed there: rows
# "port|shardid|$columns", per worker ordered by shard, then by the columns.
sub stored
{
	my ($columns, $where) = @_;
	$where //= 'true';
	my $order = join(', ', 1 .. 1 + scalar(split /,/, $columns));
	my %tables;
	for my $row (split /\n/, sql($coord, q{
		SELECT n.nodeport, p.shardid, shard_name('eventstore.events', p.shardid)
		  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
		  JOIN pg_dist_node n USING (groupid)
		 WHERE s.logicalrelid = 'eventstore.events'::regclass}))
	{
		my ($port, $shard, $name) = split /\|/, $row;
		push @{ $tables{$port} }, "SELECT $shard AS shard, $columns FROM $name WHERE $where";
	}
	my @rows;
	for my $w (@workers)
	{
		next unless $tables{ $w->port };
		push @rows, map { $w->port . "|$_" } split /\n/,
		  sql($w,
			'SELECT * FROM (' . join("\nUNION ALL ", @{ $tables{ $w->port } }) . ") e ORDER BY $order");
	}
	return @rows;
}

# stream_rows($stream, $columns): stored(), of one stream.
sub stream_rows
{
	my ($stream, $columns) = @_;
	return stored($columns, "stream_id = '$stream'");
}

# Two placeholders per table.  On the coordinator the tables of
# eventstore.* are Citus tables, whose rows live in the shards; on a worker
# they are the same (Citus keeps the metadata on every node), so a SELECT
# of eventstore.events -- ONLY or not -- is a distributed query on every
# node and returns the shards' rows.  The node's own heap of the table is
# what must stay empty: pg_relation_size() reads the relation's local file
# (Citus does not intercept it), and 0 bytes means that no tuple was ever
# written there, not even one rolled back since.
sub placeholders_empty
{
	my ($label) = @_;
	my $q = 'SELECT ' . join(" || ' ' || ",
		map { "'$_:' || pg_relation_size('eventstore.$_')" } @dist_tables);
	my $want = join(' ', map { "$_:0" } @dist_tables);
	for my $node ($coord, @workers)
	{
		is(sql($node, $q), $want,
			"$label: the placeholder tables on " . $node->name . ' were never written');
	}
}

# No prepared transaction is left on any node.
sub nothing_prepared
{
	my ($label) = @_;
	for my $node ($coord, @workers)
	{
		is(sql($node, 'SELECT count(*) FROM pg_prepared_xacts'), '0',
			"$label: nothing prepared on " . $node->name);
	}
}

# streams_on($port, $prefix): the stream names of prefix-0 .. prefix-63
# whose shards are placed on worker $port.
sub streams_on
{
	my ($port, $prefix) = @_;
	my @names = map { "$prefix-$_" } 0 .. 63;
	my $at = placement(@names);
	return grep { (split /\|/, $at->{$_})[0] == $port } @names;
}

# ===========================================================================
# (a) distribute(8), placement, the placeholders
# ===========================================================================

is(sql($coord, 'SELECT eventstore.is_distributed()'), 'f', '(a) not distributed at first');
# An async projection made on one server goes on after distribute(): its
# position holds in every partition ((m) checks its read model).
is( sql($coord, q{
		CREATE TABLE pre_seen (global_position bigint PRIMARY KEY, stream_id text,
		                       stream_version bigint);
		CREATE FUNCTION pre_handle(e eventstore.event) RETURNS void LANGUAGE sql AS
		  $$ INSERT INTO pre_seen VALUES (e.global_position, e.stream_id, e.stream_version) $$;
		SELECT count(*) FROM (SELECT eventstore.append('pre-1', 'Before', '{}')
		                        FROM generate_series(1, 3)) x;
		SELECT eventstore.create_projection('m_pre', 'pre_handle(eventstore.event)', mode => 'async');
		SELECT eventstore.wait_for_projection('m_pre', '30 s');
		SELECT count(*) FROM pre_seen;
	}), "3\n\nt\n3", '(a) an async projection on one server handled the first events');
sql($coord, 'SELECT eventstore.distribute(8)');
is(sql($coord, 'SELECT eventstore.is_distributed()'), 't', '(a) distributed after distribute(8)');

# Which tables are Citus tables, how, with how many shards.
my $layout_sql = q{
	SELECT string_agg(logicalrelid::text || ' ' || partmethod::text || ' '
	                  || column_to_column_name(logicalrelid, partkey) || ' '
	                  || (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid),
	                  ', ' ORDER BY logicalrelid::text),
	       count(DISTINCT colocationid)
	  FROM pg_dist_partition p
	 WHERE logicalrelid::regclass::text LIKE 'eventstore.%' AND partmethod = 'h'};
my $layout = join(', ', map { "eventstore.$_ h stream_id 8" } @dist_tables) . '|1';
is(sql($coord, $layout_sql), $layout,
	'(a) the tables keyed by stream are hash-distributed by stream_id, 8 shards, co-located');

{
	my ($ret, $out, $err) = $coord->psql('postgres', 'SELECT eventstore.distribute(8)');
	is($ret, 0, '(a) a second distribute() succeeds');
	like($err, qr/NOTICE:/, '(a) a second distribute() says so with a NOTICE');
	is(sql($coord, $layout_sql), $layout, '(a) a second distribute() changes nothing');
}

# Twelve streams, each: an append outside a transaction (expected version
# 0), then a batch of two inside BEGIN/COMMIT (expected version 1).  The
# coordinator logs the commands it sends (citus.log_remote_commands): each
# call must be one remote call to the worker holding the stream, and the
# transactions commit in one phase.
my @a_streams = map { "a-$_" } 0 .. 11;
my $a_at = placement(@a_streams);
my %a_returned;    # "stream|version" => position, as the calls returned them
for my $s (@a_streams)
{
	my ($port) = split /\|/, $a_at->{$s};
	my ($ret, $out, $err) = $coord->psql(
		'postgres', qq{
		SET citus.log_remote_commands = on;
		SELECT '$s|' || stream_version || '|' || global_position
		  FROM eventstore.append('$s', 'Opened', '{"n": 1}', NULL, 0);
		BEGIN;
		SELECT '$s|' || stream_version || '|' || global_position
		  FROM eventstore.append_events('$s',
		         '[{"type": "Added", "data": {"n": 2}}, {"type": "Added", "data": {"n": 3}}]', 1);
		COMMIT;
	});
	is($ret, 0, "(a) $s: appended through the coordinator") or diag($err);
	my @res = split /\n/, $out;
	like($res[0] // '', qr/^\Q$s\E\|1\|\d+$/, "(a) $s: the append returned version 1");
	like($res[1] // '', qr/^\Q$s\E\|3\|\d+$/, "(a) $s: the batch returned version 3");
	for (@res) { my ($x, $v, $p) = split /\|/; $a_returned{"$x|$v"} = $p; }

	# "issuing <command>" NOTICE, then "DETAIL:  on server user@host:port ..."
	my @issued;
	while ($err =~ /NOTICE:\s+issuing (.*?)\nDETAIL:\s+on server \S+:(\d+) /g)
	{
		push @issued, [ $1, $2 ];
	}
	my @calls = grep { $_->[0] =~ /eventstore\.append(?:_events)?\(/ } @issued;
	is(scalar(@calls), 2, "(a) $s: two calls, two remote calls")
	  or diag(join("\n", map { "$_->[1]: $_->[0]" } @issued));
	is(join(' ', map { $_->[1] } @issued), join(' ', ($port) x @issued),
		"(a) $s: every remote command went to the worker holding the stream");
	ok(!grep({ $_->[0] =~ /PREPARE TRANSACTION/ } @issued),
		"(a) $s: no two-phase commit for one stream");
}
{
	my %ports = map { (split /\|/, $a_at->{$_})[0] => 1 } @a_streams;
	is(scalar(keys %ports), 2, '(a) the streams are spread over both workers');
}

# What is stored, read on the workers: each stream on exactly one worker,
# in its shard, versions 1..3 at the positions the calls returned.
{
	my @want;
	for my $s (@a_streams)
	{
		push @want, map { "$a_at->{$s}|$s|$_" } 1 .. 3;
	}
	my @got = sort(stored('stream_id, stream_version', "stream_id LIKE 'a-%'"));
	is_deeply(\@got, [ sort @want ],
		'(a) every event is on the worker and in the shard of its stream, once');
	my %pos = map { my @f = split /\|/; ("$f[2]|$f[3]" => $f[4]) }
	  stored('stream_id, stream_version, global_position', "stream_id LIKE 'a-%'");
	is_deeply({ map { $_ => $pos{$_} } keys %a_returned }, \%a_returned,
		'(a) the stored positions are those the calls returned');
}
is(sql($coord, "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'a-%'"),
	'36', '(a) the coordinator sees the 36 events through the distributed table');
placeholders_empty('(a)');
nothing_prepared('(a)');

# ===========================================================================
# (b) concurrent writers through the coordinator
# ===========================================================================

# A writer's script: one stream per transaction (two streams might be on
# two workers: case (d)).  psql goes on after an error (ON_ERROR_STOP off)
# and prints one outcome per transaction: "ACK c s" (committed), "RB c s"
# (rolled back on purpose) or "FAIL c s SQLSTATE"; each append prints "EV c
# s stream last_version n".  The writer's own streams w<c>-0..2 are written
# by it alone, so the outcome of every transaction on them is predicted
# here, from the versions the script itself has made; on the hot stream an
# append with a version read just before may fail with ST001 ('race').
my %expect_events;    # "c:s" => events stored if it commits
my %predict;          # "c:s" => ack, rb, ST001 or race
my %own_version;      # own stream => its version at the end

# The statements of one transaction, each followed by the check of its
# outcome; $end is COMMIT, ROLLBACK, or undef for one autocommit statement.
sub tx_sql
{
	my ($c, $s, $stmts, $end) = @_;
	my $fail = "\\if :ERROR\n\\echo FAIL $c $s :SQLSTATE\n";
	if (!defined $end)
	{
		return $stmts->[0] . $fail . "\\else\n\\echo ACK $c $s\n\\endif\n";
	}
	my $sql = "BEGIN;\n";
	my $close = '';
	for my $stmt (@$stmts)
	{
		$sql .= $stmt . $fail . "ROLLBACK;\n\\else\n";
		$close .= "\\endif\n";
	}
	$sql .=
	  $end eq 'COMMIT'
	  ? "COMMIT;\n$fail\\else\n\\echo ACK $c $s\n\\endif\n"
	  : "ROLLBACK;\n\\echo RB $c $s\n";
	return $sql . $close;
}

sub writer_script
{
	my ($c, $ntx, $prefix) = @_;
	my %v = map { ("$prefix$c-$_" => 0) } 0 .. 2;
	my $sql = "\\set ON_ERROR_STOP 0\nSET application_name = 'writer $c';\n";
	my $nap = sub { es_sleep_sql(rand(0.02), 1) };

	for my $s (1 .. $ntx)
	{
		my $key = "$c:$s";
		my $own = "$prefix$c-" . int(rand(3));
		my $v = $v{$own};
		my $r = rand();
		if ($r < 0.15)
		{
			$sql .= tx_sql($c, $s, [ es_append_sql($own, $c, $s, 1, 1, $v) ]);
			($predict{$key}, $expect_events{$key}) = ('ack', 1);
			$v{$own}++;
		}
		elsif ($r < 0.25)
		{
			# a wrong expected version: ahead, behind, "exists" of a new
			# stream, "new" of an existing one
			my @wrong = ($v + 1, $v + 3, $v ? ($v - 1, 0) : (-1));
			$sql .= tx_sql($c, $s,
				[ es_append_sql($own, $c, $s, 1, 1, $wrong[ int(rand(@wrong)) ]) ]);
			($predict{$key}, $expect_events{$key}) = ('ST001', 0);
		}
		elsif ($r < 0.40)
		{
			my $n = 2 + int(rand(3));
			$sql .= tx_sql($c, $s,
				[ es_batch_sql($own, $c, $s, 1, $n, 1, $v), $nap->() ], 'COMMIT');
			($predict{$key}, $expect_events{$key}) = ('ack', $n);
			$v{$own} += $n;
		}
		elsif ($r < 0.47)
		{
			# a late commit
			$sql .= tx_sql($c, $s,
				[ es_append_sql($own, $c, $s, 1, 1, $v), es_sleep_sql(0.1 + rand(0.2), 1) ],
				'COMMIT');
			($predict{$key}, $expect_events{$key}) = ('ack', 1);
			$v{$own}++;
		}
		elsif ($r < 0.55)
		{
			$sql .= tx_sql($c, $s,
				[ es_append_sql($own, $c, $s, 1, 1, $v), $nap->() ], 'ROLLBACK');
			($predict{$key}, $expect_events{$key}) = ('rb', 0);
		}
		elsif ($r < 0.62)
		{
			# the second append expects the version before the first: the
			# transaction fails, the first append with it
			$sql .= tx_sql($c, $s,
				[ es_append_sql($own, $c, $s, 1, 1, $v), es_append_sql($own, $c, $s, 2, 1, $v) ],
				'COMMIT');
			($predict{$key}, $expect_events{$key}) = ('ST001', 0);
		}
		else
		{
			my $h = rand();
			if ($h < 0.3)
			{
				$sql .= tx_sql($c, $s, [ es_append_sql('hot', $c, $s, 1, 1) ]);
				($predict{$key}, $expect_events{$key}) = ('ack', 1);
			}
			elsif ($h < 0.45)
			{
				$sql .= tx_sql($c, $s,
					[ es_batch_sql('hot', $c, $s, 1, 2, 1, 'NULL'), $nap->() ], 'COMMIT');
				($predict{$key}, $expect_events{$key}) = ('ack', 2);
			}
			elsif ($h < 0.55)
			{
				$sql .= tx_sql($c, $s, [ es_append_sql('hot', $c, $s, 1, 1), $nap->() ],
					'ROLLBACK');
				($predict{$key}, $expect_events{$key}) = ('rb', 0);
			}
			elsif ($h < 0.65)
			{
				# the hot stream exists (seeded before the writers start)
				$sql .= tx_sql($c, $s, [ es_append_sql('hot', $c, $s, 1, 1, -1) ]);
				($predict{$key}, $expect_events{$key}) = ('ack', 1);
			}
			else
			{
				# optimistic: the version read just before, in the transaction
				$sql .= tx_sql(
					$c, $s,
					[
						"SELECT eventstore.stream_version('hot') AS v \\gset\n",
						$nap->(), es_append_sql('hot', $c, $s, 1, 1, ':v'), $nap->()
					],
					'COMMIT');
				($predict{$key}, $expect_events{$key}) = ('race', 1);
			}
		}
	}
	$own_version{$_} = $v{$_} for keys %v;
	return $sql;
}

my $writers = EventStore::Test::Writers->new($coord, $workdir, '-A', '-t');

# outcomes(@clients): { "c:s" => "ACK" | "RB" | "FAIL state" } and the EV
# lines [c, s, stream, last version, n].
sub outcomes
{
	my (@clients) = @_;
	my (%out, @ev, @dup);
	for my $c (@clients)
	{
		for (es_slurp_lines($writers->out_file($c)))
		{
			if (/^(ACK|RB|FAIL) (\d+) (\d+)(?: (\S+))?$/)
			{
				push @dup, "$2:$3" if exists $out{"$2:$3"};
				$out{"$2:$3"} = $1 eq 'FAIL' ? "FAIL $4" : $1;
			}
			elsif (/^EV (\d+) (\d+) (\S+) (\d+) (\d+)$/)
			{
				push @ev, [ $1, $2, $3, $4, $5 ];
			}
		}
	}
	return (\%out, \@ev, \@dup);
}

# run_writers($label, \@clients, $ntx, $prefix, $during): start the writers,
# call $during->() while they run (if given), wait for them, then check
# their outcomes and what is stored.
sub run_writers
{
	my ($label, $clients, $ntx, $prefix, $during) = @_;
	my $t = time();
	$writers->start($clients, sub { writer_script($_[0], $ntx, $prefix) });
	$during->() if $during;
	my %codes;
	$writers->reap(\%codes, 1);
	is_deeply(\%codes, { map { $_ => 0 } @$clients }, "$label: every writer ran its script")
	  or diag($writers->errors(@$clients));
	note sprintf("%s: %d transactions in %.1f s", $label, $ntx * @$clients, time() - $t);

	# Outcomes against the predictions.
	my ($out, $ev, $dup) = outcomes(@$clients);
	my @keys = grep { /^(\d+):/ && grep { $_ == $1 } @$clients } keys %predict;
	is(scalar(@$dup), 0, "$label: one outcome per transaction") or diag("@$dup");
	my (@wrong, %seen);
	for my $key (sort @keys)
	{
		my $got = $out->{$key} // 'none';
		$seen{$got}++;
		my $p = $predict{$key};
		my $ok =
			$p eq 'ack' ? $got eq 'ACK'
		  : $p eq 'rb' ? $got eq 'RB'
		  : $p eq 'ST001' ? $got eq 'FAIL ST001'
		  : ($got eq 'ACK' || $got eq 'FAIL ST001');
		push @wrong, "$key: predicted $p, got $got" unless $ok;
		$expect_events{$key} = 0 if $p eq 'race' && $got ne 'ACK';
	}
	is(scalar(@wrong), 0, "$label: every transaction had the predicted outcome")
	  or diag(join("\n", es_head(20, @wrong)));
	note "$label: outcomes " . join(', ', map { "$_ $seen{$_}" } sort keys %seen);
	my @not_st001 = grep { /^FAIL/ && $_ ne 'FAIL ST001' } values %$out;
	is(scalar(@not_st001), 0, "$label: every error a writer got is ST001")
	  or diag(join(' ', es_head(20, @not_st001)));
	cmp_ok($seen{'FAIL ST001'} // 0, '>', 0, "$label: writers got ST001 errors");
	my @error_lines = grep { /ERROR:/ } map { es_slurp_lines($writers->err_file($_)) } @$clients;
	my $failed = 0;
	$failed += $seen{$_} for grep { /^FAIL/ } keys %seen;
	is(scalar(@error_lines), $failed, "$label: one error message per failed transaction");

	# What is stored: "position|stream|version|c|s|i", read on the workers.
	my @rows = stored(
		"global_position, stream_id, stream_version, data->>'c', data->>'s', data->>'i'",
		"stream_id = 'hot' OR stream_id LIKE '$prefix%'");
	my (%by_stream, %shards_of);
	for (@rows)
	{
		my ($port, $shard, $pos, $stream, $v, $c, $s, $i) = split /\|/, $_, -1;
		next unless $stream eq 'hot' || grep { $_ == $c } @$clients;
		push @{ $by_stream{$stream} }, [ $v, $pos, $c, $s, $i ];
		$shards_of{$stream}{"$port|$shard"} = 1;
	}
	my $at = placement(keys %by_stream);
	my (@gaps, @order, @misplaced);
	for my $stream (sort keys %by_stream)
	{
		my @ev = sort { $a->[0] <=> $b->[0] } @{ $by_stream{$stream} };
		my @v = map { $_->[0] } @ev;
		push @gaps, "$stream: @v" unless "@v" eq join(' ', 1 .. scalar(@v));
		push @order, $stream
		  if grep { $ev[$_]->[1] <= $ev[ $_ - 1 ]->[1] } 1 .. $#ev;
		my @places = keys %{ $shards_of{$stream} };
		push @misplaced, "$stream: @places (want $at->{$stream})"
		  unless @places == 1 && $places[0] eq $at->{$stream};
	}
	is(scalar(@gaps), 0, "$label: every stream is gapless 1..n, each version once")
	  or diag(join("\n", es_head(10, @gaps)));
	is(scalar(@order), 0, "$label: positions increase with versions in every stream")
	  or diag("@order");
	is(scalar(@misplaced), 0, "$label: every stream is in its shard only")
	  or diag(join("\n", @misplaced));
	my @own_wrong = grep { ($by_stream{$_} ? scalar(@{ $by_stream{$_} }) : 0) != $own_version{$_} }
	  grep { /^\Q$prefix\E(\d+)-/ && grep { $_ == $1 } @$clients } keys %own_version;
	is(scalar(@own_wrong), 0, "$label: the writers' own streams end at the predicted versions")
	  or diag("@own_wrong");

	# Acknowledged, rolled back, failed: all or nothing, per transaction.
	my @committed = map {
		my $st = $_;
		map { join('|', $_->[1], $st, $_->[0], @$_[ 2 .. 4 ]) } @{ $by_stream{$st} }
	} sort keys %by_stream;
	es_check_commits($label, \@committed, $writers->acknowledged(@$clients),
		\%expect_events, $clients, []);

	# The versions each acknowledged append reported are the stored ones.
	my %stored_at = map { my @f = split /\|/, $_, -1; ("$f[1]|$f[2]" => "$f[3]:$f[4]") } @committed;
	my @misreported;
	for my $e (@$ev)
	{
		my ($c, $s, $stream, $last, $n) = @$e;
		next unless ($out->{"$c:$s"} // '') eq 'ACK';
		for my $version ($last - $n + 1 .. $last)
		{
			push @misreported, "$c:$s $stream $version"
			  unless ($stored_at{"$stream|$version"} // '') eq "$c:$s";
		}
	}
	is(scalar(@misreported), 0, "$label: the reported versions are the stored ones")
	  or diag(join("\n", es_head(10, @misreported)));
	is( sql($coord, "SELECT eventstore.stream_version('hot')"),
		scalar(@{ $by_stream{hot} }),
		"$label: stream_version of the hot stream through the coordinator");
	placeholders_empty($label);
	nothing_prepared($label);
	return;
}

sql($coord, q{SELECT eventstore.append('hot', 'Seeded', '{"c": 0, "s": 0, "i": 1}', NULL, 0)});
run_writers('(b)', [ 1 .. 4 ], 40, 'w');

# ===========================================================================
# (c) errors through the coordinator, nothing written
# ===========================================================================

sql($coord, q{SELECT eventstore.append_events('c-1',
	'[{"type": "Opened", "data": {}}, {"type": "Added", "data": {}}]', 0)});
my $c_before = join("\n", stored('global_position, stream_id, stream_version'));
for my $case (
	[ q{SELECT * FROM eventstore.append('c-1', 'Added', '{}', NULL, 5)},
		'ST001', 'a wrong expected version' ],
	[ q{SELECT * FROM eventstore.append_events('c-1', '[{"type": "Added", "data": {}}]', 0)},
		'ST001', 'expected version 0 of an existing stream' ],
	[ q{BEGIN;
	    SELECT * FROM eventstore.append('c-1', 'Added', '{}', NULL, 2);
	    SELECT * FROM eventstore.append('c-1', 'Added', '{}', NULL, 2);
	    COMMIT;}, 'ST001', 'a wrong expected version in a transaction' ],
	[ q{SELECT * FROM eventstore.append('$$c-1', 'Added', '{}')},
		'42939', 'a reserved stream id' ],
	[ q{SELECT * FROM eventstore.append('c-1', '$deleted', '{}')},
		'42939', 'a reserved event type' ],
	[ q{SELECT * FROM eventstore.append_events('c-1', '{"type": "Added", "data": {}}')},
		'22023', 'events not an array' ],
	[ q{SELECT * FROM eventstore.append('', 'Added', '{}')},
		'22023', 'an empty stream id' ],
	[ q{SELECT * FROM eventstore.append('c-1', 'Added', '{}', NULL, -2)},
		'22023', 'expected version below -1' ],
	[ q{SELECT * FROM eventstore.append('c-1', NULL, '{}')},
		'22004', 'a NULL event type' ])
{
	my ($q, $want, $what) = @$case;
	my ($state, $err) = sql_state($coord, $q);
	is($state, $want, "(c) $what: $want through the coordinator") or diag($err);
	if ($want eq 'ST001' && $state eq 'ST001')
	{
		like($err, qr/DETAIL:.*c-1/s, "(c) $what: the DETAIL names the stream");
	}
}
is(join("\n", stored('global_position, stream_id, stream_version')), $c_before,
	'(c) the failed calls wrote nothing');
is(sql($coord, "SELECT eventstore.stream_version('c-1')"), '2', '(c) c-1 is at version 2');
placeholders_empty('(c)');

# ===========================================================================
# (d) a transaction over two workers; over one
# ===========================================================================

{
	my ($w1) = streams_on($workers[0]->port, 'd1');
	my ($w2) = streams_on($workers[1]->port, 'd2');
	my ($state, $err) = sql_state($coord, qq{
		BEGIN;
		SELECT * FROM eventstore.append('$w1', 'Added', '{}');
		SELECT * FROM eventstore.append('$w2', 'Added', '{}');
		COMMIT;});
	isnt($state, '', "(d) appending to $w1 and $w2 (two workers) in one transaction fails");
	unlike($state, qr/^XX/, '(d) with an error of the extension or Citus, not an internal one')
	  or diag($err);
	note "(d) the cross-node transaction failed with SQLSTATE $state: "
	  . join(' / ', grep { /ERROR|HINT|DETAIL/ } split /\n/, $err);
	is(join("\n", stored('stream_id', "stream_id IN ('$w1', '$w2')")),
		'', '(d) nothing of it is stored on either worker');
	# (one call per query: an expression of two calls is not delegated)
	is( sql($coord, "SELECT eventstore.stream_version('$w1')") . ' '
		  . sql($coord, "SELECT eventstore.stream_version('$w2')"),
		'0 0', '(d) both streams are still at version 0');
	nothing_prepared('(d)');

	# Two streams of one worker: in one shard, and in two.
	my @same = streams_on($workers[0]->port, 'd3');
	my $at = placement(@same);
	my ($x, $y) = @same[ 0, 1 ];
	my ($one) = grep { $at->{$_} eq $at->{$x} } @same[ 1 .. $#same ];
	my ($two) = grep { $at->{$_} ne $at->{$x} } @same[ 1 .. $#same ];
	for my $pair ([ $x, $one, 'one shard' ], [ $x, $two, 'two shards' ])
	{
		my ($p, $q, $what) = @$pair;
		my ($ret, $out, $err) = $coord->psql('postgres', qq{
			SET citus.log_remote_commands = on;
			BEGIN;
			SELECT * FROM eventstore.append('$p', 'Added', '{}');
			SELECT * FROM eventstore.append('$q', 'Added', '{}');
			COMMIT;});
		is($ret, 0, "(d) $p and $q ($what of one worker) in one transaction commit") or diag($err);
		unlike($err, qr/PREPARE TRANSACTION/, "(d) $what of one worker: one-phase commit");
	}
	is( join(' ', sort map { (split /\|/)[2] } stored('stream_id', "stream_id IN ('$x', '$one', '$two')")),
		join(' ', sort($x, $x, $one, $two)),
		'(d) the transactions on one worker are stored');
	nothing_prepared('(d) one worker');
}

# ===========================================================================
# (e) calls made on a worker; a call Citus does not delegate
# ===========================================================================

{
	my ($s) = streams_on($workers[0]->port, 'e');
	my ($owner, $other) = @workers;
	# Selecting a field of the result is not a plain "SELECT f(...)" or
	# "SELECT ... FROM f(...)": Citus does not delegate it.
	my $local = "SELECT (eventstore.append('$s', 'Added', '{}')).stream_version";

	my ($state, $err) = sql_state($other, $local);
	is($state, 'ST005', "(e) on the worker not holding $s: ST005") or diag($err);
	($state, $err) = sql_state($coord, $local);
	is($state, 'ST005', "(e) not delegated on the coordinator (no shards): ST005") or diag($err);
	($state, $err) = sql_state($other, "SELECT eventstore.stream_version('$s') + 0");
	is($state, 'ST005', "(e) a read on the worker not holding $s: ST005") or diag($err);
	is(join("\n", stored('stream_id', "stream_id = '$s'")), '', '(e) nothing was written');

	is(sql($owner, $local), '1', "(e) on the worker holding $s, it appends there");
	is(sql($other, "SELECT stream_version FROM eventstore.append('$s', 'Added', '{}')"),
		'2', '(e) a plain call on the other worker is delegated by Citus');
	is( join("\n", stored('stream_id, stream_version', "stream_id = '$s'")),
		join("\n", map { placement($s)->{$s} . "|$s|$_" } 1 .. 2),
		"(e) both events are in the shard of $s on its worker");
	placeholders_empty('(e)');
}

# ===========================================================================
# (h) a follower of every partition, a long transaction open on one node
# ===========================================================================

{
	my $cols = "global_position, stream_id, stream_version, data->>'c', data->>'s', data->>'i'";
	my %partition_of = map { split /\|/ } split /\n/, sql($coord, q{
		SELECT shardid, shardminvalue FROM pg_dist_shard
		 WHERE logicalrelid = 'eventstore.events'::regclass});
	my %node_of;    # partition => worker port
	for my $row (split /\n/, sql($coord, q{
		SELECT s.shardminvalue, n.nodeport
		  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
		  JOIN pg_dist_node n USING (groupid)
		 WHERE s.logicalrelid = 'eventstore.events'::regclass}))
	{
		my ($part, $port) = split /\|/, $row;
		$node_of{$part} = $port;
	}

	# The follower: pages of read_partitions(checkpoint, 100); the
	# checkpoint of a partition is the last position received from it.
	my $session = es_connect_follower($coord, 'partition follower');
	my (%checkpoint, %got, $pages);
	my $follow = sub {
		my $after = '{' . join(', ', map { qq("$_": $checkpoint{$_}) } sort keys %checkpoint) . '}';
		my ($out, $err) = es_quiet_query($session,
			"SELECT partition, $cols FROM eventstore.read_partitions('$after', 100)");
		die "read_partitions failed: $session->{stderr}" if $err;
		$pages++;
		my $n = 0;
		for my $row (split /\n/, $out)
		{
			next if $row eq '';
			my ($part, $rest) = split /\|/, $row, 2;
			push @{ $got{$part} }, $rest;
			($checkpoint{$part}) = split /\|/, $rest;
			$n++;
		}
		return $n;
	};

	# The long transaction: a stream of the hot stream's shard, so that the
	# writers' appends to the hot stream draw positions above it in the
	# same partition while it is open.
	my $hot_at = placement('hot')->{hot};
	my ($long) = grep { placement($_)->{$_} eq $hot_at } map { "long-$_" } 0 .. 63;
	my $long_part = $partition_of{ (split /\|/, $hot_at)[1] };
	my $long_session = $coord->background_psql('postgres', on_error_stop => 1);
	$long_session->query_safe('BEGIN');
	my $long_pos = $long_session->query_safe(
		qq{SELECT global_position FROM eventstore.append('$long', 'Long', '{"c": 0, "s": 0, "i": 1}')});
	my $other_port = (grep { $_->port != $node_of{$long_part} } @workers)[0]->port;
	my ($other) = streams_on($other_port, 'other');
	my $other_part = $partition_of{ (split /\|/, placement($other)->{$other})[1] };
	my ($held, $other_seen, $later_committed);

	run_writers('(h) follower', [ 21 .. 23 ], 120, 'r', sub {
		# While the long transaction is open: follow for 1.5 s, and an
		# event appended on the other worker meanwhile is delivered.
		my $until = time() + 1.5;
		my $other_pos = sql($coord,
			"SELECT global_position FROM eventstore.append('$other', 'Other', '{}')");
		while (time() < $until)
		{
			usleep(2_000) if $follow->() == 0;
		}
		$other_seen = es_wait_for('the event of the other worker', 10, sub {
			$follow->();
			return scalar(grep { (split /\|/)[0] == $other_pos } @{ $got{$other_part} // [] });
		});
		$held = grep { (split /\|/)[0] > $long_pos } @{ $got{$long_part} // [] };
		my $long_shard = (split /\|/, $hot_at)[1];
		($later_committed) = map { (split /\|/)[2] }
		  grep { (split /\|/)[1] == $long_shard } stored('count(*)', "global_position > $long_pos");
		$long_session->query_safe('COMMIT');
		$follow->() for 1 .. 20;
	});
	$long_session->quit;

	cmp_ok($later_committed // 0, '>', 0,
		"(h) events of the long transaction's partition committed above its position ($long_pos) while it was open");
	is($held, 0, '(h) none of them was delivered before it committed');
	ok($other_seen,
		"(h) meanwhile an event appended to $other on the other worker was delivered");

	# Drain: until every partition has reached its highest stored position.
	my %committed;
	for (stored($cols))
	{
		my ($port, $shard, $rest) = split /\|/, $_, 3;
		push @{ $committed{ $partition_of{$shard} } }, $rest;
	}
	for my $part (keys %committed)
	{
		@{ $committed{$part} } =
		  sort { (split /\|/, $a)[0] <=> (split /\|/, $b)[0] } @{ $committed{$part} };
	}
	my $caught_up = es_wait_for('the follower to catch up',
		$PostgreSQL::Test::Utils::timeout_default,
		sub {
			$follow->();
			return !grep {
				($checkpoint{$_} // 0) < (split /\|/, $committed{$_}[-1])[0]
			} keys %committed;
		});
	ok($caught_up, "(h) the follower caught up with every partition ($pages pages)");
	is(join(' ', sort keys %got), join(' ', sort keys %committed),
		'(h) the follower received the partitions that hold events');
	my (@wrong);
	for my $part (sort keys %committed)
	{
		my @pos = map { (split /\|/)[0] } @{ $got{$part} // [] };
		push @wrong, "$part: positions not increasing"
		  if grep { $pos[$_] <= $pos[ $_ - 1 ] } 1 .. $#pos;
		my %have = map { $_ => 1 } @{ $got{$part} // [] };
		my %want = map { $_ => 1 } @{ $committed{$part} };
		my @missed = grep { !$have{$_} } @{ $committed{$part} };
		my @extra = grep { !$want{$_} } @{ $got{$part} // [] };
		push @wrong, "$part: missed " . join(' ', es_head(5, @missed)) if @missed;
		push @wrong, "$part: extra " . join(' ', es_head(5, @extra)) if @extra;
		push @wrong, "$part: not the committed sequence"
		  unless join("\n", @{ $got{$part} // [] }) eq join("\n", @{ $committed{$part} });
	}
	is(scalar(@wrong), 0,
		'(h) every partition was received whole, once, in position order')
	  or diag(join("\n", es_head(20, @wrong)));
	ok(grep({ (split /\|/)[1] eq $long } @{ $got{$long_part} }),
		'(h) the long transaction\'s event was received after its commit');
	$session->quit;
}

# ===========================================================================
# (f) reads, deletes, tombstones, commands through the coordinator
# ===========================================================================

sql($coord, q{
	SELECT eventstore.append('f-1', 'Opened', '{"n": 1}');
	SELECT eventstore.append_events('f-1',
	         '[{"type": "Added", "data": {"n": 2}}, {"type": "Added", "data": {"n": 3}, "metadata": {"m": 1}}]');
	SELECT eventstore.append('f-2', 'Opened', '{"n": 1}');
	SELECT eventstore.append('f-3', 'Opened', '{"n": 1}');
});
{
	my $cols = 'global_position, stream_version, event_id, event_type, data, metadata';
	is(sql($coord, "SELECT $cols FROM eventstore.read_stream('f-1')"),
		join("\n", map { (split /\|/, $_, 3)[2] } stream_rows('f-1', $cols)),
		'(f) read_stream returns the stored events');
	is(sql($coord, "SELECT stream_version, data->>'n' FROM eventstore.read_stream('f-1', NULL, 1, true)"),
		'3|3', '(f) read_stream backward returns the newest');
	is(sql($coord, "SELECT stream_version FROM eventstore.read_stream('f-1', 2, 1)"),
		'2', '(f) read_stream from version 2, one event');
	is(sql($coord, "SELECT eventstore.stream_version('f-1')"), '3', '(f) stream_version');

	# delete_stream: reads stop, numbering goes on, the marker $$f-1 is
	# stored in the shard of f-1.
	sql($coord, "SELECT eventstore.delete_stream('f-1')");
	is(sql($coord, "SELECT count(*) FROM eventstore.read_stream('f-1')"), '0',
		'(f) a deleted stream reads empty');
	is(sql($coord, "SELECT stream_version FROM eventstore.append('f-1', 'Reopened', '{}')"),
		'4', '(f) an append after the delete goes on at version 4');
	my ($port, $shard) = split /\|/, placement('f-1')->{'f-1'};
	is( join("\n", stored("stream_id, event_type", "stream_id = '\$\$f-1'")),
		"$port|$shard|\$\$f-1|\$deleted",
		'(f) the deletion marker is stored in the shard of its stream');

	# tombstone_stream: appends fail with ST002 through the coordinator.
	sql($coord, "SELECT eventstore.tombstone_stream('f-3')");
	my ($state, $err) = sql_state($coord, "SELECT * FROM eventstore.append('f-3', 'Added', '{}')");
	is($state, 'ST002', '(f) an append to a tombstoned stream: ST002 through the coordinator')
	  or diag($err);
	($port, $shard) = split /\|/, placement('f-3')->{'f-3'};
	is( join("\n", stored("stream_id, event_type", "stream_id = '\$\$f-3'")),
		"$port|$shard|\$\$f-3|\$tombstoned",
		'(f) the tombstone marker is stored in the shard of its stream');

	# handle_command: a counter; the functions are created on the
	# coordinator, which propagates them to the workers.
	sql($coord, q{
		CREATE FUNCTION counter_evolve(s bigint, e eventstore.event) RETURNS bigint
		LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(s, 0) + (e.data->>'n')::bigint $$;
		CREATE FUNCTION counter_decide(c jsonb, s bigint) RETURNS jsonb
		LANGUAGE sql IMMUTABLE AS $$
		  SELECT jsonb_build_array(jsonb_build_object('type', 'Added',
		           'data', jsonb_build_object('n', c->'n', 'before', s))) $$;
	});
	for my $n (5, 7)
	{
		($state, $err) = sql_state($coord, qq{
			SELECT version, state FROM eventstore.handle_command('f-2',
			  'counter_decide(jsonb,bigint)', '{"n": $n}',
			  'counter_evolve(bigint,eventstore.event)', NULL::bigint)});
		is($state, '', "(f) handle_command(n => $n) through the coordinator") or diag($err);
	}
	is( sql($coord, "SELECT stream_version, data->>'n', data->>'before' FROM eventstore.read_stream('f-2')"),
		"1|1|\n2|5|1\n3|7|6",
		'(f) the commands decided on the folded state and appended');
	is( sql($coord,
			"SELECT eventstore.aggregate_stream('f-2', 'counter_evolve(bigint,eventstore.event)', NULL::bigint)"),
		'13', '(f) aggregate_stream folds the stream');

	# What works on one total order of the log, or in the appending
	# transaction, is refused on a distributed store in this version, and
	# nothing of it is created.  (Durable subscriptions and async
	# projections work: (l), (m).)
	sql($coord, q{CREATE FUNCTION tap_handler(e eventstore.event) RETURNS void
		LANGUAGE plpgsql AS $$ BEGIN END $$});
	for my $q ('SELECT * FROM eventstore.read_all(0, 10)',
		'SELECT eventstore.global_horizon()',
		q{SELECT eventstore.create_projection('p', 'tap_handler(eventstore.event)')},
		q{SELECT eventstore.create_snapshot_policy('sp', 'counter_evolve(bigint,eventstore.event)', NULL::bigint)},
		q{SELECT eventstore.create_archive_policy('ap', '1 day')},
		# lanes split the single log by stream; a distributed store's
		# subscription pulls each partition instead (0.9.0)
		q{SELECT eventstore.create_subscription('s_lanes', lanes => 2)})
	{
		($state, $err) = sql_state($coord, $q);
		is($state, '0A000', "(f) $q on a distributed store: 0A000 (for now)") or diag($err);
	}
	is( sql($coord, 'SELECT ' . join(' + ', map { "(SELECT count(*) FROM eventstore.$_)" }
			  qw(projections subscriptions snapshot_policies archive_policies))
			  . q{ - (SELECT count(*) FROM eventstore.projections WHERE name = 'm_pre')}),
		'0', '(f) no projection or policy was created');
	placeholders_empty('(f)');
}

# ===========================================================================
# (g) shard moves
# ===========================================================================

{
	my ($port, $shard) = split /\|/, placement('hot')->{hot};
	my $from = $worker_at{$port};
	my ($to) = grep { $_ != $from } @workers;
	my $cols = 'global_position, stream_id, stream_version, event_id';

	# 300 events more on the source worker, so that its positions run far
	# ahead of the target's: positions drawn on the target after the move
	# must still be above the shard's.
	# (a literal: a call with a subquery in its arguments is not delegated)
	sql($coord, "SELECT eventstore.append_events('hot', '["
		  . join(', ', map { qq({"type": "Bulk", "data": {"b": $_}}) } 1 .. 300) . "]')");
	my @before = map { (split /\|/, $_, 3)[2] } stored($cols);
	my @shard_before = map { (split /\|/, $_, 3)[2] } grep { (split /\|/)[1] == $shard } stored($cols);
	my ($max_shard_pos) = sort { $b <=> $a } map { (split /\|/)[0] } @shard_before;
	my $hot_version = sql($coord, "SELECT eventstore.stream_version('hot')");

	my ($state, $err) = sql_state($coord, sprintf(
		q{SELECT citus_move_shard_placement(%d, '%s', %d, '%s', %d, shard_transfer_mode => 'block_writes')},
		$shard, $from->host, $from->port, $to->host, $to->port));
	is($state, '', "(g) shard $shard (the hot stream) moved from " . $from->name . ' to ' . $to->name)
	  or diag($err);
	is((split /\|/, placement('hot')->{hot})[0], $to->port, '(g) the hot stream is placed on the target');
	is_deeply([ map { (split /\|/, $_, 3)[2] } grep { (split /\|/)[1] == $shard } stored($cols) ],
		\@shard_before, '(g) the moved shard holds the same events');

	my @res;
	push @res, sql($coord, "SELECT stream_version || '|' || global_position FROM eventstore.append('hot', 'Moved', '{}')");
	push @res, sql($coord, "BEGIN; SELECT stream_version || '|' || global_position FROM eventstore.append('hot', 'Moved', '{}', NULL, "
		  . ($hot_version + 1) . "); COMMIT;");
	my @v = map { (split /\|/)[0] } @res;
	my @p = map { (split /\|/)[1] } @res;
	is("@v", join(' ', $hot_version + 1, $hot_version + 2),
		'(g) appends after the move go on at version n+1');
	ok($p[0] > $max_shard_pos && $p[1] > $p[0],
		"(g) their positions ($p[0], $p[1]) are above every earlier one of the shard ($max_shard_pos)");
	my @after = map { (split /\|/, $_, 3)[2] } stored($cols);
	my %before = map { $_ => 1 } @before;
	my @new = grep { !$before{$_} } @after;
	is(scalar(@after), scalar(@before) + 2, '(g) nothing lost or duplicated by the move');
	is(scalar(@new), 2, '(g) the two new events are the only change');
	placeholders_empty('(g)');

	# Move it back while writers append (to the hot stream, on the shard
	# being moved, and to their own streams): once they have committed
	# some transactions, and they must commit more after the move.
	my ($moved, @acked);
	my $acked = sub {
		my $n = eval { scalar(keys %{ $writers->acknowledged(11 .. 13) }) };
		return $n // 0;
	};
	run_writers('(g) move during the load', [ 11 .. 13 ], 120, 'm', sub {
		es_wait_for('writers to commit', $PostgreSQL::Test::Utils::timeout_default,
			sub { $acked->() >= 20 });
		push @acked, $acked->();
		($moved, $err) = sql_state($coord, sprintf(
			q{SELECT citus_move_shard_placement(%d, '%s', %d, '%s', %d, shard_transfer_mode => 'block_writes')},
			$shard, $to->host, $to->port, $from->host, $from->port));
		push @acked, $acked->();
	});
	push @acked, $acked->();
	is($moved, '', '(g) the shard moved back during the load') or diag($err);
	ok($acked[0] > 0 && $acked[2] > $acked[1],
		"(g) writers committed before the move and after it (@acked)");
	is((split /\|/, placement('hot')->{hot})[0], $from->port, '(g) the hot stream is back on its first worker');
	my @hot = sort { $a->[0] <=> $b->[0] }
	  map { my @f = split /\|/; [ $f[3], $f[2] ] } stream_rows('hot', 'global_position, stream_version');
	ok(!grep({ $hot[$_][1] <= $hot[ $_ - 1 ][1] } 1 .. $#hot),
		'(g) the hot stream\'s positions increase over both moves');
}

# ===========================================================================
# (g2) the placement lock is taken before Citus routes, however the stream
# id is written
# ===========================================================================

for my $call (q{SELECT eventstore.append('lock-1', 'T', '{}')},
	q{SELECT eventstore.append('lock-' || '2', 'T', '{}')},
	q{PREPARE lk(text) AS SELECT eventstore.append('lock-' || $1, 'T', '{}'); EXECUTE lk('3')})
{
	my $held = sql($coord, qq{
		BEGIN;
		$call;
		SELECT count(*) FROM pg_locks
		 WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 8
		   AND mode = 'ShareLock';
		COMMIT;});
	($held) = (split /\n/, $held)[-1];
	cmp_ok($held, '>=', 1, "(g2) Citus's placement lock held on the coordinator: $call");
}

# ===========================================================================
# (k) notifications: each worker notifies its own listeners
# ===========================================================================

for my $w (@workers)
{
	my ($stream) = streams_on($w->port, 'notify');
	my $listener = $w->background_psql('postgres', on_error_stop => 1);
	$listener->query_safe('LISTEN eventstore_events');
	my $pos = sql($coord,
		"SELECT global_position FROM eventstore.append('$stream', 'Notified', '{}')");
	my $payload = 0;
	# psql prints a notification after the next command it runs
	es_wait_for('a notification on ' . $w->name, 10, sub {
		my $out = $listener->query_safe('SELECT 1');
		($payload) = $out =~ /Asynchronous notification "eventstore_events" with payload "(\d+)"/;
		return defined $payload && $payload >= $pos;
	});
	cmp_ok($payload // 0, '>=', $pos,
		'(k) ' . $w->name . ' notified its listener of the append to ' . $stream);
	$listener->quit;
}

# ===========================================================================
# (j) shard splits
# ===========================================================================

{
	# A follower's checkpoint of every partition, taken before the split.
	my $vector = sql($coord, q{
		SELECT jsonb_object_agg(partition, last)
		  FROM (SELECT partition, max(global_position) AS last
		          FROM eventstore.read_partitions('{}', 100000000) GROUP BY 1) p});

	# A shard that holds the lifecycle marker of a stream stored elsewhere by
	# Citus's hash ($$S is stored with S): Citus refuses to split it, and
	# nothing changes.
	my $foreign_marker = sub {
		for (stored('stream_id', q{stream_id LIKE '$$%'}))
		{
			my ($port, $shard, $stream) = split /\|/;
			return $shard
			  if sql($coord, "SELECT get_shard_id_for_distribution_column('eventstore.events', '$stream')")
			  != $shard;
		}
		return undef;
	};
	# (f) left markers; make sure one of them is stored off its hash
	for my $n (1 .. 20)
	{
		last if defined $foreign_marker->();
		sql($coord, "SELECT eventstore.append('split-del-$n', 'Added', '{}')");
		sql($coord, "SELECT eventstore.delete_stream('split-del-$n')");
	}
	my $marker_shard = $foreign_marker->();
	ok(defined $marker_shard, '(j) a marker stored off its hash') or $marker_shard = 0;
	my $nshards = sql($coord,
		q{SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'eventstore.events'::regclass});
	my ($lo, $hi) = split /\|/, sql($coord,
		"SELECT shardminvalue, shardmaxvalue FROM pg_dist_shard WHERE shardid = $marker_shard");
	my $node_ids = sql($coord, q{
		SELECT string_agg(nodeid::text, ',' ORDER BY nodeport) FROM pg_dist_node
		 WHERE groupid <> 0});
	my ($state, $err) = sql_state($coord,
		"SELECT citus_split_shard_by_split_points($marker_shard, ARRAY['"
		  . int(($lo + $hi) / 2) . "'], ARRAY[$node_ids], 'block_writes')");
	isnt($state, '', "(j) a shard holding a marker whose hash lies elsewhere is not split ($state)")
	  or diag($err);
	is(sql($coord,
		q{SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'eventstore.events'::regclass}),
		$nshards, '(j) the shards are as they were');

	# A shard without markers: split in two, one half on each worker; after
	# align_positions, appends to streams of both halves are drawn above
	# the checkpoint of the range they come from, and a follower that goes
	# on from its checkpoint receives exactly them, each once.
	my %marker_shards = map { (split /\|/)[1] => 1 } stored('stream_id', q{stream_id LIKE '$$%'});
	my ($plain_shard) = grep { !$marker_shards{$_} } split /\n/, sql($coord, q{
		SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'eventstore.events'::regclass
		 ORDER BY shardid});
	($lo, $hi) = split /\|/, sql($coord,
		"SELECT shardminvalue, shardmaxvalue FROM pg_dist_shard WHERE shardid = $plain_shard");
	my $mid = int(($lo + $hi) / 2);
	($state, $err) = sql_state($coord,
		"SELECT citus_split_shard_by_split_points($plain_shard, ARRAY['$mid'], ARRAY[$node_ids], 'block_writes')");
	is($state, '', "(j) shard $plain_shard split at $mid") or diag($err);
	cmp_ok(sql($coord, 'SELECT eventstore.align_positions()'), '>', 0,
		'(j) align_positions after the split');

	# streams of each half
	my @halves = split /\n/, sql($coord, qq{
		SELECT shardid FROM pg_dist_shard
		 WHERE logicalrelid = 'eventstore.events'::regclass
		   AND shardminvalue::int >= $lo AND shardmaxvalue::int <= $hi ORDER BY 1});
	is(scalar(@halves), 2, '(j) two shards cover the range that was split');
	my %want;
	my $at = placement(map { "split-$_" } 0 .. 199);
	for my $half (@halves)
	{
		my @streams = grep { (split /\|/, $at->{$_})[1] == $half } sort keys %$at;
		ok(@streams >= 2, "(j) streams of shard $half") or next;
		for my $stream (@streams[0 .. 1])
		{
			my $pos = sql($coord,
				"SELECT global_position FROM eventstore.append('$stream', 'AfterSplit', '{}')");
			$want{"$stream|$pos"} = 1;
		}
	}
	my $after = sql($coord, qq{
		SELECT string_agg(stream_id || '|' || global_position, E'\\n' ORDER BY stream_id)
		  FROM eventstore.read_partitions('$vector', 100000)});
	is_deeply({ map { $_ => 1 } grep { $_ ne '' } split /\n/, $after }, \%want,
		'(j) the follower goes on from its checkpoint: exactly the events appended after the split')
	  or diag("after: $after");
}

# ===========================================================================
# (l) durable subscriptions, pulled per partition, competing consumers
# ===========================================================================

{
	my $python = es_python();
	my $clients = 'test/t/subscription_clients.py';
	# The read model on the coordinator (local tables), as in
	# 008_subscription_consumers.pl: a plain INSERT, so that a second
	# delivery that is applied raises.
	sql($coord, q{
		CREATE TABLE applied (
		    subscription    text NOT NULL,
		    global_position bigint NOT NULL,
		    stream_id       text NOT NULL,
		    stream_version  bigint NOT NULL,
		    consumer        text NOT NULL,
		    attempt         integer NOT NULL,
		    applied_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
		    PRIMARY KEY (subscription, global_position));
		CREATE FUNCTION test_apply(p_sub text, p_consumer text, p_strict boolean,
		                           p_position bigint, p_stream text, p_version bigint,
		                           p_attempt integer, p_n bigint)
		RETURNS text LANGUAGE sql AS $$
		    INSERT INTO applied (subscription, global_position, stream_id, stream_version,
		                         consumer, attempt)
		    VALUES (p_sub, p_position, p_stream, p_version, p_consumer, p_attempt);
		    SELECT NULL::text;
		$$;
		SELECT eventstore.create_subscription('l_all', start_from => -1,
		                                      lease_timeout => '5 seconds');
		SELECT eventstore.create_subscription('l_rare', ARRAY['Rare'], start_from => -1);
	});
	my %partition_of = map { split /\|/ } split /\n/, sql($coord, q{
		SELECT shardid, shardminvalue FROM pg_dist_shard
		 WHERE logicalrelid = 'eventstore.events'::regclass});
	my $vector = sql($coord, "SELECT pulled_partitions FROM eventstore.subscriptions WHERE name = 'l_all'");
	my %start = $vector =~ /"(-?\d+)": (\d+)/g;
	is( join(' ', sort { $a <=> $b } keys %start),
		join(' ', sort { $a <=> $b } values %partition_of),
		'(l) start_from -1: a checkpoint for every partition (its horizon)');
	# where a partition continues: the entry of the greatest partition not
	# above it (read_partitions' rule)
	my $after = sub {
		my ($vec, $part) = @_;
		my ($key) = sort { $b <=> $a } grep { $_ <= $part } keys %$vec;
		return defined $key ? $vec->{$key} : 0;
	};

	my $dir = "$PostgreSQL::Test::Utils::log_path/016_consumers";
	rmtree($dir);
	mkdir($dir) or die "could not create $dir: $!";
	my %pid;
	for my $c (1 .. 3)
	{
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			open(STDOUT, '>>', "$dir/c$c.out") or POSIX::_exit(126);
			open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
			exec($python, $clients, 'consume', '--dsn', $coord->connstr('postgres'),
				'--subscription', 'l_all', '--name', "c$c", '--dir', $dir,
				'--stop', 'stop', '--max-count', 20,
				'--vary-count', '--hold', 0.01, '--lease-timeout', 5)
			  or POSIX::_exit(127);
		}
		$pid{$c} = $pid;
	}

	# The writers of (b), and meanwhile events of type Rare in one stream.
	my @rare;
	run_writers('(l) subscription', [ 31 .. 33 ], 100, 'l', sub {
		for my $i (1 .. 3)
		{
			usleep(200_000);
			push @rare, sql($coord,
				"SELECT global_position FROM eventstore.append('rare-1', 'Rare', '{\"n\": $i}')");
		}
	});

	# Everything appended since the subscription was created, read on the
	# workers: "position|stream|version".
	my %want;
	for (stored('global_position, stream_id, stream_version'))
	{
		my ($port, $shard, $pos, $stream, $v) = split /\|/;
		$want{$pos} = "$stream|$v" if $pos > $after->(\%start, $partition_of{$shard});
	}
	cmp_ok(scalar(keys %want), '>', 100, '(l) the writers appended after the subscription began');
	my $applied_sql = q{SELECT count(*) FROM applied WHERE subscription = 'l_all'};
	my $drained = es_wait_for('the consumers to apply every event',
		$PostgreSQL::Test::Utils::timeout_default * 2,
		sub { sql($coord, $applied_sql) >= scalar(keys %want) });
	ok($drained, '(l) the consumers applied as many events as were appended');
	# a while longer: nothing more (a duplicate) may arrive
	usleep(500_000);
	es_write_file("$dir/stop", '');
	for my $c (sort keys %pid)
	{
		waitpid($pid{$c}, 0);
		is($? >> 8, 0, "(l) consumer c$c exited cleanly");
	}

	my %got;
	my @dup;
	for (split /\n/, sql($coord, q{
		SELECT global_position, stream_id, stream_version FROM applied
		 WHERE subscription = 'l_all' ORDER BY global_position}))
	{
		my ($pos, $stream, $v) = split /\|/;
		push @dup, $pos if exists $got{$pos};
		$got{$pos} = "$stream|$v";
	}
	is_deeply(\%got, \%want,
		'(l) the events applied are those appended after the subscription began, as stored in the shards');
	is(sql($coord, q{SELECT count(*) FROM eventstore.subscription_events WHERE subscription = 'l_all'}),
		'0', '(l) every event was acknowledged');
	my @bad = grep { /^(?:ERROR|DUPLICATE|STOLEN|VIOLATION)/ }
	  map { es_slurp_lines("$dir/c$_.log") } sort keys %pid;
	is(scalar(@bad), 0, '(l) no consumer saw an error, a duplicate or a stolen lease')
	  or diag(join("\n", es_head(20, @bad)));
	cmp_ok(sql($coord, q{SELECT count(DISTINCT consumer) FROM applied WHERE subscription = 'l_all'}),
		'>=', 2, '(l) the consumers competed');
	# Per-stream order: in the order applied (each in the transaction of its
	# ack), every stream's versions follow each other.
	is( sql($coord, q{
			SELECT count(*) FROM (
			    SELECT stream_version - lag(stream_version) OVER w AS step
			      FROM applied WHERE subscription = 'l_all'
			    WINDOW w AS (PARTITION BY stream_id ORDER BY applied_at, global_position)) x
			 WHERE step <> 1}),
		'0', '(l) each stream was applied in its order, no version skipped');
	is( sql($coord, q{
			SELECT position IS NULL, pulled_position IS NULL, lag_events IS NULL,
			       lag_time IS NULL, in_flight, parked, pulled_partitions IS NOT NULL
			  FROM eventstore.subscription_status WHERE name = 'l_all'}),
		't|t|t|t|0|0|t',
		'(l) subscription_status: no single checkpoint or lag on a distributed store, nothing in flight');

	# The filtered subscription: its events are in one partition; after a
	# fetch, every partition's checkpoint is at or above its highest stored
	# position, past the events that do not match.
	my @rare_got;
	for (1 .. 10)
	{
		my $rows = sql($coord, q{
			SELECT string_agg(global_position || ':' || event_type || ':' || (data->>'n'), ' '
			                  ORDER BY global_position)
			  FROM eventstore.subscription_fetch('l_rare', 'r', 100)});
		last if $rows eq '';
		push @rare_got, split / /, $rows;
		sql($coord, q{SELECT eventstore.subscription_ack('l_rare', 'r',
			ARRAY(SELECT global_position FROM eventstore.subscription_events
			       WHERE subscription = 'l_rare'))});
	}
	is("@rare_got", join(' ', map { "$rare[$_ - 1]:Rare:$_" } 1 .. 3),
		'(l) the filtered subscription delivered its three events');
	my %rare_vec = sql($coord, "SELECT pulled_partitions FROM eventstore.subscriptions WHERE name = 'l_rare'")
	  =~ /"(-?\d+)": (\d+)/g;
	my %highest;
	for (stored('max(global_position)'))
	{
		my ($port, $shard, $max) = split /\|/;
		$highest{ $partition_of{$shard} } = $max if $max ne '';
	}
	my @behind = grep { $after->(\%rare_vec, $_) < $highest{$_} } sort keys %highest;
	is(scalar(@behind), 0,
		'(l) the filtered subscription\'s checkpoint passed the events of every partition, matching or not')
	  or diag("behind: @behind; vector " . join(', ', map { "$_: $rare_vec{$_}" } sort keys %rare_vec));

	# A consumer that is not a superuser and has only the subscription
	# grants on the coordinator, with a search_path that plants operators
	# and functions a fetch uses before pg_catalog: it gets the new event,
	# no planted code runs (the fetch's path is pinned, what the nodes run
	# is qualified), and it needs no grant on the workers.
	sql($coord, q{
		CREATE ROLE l_consumer LOGIN;
		GRANT USAGE ON SCHEMA eventstore TO l_consumer;
		GRANT EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
		                          eventstore.subscription_ack(text, text, bigint[]) TO l_consumer;
		CREATE TABLE l_canary (who text, what text);
		GRANT INSERT ON l_canary TO PUBLIC;
		CREATE SCHEMA l_atk AUTHORIZATION l_consumer;
	});
	my $plant = q{
		SET ROLE l_consumer;
		CREATE FUNCTION l_atk.hit(what text) RETURNS boolean LANGUAGE sql AS
		  $$ INSERT INTO public.l_canary VALUES (current_user, what); SELECT true $$;
		CREATE FUNCTION l_atk.eq(a text, b text) RETURNS boolean LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('=') THEN a OPERATOR(pg_catalog.=) b END $$;
		CREATE OPERATOR l_atk.= (LEFTARG = text, RIGHTARG = text, FUNCTION = l_atk.eq);
		CREATE FUNCTION l_atk.exists(a jsonb, b text) RETURNS boolean LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('?') THEN a OPERATOR(pg_catalog.?) b END $$;
		CREATE OPERATOR l_atk.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = l_atk.exists);
		CREATE FUNCTION l_atk.get(a jsonb, b text) RETURNS jsonb LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('->') THEN a OPERATOR(pg_catalog.->) b END $$;
		CREATE OPERATOR l_atk.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = l_atk.get);
		CREATE FUNCTION l_atk.cat(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('||') THEN a OPERATOR(pg_catalog.||) b END $$;
		CREATE OPERATOR l_atk.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = l_atk.cat);
		CREATE FUNCTION l_atk.jsonb_build_object(text, bigint) RETURNS jsonb LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('jsonb_build_object') THEN '{}'::jsonb END $$;
		CREATE FUNCTION l_atk.jsonb_object_keys(jsonb) RETURNS SETOF text LANGUAGE sql AS
		  $$ SELECT 'x' WHERE l_atk.hit('jsonb_object_keys') $$;
		CREATE FUNCTION l_atk.jsonb_each_text(jsonb, OUT key text, OUT value text) RETURNS SETOF record
		  LANGUAGE sql AS $$ SELECT 'x', 'y' WHERE l_atk.hit('jsonb_each_text') $$;
		CREATE FUNCTION l_atk.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS
		  $$ SELECT CASE WHEN l_atk.hit('jsonb_typeof') THEN 'object' END $$;
		CREATE FUNCTION l_atk.is_distributed() RETURNS boolean LANGUAGE sql AS
		  $$ SELECT l_atk.hit('is_distributed') $$;
		RESET ROLE;
	};
	sql($coord, $plant);
	# the control: with that path, the caller's own query runs them
	{
		my ($r, $o, $e) = $coord->psql('postgres', q{SET search_path = l_atk, pg_catalog, public;
			SELECT 'a'::text = 'b'::text, '{}'::jsonb ? 'a'}, extra_params => [ '-U', 'l_consumer' ]);
		is($r, 0, '(l) the control query ran') or diag($e);
	}
	is(sql($coord, q{SELECT string_agg(what, ' ' ORDER BY what) FROM l_canary}), '= ?',
		'(l) the planted operators run in the caller\'s own query');
	sql($coord, 'TRUNCATE l_canary');
	my $rare4 = sql($coord, q{SELECT global_position FROM eventstore.append('rare-1', 'Rare', '{"n": 4}')});
	my ($ret, $out, $err) = $coord->psql('postgres', q{
		SET search_path = l_atk, pg_catalog, public;
		SELECT global_position, event_type, data->>'n' FROM eventstore.subscription_fetch('l_rare', 'lc', 10);
		SELECT eventstore.subscription_ack('l_rare', 'lc',
		         ARRAY(SELECT global_position FROM eventstore.subscription_fetch('l_rare', 'lc', 10)));
	}, extra_params => [ '-U', 'l_consumer' ]);
	is($ret, 0, '(l) a consumer without superuser rights fetches on the coordinator') or diag($err);
	like($out, qr/^\Q$rare4\E\|Rare\|4\n0$/, '(l) it got the new event, once') or diag($out);
	is(sql($coord, q{SELECT count(*) FROM l_canary}), '0',
		'(l) no planted operator or function ran in the fetch')
	  or diag(sql($coord, q{SELECT who, what, count(*) FROM l_canary GROUP BY 1, 2}));

	# The same role reading the partitions itself, granted on every node, a
	# fresh session (its shard map is loaded under that path): the rows the
	# owner reads, and nothing planted runs.
	sql($coord, q{SELECT run_command_on_all_nodes($$GRANT EXECUTE ON FUNCTION
		eventstore.read_partitions(jsonb, bigint, text[], text, integer[]),
		eventstore.partition_horizons() TO l_consumer$$)});
	my $all = sql($coord, q{SELECT count(*), sum(global_position) FROM eventstore.read_partitions('{}', 1000000)});
	my $parts = sql($coord, q{SELECT count(*) FROM eventstore.partition_horizons()});
	($ret, $out, $err) = $coord->psql('postgres', q{
		SET search_path = l_atk, pg_catalog, public;
		SELECT count(*), sum(global_position) FROM eventstore.read_partitions('{}', 1000000);
		SELECT count(*) FROM eventstore.partition_horizons();
	}, extra_params => [ '-U', 'l_consumer' ]);
	is($ret, 0, '(l) the consumer reads the partitions with the planted path') or diag($err);
	is($out, "$all\n$parts", '(l) it reads what the owner reads');
	is(sql($coord, q{SELECT count(*) FROM l_canary}), '0',
		'(l) no planted operator or function ran in read_partitions or partition_horizons')
	  or diag(sql($coord, q{SELECT who, what, count(*) FROM l_canary GROUP BY 1, 2}));
	placeholders_empty('(l)');
}

# ===========================================================================
# (m) async projections, run by the coordinator's projector per partition
# ===========================================================================

{
	# A role that is not a superuser owns the projections and their read
	# model on the coordinator; it has no grant on read_partitions anywhere.
	sql($coord, q{
		CREATE ROLE m_owner LOGIN;
		GRANT USAGE ON SCHEMA eventstore TO m_owner;
		GRANT EXECUTE ON FUNCTION
		    eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer),
		    eventstore.wait_for_projection(text, interval),
		    eventstore.retry_projection(text),
		    eventstore.rebuild_projection(text) TO m_owner;
		CREATE SCHEMA m AUTHORIZATION m_owner;
	});
	my $as_owner = sub {
		my ($q) = @_;
		my ($ret, $out, $err) = $coord->psql('postgres', $q,
			extra_params => [ '-U', 'm_owner', '-v', 'ON_ERROR_STOP=1' ]);
		return ($ret, $out, $err);
	};
	# The handler fails on a Poison event until m.poison_ok says otherwise;
	# a plain INSERT, so that an event handled twice raises.
	my ($ret, $out, $err) = $as_owner->(q{
		CREATE TABLE m.seen (projection text, global_position bigint, stream_id text,
		                     stream_version bigint, event_type text, run_as text,
		                     PRIMARY KEY (projection, global_position));
		CREATE TABLE m.poison_ok (ok boolean NOT NULL);
		INSERT INTO m.poison_ok VALUES (false);
		CREATE FUNCTION m.handle(e eventstore.event, name text) RETURNS void
		LANGUAGE plpgsql AS $$
		BEGIN
		    IF e.event_type = 'Poison' AND NOT (SELECT ok FROM m.poison_ok) THEN
		        RAISE EXCEPTION 'poisoned at %', e.global_position;
		    END IF;
		    INSERT INTO m.seen VALUES (name, e.global_position, e.stream_id, e.stream_version,
		                               e.event_type, current_user);
		END $$;
		SELECT eventstore.create_projection('m_all', 'm.handle(eventstore.event, text)',
		                                    mode => 'async');
		SELECT eventstore.create_projection('m_new', 'm.handle(eventstore.event, text)',
		                                    mode => 'async', replay => false);
		SELECT eventstore.create_projection('m_hot', 'm.handle(eventstore.event, text)',
		                                    stream_prefix => 'hot', mode => 'async');
	});
	is($ret, 0, '(m) a role that is not a superuser creates async projections') or diag($err);

	# One more, created under a search_path that plants operators and
	# functions before pg_catalog (l_atk, of (l)), which becomes its
	# recorded path: the projector pulls the partitions for it as a
	# superuser, under a pinned path, so the planted code never runs; the
	# handler (which uses none of it) sees every event.
	sql($coord, 'GRANT USAGE ON SCHEMA l_atk TO m_owner; TRUNCATE l_canary');
	($ret, $out, $err) = $as_owner->(q{
		CREATE TABLE m.atk_seen (global_position bigint PRIMARY KEY);
		CREATE FUNCTION m.atk_handle(e eventstore.event) RETURNS void
		LANGUAGE sql AS $$ INSERT INTO m.atk_seen VALUES (e.global_position) $$;
		SET search_path = l_atk, pg_catalog, public;
		SELECT eventstore.create_projection('m_atk', 'm.atk_handle(eventstore.event)', mode => 'async');
	});
	is($ret, 0, '(m) the owner creates a projection under a planted search_path') or diag($err);
	my ($state, $e) = sql_state($coord, q{
		SELECT eventstore.create_projection('m_inline', 'm.handle(eventstore.event, text)')});
	is($state, '0A000', '(m) an inline projection is refused with 0A000');
	like($e, qr/HINT:.*mode => 'async'/, '(m) ... with a HINT to make it async');
	is(sql($coord, q{SELECT count(*) FROM eventstore.projections WHERE name = 'm_inline'}), '0',
		'(m) ... and nothing is registered');

	my %partition_of = map { split /\|/ } split /\n/, sql($coord, q{
		SELECT shardid, shardminvalue FROM pg_dist_shard
		 WHERE logicalrelid = 'eventstore.events'::regclass});
	my %start = sql($coord, "SELECT partitions FROM eventstore.projection_checkpoints WHERE name = 'm_new'")
	  =~ /"(-?\d+)": (\d+)/g;
	is( join(' ', sort { $a <=> $b } keys %start),
		join(' ', sort { $a <=> $b } values %partition_of),
		'(m) replay => false: a checkpoint for every partition (its horizon)');
	my $after = sub {
		my ($vec, $part) = @_;
		my ($key) = sort { $b <=> $a } grep { $_ <= $part } keys %$vec;
		return defined $key ? $vec->{$key} : 0;
	};

	# Writers as in (b); meanwhile a Poison event, and the hot stream's
	# shard moves to the other worker.
	my ($poison, $moved);
	my ($hot_port, $hot_shard) = split /\|/, placement('hot')->{hot};
	my ($from) = grep { $_->port == $hot_port } @workers;
	my ($to) = grep { $_->port != $hot_port } @workers;
	run_writers('(m) projections', [ 41 .. 43 ], 80, 'mp', sub {
		usleep(300_000);
		$poison = sql($coord,
			q{SELECT global_position FROM eventstore.append('poison-1', 'Poison', '{}')});
		usleep(300_000);
		($moved, my $err) = sql_state($coord, sprintf(
			q{SELECT citus_move_shard_placement(%d, '%s', %d, '%s', %d, shard_transfer_mode => 'block_writes')},
			$hot_shard, $from->host, $from->port, $to->host, $to->port));
		diag($err) if $moved ne '';
	});
	is($moved, '', '(m) the hot stream\'s shard moved while the writers ran');

	# The poison event holds back its projections until it is retried.
	my $failing = es_wait_for('the projections to fail at the poison event',
		$PostgreSQL::Test::Utils::timeout_default,
		sub { sql($coord, q{SELECT count(*) FROM eventstore.projection_status
		                     WHERE name IN ('m_all', 'm_new') AND state = 'failing'}) eq '2' });
	ok($failing, '(m) both projections that see the poison event are failing');
	is( sql($coord, q{SELECT string_agg(name || ':' || (error_position = } . $poison
			  . q{) || ':' || (last_error LIKE '%poisoned at } . $poison . q{%'), ' ' ORDER BY name)
		  FROM eventstore.projection_status WHERE state = 'failing'}),
		'm_all:true:true m_new:true:true',
		'(m) each records the poison event\'s position and the handler\'s error');
	is(sql($coord, q{SELECT count(*) FROM m.seen WHERE event_type = 'Poison'}), '0',
		'(m) the poison event is not in the read model');

	# Retried once the handler accepts it, both catch up.
	sql($coord, 'UPDATE m.poison_ok SET ok = true');
	($ret, $out, $err) = $as_owner->(q{
		SELECT eventstore.retry_projection('m_all'), eventstore.retry_projection('m_new');
		SELECT eventstore.wait_for_projection(n, '60 s') FROM unnest(ARRAY['m_all', 'm_new', 'm_hot']) n;
	});
	is($ret, 0, '(m) the owner retries and waits') or diag($err);
	is($out, "|\nt\nt\nt", '(m) wait_for_projection: every projection caught up');

	# Each read model equals a recomputation from the events stored in the
	# shards, read on the workers (no deleted stream since (f)? every event
	# of a deleted stream is hidden from the projections too: compare with
	# what read_partitions returns).
	my $visible = sql($coord, q{
		SELECT string_agg(global_position || ':' || stream_id || ':' || stream_version, ' '
		                  ORDER BY global_position)
		  FROM eventstore.read_partitions('{}', 1000000)});
	my %part_of_pos = map { split /\|/ } split /\n/, sql($coord, q{
		SELECT global_position, partition FROM eventstore.read_partitions('{}', 1000000)});
	my @all = split / /, $visible;
	my $seen = sub {
		my ($name) = @_;
		return sql($coord, qq{
			SELECT coalesce(string_agg(global_position || ':' || stream_id || ':' || stream_version, ' '
			                           ORDER BY global_position), '')
			  FROM m.seen WHERE projection = '$name'});
	};
	cmp_ok(scalar(@all), '>', 200, '(m) the store has events to project');
	is($seen->('m_all'), $visible, '(m) m_all (replayed from the start) equals a recomputation');
	is( $seen->('m_new'),
		join(' ', grep { my ($pos) = split /:/; $pos > $after->(\%start, $part_of_pos{$pos}) } @all),
		'(m) m_new (from its creation on) equals a recomputation of the events after its checkpoints');
	is($seen->('m_hot'), join(' ', grep { /^\d+:hot/ } @all),
		'(m) m_hot (stream_prefix) equals a recomputation of its streams');
	is(sql($coord, q{SELECT eventstore.wait_for_projection('m_atk', '60 s')}), 't',
		'(m) m_atk caught up');
	is( sql($coord, q{SELECT coalesce(string_agg(global_position::text, ' ' ORDER BY global_position), '')
		                FROM m.atk_seen}),
		join(' ', map { (split /:/)[0] } @all),
		'(m) m_atk, recorded with the planted path, equals a recomputation');
	is(sql($coord, 'SELECT count(*) FROM l_canary'), '0',
		'(m) ... and no planted operator or function ran (pull, checkpoints, handler)')
	  or diag(sql($coord, q{SELECT who, what, count(*) FROM l_canary GROUP BY 1, 2}));
	# m_pre has run since (a): it may have handled events of streams that
	# (f) deleted later, which a recomputation now hides (their lifecycle
	# marker is visible instead)
	is(sql($coord, q{SELECT eventstore.wait_for_projection('m_pre', '60 s')}), 't',
		'(m) m_pre, created before distribute(), caught up');
	{
		my %vis = map { $_ => 1 } @all;
		my @pre = split / /, sql($coord, q{
			SELECT string_agg(global_position || ':' || stream_id || ':' || stream_version, ' '
			                  ORDER BY global_position) FROM pre_seen});
		my %pre = map { $_ => 1 } @pre;
		my %marked = map { (split /:/)[1] =~ /^\$\$(.*)$/ ? ($1 => 1) : () } @all;
		my @missed = grep { !$pre{$_} } @all;
		my @extra = grep { !$vis{$_} && !$marked{ (split /:/)[1] } } @pre;
		is(scalar(@missed) + scalar(@extra), 0,
			'(m) m_pre equals the recomputation, but for events of streams deleted after it handled them')
		  or diag('missed: ' . join(' ', es_head(5, @missed)) . '; extra: ' . join(' ', es_head(5, @extra)));
		is(scalar(@pre), scalar(keys %pre), '(m) ... each event once');
	}
	is(sql($coord, q{SELECT string_agg(DISTINCT run_as, ' ') FROM m.seen}), 'm_owner',
		'(m) the handlers ran as the projections\' owner');
	is( sql($coord, q{
			SELECT string_agg(name || ':' || state || ':' || (position IS NULL) || ':'
			                  || (lag_events IS NULL) || ':' || error_count || ':'
			                  || (partitions IS NOT NULL), ' ' ORDER BY name)
			  FROM eventstore.projection_status}),
		'm_all:running:true:true:0:true m_atk:running:true:true:0:true m_hot:running:true:true:0:true'
		  . ' m_new:running:true:true:0:true'
		  . ' m_pre:running:true:true:0:true',
		'(m) projection_status: running, no single position or lag, errors cleared');

	# A rebuild: the owner clears the read model in the same transaction.
	($ret, $out, $err) = $as_owner->(q{
		BEGIN;
		SELECT eventstore.rebuild_projection('m_all');
		DELETE FROM m.seen WHERE projection = 'm_all';
		COMMIT;
		SELECT eventstore.wait_for_projection('m_all', '60 s');
	});
	is($ret, 0, '(m) the owner rebuilds m_all') or diag($err);
	is($seen->('m_all'), $visible, '(m) the rebuilt read model equals the recomputation again');
	placeholders_empty('(m)');
}

# ===========================================================================
# (n) one order of the whole log, opted into with eventstore.total_order
# ===========================================================================

{
	my ($state, $e) = sql_state($coord, 'SELECT * FROM eventstore.read_all(0, 10)');
	is($state, '0A000', '(n) read_all without eventstore.total_order: 0A000');
	like($e, qr/HINT:.*read_partitions.*eventstore\.total_order = on/,
		'(n) ... with a HINT naming read_partitions and eventstore.total_order');
	($state, $e) = sql_state($coord, q{
		SET ROLE m_owner; SET eventstore.total_order = on});
	is($state, '42501', '(n) a role that is not a superuser cannot turn eventstore.total_order on');

	my $cols = "global_position, stream_id, stream_version";
	my $session = es_connect_follower($coord, 'total order follower');
	$session->query_safe('SET eventstore.total_order = on');
	my ($last, @got, $pages) = (0);
	my $follow = sub {
		my ($out, $err) = es_quiet_query($session,
			"SELECT $cols FROM eventstore.read_all($last, 50)");
		die "read_all failed: $session->{stderr}" if $err;
		$pages++;
		my $n = 0;
		for my $row (split /\n/, $out)
		{
			next if $row eq '';
			push @got, $row;
			($last) = split /\|/, $row;
			$n++;
		}
		return $n;
	};
	# caught up with what is stored: two empty pages in a row
	my $empty = 0;
	es_wait_for('the total-order follower to catch up', $PostgreSQL::Test::Utils::timeout_default,
		sub { $empty = $follow->() ? 0 : $empty + 1; return $empty >= 2; });
	my $start = scalar(@got);

	# A long transaction on one worker, and events appended on the other
	# meanwhile: nothing above the long transaction's position is delivered
	# from any partition until it commits.
	my $hot_at = placement('hot')->{hot};
	my ($long) = grep { placement($_)->{$_} eq $hot_at } map { "n-long-$_" } 0 .. 63;
	my $long_session = $coord->background_psql('postgres', on_error_stop => 1);
	$long_session->query_safe('BEGIN');
	my $long_pos = $long_session->query_safe(
		qq{SELECT global_position FROM eventstore.append('$long', 'Long', '{}')});
	my ($held, $later_committed);
	run_writers('(n) total order', [ 51 .. 53 ], 80, 'n', sub {
		my $until = time() + 1.5;
		while (time() < $until)
		{
			usleep(5_000) if $follow->() == 0;
		}
		$held = grep { (split /\|/)[0] > $long_pos } @got;
		($later_committed) = sql($coord, "SELECT count(*) FROM eventstore.read_partitions('{}', 1000000)
		                                   WHERE global_position > $long_pos");
		$long_session->query_safe('COMMIT');
	});
	$long_session->quit;
	cmp_ok($later_committed, '>', 0,
		"(n) events above the long transaction's position ($long_pos) committed while it was open");
	is($held, 0, '(n) none of them was delivered before it committed');

	# Then everything, once, in position order: what read_partitions
	# returns of every partition, merged.
	my @want = split /\n/, sql($coord, "SELECT $cols FROM eventstore.read_partitions('{}', 1000000)
	                                     ORDER BY global_position");
	my $caught_up = es_wait_for('the total-order follower to catch up again',
		$PostgreSQL::Test::Utils::timeout_default,
		sub { $follow->(); return $last >= (split /\|/, $want[-1])[0]; });
	ok($caught_up, "(n) the follower caught up ($pages pages)");
	my @pos = map { (split /\|/)[0] } @got;
	ok(!grep({ $pos[$_] <= $pos[ $_ - 1 ] } 1 .. $#pos), '(n) positions only increase: nothing repeated');
	is(join("\n", @got), join("\n", @want), '(n) the follower received every event, once, in one order');

	# A last event on one worker only: the other worker, idle, is lifted
	# so that it does not hold the order back.
	my ($one) = streams_on($workers[0]->port, 'n-one');
	my $one_pos = sql($coord, "SELECT global_position FROM eventstore.append('$one', 'One', '{}')");
	ok( es_wait_for('the event of one worker', 30,
			sub { $follow->(); return $last >= $one_pos; }),
		'(n) an event on one worker alone is delivered (the idle worker is lifted)');
	is((split /\|/, $got[-1])[1], $one, '(n) ... and it is the last one');
	$session->quit;

	# A reader that is not a superuser, granted read_all only, the setting
	# given to its role by a superuser, with the planted operators and
	# functions of (l) before pg_catalog: the rows the owner reads, and
	# nothing planted runs (the merged read runs as the extension's owner
	# under a pinned path; the nodes run qualified commands).
	sql($coord, q{
		GRANT EXECUTE ON FUNCTION eventstore.read_all(bigint, bigint, text[], text) TO l_consumer;
		ALTER ROLE l_consumer SET eventstore.total_order = on;
		TRUNCATE l_canary;
	});
	my $q = q{SELECT count(*), sum(global_position) FROM eventstore.read_all(0, 1000000);
		SELECT count(*) FROM eventstore.read_all(0, 10, ARRAY['One'], 'n-');};
	my $owner = sql($coord, "SET eventstore.total_order = on; $q");
	my ($ret, $out, $err) = $coord->psql('postgres', "SET search_path = l_atk, pg_catalog, public; $q",
		extra_params => [ '-U', 'l_consumer' ]);
	is($ret, 0, '(n) a reader without superuser rights reads the total order with a planted path')
	  or diag($err);
	is($out, $owner, '(n) ... the rows the owner reads');
	is(sql($coord, q{SELECT count(*) FROM l_canary}), '0',
		'(n) ... and no planted operator or function ran')
	  or diag(sql($coord, q{SELECT who, what, count(*) FROM l_canary GROUP BY 1, 2}));
	placeholders_empty('(n)');
}

# ===========================================================================
# (i) a NULL stream id through the coordinator
# ===========================================================================

# Last, because it has crashed the coordinator: Citus 13.2.2 hashes the
# distribution argument of a delegated call without checking it for NULL
# (a plain PL/pgSQL distributed function crashes the same way), and the
# test nodes do not restart after a crash.  (Nothing can be written: the
# column is NOT NULL.)
for my $q (q{SELECT * FROM eventstore.append(NULL, 'Added', '{}')},
	q{SELECT eventstore.stream_version(NULL)})
{
	my ($state, $err) = sql_state($coord, $q);
	is($state, '22004', "(i) $q: 22004 through the coordinator") or diag($err);
}

for my $node ($coord, @workers)
{
	ok(!$node->log_contains('(?:PANIC|TRAP|terminated by signal)'),
		'no crash in the log of ' . $node->name);
}
note sprintf('016: %.1f s', time() - $t0);
$_->stop('fast', fail_ok => 1) for @workers, $coord;
done_testing();
