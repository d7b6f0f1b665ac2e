/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  How the extension runs SQL of its own and functions of its users.
 *
 * Two rules, each written once here and used by every other file:
 *
 * 1. The extension's own queries (SPI) are immune to the caller.  They run
 *    under a search_path pinned to "pg_catalog, pg_temp" for their
 *    duration (a GUC nest level, as a function's SET clause does), so a
 *    caller's schema can never supply an operator, function or type that
 *    such a query resolves -- pg_temp is never searched for functions or
 *    operators, and comes last for relations and types.  When they read
 *    or write the extension's tables on a caller's behalf, they do so as
 *    the table's owner with SECURITY_LOCAL_USERID_CHANGE, as PostgreSQL's
 *    foreign-key triggers do: the caller needs no privilege on the table,
 *    and nothing in the query can SET ROLE its way further.
 *
 * 2. A user's function (projection handler, evolve, decide) is called only
 *    for a role entitled to run it: EXECUTE is checked for the role the
 *    function will run as, and the function-execute hook fires, exactly as
 *    for a direct call.  When the extension runs it for someone else (the
 *    background worker running an async handler), it runs as that role,
 *    under the search_path recorded for it, and inside a security-restricted
 *    operation, so that it can neither change roles nor leave objects,
 *    settings or cursors behind in a session that other roles' code uses
 *    next; every setting it changed is rolled back when it returns.
 *
 * src/guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/objectaccess.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "eventstore.h"

/* The search_path every query of the extension runs under. */
#define ES_PINNED_SEARCH_PATH	"pg_catalog, pg_temp"

/*
 * Pin the search_path in a new GUC nest level; es_unpin_search_path()
 * (or the abort of the (sub)transaction) restores the previous one.
 */
static int
es_pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", ES_PINNED_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

static void
es_unpin_search_path(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Connect to SPI for queries of the extension: search_path pinned and, if
 * as_user is valid, running as that role (normally the owner of the table
 * the queries touch).  Pair with es_spi_end().
 */
void
es_spi_begin(EsGuard *g, Oid as_user)
{
	GetUserIdAndSecContext(&g->save_userid, &g->save_sec_context);
	g->switched = OidIsValid(as_user);
	if (g->switched)
		SetUserIdAndSecContext(as_user,
							   g->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	g->nestlevel = es_pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
es_spi_end(EsGuard *g)
{
	SPI_finish();
	es_unpin_search_path(g->nestlevel);
	if (g->switched)
		SetUserIdAndSecContext(g->save_userid, g->save_sec_context);
}

/*
 * Check that "role" may call "fn" (EXECUTE), and fire the function-execute
 * hook, as a direct call by that role would.  "what" names the function's
 * part for the error ("handler of projection \"p\"", "evolve function").
 */
void
es_check_user_function(Oid fn, Oid role, const char *what)
{
	AclResult	aclresult;

	aclresult = es_proc_aclcheck(fn, role, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
	{
		char	   *fname = get_func_name(fn);
		char	   *rolename = GetUserNameFromId(role, true);

		/* a dropped role (a projection's former owner) may run nothing */
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fname ? fname : "(dropped)"),
				 errdetail("Role \"%s\" needs EXECUTE on the %s.",
						   rolename ? rolename : "(dropped)", what)));
	}
	InvokeFunctionExecuteHook(fn);
}

/*
 * Start running user code for another role: as "role", under
 * "search_path", in a security-restricted operation.  es_user_code_end()
 * undoes every setting the code changed, even a plain SET, and restores
 * the user.  An error in between is cleaned up by the (sub)transaction
 * abort.
 */
void
es_user_code_begin(EsGuard *g, Oid role, const char *search_path)
{
	GetUserIdAndSecContext(&g->save_userid, &g->save_sec_context);
	g->switched = true;
	SetUserIdAndSecContext(role, g->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	g->nestlevel = NewGUCNestLevel();
	if (search_path != NULL)
		(void) set_config_option("search_path", search_path,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

void
es_user_code_end(EsGuard *g)
{
	/* false: roll back what the code set, SET included, as index builds do */
	AtEOXact_GUC(false, g->nestlevel);
	SetUserIdAndSecContext(g->save_userid, g->save_sec_context);
}
