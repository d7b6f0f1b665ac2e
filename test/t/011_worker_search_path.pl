# The background processes run their own queries under a search_path that
# nobody else controls (issue 12, item 3).
#
#  (a) An async handler that calls set_config('search_path', 'hp, pg_catalog',
#      false), where schema hp (its owner's) holds operators = < <= > >= on
#      (bigint, bigint) and = on (text, text) that record current_user and
#      rolsuper in a canary and try ALTER ROLE ... SUPERUSER: after more
#      events and more cycles of the worker and the projector, nothing ran as
#      superuser and the role is not superuser.
#  (b) A non-superuser database owner sets ALTER DATABASE ... SET search_path
#      = evil, pg_catalog with the same operators in schema evil, then the
#      worker and the projector are restarted (terminated, the launcher starts
#      them again): they record the horizon and run projections, the canary
#      shows nothing run as superuser, the owner is not superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventStore::Test;

# The test's own sessions must not call the planted operators either.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,public';

my $node = es_node('worker_search_path', extensions => []);

$node->safe_psql('postgres', q{
	CREATE ROLE mgr LOGIN;
	CREATE ROLE dbowner LOGIN;
	CREATE DATABASE d OWNER dbowner;
});
$node->safe_psql('d', q{
	CREATE EXTENSION eventstore;
	-- every call of a planted operator leaves a row here
	CREATE TABLE public.canary (who name, su boolean, what text);
	GRANT INSERT, SELECT ON public.canary TO PUBLIC;
	-- the projection manager, with the management grants of 0.3.0's README
	-- (0.4.0 manages projections through definer functions; the extra
	-- grants change nothing there)
	GRANT USAGE ON SCHEMA eventstore TO mgr;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventstore TO mgr;
	GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.projections,
	      eventstore.projection_checkpoints TO mgr;
	GRANT SELECT ON eventstore.projection_status TO mgr;
	GRANT SELECT, USAGE ON SEQUENCE eventstore.global_position_seq TO mgr;
	CREATE SCHEMA hp AUTHORIZATION mgr;
	CREATE TABLE public.seen (n bigint);
	GRANT INSERT, SELECT ON public.seen TO PUBLIC;
});

# Operators in schema $schema that record who runs them and, if that is a
# superuser, make $role one.  Run as $role.
sub plant_operators
{
	my ($schema, $role) = @_;
	my $sql = '';
	my %ops = (eq => '=', lt => '<', le => '<=', gt => '>', ge => '>=');
	for my $name (sort keys %ops)
	{
		for my $type ('bigint', 'text')
		{
			next if $type eq 'text' && $name ne 'eq';
			my $fn = "${schema}.evil_${name}_$type";
			$sql .= qq{
CREATE FUNCTION $fn(a $type, b $type) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
DECLARE
	su boolean := (SELECT rolsuper FROM pg_catalog.pg_roles
	               WHERE rolname OPERATOR(pg_catalog.=) current_user);
BEGIN
	INSERT INTO public.canary VALUES (current_user, su, '$ops{$name} $type');
	IF su THEN
		EXECUTE 'ALTER ROLE $role SUPERUSER';
	END IF;
	RETURN a OPERATOR(pg_catalog.$ops{$name}) b;
END \$\$;
CREATE OPERATOR ${schema}.$ops{$name} (LEFTARG = $type, RIGHTARG = $type, FUNCTION = $fn);
};
		}
	}
	$node->safe_psql('d', "SET ROLE $role;\n$sql");
}

sub append_events
{
	my ($n) = @_;
	return $node->safe_psql('d',
		"SELECT max((eventstore.append('s-' || g, 'X', '{}')).global_position) FROM generate_series(1, $n) g");
}

# The horizon is recorded and the projections have handled everything.
sub settle
{
	my ($what) = @_;
	my $last = append_events(5);
	$node->poll_query_until('d',
		"SELECT position >= $last FROM eventstore.recorded_horizon")
	  or die "$what: the worker did not record the horizon";
	is($node->safe_psql('d', "SELECT eventstore.wait_for_projection('$_', '60s')"),
		't', "$what: projection $_ caught up") for @_[1 .. $#_];
}

sub no_superuser
{
	my ($what, $role) = @_;
	is($node->safe_psql('d', 'SELECT count(*) FROM public.canary WHERE su'),
		'0', "$what: no planted operator ran as a superuser")
	  or diag($node->safe_psql('d', 'SELECT * FROM public.canary WHERE su'));
	is($node->safe_psql('d', "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'"),
		'f', "$what: $role is not superuser");
}

my $worker_q = es_process_query('worker', 'd');
my $projector_q = es_process_query('projector', 'd');

# --- (a) a handler sets the session's search_path ---------------------
plant_operators('hp', 'mgr');
$node->safe_psql('d', q{
	SET ROLE mgr;
	CREATE FUNCTION hp.hijack(e eventstore.event) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen VALUES (e.global_position);
		PERFORM pg_catalog.set_config('search_path', 'hp, pg_catalog', false);
	END $$;
	SELECT eventstore.create_projection('hijack', 'hp.hijack(eventstore.event)', mode => 'async');
});
# an honest projection of the superuser, run by the same projector
$node->safe_psql('d', q{
	CREATE FUNCTION public.count_it(e eventstore.event) RETURNS void
	LANGUAGE sql AS $$ INSERT INTO public.seen VALUES (-e.global_position) $$;
	SELECT eventstore.create_projection('honest', 'public.count_it(eventstore.event)', mode => 'async');
});
es_wait_process($node, 'worker', db => 'd') or die 'no worker';
es_wait_process($node, 'projector', db => 'd') or die 'no projector';
pass('database d has a worker and a projector');

for my $round (1 .. 3)
{
	settle("(a) round $round", 'hijack', 'honest');
}
ok($node->safe_psql('d', 'SELECT count(*) FROM public.seen WHERE n > 0') >= 15,
	'(a) the hijacking handler ran (and set the search_path each time)');
no_superuser('(a)', 'mgr');
is($node->safe_psql('d',
		"SELECT coalesce(string_agg(DISTINCT who::text, ','), '') FROM public.canary"),
	$node->safe_psql('d', 'SELECT count(*) FROM public.canary') > 0 ? 'mgr' : '',
	'(a) planted operators, if called at all, ran only as their owner');

# --- (b) the database owner sets the database's search_path -----------
# on its own: without the hijacking handler, and a clean canary
$node->safe_psql('d', q{
	SELECT eventstore.drop_projection('hijack');
	TRUNCATE public.canary;
	ALTER ROLE mgr NOSUPERUSER;
});
$node->safe_psql('d', 'CREATE SCHEMA evil AUTHORIZATION dbowner');
plant_operators('evil', 'dbowner');
$node->safe_psql('d', "SET ROLE dbowner;\nALTER DATABASE d SET search_path = evil, pg_catalog");
my $old_worker = $node->safe_psql('d', $worker_q);
my $old_projector = $node->safe_psql('d', $projector_q);
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	  . " WHERE datname = 'd' AND backend_type IN ('eventstore worker', 'eventstore projector')");
es_wait_process($node, 'worker', db => 'd', not => $old_worker)
  or die 'the worker was not restarted';
es_wait_process($node, 'projector', db => 'd', not => $old_projector)
  or die 'the projector was not restarted';
pass('(b) the worker and the projector were restarted under the database setting');
is($node->safe_psql('d', "SELECT array_to_string(setconfig, ';') FROM pg_db_role_setting"
		  . " WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = 'd') AND setrole = 0"),
	'search_path=evil, pg_catalog', '(b) the planted search_path is the database default');

for my $round (1 .. 3)
{
	settle("(b) round $round", 'honest');
}
no_superuser('(b)', 'dbowner');
is($node->safe_psql('d', "SELECT count(*) FROM public.canary WHERE who = 'postgres'"),
	'0', '(b) the worker and projector never called a planted operator');

$node->stop('fast');
es_no_crash_in_log($node);

done_testing();
