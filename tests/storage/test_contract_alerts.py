"""The storage contract for alerts: rules, history and the webhook outbox (every backend)."""

from __future__ import annotations

import threading

from pbistream.storage.base import AlertEventRecord, Storage


def rule(rid: str, dataset: str = "d1", at: float = 1.0) -> dict:
    return {"id": rid, "dataset": dataset, "createdAt": at, "field": "temp", "op": ">"}


def test_rules_are_saved_replaced_listed_and_deleted(storage: Storage) -> None:
    storage.save_alert_rule(rule("a", at=2.0))
    storage.save_alert_rule(rule("b", at=1.0))
    storage.save_alert_rule({**rule("a", at=2.0), "op": "<"})
    assert [(r["id"], r["op"]) for r in storage.list_alert_rules()] == [("b", ">"), ("a", "<")]
    assert storage.delete_alert_rule("a") is True
    assert storage.delete_alert_rule("a") is False
    assert [r["id"] for r in storage.list_alert_rules()] == ["b"]


def test_an_event_and_its_delivery_are_stored_together(storage: Storage) -> None:
    ids = storage.record_alert_events(
        [
            AlertEventRecord(
                "a",
                10.0,
                "fired",
                {"value": 31},
                "http://127.0.0.1:9/h",
                lambda event_id: f'{{"event": {event_id}}}',
            ),
            AlertEventRecord("a", 11.0, "cleared", {"value": 20}),
        ]
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    events = storage.list_alert_events()
    assert [(e.kind, e.delivery) for e in events] == [("cleared", None), ("fired", "pending")]
    assert storage.list_alert_events(after_id=ids[0])[0].id == ids[1]
    claimed = storage.claim_alert_deliveries(10.0, lease=60, limit=10)
    assert [(d.event_id, d.body, d.attempts) for d in claimed] == [
        (ids[0], f'{{"event": {ids[0]}}}', 0)
    ]
    # Claimed: not handed out again until the lease ends.
    assert storage.claim_alert_deliveries(20.0, lease=60, limit=10) == []
    assert len(storage.claim_alert_deliveries(71.0, lease=60, limit=10)) == 1
    storage.finish_alert_delivery(
        claimed[0].id, status="pending", attempts=1, next_at=200.0, error="HTTP 503"
    )
    assert storage.claim_alert_deliveries(199.0, lease=60, limit=10) == []
    again = storage.claim_alert_deliveries(200.0, lease=60, limit=10)
    assert again[0].attempts == 1
    storage.finish_alert_delivery(again[0].id, status="sent", attempts=2, next_at=200.0)
    assert storage.claim_alert_deliveries(10_000.0, lease=60, limit=10) == []
    fired = storage.list_alert_events(rule_id="a")[-1]
    assert (fired.delivery, fired.attempts) == ("sent", 2)


def test_deleting_a_rule_drops_its_pending_deliveries(storage: Storage) -> None:
    storage.save_alert_rule(rule("a"))
    storage.record_alert_events([AlertEventRecord("a", 1.0, "fired", {}, "http://x/", "{}")])
    storage.delete_alert_rule("a")
    assert storage.claim_alert_deliveries(100.0, lease=1, limit=10) == []
    assert storage.list_alert_events()[0].delivery == "dropped"


def test_concurrent_claims_never_hand_out_one_delivery_twice(storage: Storage) -> None:
    storage.record_alert_events(
        [AlertEventRecord("a", 1.0, "fired", {}, "http://x/", "{}") for _ in range(40)]
    )
    got: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        for _ in range(10):
            found = storage.claim_alert_deliveries(5.0, lease=1000, limit=3)
            with lock:
                got.extend(d.id for d in found)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(set(got))
    assert len(got) == 40
