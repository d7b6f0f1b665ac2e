# eventstore: PGXS build.  The version comes from eventstore.control.

EXTENSION  = eventstore
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = eventstore
OBJS = \
	src/append.o \
	src/catalog.o \
	src/caller.o \
	src/command.o \
	src/fold.o \
	src/guard.o \
	src/horizon.o \
	src/init.o \
	src/launcher.o \
	src/lifecycle.o \
	src/process.o \
	src/projection.o \
	src/projector.o \
	src/read.o \
	src/shard.o \
	src/snapshot.o \
	src/storage.o \
	src/worker.o

# SQL lives in three places:
#   sql/*.sql           pg_regress tests only, paired with expected/*.out
#   sql/install/*.sql   the hand-edited sources of the current version, one
#                       per concern; concatenated in the order below into the
#                       install script eventstore--$(EXTVERSION).sql, which
#                       CREATE EXTENSION runs (built, never edited, gitignored)
#   sql/versions/*.sql  every released script, frozen: the 0.1.0 install
#                       script and the update scripts, the newest of which
#                       (to $(EXTVERSION)) is not yet released
# A fresh install and the update chain from 0.1.0 must produce the same
# objects: test/t/014_upgrade_chain.pl compares them.
INSTALL_SOURCES = $(addprefix sql/install/, core.sql projections.sql subscriptions.sql state.sql lifecycle.sql distribution.sql)

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(wildcard sql/versions/$(EXTENSION)--*.sql)

# pg_regress and pg_isolation_regress each run on a temporary instance of
# their own with the extension preloaded (test/eventstore.conf).
REGRESS = append append_events idempotency read_stream errors roles read_all projections subscriptions state lifecycle kurrentdb_conformance markers distribution security_manage security_core security_attack security_fuzz security_parallel security_worker upgrade
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/eventstore.conf

ISOLATION = same_expected_version any_version_serialises different_streams expect_no_stream \
	read_all_lower_position read_all_unrelated_xact read_all_rollback read_all_repeatable_read \
	projection_same_row projection_changes_wait subscription_competing_consumers \
	snapshot_concurrent_append as_of_commit_order command_conflict_retry \
	lifecycle_idempotent_concurrent lifecycle_delete_vs_append lifecycle_tombstone_vs_append \
	lifecycle_archive_vs_append lifecycle_retention_vs_append idempotent_retry_concurrent \
	lifecycle_recreate_concurrent lifecycle_marker_in_order
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso --temp-config=test/eventstore.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/eventstore.h

# After the include, so that PGXS's "all" stays the default goal.
$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_SOURCES) $(EXTENSION).control
	{ printf '%s\n\n' '-- eventstore $(EXTVERSION), built from sql/install/ by the Makefile: do not edit.'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION eventstore" to load this file. \quit'; \
	  for f in $(INSTALL_SOURCES); do printf '\n-- ===== %s\n\n' $$f; cat $$f; done; } > $@

# The TAP tests share the helpers of test/lib/EventStore/Test.pm.  After the
# include (Makefile.global sets PROVE_FLAGS), and "override" so that a
# PROVE_FLAGS given on the command line (e.g. --verbose) is appended to.
override PROVE_FLAGS += -I $(srcdir)/test/lib
