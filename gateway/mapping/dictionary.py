"""Load, check and compile dictionaries; translate payloads; report source fields nobody mapped."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import ConfigError, MappingError
from gateway.mapping.compiler import _paths, compile_mapper
from gateway.mapping.spec import ChildSpec, DictionarySpec, FieldSpec
from gateway.mapping.values import bundled_mappings, read_value_files
from schemas.order import CanonicalOrder
from schemas.refund import CanonicalRefund

_ROOTS: dict[str, type | None] = {"order": CanonicalOrder, "refund": CanonicalRefund, "document": None}

_ALL = "*"  # a known-tree node meaning "this whole subtree is known"


def _add_path(tree: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any] | None:
    node = tree
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt == _ALL:
            return None
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    last = keys[-1]
    if last == "*":
        return None
    if last not in node:
        node[last] = _ALL
    return node


def _known_tree(fields: dict[str, FieldSpec], children: dict[str, ChildSpec], ignore: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for p in ignore:
        keys = tuple(p.split("."))
        if keys[-1] == "*":
            _add_path(tree, keys[:-1])
        else:
            _add_path(tree, keys)
    for fs in fields.values():
        for keys in _paths(fs.path):
            _add_path(tree, keys)
    for cs in children.values():
        sub = _known_tree(cs.fields, cs.children, cs.ignore)
        for keys in _paths(cs.path):
            if keys in ((".",), ("", "")):  # "." is the current element itself
                _merge(tree, sub)
                continue
            node = tree
            for k in keys:
                nxt = node.get(k)
                if not isinstance(nxt, dict):
                    nxt = node[k] = {}
                node = nxt
            elem = node.setdefault("[]", {})
            _merge(elem, sub)
    return tree


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for k, v in other.items():
        cur = into.get(k)
        if cur is None or v == _ALL:
            into[k] = v
        elif isinstance(cur, dict) and isinstance(v, dict):
            _merge(cur, v)


def _walk_unknown(obj: Any, node: Any, prefix: str, out: set[str]) -> None:
    if node == _ALL or node is None:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            sub = node.get(k)
            path = f"{prefix}.{k}" if prefix else k
            if sub is None:
                out.add(path)
            elif sub != _ALL:
                _walk_unknown(v, sub, path, out)
    elif isinstance(obj, list):
        elem = node.get("[]")
        if elem is None:
            return
        for v in obj:
            _walk_unknown(v, elem, prefix + "[]", out)


@dataclass(frozen=True)
class CompiledDictionary:
    """A dictionary ready to translate: ``translate(payload)`` → canonical order (or dict)."""

    spec: DictionarySpec
    digest: str  # sha256 of the dictionary's text: identifies exactly what translated an order
    mapper: Any
    source_code: str
    known: dict[str, Any] = field(repr=False)
    # The value tables the dictionary declares (``values = [...]``), used when a caller gives none.
    lookups: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.dictionary.name

    @property
    def version(self) -> str:
        """``<declared version>+<first 12 hex of the digest>``: human and exact at once."""
        return f"{self.spec.dictionary.version}+{self.digest[:12]}"

    def root_of(self, payload: Any) -> dict[str, Any]:
        """The object to translate inside the payload; ``PAYLOAD_INVALID`` naming the path if absent."""
        root = self.spec.dictionary.root
        obj = payload
        if root:
            walked = []
            for k in root.split("."):
                walked.append(k)
                if not isinstance(obj, dict) or k not in obj:
                    raise MappingError(
                        ".".join(walked),
                        f"missing: this is not a {self.spec.dictionary.source or self.name} response",
                        f"缺失：这不是 {self.spec.dictionary.source or self.name} 的返回报文",
                    )
                obj = obj[k]
        if not isinstance(obj, dict):
            raise MappingError(root or "$", "expected an object", "应为对象")
        return obj

    def translate(self, payload: Any, lookups: dict[str, dict[str, Any]] | None = None) -> Any:
        """Translate a whole payload (root found by the dictionary)."""
        root = self.root_of(payload)
        prefix = f"{self.spec.dictionary.root}." if self.spec.dictionary.root else ""
        return self.mapper(root, self.lookups if lookups is None else lookups, prefix)

    def translate_object(self, obj: dict[str, Any], lookups: dict[str, dict[str, Any]] | None = None) -> Any:
        """Translate an object that is already the root (outbound documents). ``lookups`` (the
        target's value tables) replace the dictionary's own declared tables of the same name; the
        others stay as the dictionary's defaults (``[dictionary] values``)."""
        if lookups is None:
            return self.mapper(obj, self.lookups, "")
        return self.mapper(obj, {**self.lookups, **lookups} if self.lookups else lookups, "")

    def unknown_fields(self, payload: Any) -> list[str]:
        """Source paths present in the payload that the dictionary neither maps nor ignores."""
        try:
            root = self.root_of(payload)
        except MappingError:
            return []
        out: set[str] = set()
        _walk_unknown(root, self.known, "", out)
        return sorted(out)

    def shop_alias(self, payload: Any) -> str | None:
        alias = self.spec.dictionary.shop_alias
        if not alias:
            return None
        try:
            root = self.root_of(payload)
        except MappingError:
            return None
        for keys in _paths(alias):
            obj: Any = root
            for k in keys:
                obj = obj.get(k) if isinstance(obj, dict) else None
            if isinstance(obj, str | int) and not isinstance(obj, bool) and str(obj).strip():
                return str(obj).strip()
        return None


def parse_dictionary(text: str, *, origin: str = "<text>") -> DictionarySpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}", f"{origin}：TOML 格式错误：{exc}") from None
    try:
        return msgspec.convert(raw, DictionarySpec)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin}: {exc}", f"{origin}：字典结构错误：{exc}") from None


def compile_dictionary(text: str, *, origin: str = "<text>", base: Path | None = None) -> CompiledDictionary:
    """Parse and compile one dictionary; every mistake is a ``ConfigError`` naming where it is.

    ``base`` is the mappings folder its declared value tables are read from (default: the bundled one).
    """
    spec = parse_dictionary(text, origin=origin)
    try:
        lookups = read_value_files(base or bundled_mappings(), spec.dictionary.values) if spec.dictionary.values else {}
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message_en}", f"{origin}：{exc.message_zh}") from None
    root_cls = _ROOTS[spec.dictionary.kind]
    try:
        mapper, source = compile_mapper(spec, root_cls)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message_en}", f"{origin}：{exc.message_zh}") from None
    known = _known_tree(spec.fields, spec.children, spec.dictionary.ignore)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return CompiledDictionary(spec=spec, digest=digest, mapper=mapper, source_code=source, known=known, lookups=lookups)


def load_dictionary(path: Path) -> CompiledDictionary:
    """A dictionary file under ``<mappings>/<kind folder>/``; its value tables are read from ``<mappings>``."""
    return compile_dictionary(path.read_text(encoding="utf-8"), origin=str(path), base=path.parent.parent)
