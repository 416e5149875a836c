"""HogQL -> ClickHouse SQL for the local PostHog, printed from PostHog's own parser's AST.

The text of a query is never run as is: `hogql_parser_rs` (PostHog's parser, from PyPI) judges it, and
ClickHouse SQL is printed back from the AST. That makes three promises cheap to keep:
- what PostHog's parser rejects is rejected here (HTTP 400), with its message;
- `{placeholders}` and every constant are printed as strictly escaped literals built here, so a value
  full of quotes, braces or SQL stays an inert string;
- only the tables listed here and PostHog's public function names (hogql_functions.py, read from PostHog's
  mapping) exist: anything else is an error, not a guess.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import hogql_parser_rs

from monitor.local.posthog.hogql_functions import MAX_ARGS, Release, is_public


class HogQLError(Exception):
    def __init__(self, message: str, start: int | None = None, end: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end


class CompiledQuery(NamedTuple):
    sql: str
    limit: int


# What a public HogQL name prints as, where it is not simply the same name (PostHog's HogQLFunctionMeta
# clickhouse_name and suffix args: posthog/hogql/functions/mapping.py and clickhouse/conversions.py).
# The allowlist itself is monitor/local/posthog/hogql_functions.py.
_MAPPED: dict[str, tuple[str, tuple[str, ...]]] = {
    "toFloat": ("accurateCastOrNull", ("'Float64'",)),
    "toFloatOrNull": ("accurateCastOrNull", ("'Float64'",)),
    "toFloat64OrNull": ("accurateCastOrNull", ("'Float64'",)),
    "toInt": ("accurateCastOrNull", ("'Int64'",)),
    "toFloatOrZero": ("toFloat64OrZero", ()),
    "toIntOrZero": ("toInt64OrZero", ()),
    "toUUID": ("accurateCastOrNull", ("'UUID'",)),
    "trim": ("trimBoth", ()),
    "isnull": ("isNull", ()),
    "ifnull": ("ifNull", ()),
    "nullif": ("nullIf", ()),
}
# Datetime parsing PostHog prints as the 64-bit, -OrNull variant with the project's timezone appended
# when the caller gave none (tz_aware=True; ADD_OR_NULL_DATETIME_FUNCTIONS in the old mapping.py).
_PARSE_DATETIME = {"parseDateTimeBestEffort", "toDateTime"}
# HogQL accepts a few aggregates in any case, as SQL people write them.
_CASELESS = {"count", "sum", "avg", "min", "max"}

_TABLES = {"events"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMPARE = {
    "==": "=", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=",
    "like": "LIKE", "not like": "NOT LIKE", "ilike": "ILIKE", "not ilike": "NOT ILIKE",
    "in": "IN", "not in": "NOT IN", "global in": "IN", "global not in": "NOT IN",
}
_REGEX_OPS = {"=~": ("match", False), "!~": ("match", True), "=~*": ("match", False), "!~*": ("match", True)}
_ARITH = {"+", "-", "*", "/", "%"}
_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0", "\b": "\\b",
            "\f": "\\f", "\x1a": "\\Z"}


def quote_string(value: str) -> str:
    """A ClickHouse string literal, escaped as ClickHouse's own quoting does."""
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def quote_ident(name: str) -> str:
    if _IDENT.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: Any, *, in_context: bool = False) -> str:
    """A bound value as a literal. Only plain JSON types are accepted: anything else is an error."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise HogQLError("NaN and infinite values cannot be bound")
        return repr(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(literal(v) for v in value)
        if in_context:
            return f"({inner})" if value else "(NULL)"
        return f"[{inner}]"
    raise HogQLError(f"cannot bind a value of type {type(value).__name__}")


class _Printer:
    def __init__(self, values: Mapping[str, Any], events_source: str, *, tables: Mapping[str, str] | None = None,
                 timezone: str = "UTC",
                 release: Release = "current") -> None:
        self.values = values
        self.events_source = events_source
        self.tables = dict(tables or {})
        self.timezone = timezone
        self.release = release
        self.cte_names: set[str] = set()

    def fail(self, node: Mapping[str, Any], message: str) -> HogQLError:
        return HogQLError(message, (node.get("start") or {}).get("offset"), (node.get("end") or {}).get("offset"))

    # --- queries ---------------------------------------------------------------------------------------
    def query(self, node: Mapping[str, Any]) -> str:
        kind = node.get("node")
        if kind == "SelectQuery":
            return self.select(node)
        if kind == "SelectSetQuery":
            parts = [self.query(node["initial_select_query"])]
            for sub in node.get("subsequent_select_queries") or []:
                op = str(sub.get("set_operator") or "UNION ALL").upper()
                if op not in ("UNION ALL", "UNION DISTINCT", "INTERSECT", "EXCEPT"):
                    raise self.fail(sub, f"unsupported set operator {op}")
                parts.append(op)
                parts.append(self.query(sub["select_query"]))
            return " ".join(parts)
        raise self.fail(node, f"unsupported query node {kind}")

    def select(self, n: Mapping[str, Any]) -> str:
        out: list[str] = []
        ctes = n.get("ctes") or {}
        if ctes:
            items = []
            for name, cte in ctes.items():
                if cte.get("cte_type") != "subquery":
                    raise self.fail(cte, "only `WITH name AS (SELECT ...)` is supported")
                self.cte_names.add(name)
                items.append(f"{quote_ident(name)} AS ({self.query(cte['expr'])})")
            out.append("WITH " + ", ".join(items))
        distinct = "DISTINCT " if n.get("distinct") else ""
        out.append("SELECT " + distinct + ", ".join(self.expr(e) for e in n.get("select") or []))
        if n.get("select_from"):
            out.append("FROM " + self.join(n["select_from"]))
        if n.get("array_join_list"):
            op = str(n.get("array_join_op") or "ARRAY JOIN").upper()
            if op not in ("ARRAY JOIN", "LEFT ARRAY JOIN", "INNER ARRAY JOIN"):
                raise self.fail(n, f"unsupported {op}")
            out.append(op + " " + ", ".join(self.expr(e) for e in n["array_join_list"]))
        for key, word in (("prewhere", "PREWHERE"), ("where", "WHERE")):
            if n.get(key):
                out.append(f"{word} {self.expr(n[key])}")
        if n.get("group_by"):
            out.append("GROUP BY " + ", ".join(self.expr(e) for e in n["group_by"]))
        if n.get("having"):
            out.append("HAVING " + self.expr(n["having"]))
        if n.get("order_by"):
            out.append("ORDER BY " + ", ".join(self.order(e) for e in n["order_by"]))
        if n.get("limit_by"):
            lb = n["limit_by"]
            out.append(f"LIMIT {self.expr(lb['n'])} BY " + ", ".join(self.expr(e) for e in lb["exprs"]))
        if n.get("limit") is not None:
            out.append("LIMIT " + self.expr(n["limit"]))
            if n.get("offset") is not None:
                out.append("OFFSET " + self.expr(n["offset"]))
        for unsupported in ("window_exprs", "settings", "limit_with_ties"):
            if n.get(unsupported):
                raise self.fail(n, f"{unsupported} is not supported here")
        return " ".join(out)

    def order(self, n: Mapping[str, Any]) -> str:
        if n.get("node") != "OrderExpr":
            return self.expr(n)
        direction = str(n.get("order") or "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise self.fail(n, f"bad order {direction}")
        return f"{self.expr(n['expr'])} {direction}"

    def join(self, n: Mapping[str, Any]) -> str:
        table = n["table"]
        alias = n.get("alias")
        if table.get("node") == "Field":
            name = ".".join(str(p) for p in table["chain"])
            if name in self.cte_names:
                text = quote_ident(name)
            elif name in _TABLES:
                text = f"({self.events_source})"
                alias = alias or name
            elif name in self.tables:
                text = f"({self.tables[name]})"
                alias = alias or name
            else:
                raise self.fail(table, f"Unknown table `{name}`.")
        elif table.get("node") in ("SelectQuery", "SelectSetQuery"):
            text = f"({self.query(table)})"
        elif table.get("node") == "Placeholder":
            raise self.fail(table, "placeholders cannot name a table")
        else:
            raise self.fail(table, f"unsupported table expression {table.get('node')}")
        if alias:
            text += f" AS {quote_ident(alias)}"
        nxt = n.get("next_join")
        if nxt:
            jt = str(nxt.get("join_type") or "JOIN").upper()
            allowed = {"JOIN", "INNER JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "FULL OUTER JOIN",
                       "LEFT OUTER JOIN", "RIGHT OUTER JOIN", "CROSS JOIN", "ANY LEFT JOIN", "ANY INNER JOIN",
                       "LEFT ANY JOIN", "INNER ANY JOIN", "ALL INNER JOIN", "ALL LEFT JOIN"}
            if jt not in allowed:
                raise self.fail(nxt, f"unsupported join {jt}")
            right = self.join({k: v for k, v in nxt.items() if k not in ("join_type", "constraint")})
            text += f" {jt} {right}"
            c = nxt.get("constraint")
            if c:
                ctype = str(c.get("constraint_type") or "ON").upper()
                if ctype == "ON":
                    text += f" ON {self.expr(c['expr'])}"
                elif ctype == "USING":
                    text += f" USING {self.expr(c['expr'])}"
                else:
                    raise self.fail(c, f"unsupported join constraint {ctype}")
        return text

    # --- expressions -----------------------------------------------------------------------------------
    def expr(self, n: Mapping[str, Any], *, in_context: bool = False) -> str:
        kind = n.get("node")
        method = getattr(self, f"e_{kind}", None)
        if method is None:
            raise self.fail(n, f"unsupported expression {kind}")
        if kind in ("Placeholder", "Tuple"):
            return str(method(n, in_context=in_context))
        return str(method(n))

    def e_Constant(self, n: Mapping[str, Any]) -> str:
        return literal(n.get("value"))

    def e_Placeholder(self, n: Mapping[str, Any], *, in_context: bool = False) -> str:
        chain = (n.get("expr") or {}).get("chain") or []
        if len(chain) != 1:
            raise self.fail(n, "a placeholder must be a single name")
        name = str(chain[0])
        if name not in self.values:
            raise self.fail(n, f"Placeholder {{{name}}} has no value")
        return literal(self.values[name], in_context=in_context)

    def e_Field(self, n: Mapping[str, Any]) -> str:
        chain = [str(p) for p in n["chain"]]
        if chain == ["*"]:
            return "*"
        for i, part in enumerate(chain):
            if part == "properties" and i + 1 < len(chain) and i <= 1:
                base = ".".join(quote_ident(p) for p in chain[: i + 1])
                keys = ", ".join(quote_string(k) for k in chain[i + 1 :])
                return (f"replaceRegexpAll(nullIf(nullIf(JSONExtractRaw({base}, {keys}), ''), 'null'), "
                        f"'^\"|\"$', '')")
        return ".".join("*" if p == "*" else quote_ident(p) for p in chain)

    def e_Alias(self, n: Mapping[str, Any]) -> str:
        return f"{self.expr(n['expr'])} AS {quote_ident(str(n['alias']))}"

    def e_And(self, n: Mapping[str, Any]) -> str:
        return "(" + " AND ".join(self.expr(e) for e in n["exprs"]) + ")"

    def e_Or(self, n: Mapping[str, Any]) -> str:
        return "(" + " OR ".join(self.expr(e) for e in n["exprs"]) + ")"

    def e_Not(self, n: Mapping[str, Any]) -> str:
        return f"(NOT {self.expr(n['expr'])})"

    def e_ArithmeticOperation(self, n: Mapping[str, Any]) -> str:
        op = n["op"]
        if op not in _ARITH:
            raise self.fail(n, f"unsupported operator {op}")
        return f"({self.expr(n['left'])} {op} {self.expr(n['right'])})"

    def e_CompareOperation(self, n: Mapping[str, Any]) -> str:
        op = str(n["op"]).lower()
        if op in _REGEX_OPS:
            fn, negate = _REGEX_OPS[op]
            text = f"{fn}({self.expr(n['left'])}, {self.expr(n['right'])})"
            return f"(NOT {text})" if negate else text
        if op not in _COMPARE:
            raise self.fail(n, f"unsupported comparison {op}")
        is_in = op in ("in", "not in", "global in", "global not in")
        right = n["right"]
        if is_in and right.get("node") in ("SelectQuery", "SelectSetQuery"):
            rtext = f"({self.query(right)})"
        else:
            rtext = self.expr(right, in_context=is_in)
        return f"({self.expr(n['left'])} {_COMPARE[op]} {rtext})"

    def e_BetweenExpr(self, n: Mapping[str, Any]) -> str:
        neg = "NOT " if n.get("negated") else ""
        return f"({self.expr(n['expr'])} {neg}BETWEEN {self.expr(n['low'])} AND {self.expr(n['high'])})"

    def e_Array(self, n: Mapping[str, Any]) -> str:
        return "[" + ", ".join(self.expr(e) for e in n["exprs"]) + "]"

    def e_Tuple(self, n: Mapping[str, Any], *, in_context: bool = False) -> str:
        inner = ", ".join(self.expr(e) for e in n["exprs"])
        return f"({inner})" if in_context else f"tuple({inner})"

    def e_ArrayAccess(self, n: Mapping[str, Any]) -> str:
        return f"{self.expr(n['array'])}[{self.expr(n['property'])}]"

    def e_TupleAccess(self, n: Mapping[str, Any]) -> str:
        return f"tupleElement({self.expr(n['tuple'])}, {int(n['index'])})"

    def e_Lambda(self, n: Mapping[str, Any]) -> str:
        args = [quote_ident(str(a)) for a in n["args"]]
        head = args[0] if len(args) == 1 else "(" + ", ".join(args) + ")"
        return f"{head} -> {self.expr(n['expr'])}"

    def e_SelectQuery(self, n: Mapping[str, Any]) -> str:
        return f"({self.query(n)})"

    e_SelectSetQuery = e_SelectQuery

    def e_Call(self, n: Mapping[str, Any]) -> str:
        name = str(n["name"])
        if name.lower() in _CASELESS:
            name = name.lower()
        self.check_name(n, name)
        raw_args = n.get("args") or []
        limits = MAX_ARGS.get(name)
        if limits is not None:
            most = limits[0] if self.release == "old" else limits[1]
            if len(raw_args) > most:
                raise self.fail(n, f"Function '{name}' expects at most {most} argument"
                                   f"{'s' if most != 1 else ''}, found {len(raw_args)}")
        args = [self.expr(a) for a in raw_args]
        if name in _PARSE_DATETIME:
            # tz_aware: the project's timezone unless the caller named one (conversions.py).
            tz = args[1] if len(args) > 1 else quote_string(self.timezone)
            return f"parseDateTime64BestEffortOrNull({args[0] if args else 'NULL'}, 6, {tz})"
        if name in ("now", "NOW") and not args:
            return f"now64(6, {quote_string(self.timezone)})"
        if name in _MAPPED:
            target, extra = _MAPPED[name]
            return f"{target}({', '.join([*args, *extra])})"
        params = n.get("params")
        distinct = "DISTINCT " if n.get("distinct") else ""
        head = name if params is None else f"{name}({', '.join(self.expr(p) for p in params)})"
        return f"{head}({distinct}{', '.join(args)})"

    def check_name(self, n: Mapping[str, Any], name: str) -> None:
        """PostHog's printer refuses names outside its mapping with this message (printer.py, visit_call)."""
        if not is_public(name, self.release):
            raise self.fail(n, f"Unsupported function call '{name}(...)'")

    def e_WindowFunction(self, n: Mapping[str, Any]) -> str:
        name = str(n["name"])
        self.check_name(n, name)
        args = ", ".join(self.expr(a) for a in n.get("exprs") or n.get("args") or [])
        over = n.get("over_expr") or {}
        parts = []
        if over.get("partition_by"):
            parts.append("PARTITION BY " + ", ".join(self.expr(e) for e in over["partition_by"]))
        if over.get("order_by"):
            parts.append("ORDER BY " + ", ".join(self.order(e) for e in over["order_by"]))
        return f"{name}({args}) OVER ({' '.join(parts)})"


def compile_hogql(query: str, values: Mapping[str, Any] | None, *, events_source: str,
                  default_limit: int = 100, max_limit: int = 50_000, timezone: str = "UTC",
                  release: Release = "current", tables: Mapping[str, str] | None = None) -> CompiledQuery:
    """Parse with PostHog's parser and print ClickHouse SQL; the top level fetches limit + 1 rows.

    `timezone` is the project's: datetime text is read in it, as PostHog's tz_aware functions do
    (the events source, built by the engine, renders `timestamp` in it too). `release` picks which of
    PostHog's function lists applies (monitor/local/posthog/hogql_functions.py)."""
    try:
        raw = hogql_parser_rs.parse_select_json(query)
    except Exception as exc:  # the parser raises for some inputs instead of answering an error object
        raise HogQLError(f"Syntax error: {exc}") from exc
    ast = json.loads(raw)
    if ast.get("error"):
        raise HogQLError(str(ast.get("message") or "syntax error"),
                         (ast.get("start") or {}).get("offset"), (ast.get("end") or {}).get("offset"))
    printer = _Printer(values or {}, events_source, tables=tables, timezone=timezone, release=release)
    if ast.get("node") == "SelectQuery":
        limit_node = ast.get("limit")
        limit = default_limit
        if limit_node is not None:
            if limit_node.get("node") == "Constant" and isinstance(limit_node.get("value"), int):
                limit = int(limit_node["value"])
            elif limit_node.get("node") == "Placeholder":
                v = (values or {}).get(str((limit_node.get("expr") or {}).get("chain", [""])[0]))
                if not isinstance(v, int) or isinstance(v, bool):
                    raise printer.fail(limit_node, "LIMIT must be an integer")
                limit = v
            else:
                raise printer.fail(limit_node, "LIMIT must be an integer")
        limit = max(0, min(limit, max_limit))
        body = dict(ast)
        body["limit"] = {"node": "Constant", "value": limit + 1}
        return CompiledQuery(printer.query(body), limit)
    limit = default_limit
    return CompiledQuery(f"SELECT * FROM ({printer.query(ast)}) LIMIT {limit + 1}", limit)
