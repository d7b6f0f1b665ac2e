# eventstore: PGXS build.  The version comes from eventstore.control.

EXTENSION  = eventstore
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = eventstore
OBJS = \
	src/aggregate.o \
	src/append.o \
	src/catalog.o \
	src/caller.o \
	src/eventstore.o \
	src/guard.o \
	src/horizon.o \
	src/launcher.o \
	src/lifecycle.o \
	src/process.o \
	src/projection.o \
	src/projector.o \
	src/read.o \
	src/storage.o \
	src/worker.o

# The install script of 0.1.0 plus update scripts: CREATE EXTENSION installs
# the newest version by running the chain, so there is one definition of
# every object.
DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# pg_regress and pg_isolation_regress each run on a temporary instance of
# their own with the extension preloaded (test/eventstore.conf).
REGRESS = append append_events read_stream errors roles read_all projections subscriptions state lifecycle security_manage security_core security_attack security_fuzz security_parallel security_worker upgrade
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/eventstore.conf

ISOLATION = same_expected_version any_version_serialises different_streams expect_no_stream \
	read_all_lower_position read_all_unrelated_xact read_all_rollback read_all_repeatable_read \
	projection_same_row projection_changes_wait subscription_competing_consumers \
	snapshot_concurrent_append as_of_commit_order command_conflict_retry \
	lifecycle_idempotent_concurrent lifecycle_delete_vs_append lifecycle_tombstone_vs_append \
	lifecycle_archive_vs_append lifecycle_retention_vs_append
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso --temp-config=test/eventstore.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/eventstore.h
