# A slow async handler holds up nothing but its own projection (issue 12,
# item 10).
#
#  - With a handler that sleeps 15 s in the projector, appends by another
#    session become readable through the recorded horizon, and a LISTEN
#    client is notified, within seconds -- while the handler still sleeps.
#    Another projection catches up once the slow batch is over.
#  - With eventstore.handler_timeout = '2s', the sleeping handler is
#    canceled: its projection shows state 'failing' with a last_error that
#    names eventstore.handler_timeout, the events before it are handled, and
#    the other projections keep running.  A handler cannot escape the limit
#    with SET statement_timeout, nor by catching query_canceled.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventStore::Test;

my $node = es_node('slow_handler');

$node->safe_psql('postgres', q{
	-- handlers name their tables with the schema: they run under the
	-- search_path recorded for their projection
	CREATE TABLE seen (projection text, position bigint);
	CREATE FUNCTION slow(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen VALUES ('slow', e.global_position);
		IF e.event_type = 'Slow' THEN
			PERFORM pg_sleep(15);
		END IF;
	END $$;
	CREATE FUNCTION quick(e eventstore.event) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.seen VALUES ('quick', e.global_position) $$;
	SELECT eventstore.create_projection('slow', 'slow(eventstore.event)', mode => 'async');
	SELECT eventstore.create_projection('quick', 'quick(eventstore.event)', mode => 'async');
});

my $projector_sleeps =
  "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventstore projector'"
  . " AND datname = 'postgres' AND wait_event = 'PgSleep'";

sub append_one
{
	my ($type) = @_;
	return $node->safe_psql('postgres',
		"SELECT global_position FROM eventstore.append('s', '$type', '{}')");
}

# The listener: psql prints notifications after the next command it runs.
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN eventstore_events');

sub wait_notification
{
	my ($min, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		my $out = $listener->query('SELECT 1');
		while ($out =~ /Asynchronous notification "eventstore_events" with payload "(\d+)"/g)
		{
			return 1 if $1 >= $min;
		}
		usleep(50_000);
	}
	return 0;
}

# --- a slow handler does not hold up the horizon or notifications ------
my $first = append_one('X');
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('quick')"), 't',
	'the projections run');
append_one('Slow');
$node->poll_query_until('postgres', $projector_sleeps)
  or die 'the slow handler did not start';
pass('the projector sleeps in the slow handler');

# No timing: the proof is the order.  The handler sleeps 15 s once; the
# horizon and the notification must both arrive while that sleep goes on.
my $pos = append_one('X');
ok($node->poll_query_until('postgres',
		"SELECT position >= $pos FROM eventstore.recorded_horizon"),
	'an append made while the handler sleeps reaches the recorded horizon');
ok(wait_notification($pos, 60), 'and the listener is notified of it');
is($node->safe_psql('postgres', $projector_sleeps), 't',
	'... while the slow handler still sleeps');
is($node->safe_psql('postgres',
		"SET default_transaction_isolation = 'repeatable read';"
		  . " SELECT count(*) FROM eventstore.read_all($first) WHERE global_position = $pos"),
	'1', 'a REPEATABLE READ reader sees the event meanwhile');

# the slow batch ends; everything is handled
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('slow', '60s')"), 't',
	'the slow projection catches up when its handler returns');
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('quick', '60s')"), 't',
	'and so does the other one');

# --- eventstore.handler_timeout ---------------------------------------
$node->append_conf('postgresql.conf', "eventstore.handler_timeout = '2s'");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('eventstore.handler_timeout') = '2s'")
  or die 'the setting was not reloaded';

# A handler that tries to lift the limit, and one that catches the cancel.
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION slow(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen VALUES ('slow', e.global_position);
		IF e.event_type = 'Slow' THEN
			SET statement_timeout = 0;
			PERFORM pg_sleep(15);
		END IF;
	END $$;
	CREATE FUNCTION stubborn(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF e.event_type = 'Stubborn' THEN
			BEGIN
				PERFORM pg_sleep(15);
			EXCEPTION WHEN query_canceled THEN
				PERFORM pg_sleep(15);
			END;
		END IF;
	END $$;
	SELECT eventstore.create_projection('stubborn', 'stubborn(eventstore.event)', mode => 'async');
});
my $before = append_one('X');
my $slow_pos = append_one('Slow');
my $stubborn_pos = append_one('Stubborn');
my $after = append_one('X');

ok($node->poll_query_until('postgres',
		"SELECT state = 'failing' FROM eventstore.projection_status WHERE name = 'slow'"),
	'the slow projection fails once the handler runs over eventstore.handler_timeout');
like($node->safe_psql('postgres',
		"SELECT last_error FROM eventstore.projection_status WHERE name = 'slow'"),
	qr/eventstore\.handler_timeout/, 'its last_error names eventstore.handler_timeout');
is($node->safe_psql('postgres',
		"SELECT error_position FROM eventstore.projection_status WHERE name = 'slow'"),
	$slow_pos, 'at the position of the slow event');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM seen WHERE projection = 'slow' AND position = $before"),
	'1', 'the events before it were handled');

ok($node->poll_query_until('postgres',
		"SELECT state = 'failing' FROM eventstore.projection_status WHERE name = 'stubborn'"),
	'a handler that catches the cancel is canceled again and fails too');
like($node->safe_psql('postgres',
		"SELECT last_error FROM eventstore.projection_status WHERE name = 'stubborn'"),
	qr/eventstore\.handler_timeout/, 'its last_error names eventstore.handler_timeout too');

is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('quick', '60s')"), 't',
	'the other projection keeps running');
is($node->safe_psql('postgres', "SELECT count(*) FROM seen WHERE projection = 'quick' AND position = $after"),
	'1', 'it handled the last event');

# Fixed handler: the projection recovers.
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION slow(e eventstore.event) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO public.seen VALUES ('slow', e.global_position) $$;
	SELECT eventstore.retry_projection('slow');
});
ok($node->poll_query_until('postgres',
		"SELECT state <> 'failing' FROM eventstore.projection_status WHERE name = 'slow'"),
	'the fixed projection leaves the failing state');
is($node->safe_psql('postgres', "SELECT eventstore.wait_for_projection('slow', '60s')"), 't',
	'and catches up');

$listener->quit;
$node->stop('fast');
es_no_crash_in_log($node);

done_testing();
