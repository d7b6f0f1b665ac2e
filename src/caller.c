/*-------------------------------------------------------------------------
 *
 * caller.c
 *	  Management functions that run with the extension's rights but know
 *	  who called them.
 *
 * The functions that manage projections, snapshot policies and
 * subscription leases write tables nobody else may write, so their
 * implementation is SECURITY DEFINER.  Inside it current_user is the
 * definer, yet the function must know its caller: to record a projection's
 * owner, to check the caller's EXECUTE on a handler, to check ownership,
 * to bind a lease to a role.  A SECURITY DEFINER function cannot learn
 * that in SQL, so the caller is handed to it as an argument that nobody
 * but this file can supply.
 *
 * The pattern: a public function
 *
 *	  CREATE FUNCTION eventstore.f(a t1, b t2) RETURNS r
 *		  AS 'MODULE_PATHNAME', 'eventstore_as_caller' LANGUAGE C ...;
 *
 * (SECURITY INVOKER, no SET clause: it runs as its caller, under the
 * caller's settings) and its implementation
 *
 *	  CREATE FUNCTION eventstore._f(caller regrole, caller_search_path text,
 *									a t1, b t2) RETURNS r
 *		  LANGUAGE plpgsql SECURITY DEFINER
 *		  SET search_path = pg_catalog, pg_temp AS $$ ... $$;
 *	  REVOKE ALL ON FUNCTION eventstore._f(regrole, text, t1, t2) FROM PUBLIC;
 *
 * eventstore_as_caller finds its own pg_proc row, looks up "_" + its name in
 * the same schema with (regrole, text, <its own argument types>) and the
 * same result, and calls it with two hidden arguments prepended:
 *
 *	  caller			   GetUserId(): the role the public function runs as
 *						   (current_user of the calling query; inside another
 *						   SECURITY DEFINER function, that function's owner)
 *	  caller_search_path   the caller's search_path setting, as the caller
 *						   set it: the implementation itself runs under a
 *						   pinned one, so it cannot read it any more
 *
 * followed by the caller's arguments, NULLs included.  EXECUTE on the public
 * function is the gate: the implementation is called through fmgr, not
 * through the executor, so its own (revoked) EXECUTE privilege is not
 * checked.
 *
 * Nobody may call an implementation directly with a forged caller, even
 * after a careless GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventstore: each
 * implementation starts with eventstore._check_caller(caller), which passes
 * only while eventstore_as_caller is calling an implementation for that
 * very role.  Implementations run no user code (that is the rule for
 * everything that runs as the extension's owner), so while the check
 * passes, no user code can be on the stack above the implementation.
 *
 * Set-returning implementations get the caller's ReturnSetInfo (PL/pgSQL
 * materialises into it), and the implementation gets an fn_expr built from
 * the caller's (with the two hidden arguments as constants) so polymorphic
 * arguments resolve as they would in a direct call.
 *
 * src/caller.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "eventstore.h"

/* The hidden arguments every implementation takes first. */
#define ES_CALLER_HIDDEN_ARGS	2

/*
 * The role eventstore_as_caller is calling an implementation for, while it
 * does (InvalidOid otherwise); restored on the way out, errors included.
 */
static Oid	es_caller_active = InvalidOid;

/* What a public function remembers of its implementation, per call site. */
typedef struct EsCallerTarget
{
	Oid			outer_oid;		/* the public function this was built for */
	FmgrInfo	impl;			/* the implementation, with its own fn_extra */
	FuncExpr   *impl_expr;		/* impl.fn_expr; rebuilt if the caller's changes */
	Node	   *outer_expr;		/* the caller's fn_expr it was built from */
	int			nargs;			/* the public function's arguments */
} EsCallerTarget;

/*
 * Find the implementation of the public function outer_oid and prepare to
 * call it.  Every way this can fail is an installation error, reported as
 * such: never XX000.
 */
static void
es_caller_lookup(Oid outer_oid, EsCallerTarget *target, MemoryContext mcxt)
{
	HeapTuple	tuple;
	Form_pg_proc outer;
	char		impl_name[NAMEDATALEN];
	Oid			argtypes[FUNC_MAX_ARGS];
	oidvector  *impl_args;
	HeapTuple	impl_tuple;
	Form_pg_proc impl;
	Oid			impl_oid;
	Oid			nspid;
	Oid			rettype;
	bool		retset;
	int			nargs;
	char	   *outer_name;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(outer_oid));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %u does not exist", outer_oid)));
	outer = (Form_pg_proc) GETSTRUCT(tuple);
	outer_name = pstrdup(NameStr(outer->proname));
	nspid = outer->pronamespace;
	rettype = outer->prorettype;
	retset = outer->proretset;
	nargs = outer->pronargs;

	/*
	 * A public function that switched user or settings before getting here
	 * would hand over the wrong caller or search_path.
	 */
	if (outer->prosecdef ||
		!heap_attisnull(tuple, Anum_pg_proc_proconfig, NULL))
	{
		ReleaseSysCache(tuple);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s must be SECURITY INVOKER without SET clauses",
						format_procedure(outer_oid)),
				 errdetail("It passes its caller and the caller's search_path to its implementation.")));
	}
	if (nargs + ES_CALLER_HIDDEN_ARGS > FUNC_MAX_ARGS ||
		strlen(outer_name) + 1 >= NAMEDATALEN)
	{
		ReleaseSysCache(tuple);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s cannot have an implementation function",
						format_procedure(outer_oid)),
				 errdetail("Its name or argument list is too long.")));
	}
	argtypes[0] = REGROLEOID;
	argtypes[1] = TEXTOID;
	memcpy(&argtypes[ES_CALLER_HIDDEN_ARGS], outer->proargtypes.values,
		   nargs * sizeof(Oid));
	ReleaseSysCache(tuple);

	snprintf(impl_name, sizeof(impl_name), "_%s", outer_name);
	impl_args = buildoidvector(argtypes, nargs + ES_CALLER_HIDDEN_ARGS);
	impl_tuple = SearchSysCache3(PROCNAMEARGSNSP,
								 CStringGetDatum(impl_name),
								 PointerGetDatum(impl_args),
								 ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(impl_tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("implementation of function %s does not exist",
						format_procedure(outer_oid)),
				 errdetail("Function %s.%s(regrole, text, ...) with the arguments of %s was not found.",
						   quote_identifier(get_namespace_name(nspid)),
						   quote_identifier(impl_name),
						   format_procedure(outer_oid)),
				 errhint("The extension's installation is incomplete: reinstall or update it.")));
	impl = (Form_pg_proc) GETSTRUCT(impl_tuple);
	impl_oid = impl->oid;
	if (impl->prorettype != rettype || impl->proretset != retset ||
		impl->prokind != PROKIND_FUNCTION)
	{
		ReleaseSysCache(impl_tuple);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("implementation %s of function %s returns another type",
						format_procedure(impl_oid), format_procedure(outer_oid)),
				 errhint("The extension's installation is incomplete: reinstall or update it.")));
	}
	ReleaseSysCache(impl_tuple);

	target->outer_oid = outer_oid;
	target->nargs = nargs;
	fmgr_info_cxt(impl_oid, &target->impl, mcxt);
	target->impl_expr = NULL;
	target->outer_expr = NULL;
}

/*
 * The implementation's fn_expr: the caller's call with the hidden arguments
 * in front, so get_fn_expr_argtype() sees the caller's actual types.
 */
static FuncExpr *
es_caller_expr(EsCallerTarget *target, FmgrInfo *outer, MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	FuncExpr   *outer_call = (FuncExpr *) outer->fn_expr;
	List	   *args;
	FuncExpr   *expr;

	args = list_make2(makeNullConst(REGROLEOID, -1, InvalidOid),
					  makeNullConst(TEXTOID, -1, DEFAULT_COLLATION_OID));
	if (outer_call != NULL && IsA(outer_call, FuncExpr))
		args = list_concat(args, copyObject(outer_call->args));
	expr = makeFuncExpr(target->impl.fn_oid, get_func_rettype(target->impl.fn_oid),
						args, InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	if (outer_call != NULL && IsA(outer_call, FuncExpr))
		expr->funcresulttype = outer_call->funcresulttype;
	MemoryContextSwitchTo(old);
	return expr;
}

PG_FUNCTION_INFO_V1(eventstore_as_caller);

/*
 * eventstore_as_caller: the body of every public function whose
 * implementation needs its caller.  See the header comment.
 */
Datum
eventstore_as_caller(PG_FUNCTION_ARGS)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	EsCallerTarget *target = (EsCallerTarget *) flinfo->fn_extra;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Datum		result = (Datum) 0;
	Oid			save_active;
	int			i;

	if (target == NULL || target->outer_oid != flinfo->fn_oid)
	{
		target = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(EsCallerTarget));
		es_caller_lookup(flinfo->fn_oid, target, flinfo->fn_mcxt);
		flinfo->fn_extra = target;
	}
	if (target->impl_expr == NULL || target->outer_expr != flinfo->fn_expr)
	{
		target->impl_expr = es_caller_expr(target, flinfo, flinfo->fn_mcxt);
		target->outer_expr = flinfo->fn_expr;
		target->impl.fn_expr = (Node *) target->impl_expr;
	}
	if (PG_NARGS() != target->nargs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s called with %d arguments, not %d",
						format_procedure(flinfo->fn_oid), PG_NARGS(), target->nargs)));

	InitFunctionCallInfoData(*inner, &target->impl,
							 target->nargs + ES_CALLER_HIDDEN_ARGS,
							 PG_GET_COLLATION(), fcinfo->context, fcinfo->resultinfo);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	inner->args[1].value = CStringGetTextDatum(namespace_search_path ? namespace_search_path : "");
	inner->args[1].isnull = false;
	for (i = 0; i < target->nargs; i++)
		inner->args[i + ES_CALLER_HIDDEN_ARGS] = fcinfo->args[i];

	save_active = es_caller_active;
	es_caller_active = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		es_caller_active = save_active;
	}
	PG_END_TRY();
	fcinfo->isnull = inner->isnull;
	return result;
}

PG_FUNCTION_INFO_V1(eventstore_check_caller);

/*
 * eventstore._check_caller(caller regrole) RETURNS boolean: true when the
 * implementation calling it was called by eventstore_as_caller for caller;
 * otherwise 42501.  See the header comment.
 */
Datum
eventstore_check_caller(PG_FUNCTION_ARGS)
{
	es_check_caller(PG_ARGISNULL(0), PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0));
	PG_RETURN_BOOL(true);
}

/*
 * The check itself, for implementations written in C (subscription.c):
 * 42501 unless eventstore_as_caller is calling an implementation for
 * "caller" right now.
 */
void
es_check_caller(bool isnull, Oid caller)
{
	if (isnull || !OidIsValid(es_caller_active) || caller != es_caller_active)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: an implementation function of eventstore was called directly"),
				 errdetail("Functions of eventstore whose names start with an underscore are internal."),
				 errhint("Call the public function (without the underscore); grant EXECUTE on public functions only.")));
}
