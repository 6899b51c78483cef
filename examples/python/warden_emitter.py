"""Emit an agent's tool calls, prompts and tool results to Warden.

Copy this file into your agent runtime. It has no dependency for HTTP
(standard library only) and needs `kafka-python` for Kafka
(`pip install 'kafka-python>=2.1'`). The event contract is
docs/events.md; this module builds events that follow it.

Wire it in at the one place your framework runs tools:

    emitter = WardenEmitter(agent_id="billing-assistant", agent_class="payments",
                            http_url="http://warden.internal:8080",
                            token=os.environ["WARDEN_INGEST_TOKEN"])
    session = emitter.session(principal="user:alice")
    session.prompt("Pay the invoice INV-7 from Acme", entities=["INV-7"])

    @session.tool(resource_type="bank_account", action="write",
                  resource_id=lambda args: args["iban"])
    def send_payment(iban, amount):
        ...

An MCP server does the same in its `call_tool` handler: `session.call(...)`
before running the tool, `session.result(...)` after. Send `credential_id`
(the token, or better its non-secret accessor) so that enforce mode can
revoke it.

Run as a script for a demo session (prints what Warden answered):

    python3 examples/python/warden_emitter.py --http http://127.0.0.1:8080
    python3 examples/python/warden_emitter.py --kafka 127.0.0.1:9092 --topic tool-calls
"""

import argparse
import datetime
import functools
import json
import os
import sys
import urllib.error
import urllib.request
import uuid


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _drop_none(event):
    return {k: v for k, v in event.items() if v is not None}


class WardenError(Exception):
    """Warden refused the events (4xx/5xx), with its JSON answer."""

    def __init__(self, status, answer):
        super().__init__(f"Warden answered {status}: {answer}")
        self.status = status
        self.answer = answer


class WardenEmitter:
    """Sends events for one agent over HTTP, Kafka, or both.

    HTTP events are buffered and posted as NDJSON by `flush()` (called
    every `batch` events and by `Session` at the end of a tool call);
    Kafka events are produced with key = agent_id, so one agent's events
    keep their order.
    """

    def __init__(self, agent_id, agent_instance=None, agent_class=None, http_url=None,
                 token=None, kafka_brokers=None, topic="tool-calls", batch=100, timeout=5.0):
        if not http_url and not kafka_brokers:
            raise ValueError("give http_url, kafka_brokers, or both")
        self.agent_id = agent_id
        self.agent_instance = agent_instance
        self.agent_class = agent_class
        self.http_url = http_url.rstrip("/") + "/v1/events" if http_url else None
        self.token = token
        self.topic = topic
        self.batch = batch
        self.timeout = timeout
        self.answers = []  # Warden's HTTP answers, for logging or tests
        self._buffer = []
        self._producer = None
        if kafka_brokers:
            from kafka import KafkaProducer  # pip install 'kafka-python>=2.1'

            self._producer = KafkaProducer(
                bootstrap_servers=kafka_brokers,
                key_serializer=str.encode,
                value_serializer=lambda e: json.dumps(e, separators=(",", ":")).encode(),
                acks="all",
                linger_ms=5,
            )

    def session(self, session_id=None, principal=None, credential_id=None):
        return Session(self, session_id or f"sess-{uuid.uuid4().hex[:12]}", principal, credential_id)

    def emit(self, event):
        """Sends one event (a dict per docs/events.md)."""
        event = _drop_none(event)
        event.setdefault("event_id", uuid.uuid4().hex)
        event.setdefault("ts", _now())
        event["agent_id"] = self.agent_id
        if self.agent_instance:
            event.setdefault("agent_instance", self.agent_instance)
        if self._producer is not None:
            self._producer.send(self.topic, key=self.agent_id, value=event)
        if self.http_url:
            self._buffer.append(event)
            if len(self._buffer) >= self.batch:
                self.flush()
        return event["event_id"]

    def flush(self):
        """Posts buffered events; raises WardenError if Warden took none."""
        if self._producer is not None:
            self._producer.flush(timeout=self.timeout)
        if not self._buffer:
            return None
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in self._buffer).encode()
        self._buffer = []
        headers = {"Content-Type": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.http_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise WardenError(e.code, e.read().decode(errors="replace")) from None
        self.answers.append(answer)
        if answer.get("rejected"):
            # Some events were refused: say which field, never drop silently.
            print(f"warden rejected {answer['rejected']} event(s): {answer['errors']}", file=sys.stderr)
        return answer

    def close(self):
        self.flush()
        if self._producer is not None:
            self._producer.close(timeout=self.timeout)


class Session:
    """One task or conversation of the agent: ties prompts, calls and results."""

    def __init__(self, emitter, session_id, principal, credential_id):
        self.emitter = emitter
        self.session_id = session_id
        self.principal = principal
        self.credential_id = credential_id

    def prompt(self, text, entities=None):
        """The user's request: trusted input."""
        return self.emitter.emit({"kind": "prompt", "session_id": self.session_id,
                                  "text": text, "entities": entities})

    def call(self, tool, args=None, resource_type=None, resource_id=None, action=None,
             origin=None, credential_id=None, event_id=None):
        """A tool call, before the tool runs. `origin` is where the
        instruction came from: {"kind": "user_prompt" | "tool_output" |
        "retrieved_content" | "system", "ref": ..., "excerpt": ...}."""
        return self.emitter.emit({
            "event_id": event_id,
            "session_id": self.session_id,
            "agent_class": self.emitter.agent_class,
            "principal": self.principal,
            "tool": tool,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "action": action,
            "args": args,
            "credential_id": credential_id or self.credential_id,
            "origin": origin,
        })

    def result(self, call_event_id, tool, result, entities=None, trusted=False):
        """What the tool returned: untrusted unless it is your own system of record."""
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return self.emitter.emit({
            "kind": "tool_result",
            "session_id": self.session_id,
            "call_event_id": call_event_id,
            "tool": tool,
            "result": text[:2000],
            "entities": entities,
            "trust": "trusted" if trusted else "untrusted",
        })

    def tool(self, resource_type=None, action=None, resource_id=None, origin=None):
        """Decorator: reports each call of the function and its result.
        `resource_id` may be a function of the keyword arguments."""

        def wrap(fn):
            @functools.wraps(fn)
            def run(**kwargs):
                rid = resource_id(kwargs) if callable(resource_id) else resource_id
                call_id = self.call(fn.__name__, args=kwargs, resource_type=resource_type,
                                    resource_id=rid, action=action, origin=origin)
                out = fn(**kwargs)
                self.result(call_id, fn.__name__, out)
                self.emitter.flush()
                return out

            return run

        return wrap


def demo(emitter, sessions=1):
    """A billing assistant's session, as a runtime would report it."""
    for _ in range(sessions):
        s = emitter.session(principal="user:alice@example.com", credential_id="tok-demo-1")
        s.prompt("Pay invoice INV-7 from Acme", entities=["INV-7"])

        @s.tool(resource_type="invoice", action="read", resource_id=lambda a: a["invoice_id"])
        def get_invoice(invoice_id):
            return {"invoice": invoice_id, "payee": "Acme", "iban": "DE89370400440532013000", "amount": 120.0}

        @s.tool(resource_type="bank_account", action="write", resource_id=lambda a: a["iban"],
                origin={"kind": "user_prompt", "ref": "msg-1"})
        def send_payment(iban, amount):
            return {"status": "sent", "iban": iban, "amount": amount}

        inv = get_invoice(invoice_id="INV-7")
        send_payment(iban=inv["iban"], amount=inv["amount"])
    emitter.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--http", help="Warden's ingest listener, e.g. http://127.0.0.1:8080")
    p.add_argument("--kafka", help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    p.add_argument("--topic", default="tool-calls")
    p.add_argument("--agent-id", default="billing-assistant")
    p.add_argument("--sessions", type=int, default=1)
    a = p.parse_args()
    if not a.http and not a.kafka:
        p.error("give --http, --kafka, or both")
    emitter = WardenEmitter(agent_id=a.agent_id, agent_class="payments", agent_instance=f"{a.agent_id}-1",
                            http_url=a.http, token=os.environ.get("WARDEN_INGEST_TOKEN"),
                            kafka_brokers=a.kafka, topic=a.topic)
    try:
        demo(emitter, a.sessions)
    except WardenError as e:
        print(e, file=sys.stderr)
        return 1
    accepted = sum(x.get("accepted", 0) for x in emitter.answers)
    rejected = sum(x.get("rejected", 0) for x in emitter.answers)
    print(json.dumps({"sent_http": bool(a.http), "sent_kafka": bool(a.kafka),
                      "accepted": accepted, "rejected": rejected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
