"""Manual review over real HTTP on SQLite: held orders approved (delivered once) or rejected (never
delivered), the errors people meet, and the two-person override of an intercepted order."""

from __future__ import annotations

import asyncio
import threading

import httpx
import msgspec
import pytest

from gateway.commands import create_key
from gateway.demo import rule_breaking_order
from gateway.settings import load_settings
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

TB = SAMPLES / "taobao"


def _post(gw: RunningGateway, body: bytes) -> httpx.Response:
    with gw.client("platform") as c:
        return c.post("/v1/orders/taobao", content=body, headers={"Content-Type": "application/json"})


def _held_payload(tid_offset: int = 0) -> dict:
    payload = msgspec.json.decode((TB / "01_single_line_paid.json").read_bytes())
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["status"] = "PAID_FORBID_CONSIGN"  # PAID_HOLD holds it
    if tid_offset:
        trade["tid"] += tid_offset
        trade["tid_str"] = str(trade["tid"])
    return payload


def _hold(gw: RunningGateway, tid_offset: int = 0) -> str:
    r = _post(gw, msgspec.json.encode(_held_payload(tid_offset)))
    assert r.status_code == 202 and r.json()["status"] == "held", r.text
    return r.json()["id"]


def _person(gw: RunningGateway, role: str, label: str) -> httpx.Client:
    """A client with a new key of ``role`` issued to ``label`` (the fixture's keys are all "test")."""
    key = asyncio.run(create_key(load_settings(), role=role, label=label))
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _adds(sandbox: RunningSandbox) -> list[dict]:
    return [c for c in sandbox.calls("u8") if 'proc="add"' in c["request"]]


def _audit(gw: RunningGateway) -> list[dict]:
    with gw.client("auditor") as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True
        return c.get("/v1/audit", params={"limit": 1000}).json()["items"]


def test_a_held_order_is_listed_approved_and_delivered_once(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    order_id = _hold(gateway)
    with gateway.client("it") as it:
        (item,) = it.get("/v1/review").json()["items"]
        assert (item["id"], item["platform"], item["shop_id"], item["state"]) == (
            order_id,
            "taobao",
            "demo-taobao",
            "held",
        )
        assert item["order_id"] == str(_held_payload()["trade_fullinfo_get_response"]["trade"]["tid"])
        assert item["rules"] == ["PAID_HOLD"] and item["hold_reasons"] == ["GROUP_BUY_PENDING"]
        (v,) = [v for v in item["violations"] if v["rule"] == "PAID_HOLD"]
        assert v["severity"] == "hold" and "PAID_FORBID_CONSIGN" in v["message_en"] and v["message_zh"]
        assert item["age_seconds"] >= 0 and item["created_at"] and item["held_at"] and item["intercept_id"]
        for params, found in [
            ({"platform": "taobao"}, 1),
            ({"platform": "jd"}, 0),
            ({"shop": "demo-taobao"}, 1),
            ({"shop": "demo-jd"}, 0),
            ({"rule": "PAID_HOLD"}, 1),
            ({"rule": "COUPON_STACK_LIMIT"}, 0),
        ]:
            assert len(it.get("/v1/review", params=params).json()["items"]) == found, params

        # the errors a person meets
        for body in (b"", b"{}", b'{"reason": "   "}', b'{"reason": 7}'):
            r = it.post(f"/v1/review/{order_id}/approve", content=body)
            assert r.status_code == 400 and r.json()["code"] == "REASON_REQUIRED", body
            assert r.json()["message_zh"] and r.json()["message_en"]
        r = it.post(f"/v1/review/{order_id}/approve", content=b"{not json")
        assert r.status_code == 400 and r.json()["code"] == "PAYLOAD_INVALID"
        r = it.post("/v1/review/01NOSUCHORDER/approve", json={"reason": "x"})
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    for role in ("platform", "wms", "auditor"):
        with gateway.client(role) as c:
            assert c.get("/v1/review").status_code == 403
            r = c.post(f"/v1/review/{order_id}/approve", json={"reason": "我来放行"})
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert gateway.order(order_id)["state"] == "held"

    with gateway.client("it") as it:
        r = it.post(f"/v1/review/{order_id}/approve", json={"reason": "团购已成团，联系人 13812345678 确认"})
        assert r.status_code == 200, r.text
        decided = r.json()
        assert (decided["decision"], decided["state"], decided["rules"]) == ("approved", "accepted", ["PAID_HOLD"])
        assert "13812345678" not in decided["reason"] and "138****5678" in decided["reason"]
        assert decided["decided_by"].startswith("test (key ")
        again = it.post(f"/v1/review/{order_id}/approve", json={"reason": "again"})
        assert again.status_code == 409 and again.json()["code"] == "ORDER_NOT_HELD"
        assert again.json()["state"] in ("accepted", "delivering", "delivered")
        other = it.post(f"/v1/review/{order_id}/reject", json={"reason": "too late"})
        assert other.status_code == 409 and other.json()["code"] == "ORDER_NOT_HELD"
        assert it.get("/v1/review").json()["items"] == []

    order = gateway.wait_state(order_id, "delivered")
    docs = sandbox.documents("u8")
    assert [d["code"] for d in docs] == [order["erp"]["document_no"]]
    kinds = [t["kind"] for t in order["timeline"]]
    assert kinds.index("order.held") < kinds.index("review.approved") < kinds.index("erp.delivered")
    (entry,) = [t for t in order["timeline"] if t["kind"] == "review.approved"]
    assert entry["detail"]["by"] == decided["decided_by"] and entry["detail"]["reason"] == decided["reason"]
    audit = _audit(gateway)
    (approved,) = [e for e in audit if e["action"] == "review.approved"]
    assert approved["actor"] == decided["decided_by"] and approved["subject_id"] == order_id
    assert approved["data"]["reason"] == decided["reason"] and approved["data"]["rules"] == ["PAID_HOLD"]
    assert "13812345678" not in str(audit)
    # Delivered once: a later accepted order is delivered too, and the approved one not again.
    later = _post(gateway, (TB / "02_multi_line_coupons.json").read_bytes()).json()["id"]
    gateway.wait_state(later, "delivered")
    assert len(sandbox.documents("u8")) == 2 and len(_adds(sandbox)) == 2


def test_a_rejected_order_is_never_delivered(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    order_id = _hold(gateway)
    with gateway.client("admin") as admin:
        r = admin.post(f"/v1/review/{order_id}/reject", json={"reason": "团购未成团，取消"})
        assert r.status_code == 200, r.text
        assert (r.json()["decision"], r.json()["state"]) == ("rejected", "cancelled")
        again = admin.post(f"/v1/review/{order_id}/reject", json={"reason": "twice"})
        assert again.status_code == 409 and again.json()["code"] == "ORDER_NOT_HELD"
        assert again.json()["state"] == "cancelled"
        assert admin.post(f"/v1/review/{order_id}/approve", json={"reason": "changed my mind"}).status_code == 409
    # The platform later says it may ship: the person's rejection stands.
    payload = _held_payload()
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["status"], trade["modified"] = "WAIT_SELLER_SEND_GOODS", "2024-06-18 21:00:00"
    assert _post(gateway, msgspec.json.encode(payload)).status_code == 202
    later = _post(gateway, (TB / "02_multi_line_coupons.json").read_bytes()).json()["id"]
    gateway.wait_state(later, "delivered")
    order = gateway.order(order_id)
    assert order["state"] == "cancelled" and order["erp"]["document_no"] is None
    assert "review.rejected" in [t["kind"] for t in order["timeline"]]
    assert len(sandbox.documents("u8")) == 1 and len(_adds(sandbox)) == 1
    (rejected,) = [e for e in _audit(gateway) if e["action"] == "review.rejected"]
    assert rejected["subject_id"] == order_id and rejected["data"]["state"] == "cancelled"


def test_two_people_deciding_at_once_exactly_one_wins(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    ids = [_hold(gateway, tid_offset=n) for n in range(1, 6)]
    alice, bob = _person(gateway, "it", "alice"), _person(gateway, "admin", "bob")
    try:
        for order_id in ids:
            answers: list[httpx.Response] = []
            start = threading.Barrier(2)

            def decide(client: httpx.Client, verb: str, order_id: str = order_id) -> None:
                start.wait()
                answers.append(client.post(f"/v1/review/{order_id}/{verb}", json={"reason": verb}))

            threads = [
                threading.Thread(target=decide, args=(alice, "approve")),
                threading.Thread(target=decide, args=(bob, "reject")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
            (won,) = [a.json() for a in answers if a.status_code == 200]
            (lost,) = [a.json() for a in answers if a.status_code == 409]
            assert lost["code"] == "ORDER_NOT_HELD" and lost["state"] == won["state"]
            decisions = [t for t in gateway.order(order_id)["timeline"] if t["kind"].startswith("review.")]
            assert len(decisions) == 1
    finally:
        alice.close()
        bob.close()


def test_an_intercepted_order_goes_through_only_with_two_people(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    body = rule_breaking_order(SAMPLES)
    r = _post(gateway, body)
    assert r.status_code == 422
    intercept_id = r.json()["intercept_id"]
    tid = str(msgspec.json.decode(body)["trade_fullinfo_get_response"]["trade"]["tid"])

    with gateway.client("platform") as c:
        r = c.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "x"})
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    with gateway.client("it") as it:  # the fixture's it key, issued to "test"
        r = it.post(f"/v1/intercepts/{intercept_id}/override", json={})
        assert r.status_code == 400 and r.json()["code"] == "REASON_REQUIRED"
        assert it.post("/v1/intercepts/01NOSUCH/override", json={"reason": "x"}).status_code == 404
        r = it.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "大客户，三张券经运营确认"})
        assert r.status_code == 202, r.text
        requested = r.json()
        assert requested["status"] == "requested" and "order" not in requested
        assert requested["override"]["requested_by"].startswith("test (key ")
        assert requested["override"]["rules"] == ["COUPON_STACK_LIMIT"]
        # one person is not enough: nothing was stored, nothing delivered
        with gateway.client("wms") as wms:
            assert wms.get("/v1/orders", params={"order_id": tid}).json()["items"] == []
        r = it.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "again, me"})
        assert r.status_code == 403 and r.json()["code"] == "SECOND_PERSON_REQUIRED"
        waiting = it.get("/v1/review/overrides", params={"state": "requested"}).json()["items"]
        assert [o["intercept_id"] for o in waiting] == [intercept_id]
    with gateway.client("admin") as admin:  # another key, but issued to the same person ("test")
        r = admin.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "me with my other key"})
        assert r.status_code == 403 and r.json()["code"] == "SECOND_PERSON_REQUIRED"
    assert sandbox.documents("u8") == []

    with _person(gateway, "it", "李工") as second:
        r = second.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "同意放行"})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "overridden" and done["order"]["status"] == "accepted"
        assert done["override"]["confirmed_by"].startswith("李工 (key ")
        assert done["override"]["requested_by"] == requested["override"]["requested_by"]
        order_id = done["order"]["id"]
        assert done["override"]["order_id"] == order_id
        r = second.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "once more"})
        assert r.status_code == 409 and r.json()["code"] == "INTERCEPT_ALREADY_OVERRIDDEN"
        assert r.json()["gateway_order_id"] == order_id
        shown = second.get(f"/v1/intercepts/{intercept_id}").json()
        assert shown["override"]["state"] == "confirmed" and shown["override"]["confirmed_by"]
    with _person(gateway, "it", "王工") as third:
        assert third.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "me too"}).status_code == 409

    order = gateway.wait_state(order_id, "delivered")
    assert order["order_id"] == tid and len(order["promotions"]) >= 3
    kinds = [t["kind"] for t in order["timeline"]]
    assert kinds[:2] == ["order.accepted", "review.overridden"] and kinds[-1] == "erp.delivered"
    # The platform sends the same order again: the same order, still one document.
    again = _post(gateway, body)
    assert again.status_code == 200 and again.json()["id"] == order_id
    later = _post(gateway, (TB / "01_single_line_paid.json").read_bytes()).json()["id"]
    gateway.wait_state(later, "delivered")
    assert len([d for d in sandbox.documents("u8") if d["define10"] == tid]) == 1
    assert len(_adds(sandbox)) == 2
    with gateway.client("wms") as wms:
        assert len(wms.get("/v1/orders", params={"order_id": tid}).json()["items"]) == 1

    audit = _audit(gateway)
    (asked,) = [e for e in audit if e["action"] == "intercept.override_requested"]
    (overridden,) = [e for e in audit if e["action"] == "intercept.overridden"]
    assert asked["actor"] == requested["override"]["requested_by"] and asked["data"]["reason"]
    assert overridden["actor"] == done["override"]["confirmed_by"]
    assert overridden["data"]["requested_by"] == asked["actor"] and overridden["data"]["reason"] == "同意放行"
    assert overridden["data"]["gateway_order_id"] == order_id and overridden["subject_id"] == intercept_id
    with gateway.client("auditor") as c:
        (listed,) = c.get("/v1/intercepts", params={"rule": "COUPON_STACK_LIMIT"}).json()["items"]
        assert listed["override"]["confirmed_by"] == done["override"]["confirmed_by"]
        assert listed["override"]["requested_by"] == requested["override"]["requested_by"]


def test_a_hold_intercept_is_decided_in_the_queue_not_overridden(gateway: RunningGateway) -> None:
    order_id = _hold(gateway)
    with gateway.client("it") as it:
        (item,) = it.get("/v1/review").json()["items"]
        r = it.post(f"/v1/intercepts/{item['intercept_id']}/override", json={"reason": "x"})
        assert r.status_code == 409 and r.json()["code"] == "INTERCEPT_NOT_OVERRIDABLE"
        assert r.json()["gateway_order_id"] == order_id


def test_a_newer_version_still_held_shows_its_own_reasons(gateway: RunningGateway) -> None:
    order_id = _hold(gateway)
    with gateway.client("it") as it:
        (first,) = it.get("/v1/review").json()["items"]
    payload = _held_payload()
    payload["trade_fullinfo_get_response"]["trade"]["modified"] = "2024-06-18 21:00:00"
    r = _post(gateway, msgspec.json.encode(payload))
    assert r.status_code == 202 and r.json()["status"] == "held"
    with gateway.client("it") as it:
        (item,) = it.get("/v1/review").json()["items"]
    assert item["id"] == order_id and item["rules"] == ["PAID_HOLD"]
    assert item["intercept_id"] != first["intercept_id"]  # the newer version's hold record


def test_an_override_covers_only_the_rules_it_names(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    # Three coupons (rejected) and the platform says do not ship yet (held): overriding the coupon
    # rule stores the order, held by the other rule, and a person releases it from the queue.
    payload = msgspec.json.decode(rule_breaking_order(SAMPLES))
    payload["trade_fullinfo_get_response"]["trade"]["status"] = "PAID_FORBID_CONSIGN"
    r = _post(gateway, msgspec.json.encode(payload))
    assert r.status_code == 422
    assert {v["rule"] for v in r.json()["violations"]} == {"COUPON_STACK_LIMIT", "PAID_HOLD"}
    intercept_id = r.json()["intercept_id"]
    with _person(gateway, "it", "alice") as alice, _person(gateway, "it", "bob") as bob:
        assert alice.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "券经确认"}).status_code == 202
        r = bob.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "同意"})
        assert r.status_code == 200, r.text
        assert r.json()["order"]["status"] == "held"
        order_id = r.json()["order"]["id"]
        (item,) = bob.get("/v1/review").json()["items"]
        assert item["id"] == order_id and item["rules"] == ["PAID_HOLD"]
        assert gateway.order(order_id)["state"] == "held"
        assert alice.post(f"/v1/review/{order_id}/approve", json={"reason": "已成团"}).status_code == 200
    gateway.wait_state(order_id, "delivered")
    assert len(sandbox.documents("u8")) == 1


def test_an_override_of_a_purged_intercept_answers_payload_purged(gateway: RunningGateway) -> None:
    """The raw payload went under the retention policy: 410 PAYLOAD_PURGED, nothing stored."""
    from datetime import timedelta

    from gateway.bootstrap import build_container
    from gateway.retention import purge_payloads

    r = _post(gateway, rule_breaking_order(SAMPLES))
    assert r.status_code == 422
    intercept_id = r.json()["intercept_id"]

    async def purge_everything() -> None:
        c = await build_container(load_settings())
        try:
            # one day of retention, seen from two days ahead: every payload stored so far goes
            await purge_payloads(c.uow_factory, days=1, now=c.clock.now() + timedelta(days=2), actor="test")
        finally:
            await c.aclose()

    asyncio.run(purge_everything())
    with gateway.client("it") as it:
        assert it.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "x"}).status_code == 202
    with _person(gateway, "it", "李工") as second:
        r = second.post(f"/v1/intercepts/{intercept_id}/override", json={"reason": "同意放行"})
    assert r.status_code == 410 and r.json()["code"] == "PAYLOAD_PURGED", r.text
