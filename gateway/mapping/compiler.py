"""Compile a dictionary into Python source once, at start-up, so translating an order runs straight-line
code instead of interpreting the dictionary field by field.

Each scope (the order, each child list) becomes one generated function built from *nodes*: a read
of a source path, a transform of such a read, a target field, a child list. Nodes are emitted in
dependency order, and each read or transform is emitted once however many fields use it. Values go
straight into the target msgspec Structs (``kind = "order"``) or plain dicts (``kind =
"document"``). Every conversion sits in a ``try`` whose handler names the source path
(``trade.orders.order[2].price``); since Python 3.11 a ``try`` costs nothing until it raises,
so the happy path pays only for the work itself.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from graphlib import CycleError, TopologicalSorter
from typing import Any

from gateway.errors import ConfigError, MappingError
from gateway.mapping import helpers as H
from gateway.mapping import transforms as T
from gateway.mapping.expr import compile_expr
from gateway.mapping.spec import ChildSpec, DictionarySpec, FieldSpec
from gateway.mapping.targets import Target

EXPR_FUNCTIONS = H.EXPR_FUNCTIONS
_MISSING = object()
_CATCH = "except (TransformError, TypeError, ArithmeticError) as _e:"


def _var(name: str) -> str:
    return "f_" + name.replace(".", "__")


def _paths(p: str | list[str] | None) -> list[tuple[str, ...]]:
    if p is None:
        return []
    alts = [p] if isinstance(p, str) else list(p)
    return [tuple(a.split(".")) for a in alts]


def _lists(children: dict[str, ChildSpec]) -> dict[str, list[str]]:
    """Target list name → the child blocks that fill it, in the order they are written."""
    out: dict[str, list[str]] = {}
    for cname, cs in children.items():
        out.setdefault(cs.into or cname, []).append(cname)
    return out


class _Scope:
    """The nodes of one generated function: code blocks and what each depends on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.blocks: dict[str, list[str]] = {}
        self.graph: dict[str, set[str]] = {}
        self.reads: dict[tuple[tuple[str, ...], ...], str] = {}
        self.xforms: dict[tuple[Any, ...], str] = {}
        self.parent_reads: set[str] = set()
        # ``index``: the element's position in its source list (child scopes only).
        self.specials: dict[str, str] = {"index": "_i"} if "." in name else {}

    def add(self, node: str, code: list[str], deps: set[str]) -> None:
        self.blocks[node] = code
        self.graph[node] = deps


class _Gen:
    def __init__(self, spec: DictionarySpec) -> None:
        self.spec = spec
        self.ns: dict[str, Any] = {
            "_dig": H.dig,
            "_as_list": H.as_list,
            "_which": H.which,
            "_merr": H.merr,
            "_not_object": H.not_object,
            "_group": H.group,
            "_bp": H.base_path,
            "_tbl": H.table_value,
            "TransformError": T.TransformError,
            "MappingError": MappingError,
            "_MISSING": _MISSING,
        }
        for fname, fn in EXPR_FUNCTIONS.items():
            self.ns[f"_F_{fname}"] = fn
        for tname, fn in T.TRANSFORMS.items():
            self.ns[f"_T_{tname}"] = fn
        for tname, table in spec.tables.items():
            self.ns[f"_TB_{tname}"] = {str(k): v for k, v in table.items()}
        self.functions: list[str] = []
        self.counter = 0

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_K{self.counter}"
        self.ns[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- reads and transforms, each emitted once per scope --------------------------

    @staticmethod
    def _errpath(alts: tuple[tuple[str, ...], ...]) -> str:
        return repr(".".join(alts[0])) if len(alts) == 1 else f"_which(src, {alts!r})"

    def read(self, sc: _Scope, alts: tuple[tuple[str, ...], ...]) -> str:
        if alts in sc.reads:
            return sc.reads[alts]
        code = []
        deps: set[str] = set()
        gets = []
        for keys in alts:
            if len(keys) == 1:
                gets.append(f"src.get({keys[0]!r})")
                continue
            # Deep paths share their prefixes: ``price_info`` is read once for every
            # ``price_info.*`` field. Anything but an object there goes the slow way, which
            # returns None for a missing step and raises, naming the path, for a wrong type.
            prefix = self.read(sc, (keys[:-1],))
            deps.add(f"r:{prefix}")
            gets.append(
                f"({prefix}.get({keys[-1]!r}) if {prefix}.__class__ is dict else _dig(src, {keys!r}, _base, _i))"
            )
        var = self.fresh("_r")
        for i, get in enumerate(gets):
            code.append(f"{var} = {get}" if i == 0 else f"if {var} is None or {var} == '': {var} = {get}")
        sc.reads[alts] = var
        sc.add(f"r:{var}", code, deps)
        return var

    def transformed(self, sc: _Scope, alts: tuple[tuple[str, ...], ...], fs: FieldSpec, where: str) -> str:
        raw = self.read(sc, alts)
        if not fs.transform:
            return raw
        if fs.transform not in T.TRANSFORMS:
            raise ConfigError(f"{where}: unknown transform {fs.transform!r}", f"{where}：未知转换 {fs.transform!r}")
        key = (alts, fs.transform, repr(sorted(fs.args.items())))
        if key in sc.xforms:
            return sc.xforms[key]
        var = self.fresh("_x")
        args = f", **{self.const(dict(fs.args))}" if fs.args else ""
        code = [
            "try:",
            f"    {var} = _T_{fs.transform}({raw}{args})",
            "except TransformError as _e:",
            f"    raise _merr(_base, _i, {self._errpath(alts)}, _e) from None",
        ]
        sc.xforms[key] = var
        sc.add(f"r:{var}", code, {f"r:{raw}"})
        return var

    # -- one target field -------------------------------------------------------------

    def field(self, sc: _Scope, target: Target, name: str, fs: FieldSpec, names: set[str], kids: set[str]) -> None:
        where = f"{self.spec.dictionary.name}: {sc.name}.{name}"
        alts = tuple(_paths(fs.path))
        deps: set[str] = set()
        body: list[str] = []
        if alts:
            src_var = self.transformed(sc, alts, fs, where)
            deps.add(f"r:{src_var}")
            body.append(f"_v = {src_var}")
        if fs.table:
            self._table(fs, target, name, where, body)
        if fs.lookup:
            body += [
                "if _v is not None:",
                f"    _t = LOOKUPS.get({fs.lookup!r}, {{}})",
                "    _r = _t.get(_v if _v.__class__ is str else str(_v))",
                "    if _r is None:",
                "        _r = _t.get('*')",
                "    if _r is None:",
                f"        raise TransformError(f'no entry for {{_v!r}} in value table {fs.lookup}',"
                f" f'值表 {fs.lookup} 中没有 {{_v!r}}')",
                "    _v = None if _r == '' else _r",
            ]
        if fs.expr is not None:
            ce = compile_expr(
                fs.expr,
                where=where,
                field_names=names,
                child_names=kids,
                functions=EXPR_FUNCTIONS,
                local_name=_var,
                specials=sc.specials,
                tables=set(self.spec.tables),
            )
            deps |= {f"f:{d}" for d in ce.fields} | {f"c:{c}" for c in ce.children}
            sc.parent_reads |= ce.parent_fields
            body += ["if _v is None:", f"    _v = {ce.source}"] if body else [f"_v = {ce.source}"]
        if not body:
            body.append("_v = None")
        if fs.default is not None:
            body.append(f"if _v is None: _v = {self.const(fs.default)}")
        if fs.required:
            body += [
                "if _v is None or _v == '':",
                "    raise TransformError('required value is missing', '缺少必填值')",
            ]
        self._check_target(target, name, fs, where, body)
        body.append(f"{_var(name)} = _v")
        errpath = self._errpath(alts) if alts else repr(name)
        code = ["try:", *("    " + ln for ln in body), _CATCH, f"    raise _merr(_base, _i, {errpath}, _e) from None"]
        sc.add(f"f:{name}", code, deps)

    def _table(self, fs: FieldSpec, target: Target, name: str, where: str, body: list[str]) -> None:
        table = fs.table or ""
        if table not in self.spec.tables:
            raise ConfigError(f"{where}: unknown table {table!r}", f"{where}：未知码表 {table!r}")
        allowed = target.literals(name)[0] if "." not in name and target.cls else None
        if allowed is not None:
            bad = {v for v in self.spec.tables[table].values() if v not in allowed and v != ""}
            if bad:
                raise ConfigError(f"{where}: table {table} maps to {sorted(bad)}, not one of {sorted(allowed)}")
        body += [
            "if _v is not None and _v != '':",
            f"    _r = _TB_{table}.get(_v if _v.__class__ is str else str(_v), _MISSING)",
            "    if _r is _MISSING:",
            f"        _r = _TB_{table}.get('*', _MISSING)",
            "    if _r is _MISSING:",
            f"        raise TransformError(f'value {{_v!r}} is not in table {table}',"
            f" f'值 {{_v!r}} 不在码表 {table} 中')",
            "    _v = None if _r == '' else _r",
        ]

    def _check_target(self, target: Target, name: str, fs: FieldSpec, where: str, body: list[str]) -> None:
        """Compile-time checks against the target type, and the runtime checks that remain."""
        if target.cls is None or name.startswith("_"):
            return
        owner = target
        for part in name.split(".")[:-1]:
            try:
                owner = owner.sub(part)
            except KeyError:
                raise ConfigError(
                    f"{where}: the target has no nested {part!r}", f"{where}：目标没有 {part!r}"
                ) from None
        leaf = name.split(".")[-1]
        if leaf not in owner.hints:
            raise ConfigError(f"{where}: {owner.cls.__name__} has no field {leaf!r}", f"{where}：目标没有字段 {leaf!r}")
        allowed, many = owner.literals(leaf)
        constant = fs.path is None and fs.expr is None and not fs.lookup
        if allowed is not None and not fs.table:
            if constant:
                if fs.default is not None and fs.default not in allowed:
                    raise ConfigError(f"{where}: {fs.default!r} is not one of {sorted(allowed)}")
            else:
                k = self.const(allowed)
                choices = self.const(", ".join(map(str, sorted(allowed))))
                test = f"any(_y not in {k} for _y in _v)" if many else f"_v not in {k}"
                body += [
                    f"if _v is not None and {test}:",
                    f"    raise TransformError(f'{{_v!r}} is not one of ' + {choices},"
                    f" f'{{_v!r}} 不是允许的值：' + {choices})",
                ]
        ge = owner.lower_bound(leaf)
        if ge is not None and not (fs.path is None and fs.expr is None and not fs.lookup):
            body += [
                f"if _v is not None and _v < {ge!r}:",
                f"    raise TransformError(f'{{_v!r}} is below {ge!r}', f'{{_v!r}} 小于 {ge!r}')",
            ]
        structs = owner.structs_in(leaf)
        if structs is not None and (fs.transform or fs.expr):
            cls, is_list = structs
            k = self.const(cls)
            build = f"[{k}(**_y) for _y in _v]" if is_list else f"{k}(**_v)"
            body.append(f"if _v is not None: _v = {build}")

    # -- scopes and child lists -------------------------------------------------------

    def scope(
        self,
        name: str,
        fields: dict[str, FieldSpec],
        children: dict[str, ChildSpec],
        target: Target,
        where_expr: str | None,
        *,
        emit_struct: bool,
    ) -> tuple[str, set[str]]:
        """Generate the function for a scope; return its name and the parent fields it reads."""
        sc = _Scope(name)
        names = set(fields)
        lists = _lists(children)
        kids = set(lists)
        for n in names | kids | set(children):
            if keyword.iskeyword(n.split(".")[0]) or n in ("index", "parent", "table"):
                raise ConfigError(f"{name}: {n!r} is a reserved word")
        clash = names & kids
        if clash:
            raise ConfigError(f"{name}: {sorted(clash)} are both a field and a child list")
        for fname, fs in fields.items():
            self.field(sc, target, fname, fs, names, kids)
        for cname, cs in children.items():
            self._child(sc, cname, cs, target, names, kids)
        for lname, blocks in lists.items():
            joined = " + ".join(f"b_{b}" for b in blocks)
            sc.add(f"c:{lname}", [f"c_{lname} = {joined}"], {f"b:{b}" for b in blocks})
        head: list[str] = []
        if where_expr:
            ce = compile_expr(
                where_expr,
                where=f"{name}.where",
                field_names=names,
                child_names=kids,
                functions=EXPR_FUNCTIONS,
                local_name=_var,
                specials=sc.specials,
                tables=set(self.spec.tables),
            )
            sc.parent_reads |= ce.parent_fields
            needed = self._closure(sc, {f"f:{d}" for d in ce.fields} | {f"c:{c}" for c in ce.children})
            head = self._ordered(sc, needed) + [f"if not ({ce.source}): return None"]
        else:
            needed = set()
        rest = self._ordered(sc, set(sc.blocks) - needed)
        fn = f"_scope_{name.replace('.', '_')}"
        body = [
            "if src.__class__ is not dict: raise _not_object(_base, _i)",
            *head,
            *rest,
            f"return {self.build(target, fields, children, struct=emit_struct)}",
        ]
        self.functions.append("\n".join([f"def {fn}(src, P, _base, _i, LOOKUPS):", *("    " + ln for ln in body)]))
        return fn, sc.parent_reads

    def _closure(self, sc: _Scope, start: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo += list(sc.graph.get(node, ()))
        return seen

    def _ordered(self, sc: _Scope, nodes: set[str]) -> list[str]:
        try:
            order = list(TopologicalSorter({n: sc.graph[n] & nodes for n in nodes}).static_order())
        except CycleError as exc:
            raise ConfigError(f"{sc.name}: fields depend on each other in a cycle: {exc.args[1]}") from None
        return [ln for node in order for ln in sc.blocks[node]]

    def _child(self, sc: _Scope, cname: str, cs: ChildSpec, target: Target, names: set[str], kids: set[str]) -> None:
        tname = cs.into or cname
        scratch = tname.startswith("_") or target.cls is None
        sub = Target(None) if scratch else target.sub(tname)
        struct = sub.cls is not None and cs.group_by is None
        child_fn, reads = self.scope(f"{sc.name}.{cname}", cs.fields, cs.children, sub, cs.where, emit_struct=struct)
        missing = reads - names - kids
        if missing:
            raise ConfigError(f"{sc.name}.{cname}: parent fields {sorted(missing)} do not exist")
        parent = (
            "{" + ", ".join(f"{r!r}: {_var(r) if r in names else 'c_' + r}" for r in sorted(reads)) + "}"
            if reads
            else "None"
        )
        deps = {f"f:{r}" if r in names else f"c:{r}" for r in reads}
        if cs.path == "." or _paths(cs.path) == [(".",)]:
            code = ["_l = [src]; _cb = _base; _ci = _i"]
            call = f"{child_fn}(_e, {parent}, _cb, _ci, LOOKUPS) for _e in _l"
        else:
            alts = tuple(_paths(cs.path))
            raw = self.read(sc, alts)
            deps.add(f"r:{raw}")
            dotted = ".".join(alts[0])
            code = [f"_l = _as_list({raw}, _base, _i, {dotted!r}); _cb = _bp(_base, _i) + {dotted!r}"]
            call = f"{child_fn}(_e, {parent}, _cb, _j, LOOKUPS) for _j, _e in enumerate(_l)"
        var = f"b_{cname}"
        if cs.group_by:
            code.append(f"{var} = _group([_k for _k in ({call}) if _k is not None], {cs.group_by!r})")
            if sub.cls is not None:
                code.append(f"{var} = [{self.const(sub.cls)}(**_k) for _k in {var}]")
        elif cs.where:
            code.append(f"{var} = [_k for _k in ({call}) if _k is not None]")
        else:
            code.append(f"{var} = [{call}]")
        sc.add(f"b:{cname}", code, deps)

    def build(
        self, target: Target, fields: dict[str, FieldSpec], children: dict[str, ChildSpec], *, struct: bool
    ) -> str:
        """The expression that assembles one scope's output from its local variables."""
        tree: dict[str, Any] = {}
        for name in fields:
            if not name.startswith("_"):
                node = tree
                parts = name.split(".")
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = _var(name)
        for lname in _lists(children):
            if not lname.startswith("_"):
                tree[lname] = f"c_{lname}"

        def render(node: dict[str, Any], tgt: Target, as_struct: bool) -> str:
            items = []
            for k, v in node.items():
                if isinstance(v, dict):
                    v = render(v, tgt.sub(k) if tgt.cls is not None else Target(None), tgt.cls is not None)
                items.append((k, v))
            if tgt.cls is not None:
                missing = tgt.required - {k for k, _ in items}
                if missing:
                    raise ConfigError(
                        f"{self.spec.dictionary.name}: {tgt.cls.__name__} needs {sorted(missing)}",
                        f"{self.spec.dictionary.name}：{tgt.cls.__name__} 缺少必填字段 {sorted(missing)}",
                    )
            if as_struct and tgt.cls is not None:
                return f"{self.const(tgt.cls)}(" + ", ".join(f"{k}={v}" for k, v in items) + ")"
            return "{" + ", ".join(f"{k!r}: {v}" for k, v in items) + "}"

        return render(tree, target, struct)


def compile_mapper(spec: DictionarySpec, root_cls: type | None) -> tuple[Callable[..., Any], str]:
    """Compile ``spec`` into ``mapper(src, lookups, base) -> root_cls | dict``; return it and its source."""
    gen = _Gen(spec)
    fn, reads = gen.scope("order", spec.fields, spec.children, Target(root_cls), None, emit_struct=True)
    if reads:
        raise ConfigError(f"{spec.dictionary.name}: the root scope has no parent ({sorted(reads)})")
    source = "\n\n".join(gen.functions)
    source += f"\n\ndef mapper(src, lookups, base=''):\n    return {fn}(src, None, base, None, lookups)\n"
    code = compile(source, f"<dictionary {spec.dictionary.name}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - source generated from a validated dictionary, no user code
    return gen.ns["mapper"], source
