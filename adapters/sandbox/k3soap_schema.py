"""The shape of the K3 SOAP service, read from its WSDL (``adapters/k3/ERPService.wsdl``), for the
simulator in ``k3soap.py`` (reference/erp-protocols.md §3.5).

The simulator serves that same file at ``?wsdl`` and checks every request against the schemas
inside it, so the WSDL the adapter loads, the WSDL the sandbox serves and the rules the sandbox
enforces cannot drift apart. The checks are those of WCF's DataContractSerializer: members in
their sequence order and in their namespace, an unknown or misplaced element refused, required
members (``minOccurs="1"``, WCF's ``IsRequired``) present, values that parse as their XSD type,
``xsi:nil`` only where ``nillable``. A breach is a ``ShapeError``, which the simulator answers
with a SOAP fault whose faultcode is ``s:Client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from lxml import etree

from adapters.xmlsafe import parse

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_SIMPLE = frozenset({"string", "int", "decimal", "dateTime", "boolean"})
_INT_RANGE = (-(2**31), 2**31 - 1)


class ShapeError(ValueError):
    """The request does not have the shape the WSDL declares; the text names the element."""


@dataclass(frozen=True)
class Member:
    """One ``xsd:element`` of a sequence."""

    name: str
    type: etree.QName
    min_occurs: int
    unbounded: bool
    nillable: bool


@dataclass(frozen=True)
class Operation:
    name: str
    soap_action: str
    request: etree.QName  # the wrapper element of the input message
    response: etree.QName  # the wrapper element of the output message


def bundled_wsdl() -> bytes:
    """The WSDL file shipped with the adapter (package data)."""
    return resources.files("adapters.k3").joinpath("ERPService.wsdl").read_bytes()


def wsdl_with_address(wsdl: bytes, address: str) -> bytes:
    """``wsdl`` with every ``soap:address/@location`` set to ``address``."""
    root = parse(wsdl)
    for el in root.iter(f"{{{SOAP_BINDING_NS}}}address"):
        el.set("location", address)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


class ServiceShape:
    """The types, wrapper elements and operations of one WSDL."""

    def __init__(self, wsdl: bytes) -> None:
        root = parse(wsdl)
        self.target_ns = root.get("targetNamespace", "")
        self.types: dict[etree.QName, list[Member]] = {}
        self.elements: dict[etree.QName, list[Member]] = {}  # wrapper elements with inline types
        for schema in root.iter(f"{{{XSD_NS}}}schema"):
            self._read_schema(schema)
        self.operations: dict[str, Operation] = self._read_operations(root)

    # -- reading the WSDL -----------------------------------------------------------------------

    def _read_schema(self, schema: etree._Element) -> None:
        ns = schema.get("targetNamespace", "")
        for ctype in schema.findall(f"{{{XSD_NS}}}complexType"):
            self.types[etree.QName(ns, ctype.get("name"))] = _members(ctype)
        for element in schema.findall(f"{{{XSD_NS}}}element"):
            inline = element.find(f"{{{XSD_NS}}}complexType")
            if inline is not None:
                self.elements[etree.QName(ns, element.get("name"))] = _members(inline)

    def _read_operations(self, root: etree._Element) -> dict[str, Operation]:
        messages = {
            m.get("name"): _qname(m.find(f"{{{WSDL_NS}}}part"), m.find(f"{{{WSDL_NS}}}part").get("element"))
            for m in root.iter(f"{{{WSDL_NS}}}message")
        }
        port_ops = {}
        for op in root.iter(f"{{{WSDL_NS}}}portType"):
            for o in op.findall(f"{{{WSDL_NS}}}operation"):
                inp = o.find(f"{{{WSDL_NS}}}input")
                out = o.find(f"{{{WSDL_NS}}}output")
                port_ops[o.get("name")] = (
                    messages[_qname(inp, inp.get("message")).localname],
                    messages[_qname(out, out.get("message")).localname],
                )
        operations = {}
        for binding in root.iter(f"{{{WSDL_NS}}}binding"):
            for o in binding.findall(f"{{{WSDL_NS}}}operation"):
                soap_op = o.find(f"{{{SOAP_BINDING_NS}}}operation")
                request, response = port_ops[o.get("name")]
                action = soap_op.get("soapAction", "") if soap_op is not None else ""
                operations[o.get("name")] = Operation(o.get("name"), action, request, response)
        return operations

    # -- checking a request ---------------------------------------------------------------------

    def operation_for(self, action: str, wrapper: etree.QName) -> Operation:
        """The operation a request names by its SOAPAction and its body's wrapper element."""
        by_action = [op for op in self.operations.values() if op.soap_action == action]
        if not by_action:
            raise ShapeError(
                f"The message with Action '{action}' cannot be processed at the receiver, due to a "
                "ContractFilter mismatch at the EndpointDispatcher."
            )
        op = by_action[0]
        if wrapper != op.request:
            raise ShapeError(f"Expecting element '{op.request.localname}' from namespace '{op.request.namespace}'")
        return op

    def read_request(self, op: Operation, wrapper: etree._Element) -> dict[str, Any]:
        """The wrapper element's members as Python values (``str``, ``Decimal``, ``int``,
        ``datetime``, ``bool``, nested dicts and lists)."""
        return self._read_members(wrapper, self.elements[op.request], op.request.namespace, op.request.localname)

    def _read_members(self, el: etree._Element, members: list[Member], ns: str, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        index = 0
        for child in el:
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            qname = etree.QName(child)
            while index < len(members) and not (qname.localname == members[index].name and qname.namespace == ns):
                if members[index].min_occurs and members[index].name not in out:
                    raise ShapeError(f"{path}: the required member '{members[index].name}' is missing")
                index += 1
            if index == len(members):
                raise ShapeError(
                    f"{path}: element '{qname.localname}' from namespace '{qname.namespace}' is not expected here"
                )
            member = members[index]
            value = self._read_value(child, member, f"{path}/{member.name}")
            if member.unbounded:
                out.setdefault(member.name, []).append(value)
            elif member.name in out:
                raise ShapeError(f"{path}: '{member.name}' appears more than once")
            else:
                out[member.name] = value
        for member in members[index:]:
            if member.min_occurs and member.name not in out:
                raise ShapeError(f"{path}: the required member '{member.name}' is missing")
        return out

    def _read_value(self, el: etree._Element, member: Member, path: str) -> Any:
        if el.get(XSI_NIL) in ("true", "1"):
            if not member.nillable:
                raise ShapeError(f"{path} may not be nil")
            if len(el) or (el.text or "").strip():
                raise ShapeError(f"{path} is nil but has content")
            return None
        if member.type.namespace == XSD_NS:
            if len(el):
                raise ShapeError(f"{path} must be text")
            return _simple(member.type.localname, el.text or "", path)
        members = self.types.get(member.type)
        if members is None:
            raise ShapeError(f"{path}: unknown type {member.type}")
        return self._read_members(el, members, member.type.namespace, path)


def _members(ctype: etree._Element) -> list[Member]:
    sequence = ctype.find(f"{{{XSD_NS}}}sequence")
    if sequence is None:
        return []
    return [
        Member(
            name=e.get("name"),
            type=_qname(e, e.get("type")),
            min_occurs=int(e.get("minOccurs", "1")),
            unbounded=e.get("maxOccurs", "1") == "unbounded",
            nillable=e.get("nillable") == "true",
        )
        for e in sequence.findall(f"{{{XSD_NS}}}element")
    ]


def _qname(el: etree._Element, prefixed: str) -> etree.QName:
    prefix, _, local = prefixed.rpartition(":")
    return etree.QName(el.nsmap.get(prefix or None, ""), local)


def _simple(kind: str, text: str, path: str) -> Any:
    """An XSD simple value as WCF reads it; a value that does not parse is a ``ShapeError``."""
    if kind not in _SIMPLE:
        raise ShapeError(f"{path}: unsupported type xsd:{kind}")
    if kind == "string":
        return text
    value = text.strip()
    try:
        if kind == "decimal":
            number = Decimal(value)
            if not number.is_finite():
                raise InvalidOperation
            return number
        if kind == "int":
            whole = int(value)
            if not _INT_RANGE[0] <= whole <= _INT_RANGE[1]:
                raise ValueError
            return whole
        if kind == "boolean":
            if value not in ("true", "false", "1", "0"):
                raise ValueError
            return value in ("true", "1")
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (InvalidOperation, ValueError):
        raise ShapeError(f"{path}: '{value[:40]}' is not a valid xsd:{kind}") from None
