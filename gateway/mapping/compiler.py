"""Compile a dictionary into Python source once, at start-up, so translating an order runs straight-line
code instead of interpreting the dictionary field by field.

Each scope (the order, each child list) becomes one generated function. Values are fetched with
inline ``dict.get`` calls, converted by the named transforms, checked against the target type's
literals, and assembled straight into the target msgspec Structs (``kind = "order"``) or into plain
dicts (``kind = "document"``). A failed conversion raises ``MappingError`` naming the source path
(``trade.orders.order[2].price``); the happy path pays only for a string assignment per field.
"""

from __future__ import annotations

import keyword
import typing
from collections.abc import Callable
from graphlib import CycleError, TopologicalSorter
from typing import Any

import msgspec

from gateway.errors import ConfigError, MappingError
from gateway.mapping import transforms as T
from gateway.mapping.expr import compile_expr
from gateway.mapping.spec import ChildSpec, DictionarySpec, FieldSpec

_MISSING = object()


def _var(name: str) -> str:
    return "f_" + name.replace(".", "__")


def _paths(p: str | list[str] | None) -> list[tuple[str, ...]]:
    if p is None:
        return []
    alts = [p] if isinstance(p, str) else list(p)
    return [tuple(a.split(".")) for a in alts]


# --------------------------------------------------------------------------- target types


class _Target:
    """What a scope builds: a Struct class (order mode) or a plain dict (document mode)."""

    def __init__(self, cls: type | None) -> None:
        self.cls = cls
        self.hints = typing.get_type_hints(cls, include_extras=False) if cls else {}
        self.required = {f.name for f in msgspec.structs.fields(cls) if f.required} if cls else set()

    def sub(self, name: str) -> _Target:
        t = self.hints.get(name)
        if t is None:
            raise KeyError(name)
        for cand in (t, *typing.get_args(t)):
            if isinstance(cand, type) and issubclass(cand, msgspec.Struct):
                return _Target(cand)
            if typing.get_origin(cand) is list:
                (item,) = typing.get_args(cand)
                if isinstance(item, type) and issubclass(item, msgspec.Struct):
                    return _Target(item)
        raise KeyError(name)

    def literals(self, name: str) -> tuple[frozenset[Any] | None, bool]:
        """The allowed values of a Literal field (or of a list of Literals), and whether it is a list."""
        t = self.hints.get(name)
        if t is None:
            return None, False
        many = typing.get_origin(t) is list
        if many:
            t = typing.get_args(t)[0]
        vals: set[Any] = set()
        for cand in (t, *typing.get_args(t)):
            if typing.get_origin(cand) is typing.Literal:
                vals.update(typing.get_args(cand))
        return (frozenset(vals) if vals else None), many

    def needs_convert(self, name: str) -> Any | None:
        """The annotation when a transform's builtins must become Structs (e.g. ``list[Spec]``)."""
        t = self.hints.get(name)
        if t is None:
            return None
        for cand in (t, *typing.get_args(t)):
            if isinstance(cand, type) and issubclass(cand, msgspec.Struct):
                return t
            if typing.get_origin(cand) is list:
                args = typing.get_args(cand)
                if args and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
                    return t
        return None


# --------------------------------------------------------------------------- runtime helpers


def _dig(obj: Any, keys: tuple[str, ...], base: str) -> Any:
    for i, k in enumerate(keys):
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise MappingError(base + ".".join(keys[:i]), "expected an object", "应为对象")
        obj = obj.get(k)
    return obj


def _as_list(obj: Any, path: str) -> list[Any]:
    if obj is None or obj == "":
        return []
    if isinstance(obj, list):
        return obj
    raise MappingError(path, "expected a list", "应为列表")


def _merr(base: str, path: str, exc: T.TransformError) -> MappingError:
    return MappingError(base + path, str(exc), exc.reason_zh)


def _group(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Merge items with the same ``key``: lists concatenate, other values keep the first non-None."""
    out: dict[Any, dict[str, Any]] = {}
    for it in items:
        k = it.get(key)
        cur = out.get(k)
        if cur is None:
            out[k] = dict(it)
            continue
        for f, v in it.items():
            if isinstance(v, list) and isinstance(cur.get(f), list):
                cur[f] = cur[f] + v
            elif cur.get(f) is None:
                cur[f] = v
    return list(out.values())


def _sum_of(items: list[Any], attr: str) -> int:
    total = 0
    for it in items:
        v = it.get(attr) if isinstance(it, dict) else getattr(it, attr)
        if v is not None:
            total += v
    return total


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {**T.EXPR_FUNCTIONS, "sum_of": _sum_of, "first": _first}


# --------------------------------------------------------------------------- code generation


class _Gen:
    def __init__(self, spec: DictionarySpec, root_cls: type | None) -> None:
        self.spec = spec
        self.ns: dict[str, Any] = {
            "_dig": _dig,
            "_as_list": _as_list,
            "_merr": _merr,
            "_group": _group,
            "TransformError": T.TransformError,
            "MappingError": MappingError,
            "_MISSING": _MISSING,
            "_convert": msgspec.convert,
            "_ValidationError": msgspec.ValidationError,
        }
        for fname, fn in EXPR_FUNCTIONS.items():
            self.ns[f"_F_{fname}"] = fn
        for tname, fn in T.TRANSFORMS.items():
            self.ns[f"_T_{tname}"] = fn
        for tname, table in spec.tables.items():
            self.ns[f"_TB_{tname}"] = {str(k): v for k, v in table.items()}
        self.root_cls = root_cls
        self.functions: list[str] = []
        self.counter = 0

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_K{self.counter}"
        self.ns[name] = value
        return name

    # -- one field -----------------------------------------------------------------

    def field(
        self, scope: str, target: _Target, name: str, fs: FieldSpec, names: set[str], kids: set[str]
    ) -> tuple[list[str], set[str], set[str], set[str]]:
        where = f"{self.spec.dictionary.name}: {scope}.{name}"
        lines: list[str] = []
        deps: set[str] = set()
        pdeps: set[str] = set()
        cdeps: set[str] = set()
        paths = _paths(fs.path)
        lines.append("_v = None")
        for i, keys in enumerate(paths):
            dotted = ".".join(keys)
            get = f"src.get({dotted!r})" if len(keys) == 1 else f"_dig(src, {keys!r}, _base)"
            indent = "" if i == 0 else "    "
            if i:
                lines.append("if _v is None or _v == '':")
            lines.append(f"{indent}_p = {dotted!r}")
            lines.append(f"{indent}_v = {get}")
        if fs.transform:
            if fs.transform not in T.TRANSFORMS:
                raise ConfigError(f"{where}: unknown transform {fs.transform!r}", f"{where}：未知转换 {fs.transform!r}")
            args = f", **{self.const(dict(fs.args))}" if fs.args else ""
            lines.append(f"_v = _T_{fs.transform}(_v{args})")
        if fs.table:
            if fs.table not in self.spec.tables:
                raise ConfigError(f"{where}: unknown table {fs.table!r}", f"{where}：未知码表 {fs.table!r}")
            allowed = target.literals(name)[0] if "." not in name else None
            if allowed is not None:
                bad = {v for v in self.spec.tables[fs.table].values() if v not in allowed and v != ""}
                if bad:
                    raise ConfigError(f"{where}: table {fs.table} maps to {sorted(bad)}, not one of {sorted(allowed)}")
            lines += [
                "if _v is not None and _v != '':",
                f"    _r = _TB_{fs.table}.get(_v if _v.__class__ is str else str(_v), _MISSING)",
                "    if _r is _MISSING:",
                f"        _r = _TB_{fs.table}.get('*', _MISSING)",
                "    if _r is _MISSING:",
                f"        raise TransformError(f'value {{_v!r}} is not in table {fs.table}',"
                f" f'值 {{_v!r}} 不在码表 {fs.table} 中')",
                "    _v = None if _r == '' else _r",
            ]
        if fs.lookup:
            lines += [
                "if _v is not None:",
                f"    _lt = LOOKUPS.get({fs.lookup!r}) or {{}}",
                "    _r = _lt.get(_v if _v.__class__ is str else str(_v))",
                "    if _r is None:",
                f"        raise TransformError(f'no entry for {{_v!r}} in value table {fs.lookup}',"
                f" f'值表 {fs.lookup} 中没有 {{_v!r}}')",
                "    _v = _r",
            ]
        if fs.expr is not None:
            ce = compile_expr(
                fs.expr,
                where=where,
                field_names=names,
                child_names=kids,
                functions=EXPR_FUNCTIONS,
                local_name=_var,
            )
            deps |= ce.fields
            pdeps |= ce.parent_fields
            cdeps |= ce.children
            if paths or fs.transform or fs.table:
                lines.append("if _v is None:")
                lines.append(f"    _p = {name!r}")
                lines.append(f"    _v = {ce.source}")
            else:
                lines.append(f"_p = {name!r}")
                lines.append(f"_v = {ce.source}")
        if fs.default is not None:
            lines.append(f"if _v is None: _v = {self.const(fs.default)}")
        if fs.required:
            lines.append("if _v is None or _v == '':")
            lines.append(f"    _p = {(paths and '.'.join(paths[0])) or name!r}")
            lines.append("    raise TransformError('required value is missing', '缺少必填值')")
        leaf = name.split(".")[-1]
        owner = target
        if "." in name and target.cls is not None:
            for part in name.split(".")[:-1]:
                owner = owner.sub(part)
        if owner.cls is not None and not name.startswith("_"):
            if leaf not in owner.hints:
                raise ConfigError(
                    f"{where}: {owner.cls.__name__} has no field {leaf!r}", f"{where}：目标没有字段 {leaf!r}"
                )
            allowed, many = owner.literals(leaf)
            if allowed is not None and not fs.table:
                k = self.const(allowed)
                test = f"any(_x not in {k} for _x in _v)" if many else f"_v not in {k}"
                lines.append(f"if _v is not None and {test}:")
                choices = self.const(", ".join(map(str, sorted(allowed))))
                lines.append(
                    f"    raise TransformError(f'{{_v!r}} is not one of ' + {choices},"
                    f" f'{{_v!r}} 不是允许的值：' + {choices})"
                )
            conv = owner.needs_convert(leaf)
            if conv is not None and (fs.transform or fs.expr):
                lines.append("if _v is not None:")
                lines.append(f"    try: _v = _convert(_v, {self.const(conv)})")
                lines.append("    except _ValidationError as _ve: raise TransformError(str(_ve)) from None")
        lines.append(f"{_var(name)} = _v")
        return lines, deps, pdeps, cdeps

    # -- one scope -----------------------------------------------------------------

    def scope(
        self,
        scope: str,
        fields: dict[str, FieldSpec],
        children: dict[str, ChildSpec],
        target: _Target,
        where_expr: str | None,
    ) -> tuple[str, set[str]]:
        """Generate the function for a scope; return its name and the parent fields it reads."""
        fn = f"_scope_{scope.replace('.', '_')}"
        names = set(fields)
        kids = set(children)
        for n in list(names) + list(kids):
            if keyword.iskeyword(n.split(".")[0]):
                raise ConfigError(f"{scope}: {n!r} is a reserved word")
        blocks: dict[str, list[str]] = {}
        graph: dict[str, set[str]] = {}
        parent_reads: set[str] = set()
        for name, fs in fields.items():
            code, deps, pdeps, cdeps = self.field(scope, target, name, fs, names, kids)
            blocks[f"f:{name}"] = code
            graph[f"f:{name}"] = {f"f:{d}" for d in deps} | {f"c:{c}" for c in cdeps}
            parent_reads |= pdeps
        for cname, cs in children.items():
            sub_target = target.sub(cname) if target.cls is not None else _Target(None)
            child_fn, child_reads = self.scope(f"{scope}.{cname}", cs.fields, cs.children, sub_target, cs.where)
            missing = child_reads - names
            if missing:
                raise ConfigError(f"{scope}.{cname}: parent fields {sorted(missing)} do not exist")
            blocks[f"c:{cname}"] = self.child_block(cname, cs, child_fn, child_reads, sub_target)
            graph[f"c:{cname}"] = {f"f:{r}" for r in child_reads}
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            raise ConfigError(f"{scope}: fields depend on each other in a cycle: {exc.args[1]}") from None
        body = ["_p = ''", "try:"]
        for node in order:
            body += ["    " + ln for ln in blocks[node]]
        if where_expr:
            ce = compile_expr(
                where_expr,
                where=f"{scope}.where",
                field_names=names,
                child_names=kids,
                functions=EXPR_FUNCTIONS,
                local_name=_var,
            )
            parent_reads |= ce.parent_fields
            body.append(f"    if not ({ce.source}): return None")
        body += [
            "except TransformError as _e:",
            "    raise _merr(_base, _p, _e) from None",
            "except (TypeError, ArithmeticError) as _e:",
            "    raise _merr(_base, _p, TransformError(f'cannot compute: {_e}', f'无法计算：{_e}')) from None",
            f"return {self.build(target, fields, children, is_root=scope == 'order')}",
        ]
        header = f"def {fn}(src, P, _base, LOOKUPS):"
        pre = [
            "    if src.__class__ is not dict:",
            "        raise MappingError(_base.rstrip('.') or '$', 'expected an object', '应为对象')",
        ]
        self.functions.append("\n".join([header, *pre, *("    " + ln for ln in body)]))
        return fn, parent_reads

    def child_block(self, cname: str, cs: ChildSpec, child_fn: str, reads: set[str], target: _Target) -> list[str]:
        pdict = "{" + ", ".join(f"{r!r}: {_var(r)}" for r in sorted(reads)) + "}"
        lines = []
        alts = _paths(cs.path)
        if alts == [(".",)] or cs.path == ".":
            lines += ["_items = [src]", "_cbase = _base"]
            idx = ""
        else:
            lines.append("_items = None")
            for i, keys in enumerate(alts):
                dotted = ".".join(keys)
                get = f"src.get({dotted!r})" if len(keys) == 1 else f"_dig(src, {keys!r}, _base)"
                if i:
                    lines.append("if not _items:")
                    lines.append(f"    _p = {dotted!r}; _items = {get}")
                else:
                    lines.append(f"_p = {dotted!r}; _items = {get}")
            lines.append("_items = _as_list(_items, _base + _p)")
            lines.append("_cbase = _base + _p")
            idx = "[{_i}]."
        lines.append(f"_P = {pdict}")
        call = f"{child_fn}(_e, _P, f'{{_cbase}}{idx}', LOOKUPS)" if idx else f"{child_fn}(_e, _P, _cbase, LOOKUPS)"
        lines.append(f"_kws = [_k for _k in ({call} for _i, _e in enumerate(_items)) if _k is not None]")
        if cs.group_by:
            lines.append(f"_kws = _group(_kws, {cs.group_by!r})")
        if target.cls is not None:
            lines.append(f"c_{cname} = [{self.const(target.cls)}(**_k) for _k in _kws]")
        else:
            lines.append(f"c_{cname} = _kws")
        return lines

    def build(
        self, target: _Target, fields: dict[str, FieldSpec], children: dict[str, ChildSpec], is_root: bool
    ) -> str:
        """The expression that assembles one scope's output from its local variables."""
        tree: dict[str, Any] = {}
        for name in fields:
            if name.startswith("_"):
                continue
            node = tree
            parts = name.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = _var(name)
        for cname in children:
            tree[cname] = f"c_{cname}"

        def render(node: dict[str, Any], tgt: _Target, top: bool) -> str:
            items = []
            for k, v in node.items():
                if isinstance(v, dict):
                    sub = tgt.sub(k) if tgt.cls is not None else _Target(None)
                    v = render(v, sub, False)
                items.append((k, v))
            if tgt.cls is not None:
                missing = tgt.required - {k for k, _ in items}
                if missing:
                    raise ConfigError(
                        f"{self.spec.dictionary.name}: {tgt.cls.__name__} needs {sorted(missing)}",
                        f"{self.spec.dictionary.name}：{tgt.cls.__name__} 缺少必填字段 {sorted(missing)}",
                    )
                if top and not is_root:
                    return "{" + ", ".join(f"{k!r}: {v}" for k, v in items) + "}"
                return f"{self.const(tgt.cls)}(" + ", ".join(f"{k}={v}" for k, v in items) + ")"
            return "{" + ", ".join(f"{k!r}: {v}" for k, v in items) + "}"

        return render(tree, target, True)


def compile_mapper(spec: DictionarySpec, root_cls: type | None) -> tuple[Callable[..., Any], str]:
    """Compile ``spec`` into ``mapper(src, lookups) -> root_cls | dict``; return it and its source."""
    gen = _Gen(spec, root_cls)
    fn, reads = gen.scope("order", spec.fields, spec.children, _Target(root_cls), None)
    if reads:
        raise ConfigError(f"{spec.dictionary.name}: the root scope has no parent ({sorted(reads)})")
    source = "\n\n".join(gen.functions)
    source += f"\n\ndef mapper(src, lookups, base=''):\n    return {fn}(src, None, base, lookups)\n"
    code = compile(source, f"<dictionary {spec.dictionary.name}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - source generated from a validated dictionary, no user code
    return gen.ns["mapper"], source
