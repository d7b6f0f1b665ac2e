# Push notifications and the background worker (DESIGN.md section 2).
#
# A client that LISTENs on channel eventstore_events is told, with the newest
# readable position as payload, that new events are readable with read_all:
#  - after the append commits, never before, and never for a rolled-back
#    append;
#  - sent by the database's background worker, never by the appending
#    session (appenders do not touch the notification queue);
#  - coalesced: commits that become readable together give one notification;
#  - not held back by an unrelated long transaction.
# The launcher and the worker show in pg_stat_activity; a terminated worker
# is restarted by the launcher (after about a second); a terminated launcher
# is restarted by the postmaster and the database still has one worker; both
# come back after the postmaster's crash-restart cycle.  Notifications work
# again each time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use EventStore::Test;

my $node = es_node('notify', conf => "restart_after_crash = on\n");

my $worker_query = es_process_query('worker', 'postgres');
my $launcher_query = es_process_query('launcher');

# ---------------------------------------------------------------------------
# The listener: a psql session that LISTENs.  psql prints notifications after
# the next command it runs, so polling runs a trivial query.
# ---------------------------------------------------------------------------

my $listener;
my @pending;    # notifications received and not yet looked at

sub listen_connect
{
	$listener = $node->background_psql('postgres');
	$listener->query_safe('LISTEN eventstore_events');
	@pending = ();
}

sub poll_listener
{
	my $out = es_quiet_query($listener, 'SELECT 1');
	while ($out =~
		/Asynchronous notification "eventstore_events" with payload "([^"]*)" received from server process with PID (\d+)\./g
	  )
	{
		push @pending, { payload => $1, pid => $2 };
	}
}

# Wait for a notification whose payload is at least $min.  Returns the
# notifications received up to and including it (and consumes them), or an
# empty list after the timeout.
sub wait_notification
{
	my ($min) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		poll_listener();
		for my $i (0 .. $#pending)
		{
			if ($pending[$i]{payload} =~ /^\d+$/ && $pending[$i]{payload} >= $min)
			{
				return splice(@pending, 0, $i + 1);
			}
		}
		usleep(50_000);
	}
	return ();
}

# Listen for $seconds; returns (and consumes) whatever arrived.
sub collect_for
{
	my ($seconds) = @_;
	my $until = time() + $seconds;
	while (time() < $until)
	{
		poll_listener();
		usleep(100_000);
	}
	poll_listener();
	return splice(@pending, 0);
}

sub describe
{
	return join(', ', map { "payload $_->{payload} from PID $_->{pid}" } @_) || 'none';
}

# Append in a session of its own; returns (position, appender PID).
sub append_one
{
	my ($stream) = @_;
	my $row = $node->safe_psql('postgres',
		"SELECT pg_backend_pid(), (eventstore.append('$stream', 'Happened', '{}')).global_position");
	my ($pid, $pos) = split /\|/, $row;
	return ($pos, $pid);
}

# An append must give a notification from the worker, with a payload at
# least its position.
sub check_append_notified
{
	my ($label, $worker) = @_;
	my ($pos, $appender) = append_one("s-$label");
	my @got = wait_notification($pos);
	ok(@got, "$label: a committed append is notified") or return;
	my $last = $got[-1];
	cmp_ok($last->{payload}, '>=', $pos, "$label: payload $last->{payload} >= appended position $pos");
	isnt($last->{pid}, $appender, "$label: not sent by the appending session ($appender)");
	is($last->{pid}, $worker, "$label: sent by the worker ($worker)");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM eventstore.read_all($pos - 1, 10) WHERE global_position = $pos"),
		'1', "$label: the notified event is readable with read_all");
}

sub wait_worker
{
	my ($not_pid) = @_;
	return es_wait_process($node, 'worker', not => $not_pid);
}

# ---------------------------------------------------------------------------
# The launcher and the worker.
# ---------------------------------------------------------------------------

my $launcher = es_wait_process($node, 'launcher');
ok($launcher, "the launcher shows in pg_stat_activity as 'eventstore launcher'");

listen_connect();
my ($first, $first_appender) = append_one('first');
my $worker = wait_worker();
ok($worker, "a worker for database postgres shows in pg_stat_activity as 'eventstore worker' (PID $worker)");
my @got = wait_notification($first);
ok(@got, 'the first append is notified');
isnt($got[-1]{pid}, $first_appender, 'not by the appending session');
is($got[-1]{pid}, $worker, 'but by the worker');

check_append_notified('steady', $worker);

# ---------------------------------------------------------------------------
# Only after commit; coalesced.
# ---------------------------------------------------------------------------

my $holder = $node->background_psql('postgres');
my $low = $holder->query_safe(
	"BEGIN; SELECT (eventstore.append('held', 'Held', '{}')).global_position;");
my $burst_sql = join('',
	map { "SELECT eventstore.append('burst', 'Burst', '{\"n\": $_}');\n" } 1 .. 10);
$node->safe_psql('postgres', $burst_sql);
my $high = $node->safe_psql('postgres',
	'SELECT max(global_position) FROM eventstore.events');
cmp_ok($high, '>', $low, "ten appends committed above the open one ($low < ... <= $high)");

@got = collect_for(1.5);
my @premature = grep { $_->{payload} >= $low } @got;
ok(!@premature, "no notification covers position $low while its transaction is open")
  or diag('got: ' . describe(@got));
is($node->safe_psql('postgres', "SELECT count(*) FROM eventstore.read_all($low - 1, 100)"),
	'0', 'and read_all returns nothing past it either');

$holder->query_safe('COMMIT');
@got = wait_notification($high);
ok(@got, 'the commit of the open transaction is notified');
is(scalar(@got), 1, 'eleven commits readable together give one notification')
  or diag('got: ' . describe(@got));
is($got[-1]{payload}, $high, "its payload is the newest readable position ($high)");
is($got[-1]{pid}, $worker, 'sent by the worker');
is($node->safe_psql('postgres', "SELECT count(*) FROM eventstore.read_all($low - 1, 100)"),
	'11', 'all eleven events are readable');
$holder->quit;

# ---------------------------------------------------------------------------
# An unrelated long transaction (with an xid) does not hold notifications.
# ---------------------------------------------------------------------------

my $unrelated = $node->background_psql('postgres');
$unrelated->query_safe('BEGIN; SELECT txid_current(); CREATE TEMP TABLE t (i int);');
check_append_notified('unrelated open transaction', $worker);
$unrelated->query_safe('ROLLBACK');
$unrelated->quit;

# ---------------------------------------------------------------------------
# A rolled-back append is not notified.
# ---------------------------------------------------------------------------

@got = collect_for(0.5);    # nothing should be outstanding
is(describe(@got), 'none', 'quiet before the rollback');
my $newest = $node->safe_psql('postgres',
	'SELECT max(global_position) FROM eventstore.events');
my $rolled_back = $node->safe_psql('postgres',
	"BEGIN; SELECT (eventstore.append('rolled-back', 'Lost', '{}')).global_position; ROLLBACK;");
@got = collect_for(2);
ok(!@got, "a rolled-back append (position $rolled_back) gives no notification")
  or diag('got: ' . describe(@got) . "; yet read_all($newest) returns "
	  . $node->safe_psql('postgres', "SELECT count(*) FROM eventstore.read_all($newest, 100)")
	  . ' events: nothing new is readable');
check_append_notified('after a rollback', $worker);

# ---------------------------------------------------------------------------
# A terminated worker is restarted by the launcher.
# ---------------------------------------------------------------------------

my $t = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker, 10000)");
my $new_worker = wait_worker($worker);
ok($new_worker, 'a new worker replaces the terminated one');
my $restart_secs = time() - $t;
cmp_ok($restart_secs, '<', 8, sprintf('the worker was restarted promptly (%.1f s)', $restart_secs));
is($node->safe_psql('postgres', $launcher_query), $launcher, 'by the same launcher');
$worker = $new_worker;
check_append_notified('after the worker was terminated', $worker);

# An append that commits while no worker runs is notified once one is back.
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker, 10000)");
my ($gap_pos) = append_one('while-restarting');
$new_worker = wait_worker($worker);
ok($new_worker, 'the worker comes back again');
@got = wait_notification($gap_pos);
ok(@got, 'an append committed while the worker was down is notified once it is back');
is($got[-1]{pid}, $new_worker, 'by the new worker') if @got;
$worker = $new_worker;

# ---------------------------------------------------------------------------
# The launcher terminated: the postmaster starts a new one, and the database
# still has exactly one worker (one sender of each notification).
# ---------------------------------------------------------------------------

$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher, 10000)");
my $new_launcher = es_wait_process($node, 'launcher', not => $launcher);
ok($new_launcher, 'a new launcher replaces the terminated one');
$launcher = $new_launcher;
my $max_workers = 0;
for (1 .. 20)    # watch the new launcher's first scans for two seconds
{
	my $n = $node->safe_psql('postgres', "SELECT count(*) FROM ($worker_query) w");
	$max_workers = $n if $n > $max_workers;
	usleep(100_000);
}
is($max_workers, 1, 'the database keeps exactly one worker after the launcher restarted')
  or diag('workers: ' . $node->safe_psql('postgres',
	"SELECT string_agg(pid || ' since ' || backend_start, ', ') FROM pg_stat_activity WHERE backend_type = 'eventstore worker'"));
$worker = $node->safe_psql('postgres', "SELECT min(pid) FROM ($worker_query) w");
{
	my ($pos) = append_one('after-launcher-restart');
	@got = wait_notification($pos);
	ok(@got, 'after the launcher restarted: a committed append is notified');
	push @got, collect_for(1.5);
	is(scalar(grep { $_->{payload} >= $pos } @got), 1, 'exactly once')
	  or diag('got: ' . describe(@got));
}

# ---------------------------------------------------------------------------
# Crash-restart: kill -9 a regular backend; the postmaster reinitialises.
# ---------------------------------------------------------------------------

my $victim_session = $node->background_psql('postgres');
my $victim = $victim_session->query_safe('SELECT pg_backend_pid()');
ok(es_kill_backend($node, $victim), 'the postmaster went through crash-restart');
ok(es_wait_process($node, 'launcher', not => $launcher),
	'a new launcher after the crash-restart cycle');
es_drop_session($victim_session);
es_drop_session($listener);

$new_worker = wait_worker($worker);
ok($new_worker, 'a worker is back after the crash-restart cycle');
$worker = $new_worker;
listen_connect();
check_append_notified('after crash-restart', $worker);

$listener->quit;
$node->stop;
done_testing();
