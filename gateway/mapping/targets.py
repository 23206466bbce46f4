"""What a compiled scope builds: a msgspec Struct class (order dictionaries) or a plain dict
(document dictionaries), and the facts the compiler checks against it."""

from __future__ import annotations

import typing
from typing import Any

import msgspec


def _struct_of(t: Any) -> type | None:
    return t if isinstance(t, type) and issubclass(t, msgspec.Struct) else None


class Target:
    def __init__(self, cls: type | None) -> None:
        self.cls = cls
        self.hints = typing.get_type_hints(cls, include_extras=False) if cls else {}
        self.extras = typing.get_type_hints(cls, include_extras=True) if cls else {}
        self.required = {f.name for f in msgspec.structs.fields(cls) if f.required} if cls else set()

    def sub(self, name: str) -> Target:
        """The target of a nested field (``receiver``) or of a child list (``lines``)."""
        t = self.hints.get(name)
        if t is None:
            raise KeyError(name)
        for cand in (t, *typing.get_args(t)):
            if (cls := _struct_of(cand)) is not None:
                return Target(cls)
            if typing.get_origin(cand) is list and (cls := _struct_of(typing.get_args(cand)[0])) is not None:
                return Target(cls)
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

    def lower_bound(self, name: str) -> int | float | None:
        """The ``Meta(ge=…)`` of a field (``NonNegFen``, ``Qty``), which Struct construction does not check."""
        t = self.extras.get(name)
        for cand in (t, *typing.get_args(t)) if t is not None else ():
            if typing.get_origin(cand) is typing.Annotated:
                for meta in cand.__metadata__:
                    if isinstance(meta, msgspec.Meta) and meta.ge is not None:
                        return meta.ge
        return None

    def structs_in(self, name: str) -> tuple[type, bool] | None:
        """``(Struct class, is_list)`` when a transform's builtins must become Structs (``list[Spec]``)."""
        t = self.hints.get(name)
        if t is None:
            return None
        for cand in (t, *typing.get_args(t)):
            if (cls := _struct_of(cand)) is not None:
                return cls, False
            if typing.get_origin(cand) is list:
                args = typing.get_args(cand)
                if args and (cls := _struct_of(args[0])) is not None:
                    return cls, True
        return None
