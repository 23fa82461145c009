"""schemathesis hooks for scripts/schemathesis.

Two things a real client knows about the store and a generator cannot, adapted in the requests
before they are sent, each keeping a case as valid or invalid as it was drawn:

1. An event id is an idempotency key: an append that reuses a committed id for a different event is
refused (400, `event_id`, `committed_stream`), and ids must be distinct within an append. A real
client gives each new event a new id; schemathesis draws ids from a seeded generator and repeats
them across cases. So every valid, non-nil UUID it puts in an appended event's `id` is replaced by a
fresh one before the request is sent. Invalid ids (the negative cases) are left as they are.

2. A stream has one expected-revision check per append (two are refused, 400: which would hold?);
a second check of the same stream is dropped.

3. A DCB condition's `after` must be a position the client can have read: at most the head (a later
one is refused, 400). A non-negative integer `after` beyond the head is lowered to the head, and
dropped while the log is empty (where every `after` is beyond it).

4. Stateful cases take path parameters from earlier answers without holding them to the schema: a
stream listing names `$streams`, which the document forbids in writes (`$` is reserved). Such a
value in a positive case's write path loses its leading `$`s, becoming the valid name it stands for.
"""

import json
import os
import urllib.parse
import urllib.request

import uuid

import schemathesis


def _head():
    with urllib.request.urlopen(os.environ["STRATA_URL"] + "/v1/info", timeout=10) as answer:
        return json.load(answer)["head_position"]

APPEND_PATHS = {"/v1/streams/{stream}", "/v1/append"}
WRITE_METHODS = {"POST", "PUT", "DELETE"}


def _positive(case):
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return mode is not None and getattr(mode, "is_positive", False)


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
    parameters = case.path_parameters or {}
    stream = parameters.get("stream")
    # Values taken from answers may arrive percent-encoded.
    if isinstance(stream, str) and case.method.upper() in WRITE_METHODS and _positive(case):
        decoded = urllib.parse.unquote(stream)
        if decoded.startswith("$"):
            parameters["stream"] = decoded.lstrip("$") or "s"
    if case.method.upper() != "POST" or case.path not in APPEND_PATHS:
        return
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("checks"), list):
        seen, kept = set(), []
        for check in body["checks"]:
            key = check.get("stream") if isinstance(check, dict) else None
            if isinstance(key, str):
                if key in seen:
                    continue
                seen.add(key)
            kept.append(check)
        body["checks"] = kept
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
