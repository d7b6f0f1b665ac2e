# The utility hook stops a database's worker and projector only for a
# command that passes its own permission checks and needs the database
# without connections, and brings them back when the command fails or
# leaves the database in place (issue 12, item 8).
#
#  - A role with no privileges runs CREATE DATABASE ... TEMPLATE postgres,
#    DROP DATABASE postgres, ALTER DATABASE postgres CONNECTION LIMIT 3,
#    ALTER DATABASE postgres RENAME TO q and ALTER DATABASE postgres SET
#    TABLESPACE pg_default: each fails with 42501 and the worker and the
#    projector of postgres keep their PIDs.
#  - The owner of a database: ALTER DATABASE ... CONNECTION LIMIT leaves the
#    processes alone; a DROP DATABASE that fails (another session is
#    connected) has them running again within seconds, without an append;
#    a RENAME brings them back under the new name.
#  - A superuser's CREATE DATABASE ... TEMPLATE succeeds and the template's
#    processes come back.
#  - A successful DROP DATABASE leaves no process behind.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use EventStore::Test;

my $node = es_node('utility_hook', extensions => []);

$node->safe_psql('postgres', q{
	CREATE ROLE nobody LOGIN;
	CREATE ROLE downer LOGIN CREATEDB;
	CREATE DATABASE other;
	CREATE DATABASE victim OWNER downer;
	CREATE EXTENSION eventstore;
	SELECT eventstore.append('s', 'T', '{}');
});
$node->safe_psql('victim', q{
	CREATE EXTENSION eventstore;
	SELECT eventstore.append('s', 'T', '{}');
});

sub pids
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY backend_type) FROM pg_stat_activity"
		  . " WHERE datname = '$db' AND backend_type IN ('eventstore worker', 'eventstore projector')");
}

# Wait until $db has both processes, other than those in $old (as pids()
# returns them, if given).
sub wait_processes
{
	my ($db, $old) = @_;
	my %old = map { split /:/ } split /,/, ($old // '');
	return es_wait_process($node, 'worker', db => $db, not => $old{'eventstore worker'})
	  && es_wait_process($node, 'projector', db => $db, not => $old{'eventstore projector'});
}

wait_processes('postgres') or die 'no worker and projector for postgres';
wait_processes('victim') or die 'no worker and projector for victim';
my $postgres_pids = pids('postgres');
like($postgres_pids, qr/^eventstore projector:\d+,eventstore worker:\d+$/,
	'postgres has a worker and a projector');

# --- a role with no privileges ----------------------------------------
for my $cmd (
	'CREATE DATABASE x TEMPLATE postgres',
	'DROP DATABASE postgres',
	'ALTER DATABASE postgres CONNECTION LIMIT 3',
	'ALTER DATABASE postgres RENAME TO q',
	'ALTER DATABASE postgres SET TABLESPACE pg_default')
{
	my ($rc, $out, $err) = $node->psql('other', "\\set VERBOSITY verbose\n$cmd",
		extra_params => [ '-U', 'nobody' ]);
	like($err, qr/ERROR:\s+42501:/, "nobody: $cmd fails with 42501");
	# give a stopped process time to be seen gone
	usleep(300_000);
	is(pids('postgres'), $postgres_pids, "nobody: $cmd leaves the worker and projector running");
}

# --- the owner of a database ------------------------------------------
my $victim_pids = pids('victim');
$node->safe_psql('other', 'ALTER DATABASE victim CONNECTION LIMIT 10',
	extra_params => [ '-U', 'downer' ]);
usleep(300_000);
is(pids('victim'), $victim_pids, 'owner: CONNECTION LIMIT does not stop the processes');

# DROP DATABASE fails: another session is connected.
my $squatter = $node->background_psql('victim');
$squatter->query_safe('SELECT 1');
my ($rc, $out, $err) = $node->psql('other', "\\set VERBOSITY verbose\nDROP DATABASE victim",
	extra_params => [ '-U', 'downer' ]);
like($err, qr/ERROR:\s+55006:.*being accessed by other users/,
	'owner: DROP DATABASE fails while another session is connected');
ok(wait_processes('victim', $victim_pids),
	'owner: after the failed DROP DATABASE the worker and projector run again, without an append');
$victim_pids = pids('victim');
# they work: the horizon moves
my $pos = $node->safe_psql('victim',
	"SELECT global_position FROM eventstore.append('s', 'T', '{}')");
$node->poll_query_until('victim', "SELECT position >= $pos FROM eventstore.recorded_horizon")
  or die 'the worker of victim does not record the horizon';
pass('owner: the restarted worker records the horizon');
$squatter->quit;

# RENAME succeeds: the processes come back under the new name.
$node->safe_psql('other', 'ALTER DATABASE victim RENAME TO victim2',
	extra_params => [ '-U', 'downer' ]);
ok(wait_processes('victim2'), 'owner: after RENAME the processes run again, without an append');
$node->safe_psql('other', 'ALTER DATABASE victim2 RENAME TO victim',
	extra_params => [ '-U', 'downer' ]);
ok(wait_processes('victim'), 'owner: and after renaming back');
$victim_pids = pids('victim');

# --- a superuser copies a database with a worker ----------------------
$node->safe_psql('other', 'CREATE DATABASE copy TEMPLATE victim');
pass('superuser: CREATE DATABASE ... TEMPLATE of a database with a worker succeeds');
ok(wait_processes('victim', $victim_pids),
	'superuser: the template\'s worker and projector come back, without an append');
is($node->safe_psql('copy', 'SELECT count(*) FROM eventstore.events'), '2',
	'the copy has the events');

# --- a successful DROP DATABASE ----------------------------------------
$node->safe_psql('other', 'DROP DATABASE victim', extra_params => [ '-U', 'downer' ]);
pass('owner: DROP DATABASE succeeds');
usleep(1_500_000);
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('eventstore worker', 'eventstore projector')"
		  . " AND datname IS DISTINCT FROM 'postgres' AND datname IS DISTINCT FROM 'copy'"),
	'0', 'no process is left for the dropped database');
is(pids('postgres'), $postgres_pids, 'the processes of postgres kept running throughout');

$node->stop('fast');
es_no_crash_in_log($node);

done_testing();
