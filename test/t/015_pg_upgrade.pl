# pg_upgrade of a database with the extension keeps the store (issue 15).
#
# An old cluster -- the PostgreSQL installation named by ES_UPGRADE_FROM (a
# directory with bin/ and lib/, e.g. /usr/lib/postgresql/15), or when it is
# not set the installation under test -- gets a store with every kind of
# state: events in several streams (one TOASTed), event ids, a soft-deleted
# stream with its marker, a tombstoned one, stream settings, an archived
# stream, an inline and an async projection with their checkpoints, a
# durable subscription with acknowledged, leased and parked events, an
# archive policy and a snapshot policy.  pg_upgrade (--link is not used:
# the old cluster stays intact) moves it to a new cluster of the
# installation under test.  Then:
#
#  - every row of the extension's tables that are user data is the same,
#    byte for byte (events with their positions, ids, timestamps and data;
#    event ids; archived events; stream states; projections and their
#    checkpoints; subscriptions and their events; policies), and the
#    sequence of positions goes on above the old highest;
#  - the store works: appends continue every stream's numbering, read_all
#    returns the old log then the new events, the async projection catches
#    up from its checkpoint without replaying the old events, the
#    subscription delivers its leased event again after the lease and new
#    events after the old ones, retries of old ids are recognised.
#
# The extension's processes do not start in binary-upgrade mode (_PG_init),
# so nothing writes the tables while pg_upgrade copies them.
use strict;
use warnings;
use Cwd;
use File::Temp qw(tempdir);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventStore::Test;

my $from = $ENV{ES_UPGRADE_FROM};
my $old = PostgreSQL::Test::Cluster->new('old', defined $from ? (install_path => $from) : ());
my $new = PostgreSQL::Test::Cluster->new('new');
my $newbin = $new->config_data('--bindir');
# (the portable PostgreSQL 17 of scripts/postgres.sh has no pg_upgrade)
plan skip_all => "this PostgreSQL installation has no pg_upgrade ($newbin)"
  unless -x "$newbin/pg_upgrade";

$old->init;
$old->append_conf('postgresql.conf', es_conf());
$old->start;
my $old_version = $old->safe_psql('postgres', 'SHOW server_version_num');
note "upgrading from server version $old_version";

$old->safe_psql('postgres', q{
	CREATE EXTENSION eventstore;
	SELECT eventstore.append_events('order-' || g, jsonb_build_array(
	         jsonb_build_object('type', 'Placed', 'data', jsonb_build_object('n', g),
	                            'id', md5('up/' || g || '/1')::uuid),
	         jsonb_build_object('type', 'Paid', 'data', jsonb_build_object('n', g),
	                            'metadata', jsonb_build_object('by', 'tap'),
	                            'id', md5('up/' || g || '/2')::uuid)), 0)
	  FROM generate_series(1, 20) g;
	SELECT eventstore.append('big', 'Blob',
	         jsonb_build_object('b', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g)));
	SELECT eventstore.append('order-' || g, 'Shipped', '{}') FROM generate_series(1, 5) g;
	SELECT eventstore.delete_stream('order-3');
	SELECT eventstore.tombstone_stream('order-4');
	SELECT eventstore.set_stream_metadata('order-5', max_count => 2);
	SELECT eventstore.archive_stream('order-6');

	CREATE TABLE totals (stream_id text PRIMARY KEY, n bigint NOT NULL);
	CREATE FUNCTION count_event(e eventstore.event) RETURNS void LANGUAGE sql AS $$
	    INSERT INTO public.totals VALUES (e.stream_id, 1)
	    ON CONFLICT (stream_id) DO UPDATE SET n = totals.n + 1 $$;
	CREATE TABLE async_seen (global_position bigint PRIMARY KEY);
	CREATE FUNCTION note_event(e eventstore.event) RETURNS void LANGUAGE sql AS $$
	    INSERT INTO public.async_seen VALUES (e.global_position) $$;
	SELECT eventstore.create_projection('totals', 'count_event(eventstore.event)');
	SELECT eventstore.create_projection('seen', 'note_event(eventstore.event)', mode => 'async');
	SELECT eventstore.create_archive_policy('cold', '3650 days', 'cold-');
});
is($old->safe_psql('postgres', q{
	SELECT eventstore.wait_for_projection('seen') AND eventstore.wait_for_projection('totals')}),
	't', 'the projections are live on the old cluster');

# a subscription: three events acknowledged, one parked, one leased (its
# lease runs out after the upgrade), the rest not yet fetched
$old->safe_psql('postgres', q{
	SELECT eventstore.create_subscription('mail', event_types => ARRAY['Paid'],
	                                      lease_timeout => '2 seconds', max_attempts => 1);
	SELECT eventstore.subscription_ack('mail', 'c1',
	         (SELECT array_agg(f.global_position) FROM eventstore.subscription_fetch('mail', 'c1', 3) f));
	SELECT eventstore.subscription_nack('mail', 'c1',
	         (SELECT array_agg(f.global_position) FROM eventstore.subscription_fetch('mail', 'c1', 1) f));
	SELECT count(*) FROM eventstore.subscription_fetch('mail', 'c1', 1);
});

# the worker's removals are done: nothing changes the tables until the stop
$old->poll_query_until('postgres', q{
	SELECT streams_pending_retention = 0 AND streams_pending_archive = 0
	  FROM eventstore.lifecycle_status})
  or die 'the worker did not finish its retention pass';

# the user data of the store, as text, table by table (without the
# timestamps the worker touches when it looks at a projection or policy)
my %state_sql = (
	events => q{SELECT global_position, stream_version, created_at, event_id, stream_id, event_type,
	                   md5(data::text), metadata FROM eventstore.events ORDER BY global_position},
	event_ids => q{SELECT * FROM eventstore.event_ids ORDER BY event_id},
	archived => q{SELECT global_position, stream_version, created_at, event_id, stream_id, event_type,
	                     md5(data::text), metadata FROM eventstore.archived_events ORDER BY global_position},
	streams => q{SELECT * FROM eventstore.streams ORDER BY stream_id},
	projections => q{SELECT p.name, p.handler::text, p.event_types, p.stream_prefix, p.mode,
	                        p.owner::text, p.search_path, c.position, c.events_total, c.error_count
	                   FROM eventstore.projections p
	                   JOIN eventstore.projection_checkpoints c USING (name) ORDER BY 1},
	subscriptions => q{SELECT * FROM eventstore.subscriptions ORDER BY name},
	subscription_events => q{SELECT * FROM eventstore.subscription_events ORDER BY 1, 2},
	subscription_leases => q{SELECT * FROM eventstore.subscription_leases ORDER BY 1, 2},
	policies => q{SELECT name, inactive_for, stream_prefix FROM eventstore.archive_policies ORDER BY name},
	read_models => q{SELECT (SELECT string_agg(stream_id || '=' || n, ',' ORDER BY stream_id) FROM totals),
	                        (SELECT count(*) FROM async_seen)},
	log => q{SELECT string_agg(global_position || ':' || stream_id || '@' || stream_version, ' '
	                           ORDER BY global_position) FROM eventstore.read_all(0, NULL)},
);
my %before = map { $_ => $old->safe_psql('postgres', $state_sql{$_}) } keys %state_sql;
my $last_position = $old->safe_psql('postgres', 'SELECT max(global_position) FROM eventstore.events');
cmp_ok(scalar(my @rows = split /\n/, $before{events}), '>', 30, 'the old store holds the events');
like($before{subscription_events}, qr/parked/, 'the old subscription has a parked event');
# (what a fetch leases fresh from the log is a lease row, 0.9.0)
like($before{subscription_leases}, qr/^mail\|/m, 'the old subscription has a leased event');
my $old_checksums = $old->safe_psql('postgres', 'SHOW data_checksums') eq 'on';
$old->stop;

# ---------------------------------------------------------------------------
# pg_upgrade to the installation under test
# ---------------------------------------------------------------------------
# pg_upgrade needs both clusters alike in data checksums; initdb turns them
# on by default since 18 (and only 18 has --no-data-checksums)
my ($new_major) = $new->config_data('--version') =~ /(\d+)/;
$new->init(extra => [ $old_checksums ? '--data-checksums' : $new_major >= 18 ? '--no-data-checksums' : () ]);
$new->append_conf('postgresql.conf', es_conf());
my $work = tempdir(CLEANUP => 1);
my $oldbin = $old->config_data('--bindir');
my $t0 = time();
{
	# pg_upgrade writes its logs into the current directory
	my $cwd = Cwd::getcwd();
	chdir $work or die "chdir $work: $!";
	my $ok = PostgreSQL::Test::Utils::system_log(
		'pg_upgrade', '--no-sync',
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-b', $oldbin, '-B', $newbin,
		'-s', $new->host, '-p', $old->port, '-P', $new->port) == 0;
	chdir $cwd;
	ok($ok, sprintf('pg_upgrade from %s succeeds (%d s)', $old_version, time() - $t0))
	  or BAIL_OUT('pg_upgrade failed; its logs are in ' . $new->data_dir . '/pg_upgrade_output.d');
}
$new->start;

my %after = map { $_ => $new->safe_psql('postgres', $state_sql{$_}) } keys %state_sql;
is($after{$_}, $before{$_}, "after pg_upgrade: $_ unchanged") for sort keys %state_sql;

# ---------------------------------------------------------------------------
# The store works on the new cluster
# ---------------------------------------------------------------------------
is($new->safe_psql('postgres', q{SELECT (eventstore.append('order-1', 'Refunded', '{}')).stream_version}),
	'4', 'order-1 goes on at version 4');
is($new->safe_psql('postgres', q{SELECT (eventstore.append('order-3', 'Refunded', '{}', expected_version => 3)).stream_version}),
	'4', 'the soft-deleted order-3 is recreated expecting its deleted version');
my ($rc, $out, $err) = $new->psql('postgres', q{SELECT eventstore.append('order-4', 'Refunded', '{}')});
like($err, qr/ST002|tombstoned/, 'the tombstoned order-4 refuses appends');
($rc, $out, $err) = $new->psql('postgres', q{SELECT eventstore.append('order-6', 'Refunded', '{}')});
like($err, qr/archived/, 'the archived order-6 refuses appends until restored');
is($new->safe_psql('postgres', q{
	SELECT stream_version || '/' || (global_position IS NOT NULL)
	  FROM eventstore.append_events('order-2', jsonb_build_array(
	         jsonb_build_object('type', 'Placed', 'data', jsonb_build_object('n', 2),
	                            'id', md5('up/2/1')::uuid),
	         jsonb_build_object('type', 'Paid', 'data', jsonb_build_object('n', 2),
	                            'id', md5('up/2/2')::uuid)))}),
	'2/true', 'a retry of an old append is recognised by its ids');
is($new->safe_psql('postgres', q{
	SELECT count(*) FROM eventstore.read_all(} . $last_position . q{, NULL)}),
	'2', 'read_all after the old log returns exactly the new events');

# the projections go on: the inline one at once, the async one from its
# checkpoint (it does not replay the old log)
is($new->safe_psql('postgres', q{SELECT eventstore.wait_for_projection('seen')}), 't',
	'the async projection is live on the new cluster');
is($new->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM async_seen) = (SELECT count(*) FROM eventstore.read_all(0, NULL)),
	       (SELECT n FROM totals WHERE stream_id = 'order-1')}),
	't|4', 'the async projection caught up from its checkpoint, the inline one counted the new event');

# an archived stream comes back with its old positions (archived events
# are not in the log: followers never see them again)
is($new->safe_psql('postgres', q{SELECT eventstore.restore_stream('order-6')}), '2',
	'restore_stream brings order-6 back');
is($new->safe_psql('postgres', q{
	SELECT global_position > } . $last_position . q{ FROM eventstore.append('order-6', 'Refunded', '{}')}),
	't', 'an append to it draws a position above the old highest');

# the subscription: its leased event comes back after the lease (parked
# once: max_attempts 1 parks it), then the events not fetched yet
$new->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM eventstore.subscription_fetch('mail', 'c2', 100)})
  or diag('the subscription delivers nothing');
is($new->safe_psql('postgres', q{
	SELECT parked >= 1 FROM eventstore.subscription_status WHERE name = 'mail'}),
	't', 'the subscription keeps its parked events');

es_no_crash_in_log($new);
$new->stop;
done_testing();

# The settings every test cluster gets (test/eventstore.conf: preloading).
sub es_conf
{
	return slurp_file(Cwd::abs_path(__FILE__ =~ s{t/[^/]+$}{eventstore.conf}r));
}
