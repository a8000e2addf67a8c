"""Reading expressions and names on the parse tree: table names, the functions a default calls, selective WHEREs."""
from __future__ import annotations

from pglast import ast, enums

from .catalog import Catalog

# Functions that are not volatile (immutable or stable) among those migrations use in defaults; anything else is
# assumed volatile offline (a rewrite), and looked up in pg_proc when a catalog is given.
SHORT_IN_LIST = 100  # an IN list up to this many constants pins few rows
NON_VOLATILE_FUNCTIONS = frozenset({
    "now", "current_timestamp", "current_date", "localtimestamp", "statement_timestamp", "transaction_timestamp",
    "lower", "upper", "coalesce", "length", "abs", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object",
    "array", "concat", "trim", "btrim", "date_trunc", "make_interval", "current_setting", "timezone",
})
VOLATILE_HINT = frozenset({"random", "clock_timestamp", "gen_random_uuid", "uuid_generate_v4", "uuid_generate_v1",
                           "nextval", "timeofday", "txid_current"})


def table_name(rv: ast.RangeVar | None) -> str | None:
    if rv is None:
        return None
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def functions_called(node: ast.Node | None) -> list[str]:
    """Names of the functions an expression calls (nextval, uuidv7…)."""
    found: list[str] = []

    def visit(n: object) -> None:
        if isinstance(n, ast.FuncCall) and n.funcname:  # a parsed call always has its name
            found.append(n.funcname[-1].sval.lower())
        if isinstance(n, ast.Node):
            for attr in n:
                visit(getattr(n, attr))
        elif isinstance(n, tuple):
            for v in n:
                visit(v)

    visit(node)
    return found


def is_volatile(expr: ast.Node | None, catalog: Catalog | None) -> bool:
    """Does the expression call a volatile function (pg_proc when a catalog is given, else the lists above)?"""
    for fn in functions_called(expr):
        known = catalog.volatile(fn) if catalog is not None else None
        if known is not None:
            if known:
                return True
            continue
        if fn in VOLATILE_HINT or fn not in NON_VOLATILE_FUNCTIONS:
            return True
    return False


def selective(where: ast.Node | None) -> bool:
    """A WHERE that pins rows by equality with a constant (`id = 42`) or a short IN list; anything else (ranges,
    IS NULL, subqueries) is treated as touching most of the table."""
    if isinstance(where, ast.A_Expr):
        op = where.name[-1].sval if where.name else ""
        if op == "=" and (isinstance(where.rexpr, (ast.A_Const, ast.ParamRef))
                          or isinstance(where.lexpr, (ast.A_Const, ast.ParamRef))):
            return True
        if (where.kind == enums.A_Expr_Kind.AEXPR_IN and isinstance(where.rexpr, tuple)
                and len(where.rexpr) <= SHORT_IN_LIST):
            return True
    if isinstance(where, ast.BoolExpr) and where.boolop == enums.BoolExprType.AND_EXPR:
        return any(selective(a) for a in where.args or ())
    return False
