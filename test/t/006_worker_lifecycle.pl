# Life cycle of the background workers, and behaviour without
# shared_preload_libraries:
#  - without preloading, appends and stream reads work, read_all and
#    global_horizon fail with a clear error and HINT; so do async
#    projections, replays into inline ones and subscription fetches, while
#    an inline projection without replay works;
#  - with preloading, a launcher runs, and a worker per database that has
#    the extension (started by the first append after CREATE EXTENSION);
#  - DROP EXTENSION stops the database's worker; DROP DATABASE and
#    ALTER DATABASE ... RENAME are not blocked by it;
#  - a fast shutdown stops everything.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventStore::Test;

# --- without shared_preload_libraries ---------------------------------
my $node = es_node('lifecycle', preload => 0);
is($node->safe_psql('postgres',
		"SELECT stream_version FROM eventstore.append('plain', 'T', '{}')"),
	'1', 'append works without shared_preload_libraries');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM eventstore.read_stream('plain')"),
	'1', 'read_stream works without shared_preload_libraries');

my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT * FROM eventstore.read_all()");
isnt($rc, 0, 'read_all fails without shared_preload_libraries');
like($err, qr/ERROR:\s+55000: eventstore.read_all\(\) requires eventstore to be loaded via shared_preload_libraries/,
	'the error says what is missing, with SQLSTATE 55000');
like($err, qr/HINT:\s+Add 'eventstore' to shared_preload_libraries/, 'and a HINT');
($rc, $out, $err) = $node->psql('postgres', 'SELECT eventstore.global_horizon()');
isnt($rc, 0, 'global_horizon fails without shared_preload_libraries');
# The statistics (0.9.0) live in shared memory too: each view, and
# reset_stats, say what is missing, in the same words as read_all.
for my $what ('store_stats', 'worker_stats', 'progress')
{
	($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT * FROM eventstore.$what");
	like($err, qr/ERROR:\s+55000: eventstore\.$what requires eventstore to be loaded via shared_preload_libraries/,
		"$what without shared_preload_libraries: 55000, saying what is missing");
}
($rc, $out, $err) = $node->psql('postgres', 'SELECT eventstore.reset_stats()');
like($err, qr/eventstore\.reset_stats\(\) requires eventstore to be loaded via shared_preload_libraries/,
	'so does reset_stats');

# Projections: what needs the worker says so; inline without replay works.
$node->safe_psql('postgres', q{
	CREATE TABLE seen (stream_id text, stream_version bigint);
	CREATE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE sql AS
		$$ INSERT INTO seen VALUES (e.stream_id, e.stream_version) $$;
});
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT eventstore.create_projection('a', 'remember(eventstore.event)', mode => 'async')");
isnt($rc, 0, 'an async projection needs preloading');
like($err, qr/ERROR:\s+55000: projection "a" needs the eventstore background worker/,
	'the error says so, with SQLSTATE 55000');
like($err, qr/HINT:\s+Add 'eventstore' to shared_preload_libraries/, 'and a HINT');
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT eventstore.create_projection('r', 'remember(eventstore.event)')");
like($err, qr/ERROR:\s+55000: projection "r" needs the eventstore background worker/,
	'replaying history into an inline projection needs preloading');
$node->safe_psql('postgres',
	"SELECT eventstore.create_projection('i', 'remember(eventstore.event)', replay => false)");
$node->safe_psql('postgres', "SELECT eventstore.append('plain', 'T', '{}')");
is($node->safe_psql('postgres', 'SELECT stream_id || stream_version FROM seen'),
	'plain2', 'an inline projection without replay works without preloading');
($rc, $out, $err) = $node->psql('postgres', 'SELECT eventstore.rebuild_projection(\'i\')');
like($err, qr/needs the eventstore background worker/, 'so does rebuilding it');
$node->safe_psql('postgres', "SELECT eventstore.drop_projection('i')");
$node->safe_psql('postgres', "SELECT eventstore.create_subscription('s')");
($rc, $out, $err) = $node->psql('postgres',
	"SELECT * FROM eventstore.subscription_fetch('s', 'c1')");
isnt($rc, 0, 'fetching from a subscription needs preloading');
like($err, qr/eventstore.read_all\(\) requires eventstore to be loaded via shared_preload_libraries/,
	'and says so');
$node->safe_psql('postgres', "SELECT eventstore.drop_subscription('s')");

is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'eventstore%'"),
	'0', 'no eventstore worker runs without preloading');

# --- with shared_preload_libraries ------------------------------------
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventstore'");
$node->restart;

es_wait_process($node, 'launcher') or die 'no launcher';
pass('the launcher runs and shows in pg_stat_activity');
es_wait_process($node, 'worker') or die 'no worker for postgres';
pass('a database that has the extension gets a worker at startup');
is($node->safe_psql('postgres',
		"SELECT string_agg(stream_id || '/' || stream_version, ',') FROM eventstore.read_all()"),
	'plain/1,plain/2', 'read_all returns events appended before preloading');

# A backend that dies inside an appending transaction (FATAL via
# pg_terminate_backend) releases the log at once.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
my $held = $holder->query_safe(
	"SELECT global_position FROM eventstore.append('held', 'T', '{}')");
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
my $later = $node->safe_psql('postgres',
	"SELECT global_position FROM eventstore.append('later', 'T', '{}')");
ok($later > $held, 'a later append drew a higher position');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM eventstore.read_all($held - 1)"),
	'0', 'the committed later event is held back by the open appender');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($holder_pid)");
$node->poll_query_until('postgres',
	"SELECT string_agg(global_position::text, ',') = '$later' FROM eventstore.read_all($held - 1)")
  or die 'the log stayed held after the appender was terminated';
pass('a terminated appender releases the log; its event never appears');
$holder->quit;

# A new database: CREATE EXTENSION, then the first append starts a worker.
$node->safe_psql('postgres', 'CREATE DATABASE lifecycle_db');
$node->safe_psql('lifecycle_db', 'CREATE EXTENSION eventstore');
$node->safe_psql('lifecycle_db', "SELECT eventstore.append('s', 'T', '{}')");
es_wait_process($node, 'worker', db => 'lifecycle_db') or die 'no worker for lifecycle_db';
pass('the first append in a new database starts its worker');

# DROP EXTENSION: the worker notices and exits.
$node->safe_psql('lifecycle_db', 'DROP EXTENSION eventstore');
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'eventstore worker' AND datname = 'lifecycle_db'")
  or die 'worker did not stop after DROP EXTENSION';
pass('DROP EXTENSION stops the worker');

# DROP EXTENSION right after appends, while the worker is busy with them,
# never deadlocks with the worker (it steps aside).  One script, so each
# DROP follows the appends' commit within a fraction of a millisecond.
my $churn = '';
for my $i (1 .. 30)
{
	$churn .= "CREATE EXTENSION eventstore;\n"
	  . "SELECT count(eventstore.append('churn-' || g, 'T', '{}')) FROM generate_series(1, 20) g;\n"
	  . "DROP EXTENSION eventstore;\n";
}
my ($churn_rc, $churn_out, $churn_err) = $node->psql('lifecycle_db', $churn,
	extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($churn_rc, 0, '30 rounds of CREATE EXTENSION, appends, DROP EXTENSION')
  or diag($churn_err);

# The projector steps aside too (0.9.0).  DROP EXTENSION locks the
# position sequence before the events table; a projector batch that held
# the events and then waited for the sequence (the horizon reads it)
# deadlocked with it (40P01, seen in regress security_attack).  Made
# deterministic: while a slow projection catches up in short batches (one
# begins every few milliseconds), a session takes the sequence as the drop
# does (a rename, rolled back), waits, then takes the events: it must get
# them, and nobody may see a deadlock.
$node->safe_psql('postgres', 'ALTER SYSTEM SET eventstore.projection_batch_size = 5');
$node->reload;
$node->safe_psql('lifecycle_db', q{
	CREATE EXTENSION eventstore;
	CREATE FUNCTION public.slow_handler(e eventstore.event) RETURNS void
		LANGUAGE sql AS 'SELECT pg_sleep(0.001)';
	SELECT count(eventstore.append('slow-' || (g % 50), 'T', '{}')) FROM generate_series(1, 5000) g;
	SELECT eventstore.create_projection('slow', 'public.slow_handler(eventstore.event)',
										mode => 'async');
});
$node->poll_query_until('lifecycle_db',
	"SELECT position > 0 FROM eventstore.projection_status WHERE name = 'slow'")
  or die 'the projection did not start catching up';
my $log_offset = -s $node->logfile;
my ($lock_rc, $lock_out, $lock_err) = $node->psql('lifecycle_db', q{
	SET deadlock_timeout = '10ms';
	SET lock_timeout = '30s';
	BEGIN;
	ALTER SEQUENCE eventstore.global_position_seq RENAME TO global_position_seq_locked;
	SELECT pg_sleep(1);
	LOCK TABLE eventstore.events IN ACCESS EXCLUSIVE MODE;
	ROLLBACK;
}, extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
is($lock_rc, 0, 'the sequence, then the events, as DROP EXTENSION takes them: no deadlock with the projector')
  or diag($lock_err);
ok(!$node->log_contains('deadlock detected', $log_offset),
	'neither the session nor the projector saw a deadlock');
isnt($node->safe_psql('lifecycle_db',
		"SELECT position FROM eventstore.projection_status WHERE name = 'slow'"),
	'5000', 'the projection was still catching up (the test raced nothing)');
$node->safe_psql('lifecycle_db', 'DROP EXTENSION eventstore CASCADE');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET eventstore.projection_batch_size');
$node->reload;

# The same, made deterministic: the worker is stuck in the middle of a
# cycle (a session holds the recorded_horizon row) when DROP EXTENSION
# starts; once the row is released, both must finish.
$node->safe_psql('lifecycle_db', 'CREATE EXTENSION eventstore');
$node->safe_psql('lifecycle_db', "SELECT eventstore.append('warm-up', 'T', '{}')");
$node->poll_query_until('lifecycle_db',
	"SELECT position > 0 FROM eventstore.recorded_horizon")
  or die 'the worker did not record the horizon';
my $row_holder = $node->background_psql('lifecycle_db');
$row_holder->query_safe('BEGIN');
$row_holder->query_safe('SELECT position FROM eventstore.recorded_horizon FOR UPDATE');
$node->safe_psql('lifecycle_db', "SELECT eventstore.append('blocked', 'T', '{}')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventstore worker'"
	  . " AND datname = 'lifecycle_db' AND wait_event_type = 'Lock'")
  or die 'the worker did not block on the row';
my $dropper = $node->background_psql('lifecycle_db', on_error_stop => 0);
$dropper->query_until(qr/dropping/, "\\echo dropping\nDROP EXTENSION eventstore;\n\\echo dropped\n");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'lifecycle_db'"
	  . " AND query LIKE 'DROP EXTENSION%' AND wait_event_type = 'Lock'")
  or die 'DROP EXTENSION did not wait';
$row_holder->query_safe('COMMIT');
$row_holder->quit;
my $drop_result = $dropper->query_until(qr/dropped/, '');
unlike($dropper->{stderr}, qr/ERROR/, 'DROP EXTENSION did not fail (no deadlock with the worker)')
  or diag($dropper->{stderr});
$dropper->quit;
is($node->safe_psql('lifecycle_db',
		"SELECT count(*) FROM pg_extension WHERE extname = 'eventstore'"),
	'0', 'the extension is gone');

# Re-create: positions start over, and the worker comes back.
$node->safe_psql('lifecycle_db', 'CREATE EXTENSION eventstore');
is($node->safe_psql('lifecycle_db',
		"SELECT global_position FROM eventstore.append('s', 'T', '{}')"),
	'1', 'a re-created extension starts at position 1');
is($node->safe_psql('lifecycle_db',
		"SELECT string_agg(global_position::text, ',') FROM eventstore.read_all()"),
	'1', 'read_all after re-creation sees the new log');
es_wait_process($node, 'worker', db => 'lifecycle_db') or die 'no worker after re-creation';
pass('the worker is back after CREATE EXTENSION and an append');

# Commands that need the database to themselves are not blocked.
$node->safe_psql('postgres', 'ALTER DATABASE lifecycle_db RENAME TO lifecycle_renamed');
pass('ALTER DATABASE RENAME succeeds while the database had a worker');
$node->safe_psql('lifecycle_renamed', "SELECT eventstore.append('s', 'T', '{}')");
es_wait_process($node, 'worker', db => 'lifecycle_renamed') or die 'no worker after rename';
$node->safe_psql('postgres', 'DROP DATABASE lifecycle_renamed');
pass('DROP DATABASE succeeds while the database had a worker');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventstore worker' AND datname IS DISTINCT FROM 'postgres'"),
	'0', 'no worker is left for the dropped database');

# Appends in postgres still notify after all this.
$node->safe_psql('postgres', "SELECT eventstore.append('after', 'T', '{}')");
$node->poll_query_until('postgres',
	"SELECT position >= (SELECT max(global_position) FROM eventstore.events) FROM eventstore.recorded_horizon")
  or die 'the worker of postgres stopped recording the horizon';
pass('the worker of another database kept working');

$node->stop('fast');
pass('fast shutdown with workers running');
es_no_crash_in_log($node);

done_testing();
