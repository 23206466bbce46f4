"""Dictionary expressions: a small, safe subset of Python compiled into the generated mapper.

Allowed: literals, arithmetic (``+ - * // % /``), comparisons, ``and``/``or``/``not``,
``a if c else b``, list/tuple literals, calls of the whitelisted functions, names of fields of the
same scope (``receiver.name`` for a nested target), ``parent.x`` for the enclosing scope (its
fields and child lists), the names of child lists (``lines``), ``index`` in a child scope, and
``table("NAME", value)`` for the dictionary's own tables. Anything else — attribute access on values, subscripts,
comprehensions, lambdas, imports — is refused when the dictionary is compiled.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from gateway.errors import ConfigError

_ALLOWED = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.Attribute,
    ast.List,
    ast.Tuple,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.And,
    ast.Or,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class CompiledExpr:
    """Python source for one expression plus what it depends on."""

    def __init__(self, source: str, fields: set[str], parent_fields: set[str], children: set[str]) -> None:
        self.source = source
        self.fields = fields
        self.parent_fields = parent_fields
        self.children = children


def compile_expr(
    text: str,
    *,
    where: str,
    field_names: set[str],
    child_names: set[str],
    functions: dict[str, Callable[..., object]],
    local_name: Callable[[str], str],
    parent_var: str = "P",
    specials: dict[str, str] | None = None,
    tables: set[str] | frozenset[str] = frozenset(),
) -> CompiledExpr:
    """Check ``text`` against the whitelist and rewrite its names into the mapper's variables.

    Args:
        text: the expression as written in the dictionary.
        where: the dictionary location, for error messages.
        field_names: target fields of this scope (``a`` or ``a.b``), scratch fields included.
        child_names: child lists of this scope.
        functions: callable names allowed; rewritten to ``_F_<name>``.
        local_name: maps a field name to its local variable in the generated code.
        parent_var: the variable holding the enclosing scope's values.
        specials: other names and the variables they stand for (``index`` in a child scope).
        tables: the dictionary's ``[tables.NAME]``; ``table("NAME", value)`` maps through one.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{where}: expression does not parse: {exc.msg}", f"{where}：表达式语法错误") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ConfigError(
                f"{where}: {type(node).__name__} is not allowed in expressions",
                f"{where}：表达式中不允许 {type(node).__name__}",
            )
    fields: set[str] = set()
    parents: set[str] = set()
    children: set[str] = set()

    class Rewriter(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            if isinstance(node.func, ast.Name) and node.func.id == "table":
                return self._table(node)
            if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                raise ConfigError(f"{where}: unknown function in {text!r}", f"{where}：未知函数")
            if node.keywords:
                raise ConfigError(f"{where}: keyword arguments are not allowed", f"{where}：不允许关键字参数")
            node.func = ast.Name(id=f"_F_{node.func.id}", ctx=ast.Load())
            node.args = [self.visit(a) for a in node.args]
            return node

        def _table(self, node: ast.Call) -> ast.AST:
            first = node.args[0] if node.args else None
            if (
                len(node.args) != 2
                or node.keywords
                or not isinstance(first, ast.Constant)
                or not isinstance(first.value, str)
            ):
                raise ConfigError(
                    f'{where}: write table("NAME", value) in {text!r}', f'{where}：应写作 table("码表名", 值)'
                )
            if first.value not in tables:
                raise ConfigError(f"{where}: unknown table {first.value!r}", f"{where}：未知码表 {first.value!r}")
            return ast.Call(
                func=ast.Name(id="_tbl", ctx=ast.Load()),
                args=[ast.Name(id=f"_TB_{first.value}", ctx=ast.Load()), self.visit(node.args[1]), first],
                keywords=[],
            )

        def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
            name = _dotted(node)
            if name is None:
                raise ConfigError(f"{where}: attribute access on a value is not allowed", f"{where}：不允许属性访问")
            return self._resolve(name)

        def visit_Name(self, node: ast.Name) -> ast.AST:
            return self._resolve(node.id)

        def _resolve(self, name: str) -> ast.AST:
            if name.startswith("parent."):
                pname = name[len("parent.") :]
                parents.add(pname)
                return ast.Subscript(
                    value=ast.Name(id=parent_var, ctx=ast.Load()), slice=ast.Constant(pname), ctx=ast.Load()
                )
            if name in field_names:
                fields.add(name)
                return ast.Name(id=local_name(name), ctx=ast.Load())
            if name in child_names:
                children.add(name)
                return ast.Name(id=f"c_{name}", ctx=ast.Load())
            if specials and name in specials:
                return ast.Name(id=specials[name], ctx=ast.Load())
            raise ConfigError(f"{where}: unknown name {name!r} in {text!r}", f"{where}：表达式中的未知名称 {name!r}")

    new = Rewriter().visit(tree)
    ast.fix_missing_locations(new)
    return CompiledExpr(ast.unparse(new.body), fields, parents, children)
