# Durable subscriptions behind a transaction-mode connection pooler.
#
# pgbouncer (pool_mode = transaction, two server connections) sits in front
# of the node.  Four consumers, each one client connection to the pooler,
# fetch and acknowledge in autocommit statements: consecutive calls of one
# consumer run on different server sessions, and nothing depends on which.
# Every event is delivered and acknowledged exactly once, in per-stream
# order, and the subscription drains.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use EventStore::Test;

my $pgbouncer = `command -v pgbouncer 2>/dev/null` || '/usr/sbin/pgbouncer';
chomp $pgbouncer;
ok(-x $pgbouncer, "pgbouncer is installed ($pgbouncer)")
  or BAIL_OUT('pgbouncer is needed (Debian package pgbouncer; scripts/test.sh installs it)');

my $node = es_node('pooler');

$node->safe_psql('postgres', q{
	CREATE TABLE applied (
		n bigserial,
		global_position bigint PRIMARY KEY,
		stream_id text NOT NULL,
		stream_version bigint NOT NULL,
		consumer text NOT NULL,
		backend int NOT NULL);
	CREATE TABLE calls (consumer text NOT NULL, backend int NOT NULL);
	SELECT eventstore.create_subscription('pooled', stream_prefix => 'p-', lease_timeout => '30 seconds');
});
my $nevents = 400;
$node->safe_psql('postgres', qq{
	SELECT count(eventstore.append('p-' || (i % 20), 'T', jsonb_build_object('i', i)))
	  FROM generate_series(1, $nevents) i;
});

# The pooler: transaction pooling, two server connections for everyone.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $user = getpwuid($<);
my $host = $node->host;
my $nport = $node->port;
open my $ini, '>', "$dir/pgbouncer.ini" or die $!;
print $ini <<"INI";
[databases]
postgres = host=$host port=$nport dbname=postgres user=$user

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 2
server_round_robin = 1
max_client_conn = 50
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
INI
close $ini;
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'>', "$dir/pgbouncer.out", '2>&1');

my @pooled = ('psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
	'-h', '127.0.0.1', '-p', $port, '-d', 'postgres');
my $up = 0;
for (1 .. 100)
{
	my ($out, $err);
	if (IPC::Run::run([ @pooled, '-c', 'SELECT 1' ], '>', \$out, '2>', \$err)
		&& $out =~ /^1/)
	{
		$up = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($up, 'pgbouncer accepts connections') or BAIL_OUT('pgbouncer did not start');

# One consumer = one client connection to the pooler, running this loop in
# autocommit: each statement may land on another server session.
sub consumer_script
{
	my ($name) = @_;
	my $script = '';
	for (1 .. 60)
	{
		$script .= qq{
WITH f AS (SELECT * FROM eventstore.subscription_fetch('pooled', '$name', 7))
INSERT INTO applied (global_position, stream_id, stream_version, consumer, backend)
SELECT global_position, stream_id, stream_version, '$name', pg_backend_pid()
  FROM f ORDER BY global_position;
SELECT eventstore.subscription_ack('pooled', '$name',
         ARRAY(SELECT global_position FROM applied WHERE consumer = '$name'));
INSERT INTO calls VALUES ('$name', pg_backend_pid());
SELECT pg_sleep(0.002);
INSERT INTO calls VALUES ('$name', pg_backend_pid());
};
	}
	return $script;
}

my @consumers;
for my $i (1 .. 4)
{
	# from a file: psql reads it itself, so the consumers run side by side
	my ($out, $err) = ('', '');
	open my $fh, '>', "$dir/c$i.sql" or die $!;
	print $fh consumer_script("c$i");
	close $fh;
	push @consumers,
	  [ "c$i", IPC::Run::start([ @pooled, '-f', "$dir/c$i.sql" ], '>', \$out, '2>', \$err),
		\$out, \$err ];
}
for my $c (@consumers)
{
	my ($name, $h, $out, $err) = @$c;
	ok($h->finish, "consumer $name ran through the pooler without error")
	  or diag($$err);
}

# Drain what is left through the pooler, one consumer.
my $drain = consumer_script('drain');
my ($dout, $derr) = ('', '');
IPC::Run::run([@pooled], '<', \$drain, '>', \$dout, '2>', \$derr);

is($node->safe_psql('postgres', 'SELECT count(*) FROM applied'), $nevents,
	'every event was applied exactly once (primary key)');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM applied a JOIN eventstore.events e USING (global_position)
	 WHERE e.stream_id <> a.stream_id OR e.stream_version <> a.stream_version}),
	'0', 'with its own stream and version');
# per-stream order: within a stream, versions were applied (n) in order
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT stream_version, lag(stream_version) OVER (PARTITION BY stream_id ORDER BY n) AS prev
		  FROM applied) s
	 WHERE prev IS NOT NULL AND stream_version <> prev + 1}),
	'0', 'each stream in version order');
is($node->safe_psql('postgres', q{
	SELECT lag_events || '/' || in_flight || '/' || parked FROM eventstore.subscription_status
	 WHERE name = 'pooled'}),
	'0/0/0', 'the subscription drained: no lag, nothing in flight or parked');
# Transaction pooling really happened: a consumer's statements ran on
# different server sessions, and all of them on the pool's two.
cmp_ok($node->safe_psql('postgres', q{
	SELECT max(n) FROM (SELECT count(DISTINCT backend) AS n FROM calls
	                     WHERE consumer LIKE 'c%' GROUP BY consumer) s}),
	'>=', 2, 'one client connection was served by more than one server session');
cmp_ok($node->safe_psql('postgres', 'SELECT count(DISTINCT backend) FROM calls'),
	'<=', 2, 'through at most two server connections (the pool)');

$bouncer->kill_kill;
$node->stop;
done_testing();
