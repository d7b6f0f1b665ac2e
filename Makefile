# eventstore: PGXS build.  The version comes from eventstore.control.

# The source tree is this Makefile's directory, also when it is built from
# another one (make -f SRC/Makefile VPATH=SRC, as pg_buildext builds each
# PostgreSQL version in build-NN/ for the Debian packages).
EXTENSION  = eventstore
top       := $(dir $(firstword $(MAKEFILE_LIST)))
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(top)$(EXTENSION).control)

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
	src/stats.o \
	src/storage.o \
	src/subscription.o \
	src/worker.o

# SQL lives in three places:
#   sql/*.sql           pg_regress tests only, paired with expected/*.out
#   sql/install/*.sql   the hand-edited sources of the current version, one
#                       per concern; concatenated in the order below into the
#                       install script eventstore--$(EXTVERSION).sql, which
#                       CREATE EXTENSION runs (built, never edited, gitignored)
#   sql/versions/*.sql  the 0.1.0 install script and the update scripts up
#                       to $(EXTVERSION), frozen once released (CHANGELOG.md
#                       dates each release; docs/releasing.md: how to make one)
# A fresh install and the update chain from 0.1.0 must produce the same
# objects: test/t/014_upgrade_chain.pl compares them.
INSTALL_SOURCES = $(addprefix sql/install/, core.sql projections.sql subscriptions.sql state.sql lifecycle.sql distribution.sql stats.sql)

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(patsubst $(top)%,%,$(wildcard $(top)sql/versions/$(EXTENSION)--*.sql))

# pg_regress and pg_isolation_regress each run on a temporary instance of
# their own with the extension preloaded (test/eventstore.conf).
REGRESS = append append_events idempotency read_stream errors roles read_all projections subscriptions state fold_expr lifecycle kurrentdb_conformance markers distribution security_manage security_core security_attack security_fuzz security_parallel security_worker stats upgrade subscription_roles
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/eventstore.conf

ISOLATION = same_expected_version any_version_serialises different_streams expect_no_stream \
	read_all_lower_position read_all_unrelated_xact read_all_rollback read_all_repeatable_read \
	projection_same_row projection_changes_wait subscription_competing_consumers subscription_lanes subscription_usual \
	snapshot_concurrent_append as_of_commit_order command_conflict_retry \
	lifecycle_idempotent_concurrent lifecycle_delete_vs_append lifecycle_tombstone_vs_append \
	lifecycle_archive_vs_append lifecycle_retention_vs_append idempotent_retry_concurrent \
	lifecycle_recreate_concurrent lifecycle_marker_in_order \
	stats_in_flight
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso --temp-config=test/eventstore.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): src/eventstore.h

# Built from another directory (VPATH), the objects and their LLVM bitcode
# go to its src/, which must exist (named absolutely: VPATH would find the
# source tree's src/ and call it done).
ifneq ($(srcdir),.)
$(OBJS) $(OBJS:.o=.bc): | $(CURDIR)/src
$(CURDIR)/src:
	$(MKDIR_P) $@
endif

# After the include, so that PGXS's "all" stays the default goal.
$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_SOURCES) $(EXTENSION).control
	{ printf '%s\n\n' '-- eventstore $(EXTVERSION), built from sql/install/ by the Makefile: do not edit.'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION eventstore" to load this file. \quit'; \
	  for f in $(INSTALL_SOURCES); do printf '\n-- ===== %s\n\n' $$f; cat $(srcdir)/$$f; done; } > $@

# The TAP tests share the helpers of test/lib/EventStore/Test.pm.  After the
# include (Makefile.global sets PROVE_FLAGS), and "override" so that a
# PROVE_FLAGS given on the command line (e.g. --verbose) is appended to.
override PROVE_FLAGS += -I $(srcdir)/test/lib

# PGXN release (https://pgxn.org/spec/; test/pgxn.sh checks it).
# META.json is built from META.json.in, whose versions are @EXTVERSION@, so it
# always says the default_version of the control file: the control file is
# the one place the version is written (META.json is never edited, and is
# gitignored).  "make dist" writes $(DISTNAME).zip, the archive PGXN takes:
# one top directory $(DISTNAME)/ with the files committed at HEAD (git
# archive: no build products, nothing untracked) and the generated META.json
# (--add-file puts it under the --prefix given before it).  It refuses when
# the control file or META.json.in differ from HEAD's, which would let
# META.json disagree with the archive's control file.
DISTNAME = $(EXTENSION)-$(EXTVERSION)
EXTRA_CLEAN += META.json $(DISTNAME).zip

META.json: META.json.in $(EXTENSION).control
	@test -n '$(EXTVERSION)' || { echo "META.json: no default_version in $(EXTENSION).control" >&2; exit 1; }
	@echo '$(EXTVERSION)' | grep -Eq '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$$' || \
	  { echo "META.json: PGXN needs a semantic version (MAJOR.MINOR.PATCH), default_version is '$(EXTVERSION)'" >&2; exit 1; }
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' META.json.in > $@.tmp || { rm -f $@.tmp; exit 1; }
	mv $@.tmp $@

.PHONY: dist
dist: META.json
	@top=$$(git rev-parse --show-toplevel 2>&1) && [ "$$top" = "$$(pwd -P)" ] || { \
	  echo "make dist: $(CURDIR) is not the top of a git checkout (git rev-parse --show-toplevel: $$top);" \
	       "the archive is made with git archive from HEAD" >&2; exit 1; }
	@if git cat-file -e HEAD:META.json 2>/dev/null; then \
	  echo "make dist: META.json is committed, but it is built from META.json.in: git rm --cached META.json" >&2; exit 1; fi
	@for f in $(EXTENSION).control META.json.in; do \
	  if ! git cat-file -e HEAD:$$f 2>/dev/null || ! git diff --quiet HEAD -- $$f; then \
	    echo "make dist: $$f differs from HEAD's; commit it first (the archive has HEAD's files, META.json is built from the working tree's)" >&2; exit 1; fi; \
	done
	@git diff --quiet HEAD || echo "make dist: note: uncommitted changes are not in the archive (HEAD's files only)" >&2
	git archive --format=zip --prefix=$(DISTNAME)/ --add-file=META.json -o $(DISTNAME).zip.tmp HEAD || { rm -f $(DISTNAME).zip.tmp; exit 1; }
	mv $(DISTNAME).zip.tmp $(DISTNAME).zip
	@echo "make dist: $(DISTNAME).zip, from commit $$(git rev-parse --short HEAD)"
