# The client example examples/subscriber.py (psycopg2, LISTEN + read_all)
# against a live server: it must print every event that concurrent writers
# commit, each exactly once, in global_position order.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use POSIX ();
use EventStore::Test;

my $python = es_python();
my $node = es_node('subscriber');

my $writers = 4;
my $per_writer = 50;
my $total = $writers * $per_writer;

my $dsn = $node->connstr('postgres');
my ($out, $err) = ('', '');
my $subscriber = start(
	[
		$python, 'examples/subscriber.py', '--dsn', $dsn,
		'--batch', '7', '--poll', '2', '--stop-after', $total
	],
	'>', \$out, '2>', \$err,
	timeout($PostgreSQL::Test::Utils::timeout_default));

# Start writing only once the subscriber listens.
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name <> 'psql' AND query LIKE '%read_all%'")
  or die 'subscriber did not connect';

# Concurrent writers; every tenth transaction is rolled back and must never
# be printed.
my @pids;
for my $w (1 .. $writers)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		my $sql = "SET client_min_messages = warning;\n";
		for my $i (1 .. $per_writer)
		{
			$sql .= "SELECT eventstore.append('writer-$w', 'Counted', '{\"w\": $w, \"i\": $i}');\n";
			$sql .= "BEGIN; SELECT eventstore.append('writer-$w-rolled-back', 'Lost', '{}'); ROLLBACK;\n"
			  if $i % 10 == 0;
		}
		# A script, not -c: psql then sends each statement on its own, so
		# each append outside BEGIN/ROLLBACK is its own transaction.
		my $file = "$PostgreSQL::Test::Utils::tmp_check/writer-$w.sql";
		open(my $fh, '>', $file) or die "$file: $!";
		print $fh $sql;
		close($fh);
		my $rc = system('psql', '-X', '-q', '-o', '/dev/null',
			'-v', 'ON_ERROR_STOP=1', '-d', $dsn, '-f', $file);
		# _exit: the child must not run the test framework's END blocks,
		# which would stop the node.
		POSIX::_exit($rc == 0 ? 0 : 1);
	}
	push @pids, $pid;
}
for my $pid (@pids)
{
	waitpid($pid, 0);
	is($? >> 8, 0, "writer $pid finished");
}

ok(finish($subscriber), 'subscriber exited after printing every event')
  or diag("stderr: $err");

my @lines = split /\n/, $out;
is(scalar(@lines), $total, "subscriber printed $total events");

my @positions = map { /"global_position": (\d+)/ ? $1 : -1 } @lines;
my @sorted = sort { $a <=> $b } @positions;
is_deeply(\@positions, \@sorted, 'positions arrive in ascending order');
my %seen;
is(scalar(grep { !$seen{$_}++ } @positions), $total, 'no position twice');

my $expected = $node->safe_psql('postgres',
	"SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM eventstore.events");
is(join(',', @positions), $expected, 'subscriber saw exactly the committed events');
ok(!grep({ /rolled-back/ } @lines), 'no rolled-back event was printed');

$node->stop;
done_testing();
