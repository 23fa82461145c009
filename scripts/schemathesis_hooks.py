"""schemathesis hooks for scripts/schemathesis.

Two things a real client knows about the store and a generator cannot, adapted in the requests
before they are sent, each keeping a case as valid or invalid as it was drawn:

1. An event id is an idempotency key: an append that reuses a committed id for a different event is
refused (400, `event_id`, `committed_stream`), and ids must be distinct within an append. A real
client gives each new event a new id; schemathesis draws ids from a seeded generator and repeats
them across cases. So every valid, non-nil UUID it puts in an appended event's `id` is replaced by a
fresh one before the request is sent. Invalid ids (the negative cases) are left as they are.

2. A DCB condition's `after` must be a position the client can have read: at most the head (a later
one is refused, 400). A non-negative integer `after` beyond the head is lowered to the head, and
dropped while the log is empty (where every `after` is beyond it).
"""

import json
import os
import urllib.request

import uuid

import schemathesis


def _head():
    with urllib.request.urlopen(os.environ["STRATA_URL"] + "/v1/info", timeout=10) as answer:
        return json.load(answer)["head_position"]

APPEND_PATHS = {"/v1/streams/{stream}", "/v1/append"}


def _fresh(event):
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        return
    try:
        parsed = uuid.UUID(event["id"])
    except ValueError:
        return
    if parsed.int != 0 and str(parsed) == event["id"].lower():
        event["id"] = str(uuid.uuid4())


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.method.upper() != "POST" or case.path not in APPEND_PATHS:
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        for event in body["events"]:
            _fresh(event)
    condition = body.get("condition") if isinstance(body, dict) else None
    after = condition.get("after") if isinstance(condition, dict) else None
    if isinstance(after, (int, float)) and not isinstance(after, bool) and after >= 0 and after == int(after):
        head = _head()
        if head is None:
            del condition["after"]
        elif after > head:
            condition["after"] = head
