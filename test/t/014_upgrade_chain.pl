# A fresh install and the update chain give the same objects (issue 13).
#
# CREATE EXTENSION eventstore runs the install script built from
# sql/install/; a database created at any released version (0.1.0 ... 0.7.0) reaches
# the same version through the frozen update scripts of sql/versions/.  For
# each starting version this test compares, with the fresh install:
#
#  - the facts of the catalog about every member of the extension: each
#    function's identity, arguments, result, language, volatility,
#    strictness, parallel label, SECURITY DEFINER, SET options, cost, rows,
#    owner, ACL, comment and body; each table's, view's, sequence's and
#    type's columns in physical order (type, collation, default, NOT NULL,
#    comment), constraints, indexes, triggers (and whether ALWAYS), ACL,
#    comment and view definition; the initial privileges, the tables pg_dump
#    dumps (pg_extension_config_dump) and the membership itself;
#  - pg_dump --schema-only --binary-upgrade, which dumps the members of an
#    extension too, less what differs by OID or transaction id (and
#    binary_upgrade_set_missing_value: a column added by ALTER TABLE ... ADD
#    COLUMN ... DEFAULT keeps the default as the "missing value" of the rows
#    that predate it, which a table created with the column has no use for).
#
# Any difference is printed as a unified diff.  Also: every function, table,
# view and type of the fresh install has a COMMENT.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EventStore::Test;

# the extension is created per database below, at the version each starts at
my $node = es_node('upgrade_chain', extensions => []);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# One line per fact about the extension's members, independent of OIDs.
my $facts_sql = q{
	WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'eventstore'),
	members AS (
	    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
	     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype::text = 'e'),
	facts(line) AS (
	    SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
	    UNION ALL
	    SELECT 'config ' || c::regclass::text || ' ' || coalesce(w, '')
	      FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w) WHERE e.extname = 'eventstore'
	    UNION ALL
	    SELECT 'function ' || p.oid::regprocedure::text || concat_ws(' | ',
	           ' kind=' || p.prokind::text, 'result=' || pg_get_function_result(p.oid),
	           'args=' || pg_get_function_arguments(p.oid),
	           'lang=' || l.lanname, 'volatile=' || p.provolatile::text, 'strict=' || p.proisstrict,
	           'parallel=' || p.proparallel::text, 'secdef=' || p.prosecdef, 'leakproof=' || p.proleakproof,
	           'cost=' || p.procost, 'rows=' || p.prorows, 'config=' || coalesce(p.proconfig::text, ''),
	           'owner=' || p.proowner::regrole, 'acl=' || coalesce(p.proacl::text, ''),
	           'comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '<NONE>'),
	           'probin=' || coalesce(p.probin, ''), 'src=' || md5(p.prosrc),
	           'sql_body=' || coalesce(md5(pg_get_function_sqlbody(p.oid)), ''))
	      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	      JOIN pg_language l ON l.oid = p.prolang
	    UNION ALL
	    SELECT 'aggregate ' || a.aggfnoid::regprocedure::text || concat_ws(' | ', ' sfunc=' || a.aggtransfn::regproc,
	           'final=' || a.aggfinalfn::regproc, 'extra=' || a.aggfinalextra, 'stype=' || a.aggtranstype::regtype,
	           'kind=' || a.aggkind::text, 'modify=' || a.aggfinalmodify::text)
	      FROM members m JOIN pg_aggregate a ON m.classid = 'pg_proc'::regclass AND a.aggfnoid = m.objid
	    UNION ALL
	    SELECT 'relation ' || c.oid::regclass::text || concat_ws(' | ', ' kind=' || c.relkind::text,
	           'persistence=' || c.relpersistence::text, 'owner=' || c.relowner::regrole,
	           'acl=' || coalesce(c.relacl::text, ''), 'options=' || coalesce(c.reloptions::text, ''),
	           'rowsecurity=' || c.relrowsecurity, 'replident=' || c.relreplident::text,
	           'comment=' || coalesce(obj_description(c.oid, 'pg_class'), '<NONE>'),
	           'view=' || CASE WHEN c.relkind::text = 'v' THEN pg_get_viewdef(c.oid) END)
	      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	    UNION ALL
	    SELECT 'column ' || c.oid::regclass::text || ' #' || a.attnum || concat_ws(' | ', ' ' || a.attname,
	           format_type(a.atttypid, a.atttypmod), 'notnull=' || a.attnotnull,
	           'collation=' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), ''),
	           'default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), 'dropped=' || a.attisdropped,
	           'identity=' || a.attidentity::text, 'generated=' || a.attgenerated::text, 'storage=' || a.attstorage::text,
	           'acl=' || coalesce(a.attacl::text, ''),
	           'comment=' || coalesce(col_description(c.oid, a.attnum), '<NONE>'))
	      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
	      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
	    UNION ALL
	    SELECT 'constraint ' || c.conrelid::regclass::text || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
	           || ' deferrable=' || c.condeferrable
	      FROM members m JOIN pg_constraint c ON m.classid = 'pg_class'::regclass AND c.conrelid = m.objid
	    UNION ALL
	    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	           || ' comment=' || coalesce(obj_description(i.indexrelid, 'pg_class'), '<NONE>')
	      FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
	    UNION ALL
	    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
	           || ' comment=' || coalesce(obj_description(t.oid, 'pg_trigger'), '<NONE>')
	      FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
	     WHERE NOT t.tgisinternal
	    UNION ALL
	    SELECT 'rule ' || r.rulename || ' ' || pg_get_ruledef(r.oid)
	      FROM members m JOIN pg_rewrite r ON m.classid = 'pg_class'::regclass AND r.ev_class = m.objid
	    UNION ALL
	    SELECT 'sequence ' || s.seqrelid::regclass::text || concat_ws(' ', ' type=' || s.seqtypid::regtype,
	           'start=' || s.seqstart, 'inc=' || s.seqincrement, 'max=' || s.seqmax, 'min=' || s.seqmin,
	           'cache=' || s.seqcache, 'cycle=' || s.seqcycle,
	           'owned_by=' || coalesce((SELECT d.refobjid::regclass::text || '.' || a.attname
	                                      FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
	                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
	                                       AND d.refclassid = 'pg_class'::regclass AND d.deptype::text = 'a'), ''))
	      FROM members m JOIN pg_sequence s ON m.classid = 'pg_class'::regclass AND s.seqrelid = m.objid
	    UNION ALL
	    SELECT 'type ' || t.oid::regtype::text || concat_ws(' | ', ' kind=' || t.typtype::text,
	           'owner=' || t.typowner::regrole, 'acl=' || coalesce(t.typacl::text, ''),
	           'comment=' || coalesce(obj_description(t.oid, 'pg_type'), '<NONE>'))
	      FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	    UNION ALL
	    SELECT 'eventtrigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc || ' ' || e.evtenabled::text
	      FROM members m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
	    UNION ALL
	    SELECT 'initprivs ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text
	           || ' ' || i.initprivs::text
	      FROM members m JOIN pg_init_privs i ON i.classoid = m.classid AND i.objoid = m.objid
	    UNION ALL
	    SELECT 'schema ' || n.nspname || ' owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, '')
	           || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '<NONE>')
	      FROM pg_namespace n WHERE n.nspname = 'eventstore'
	    UNION ALL
	    SELECT 'internal-dependency ' || pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> '
	           || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' ' || d.deptype::text
	      FROM members m JOIN pg_depend d ON d.classid = m.classid AND d.objid = m.objid
	     WHERE d.deptype::text IN ('n', 'a', 'i') AND d.refclassid <> 'pg_namespace'::regclass
	)
	SELECT line FROM facts ORDER BY line COLLATE "C";
};

# The dump of a database, less what differs by OID or transaction id.
sub schema_dump
{
	my ($db) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade',
					'--no-sync', '-d', $node->connstr($db) ],
				  '>', \$out, '2>', \$err)
	  or die "pg_dump $db failed: $err";
	my @keep;
	for my $line (split /\n/, $out)
	{
		next if $line eq '';
		next if $line =~ /binary_upgrade_set_next_|binary_upgrade_set_missing_value/;
		next if $line =~ /^-- set missing value\.$/;
		next if $line =~ /^\\(un)?restrict /;
		next if $line =~ /relfrozenxid|^WHERE oid = '\d+';$/;
		# the extension's config tables, given by OID
		$line =~ s/^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\('eventstore', 'eventstore', false, '[^']*', ).*$/$1.../;
		push @keep, $line;
	}
	return join("\n", @keep) . "\n";
}

sub write_file
{
	my ($name, $text) = @_;
	open my $fh, '>', "$tmp/$name" or die "$tmp/$name: $!";
	print $fh $text;
	close $fh;
	return "$tmp/$name";
}

# Compare two texts; on a difference, print the unified diff.
sub same_text
{
	my ($name, $a_name, $a, $b_name, $b) = @_;
	my $fa = write_file($a_name, $a);
	my $fb = write_file($b_name, $b);
	my ($out, $err);
	IPC::Run::run([ 'diff', '-u', $fa, $fb ], '>', \$out, '2>', \$err);
	ok($out eq '', $name) or diag($out);
}

my $default = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'eventstore'");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION eventstore');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'eventstore'"),
	$default, "a fresh install is at $default");
my $fresh_facts = $node->safe_psql('fresh', $facts_sql);
my $fresh_dump = schema_dump('fresh');
ok($fresh_facts =~ /^function eventstore\.append\(/m && $fresh_dump =~ /CREATE TABLE eventstore\.events/,
	'the facts and the dump show the objects');

for my $kind ('function', 'aggregate', 'relation', 'type')
{
	# A table's row type (kind c) and the implicit array type of a type
	# (name[]; a member of the extension too on PostgreSQL 18) are
	# described by the table's or the type's own comment.
	my @missing = grep { /^\Q$kind\E / && /comment=<NONE>/ && !/ kind=c / && !/^type \S+\[\] / }
	  split /\n/, $fresh_facts;
	ok(!@missing, "every $kind of the fresh install has a COMMENT")
	  or diag(join("\n", @missing));
}

for my $from ('0.1.0', '0.2.0', '0.3.0', '0.4.0', '0.5.0', '0.6.0', '0.7.0')
{
	(my $db = "from_$from") =~ s/\./_/g;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION eventstore VERSION '$from'");
	$node->safe_psql($db, 'ALTER EXTENSION eventstore UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'eventstore'"),
		$default, "$from updates to $default");
	same_text("$from + updates: the catalog is the fresh install's",
		'fresh.facts', $fresh_facts, "$db.facts", $node->safe_psql($db, $facts_sql));
	same_text("$from + updates: the schema dump is the fresh install's",
		'fresh.dump', $fresh_dump, "$db.dump", schema_dump($db));
}

$node->stop;
done_testing();
