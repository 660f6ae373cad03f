#!/usr/bin/python3
"""sbpeer: a Service Bus-compatible AMQP 1.0 *test peer* for payrail's tests.

This is test infrastructure, not a product and not an emulator of the whole
service: it implements, in memory, the slice of Azure Service Bus that the
real Go SDK (github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus)
exercises through payrail's bus/servicebus driver, over real AMQP 1.0 (Qpid
Proton, Debian's python3-qpid-proton), so that the driver is tested against
the SDK's real wire behaviour instead of a mock. It is started by
internal/testkit (servicebus_peer.go), one process per test binary, and dies
with it (it exits when its standard input closes).

What it implements, and the Microsoft documentation each behaviour follows:

* Connection and auth -- SASL ANONYMOUS and a claims-based-security node
  ``$cbs`` that accepts every ``put-token`` (202), replying on the link whose
  target is the request's reply-to, with the request's message-id as
  correlation-id and ``status-code`` as an int32.
  "AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide", sections
  "Claims-based authorization" and "AMQP management" (request/response over
  a pair of links, reply-to / correlation-id):
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide
* Entities -- queues, topics and topic subscriptions (every subscription has
  the default "$Default" TrueFilter rule, so it receives a copy of every
  message sent to the topic), each queue and subscription with its
  dead-letter sub-queue ``<entity>/$DeadLetterQueue``. Entities are declared
  by the test through the admin channel (JSON lines on stdin, see
  ``Peer.on_admin``); attaching to a missing entity answers a null terminus
  and a detach with ``amqp:not-found``, as the service does.
  "Service Bus queues, topics, and subscriptions":
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-queues-topics-subscriptions
* Sending -- single messages and SDK batches (several encoded messages in the
  data sections of one transfer); each message gets a sequence number
  (``x-opt-sequence-number``) and enqueued time (``x-opt-enqueued-time``).
  Messages with ``x-opt-scheduled-enqueue-time`` in the future are held until
  then. The link advertises a 1 MiB max-message-size (the Premium tier's
  default limit). "Message sequencing and timestamps":
  https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing
* Peek-lock receive -- a delivery locks the message for the entity's lock
  duration (``x-opt-locked-until``); the 16-byte delivery tag is the lock
  token in .NET GUID byte order. Complete (accepted) removes it; abandon
  (modified) unlocks it and increments its delivery count; reject with the
  ``com.microsoft:dead-letter`` condition moves it to the dead-letter queue
  with ``DeadLetterReason`` / ``DeadLetterErrorDescription`` (and any
  properties to modify); released unlocks it without counting a delivery.
  Every unsettled disposition is answered with a settled one (the client
  links use receiver-settle-mode second); settling with a lost lock answers
  ``com.microsoft:message-lock-lost``. When a lock expires the message
  becomes available again with its delivery count incremented; a lock
  outlives the link that took it (settle it through ``$management``).
  Competing receivers of one entity are served in turn, each up to its link
  credit. A receiver whose link is pre-settled (ReceiveAndDelete) removes
  what it is sent.
  "Message transfers, locks, and settlement", sections "Settling receive
  operations" and "PeekLock":
  https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
* Delivery count and max delivery count -- the header's delivery-count is the
  number of earlier deliveries that ended without completion (abandon or lock
  expiry); once it reaches the entity's MaxDeliveryCount the message is
  dead-lettered with reason ``MaxDeliveryCountExceeded``.
  "Overview of Service Bus dead-letter queues", section "Maximum delivery
  count":
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
* ``$management`` operations (request/response on ``<entity>/$management``):
  ``com.microsoft:renew-lock`` (expirations as a typed array of timestamps;
  410 when a lock is lost), ``com.microsoft:peek-message`` (from a sequence
  number, without locking; 204 when empty), ``com.microsoft:schedule-message``
  / ``com.microsoft:cancel-scheduled-message`` (sequence numbers as a typed
  array of longs), ``com.microsoft:update-disposition`` (settlement by lock
  token), and for sessions ``com.microsoft:renew-session-lock``,
  ``com.microsoft:get-session-state`` / ``set-session-state``.
  "AMQP request/response-based operations":
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response
  "Scheduled messages":
  https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages
  "Message browsing":
  https://learn.microsoft.com/azure/service-bus-messaging/message-browsing
* Sessions (entities created with requires_session) -- a receiver link whose
  source carries the ``com.microsoft:session-filter`` locks one session (the
  named one, or with a null filter the next session with available messages)
  for the entity's lock duration and receives only its messages, in
  sequence-number order (an abandoned message is delivered again before the
  ones after it); the session id is echoed in the attach's filter and the
  session lock expiry in the ``com.microsoft:locked-until-utc`` link
  property. A null filter with no available session answers a detach with
  ``com.microsoft:timeout`` after the requested server timeout.
  "Message sessions":
  https://learn.microsoft.com/azure/service-bus-messaging/message-sessions

* Administration (ATOM over HTTP, the protocol of the SDK's admin.Client)
  -- on a second loopback port (plain HTTP: tests point the admin client's
  transport at it), ``GET /<queue>``, ``GET /<topic>``, ``GET
  /<topic>/Subscriptions/<name>`` answer an Atom entry holding a
  QueueDescription, TopicDescription or SubscriptionDescription with
  LockDuration, MaxDeliveryCount, RequiresSession, MessageCount and
  CountDetails (active, dead-letter and scheduled counts; active includes
  locked messages, as on the service); a missing entity answers the empty
  feed titled "Publicly Listed Services" with 200, as the service does.
  ``PUT`` of such an entry creates the entity (409 if it exists) or, with
  ``If-Match: *``, updates its LockDuration and MaxDeliveryCount (404 if it
  does not exist; RequiresSession cannot change: 400). Requests signed with
  the key name ``listen-send`` (``skn=listen-send`` in the SAS token), which
  the peer treats as a key without the Manage right, answer 401, as the
  service does for credentials lacking the Manage claim.
  "Service Bus management REST API" (Create Queue, Get Queue, Update Queue
  and their topic and subscription counterparts):
  https://learn.microsoft.com/rest/api/servicebus/
  https://learn.microsoft.com/rest/api/servicebus/get-entity

Not implemented (the driver does not use them): time-to-live expiry,
duplicate detection, deferral (receive-by-sequence-number), peeking scheduled
messages, rules and filters other than the default one, auto-forwarding,
transactions, partitioning, quotas. Names are case-insensitive, as on the
service; lock durations may be below the service's 5 s minimum, for fast
tests. Everything lives in memory and dies with the process.

Admin channel: one JSON object per line on stdin ({"id": 1, "op":
"create_queue", "name": "q", "lock_duration_ms": 5000, "max_delivery_count":
10, "requires_session": false}; also create_topic, create_subscription with
"topic", delete with "path", counts with "path", ping), answered by one JSON
line on stdout with the same id and "ok" or "error". The first line on stdout
is {"ready": true, "port": N, "atom_port": M} once the listeners are bound
(M: the administration endpoint).
"""

import argparse
import datetime
import heapq
import http.server
import json
import os
import re
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as xml_escape

from proton import (Array, Condition, Data, Delivery, Described, Endpoint,
                    Handler, Link, Message, Terminus, UNDESCRIBED, int32,
                    symbol, timestamp, ubyte, uint, ulong)
from proton.reactor import ApplicationEvent, Container, EventInjector

# Message section descriptors (AMQP 1.0 part 3, section 3.2).
HEADER, DELIVERY_ANN, MESSAGE_ANN, PROPERTIES, APP_PROPS = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78

MAX_MESSAGE_SIZE = 1 << 20           # Premium tier default max message size
SESSION_FILTER = symbol("com.microsoft:session-filter")
SESSION_FILTER_CODE = ulong(0x00000137000000C)
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
DEFAULT_LOCK_MS = 60_000             # the service's default LockDuration (1 minute)
DEFAULT_MAX_DELIVERY = 10            # the service's default MaxDeliveryCount
TICK = 0.02                          # timer resolution for lock expiry and schedules

VERBOSE = False


def log(*args):
    if VERBOSE:
        print("sbpeer:", *args, file=sys.stderr, flush=True)


def note(*args):
    """Logs a rare connection-level event whatever the verbosity: the
    tests print the peer's log when they fail."""
    print("sbpeer: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f"),
          *args, file=sys.stderr, flush=True)


def new_lock_token():
    """A random lock token (a GUID). Its 16 bytes are all below 0x80: the
    delivery tag carries them, and Proton 0.37's Python binding takes a tag
    as text and sends it UTF-8 encoded, which is byte for byte the same only
    for ASCII. 112 random bits are plenty for a test peer."""
    return uuid.UUID(bytes=bytes(b & 0x7F for b in os.urandom(16)))


def now_ms():
    return int(time.time() * 1000)


class PeerError(Exception):
    """An error answered to a management request with an HTTP-like status."""

    def __init__(self, status, description):
        super().__init__(description)
        self.status = status
        self.description = description


# ---------------------------------------------------------------------------
# Messages


def split_sections(raw):
    """Splits an encoded AMQP message into (descriptor, raw bytes, value)."""
    out = []
    off = 0
    while off < len(raw):
        d = Data()
        n = d.decode(raw[off:])
        if n <= 0:
            raise ValueError("undecodable message section")
        d.rewind()
        d.next()
        obj = d.get_object()
        if not isinstance(obj, Described):
            raise ValueError("message section is not a described type")
        out.append((int(obj.descriptor), raw[off:off + n], obj.value))
        off += n
    return out


def encode_value(obj):
    d = Data()
    d.put_object(obj)
    return d.encode()


def looks_like_message(raw):
    """Reports whether raw is a complete encoded AMQP message with a body."""
    if len(raw) < 3 or raw[0] != 0x00 or raw[1] != 0x53 or not (0x70 <= raw[2] <= 0x78):
        return False
    try:
        secs = split_sections(raw)
    except Exception:
        return False
    return any(s[0] in (DATA, AMQP_SEQUENCE, AMQP_VALUE) for s in secs)


class Msg:
    """A stored message: the sections the peer rewrites (header, message
    annotations, application properties) decoded, the others kept verbatim."""

    __slots__ = ("header", "annotations", "props_raw", "message_id", "session_id",
                 "app", "rest_raw", "seq", "enqueued", "delivery_count", "lock_token",
                 "locked_until", "state", "link", "enqueue_seq")

    @classmethod
    def decode(cls, raw):
        m = cls()
        m.header = None
        m.annotations = {}
        m.props_raw = b""
        m.message_id = None
        m.session_id = None
        m.app = {}
        rest = []
        for desc, sec_raw, value in split_sections(raw):
            if desc == HEADER:
                m.header = list(value) if value else []
            elif desc == DELIVERY_ANN:
                pass  # delivery annotations are per hop: not stored
            elif desc == MESSAGE_ANN:
                m.annotations = dict(value or {})
            elif desc == PROPERTIES:
                m.props_raw = sec_raw
                props = list(value or [])
                m.message_id = props[0] if len(props) > 0 else None
                m.session_id = props[10] if len(props) > 10 else None
            elif desc == APP_PROPS:
                m.app = dict(value or {})
            else:
                rest.append(sec_raw)
        m.rest_raw = b"".join(rest)
        m.seq = 0
        m.enqueue_seq = None
        m.enqueued = 0
        m.delivery_count = 0
        m.lock_token = None
        m.locked_until = 0
        m.state = "active"
        m.link = None
        return m

    def copy(self):
        c = Msg()
        c.header = list(self.header) if self.header is not None else None
        c.annotations = dict(self.annotations)
        c.props_raw = self.props_raw
        c.message_id = self.message_id
        c.session_id = self.session_id
        c.app = dict(self.app)
        c.rest_raw = self.rest_raw
        c.seq = self.seq
        c.enqueue_seq = self.enqueue_seq
        c.enqueued = self.enqueued
        c.delivery_count = self.delivery_count
        c.lock_token = None
        c.locked_until = 0
        c.state = "active"
        c.link = None
        return c

    def encode(self, locked=False):
        # Header: durable, priority, ttl, first-acquirer, delivery-count.
        h = list(self.header) if self.header else []
        while len(h) < 5:
            h.append(None)
        hdr = [bool(h[0]) if h[0] is not None else False,
               ubyte(h[1]) if h[1] is not None else ubyte(4),
               uint(h[2]) if h[2] is not None else None,
               bool(self.delivery_count == 0),
               uint(self.delivery_count)]
        ann = dict(self.annotations)
        ann[symbol("x-opt-sequence-number")] = self.seq
        ann[symbol("x-opt-enqueued-time")] = timestamp(self.enqueued)
        if self.enqueue_seq is not None:
            ann[symbol("x-opt-enqueue-sequence-number")] = self.enqueue_seq
        if locked:
            ann[symbol("x-opt-locked-until")] = timestamp(self.locked_until)
        parts = [encode_value(Described(ulong(HEADER), hdr)),
                 encode_value(Described(ulong(MESSAGE_ANN), ann)),
                 self.props_raw]
        if self.app:
            parts.append(encode_value(Described(ulong(APP_PROPS), self.app)))
        parts.append(self.rest_raw)
        return b"".join(parts)


def decode_incoming(raw):
    """Decodes a transfer into messages: an SDK batch (the envelope's data
    sections each hold one encoded message) or a single message."""
    secs = split_sections(raw)
    data = [v for d, _, v in secs if d == DATA]
    if data and all(isinstance(b, (bytes, bytearray)) and looks_like_message(bytes(b)) for b in data):
        # The Go SDK sends every MessageBatch this way (message format
        # 0x80013700, which Proton does not expose, hence the structural test).
        return [Msg.decode(bytes(b)) for b in data]
    return [Msg.decode(raw)]


# ---------------------------------------------------------------------------
# Entities


class Store:
    """A queue-like message store: a queue, a subscription or a dead-letter
    sub-queue."""

    def __init__(self, peer, path, lock_ms, max_delivery, requires_session, dlq_of=None):
        self.peer = peer
        self.path = path
        self.lock_ms = lock_ms
        self.max_delivery = max_delivery
        self.requires_session = requires_session
        self.messages = {}        # seq -> Msg (active, locked)
        self.available = []       # heap of seqs of available messages (lazy)
        self.sessions = {}        # session id -> heap of available seqs (lazy)
        self.session_locks = {}   # session id -> SessionLock
        self.session_state = {}   # session id -> bytes
        self.locks = {}           # lock token (uuid.UUID) -> Msg
        self.links = []           # receiving links (peer senders), rotated for fairness
        self.dlq = None
        self.dlq_of = dlq_of
        self.next_seq = 1
        if dlq_of is None:
            self.dlq = Store(peer, path + "/$deadletterqueue", lock_ms, max_delivery, False, dlq_of=self)

    # -- bookkeeping

    def assign_seq(self, m):
        m.seq = self.next_seq
        self.next_seq += 1

    def enqueue(self, m, keep_seq=False):
        if not keep_seq:
            self.assign_seq(m)
        m.state = "active"
        m.lock_token = None
        m.link = None
        self.messages[m.seq] = m
        self.make_available(m)

    def make_available(self, m):
        m.state = "active"
        if self.requires_session and m.session_id is not None:
            heapq.heappush(self.sessions.setdefault(m.session_id, []), m.seq)
        else:
            heapq.heappush(self.available, m.seq)
        self.peer.dirty.add(self)

    def pop_available(self, session_id=None, sessionful=False):
        heap = self.sessions.get(session_id) if sessionful else self.available
        while heap:
            seq = heap[0]
            m = self.messages.get(seq)
            if m is None or m.state != "active":
                heapq.heappop(heap)
                continue
            heapq.heappop(heap)
            return m
        return None

    def has_available(self, session_id):
        heap = self.sessions.get(session_id)
        while heap:
            m = self.messages.get(heap[0])
            if m is not None and m.state == "active":
                return True
            heapq.heappop(heap)
        return False

    def lock(self, m, link):
        m.state = "locked"
        m.lock_token = new_lock_token()
        m.link = link
        self.locks[m.lock_token] = m
        if self.requires_session:
            # A session's message locks are the session lock: they lapse
            # with it ("Message sessions", section "Session lock").
            sl = self.session_locks.get(m.session_id)
            m.locked_until = sl.locked_until if sl else now_ms()
            return
        m.locked_until = now_ms() + self.lock_ms
        self.peer.push_expiry(m.locked_until, self, m.lock_token)

    def locked(self, token):
        m = self.locks.get(token)
        if m is None or m.state != "locked" or m.lock_token != token:
            return None
        if self.requires_session:
            sl = self.session_locks.get(m.session_id)
            if sl is None or sl.link != m.link or sl.locked_until <= now_ms():
                return None
            return m
        if m.locked_until <= now_ms():
            self.expire(token)
            return None
        return m

    def release_session(self, sid):
        """Drops a session lock: the session's locked messages count a
        delivery and become available again."""
        self.session_locks.pop(sid, None)
        for m in [m for m in self.locks.values() if m.session_id == sid and m.state == "locked"]:
            self.abandon(m)
        self.peer.dirty.add(self)

    def unlock(self, m):
        self.locks.pop(m.lock_token, None)
        m.lock_token = None
        m.link = None

    # -- settlement

    def complete(self, m):
        self.unlock(m)
        m.state = "gone"
        self.messages.pop(m.seq, None)

    def abandon(self, m, props=None, count=True):
        self.unlock(m)
        if props:
            m.app.update(props)
        if count:
            m.delivery_count += 1
            if self.dlq is not None and m.delivery_count >= self.max_delivery:
                self.dead_letter(m, "MaxDeliveryCountExceeded",
                                 "Message could not be consumed after %d delivery attempts." % self.max_delivery,
                                 unlocked=True)
                return
        self.make_available(m)

    def dead_letter(self, m, reason, description, props=None, unlocked=False):
        if not unlocked:
            self.unlock(m)
        m.state = "gone"
        self.messages.pop(m.seq, None)
        if self.dlq is None:
            return  # dead-lettering from a dead-letter queue is a no-op
        d = m.copy()
        if props:
            d.app.update(props)
        d.app["DeadLetterReason"] = reason
        d.app["DeadLetterErrorDescription"] = description
        d.annotations[symbol("x-opt-deadletter-source")] = self.display_path()
        d.enqueue_seq = m.seq
        self.dlq.enqueue(d)

    def expire(self, token):
        if self.requires_session:
            return  # session message locks lapse with the session lock
        m = self.locks.get(token)
        if m is None or m.lock_token != token or m.state != "locked":
            return
        if m.locked_until > now_ms():
            return  # renewed meanwhile
        log("lock expired", self.path, m.seq)
        self.abandon(m)

    def display_path(self):
        return self.path

    def peek(self, from_seq, count):
        out = []
        for seq in sorted(s for s in self.messages if s >= from_seq):
            out.append(self.messages[seq])
            if len(out) >= count:
                break
        return out


class SessionLock:
    __slots__ = ("link", "locked_until")

    def __init__(self, link, locked_until):
        self.link = link
        self.locked_until = locked_until


class Topic:
    def __init__(self, peer, name):
        self.peer = peer
        self.path = name
        self.subscriptions = {}   # lower-case name -> Store
        self.next_seq = 1

    def enqueue(self, m, keep_seq=False):
        if not keep_seq:
            m.seq = self.next_seq
            self.next_seq += 1
        for sub in list(self.subscriptions.values()):
            c = m.copy()
            c.seq = m.seq
            sub.enqueue(c, keep_seq=True)
            sub.next_seq = max(sub.next_seq, m.seq + 1)

    def assign_seq(self, m):
        m.seq = self.next_seq
        self.next_seq += 1


# ---------------------------------------------------------------------------
# The AMQP handler


def norm(address):
    """Normalises a link address to a lower-case entity path."""
    a = address or ""
    if "://" in a:
        a = a.split("://", 1)[1]
        a = a.split("/", 1)[1] if "/" in a else ""
    return a.strip("/").lower()


class Peer(Handler):
    def __init__(self, port, injector):
        super().__init__()
        self.port = port
        self.injector = injector
        self.queues = {}          # name -> Store
        self.topics = {}          # name -> Topic
        self.dirty = set()        # stores whose receivers may have work
        self.expiries = []        # heap of (deadline ms, n, store, token)
        self.scheduled = []       # heap of (due ms, seq, target, Msg)
        self.cancelled = set()    # (id(target), seq) of cancelled schedules
        self.conns = set()
        self.pending_session_links = []  # (deadline ms, link, store)
        self.entity_links = set()  # every open link to an entity (not $cbs), for deletes
        self.n = 0
        self.out = sys.stdout
        self.out_lock = threading.Lock()
        self.container = None

    # -- lookup

    def store(self, path):
        """Returns the Store for a receive path, or None."""
        p = norm(path)
        dlq = False
        if p.endswith("/$deadletterqueue"):
            p = p[: -len("/$deadletterqueue")]
            dlq = True
        if "/subscriptions/" in p:
            t, s = p.split("/subscriptions/", 1)
            topic = self.topics.get(t)
            st = topic.subscriptions.get(s) if topic else None
        else:
            st = self.queues.get(p)
        if st is None:
            return None
        return st.dlq if dlq else st

    def send_target(self, path):
        p = norm(path)
        return self.queues.get(p) or self.topics.get(p)

    def mgmt_entity(self, path):
        p = norm(path)
        if not p.endswith("/$management"):
            return None
        p = p[: -len("/$management")]
        return self.store(p) or self.topics.get(p)

    # -- timers

    def push_expiry(self, deadline, store, token):
        self.n += 1
        heapq.heappush(self.expiries, (deadline, self.n, store, token))

    def on_reactor_init(self, event):
        self.container = event.container
        event.container.schedule(TICK, self)

    def on_timer_task(self, event):
        t = now_ms()
        while self.expiries and self.expiries[0][0] <= t:
            _, _, store, token = heapq.heappop(self.expiries)
            store.expire(token)
        while self.scheduled and self.scheduled[0][0] <= t:
            _, seq, target, m = heapq.heappop(self.scheduled)
            if (id(target), seq) in self.cancelled:
                self.cancelled.discard((id(target), seq))
                continue
            target.enqueue(m, keep_seq=True)
        for sl in list(self.pending_session_links):
            deadline, link, st = sl
            if link.state & Endpoint.LOCAL_CLOSED:
                self.pending_session_links.remove(sl)
            elif deadline <= t:
                self.pending_session_links.remove(sl)
                self.refuse(link, "com.microsoft:timeout",
                            "The operation did not complete within the allocated time: no session is available.")
        self.expire_sessions(t)
        self.pump_all()
        event.container.schedule(TICK, self)

    def expire_sessions(self, t):
        for st in self.all_stores():
            for sid, sl in list(st.session_locks.items()):
                if sl.locked_until <= t:
                    log("session lock expired", st.path, sid)
                    st.release_session(sid)
                    link = sl.link
                    if not (link.state & Endpoint.LOCAL_CLOSED):
                        link.condition = Condition("com.microsoft:session-lock-lost",
                                                   "The session lock has expired on the MessageSession.")
                        link.close()

    def all_stores(self):
        for q in self.queues.values():
            yield q
            yield q.dlq
        for t in self.topics.values():
            for s in t.subscriptions.values():
                yield s
                yield s.dlq

    # -- connection plumbing

    def on_connection_bound(self, event):
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event):
        c = event.connection
        c.reply_links = {}
        c.open()
        self.conns.add(c)

    def on_session_remote_open(self, event):
        event.session.open()

    def on_connection_remote_close(self, event):
        cond = event.connection.remote_condition
        if cond is not None:
            note("connection closed by the client with", cond.name, cond.description)
        event.connection.close()

    def on_transport_error(self, event):
        cond = event.transport.condition
        note("transport error:", cond.name if cond else None, cond.description if cond else None)

    def on_session_remote_close(self, event):
        ssn = event.session
        self.entity_links = {l for l in self.entity_links if l.session != ssn}
        for st in self.all_stores():
            for link in [l for l in st.links if l.session == ssn]:
                self.drop_link(link)
            for sid, sl in list(st.session_locks.items()):
                if sl.link.session == ssn:
                    st.release_session(sid)
        self.pending_session_links = [p for p in self.pending_session_links if p[1].session != ssn]
        ssn.close()

    def on_transport_closed(self, event):
        c = event.connection
        if c is not None:
            self.drop_connection(c)

    def drop_connection(self, c):
        self.conns.discard(c)
        self.entity_links = {l for l in self.entity_links if l.connection != c}
        for st in self.all_stores():
            st.links = [l for l in st.links if l.connection != c]
            for sid, sl in list(st.session_locks.items()):
                if sl.link.connection == c:
                    st.release_session(sid)
        self.pending_session_links = [p for p in self.pending_session_links if p[1].connection != c]

    def refuse(self, link, cond, desc):
        # The service answers an attach to a missing entity with a null
        # terminus and a detach carrying the error.
        if link.is_sender:
            link.source.type = Terminus.UNSPECIFIED
            link.target.copy(link.remote_target)
        else:
            link.target.type = Terminus.UNSPECIFIED
            link.source.copy(link.remote_source)
        link.condition = Condition(cond, desc)
        link.open()
        link.close()

    def on_link_remote_open(self, event):
        link = event.link
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.sb_kind = None
        link.sb_store = None
        link.sb_session = None
        addr = link.remote_source.address if link.is_sender else link.remote_target.address
        p = norm(addr)
        if p.endswith("/$management"):
            p = p[: -len("/$management")]
        if p.endswith("/$deadletterqueue"):
            p = p[: -len("/$deadletterqueue")]
        if p != "$cbs" and not p.startswith("$cbs$"):
            link.sb_entity = p
            self.entity_links.add(link)
        if link.is_sender:
            # The client receives: from an entity, or replies of $cbs/$management.
            src = link.remote_source.address
            tgt = link.remote_target.address
            p = norm(src)
            if p == "$cbs" or p.endswith("/$management"):
                if p.endswith("/$management") and self.mgmt_entity(src) is None:
                    return self.refuse(link, "amqp:not-found", "The messaging entity '%s' could not be found." % src)
                link.sb_kind = "reply"
                link.source.copy(link.remote_source)
                link.target.copy(link.remote_target)
                link.connection.reply_links[tgt] = link
                link.open()
                return
            st = self.store(src)
            if st is None:
                return self.refuse(link, "amqp:not-found", "The messaging entity '%s' could not be found." % src)
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            link.sb_kind = "receive"
            link.sb_store = st
            has_filter, sid = session_filter(link.remote_source)
            if has_filter != st.requires_session:
                return self.refuse(link, "amqp:not-allowed",
                                   "It is not possible for an entity that requires sessions to create a non-sessionful message receiver."
                                   if st.requires_session else
                                   "It is not possible for an entity that does not require sessions to create a session receiver.")
            if has_filter:
                return self.open_session_link(link, st, sid)
            st.links.append(link)
            link.open()
        else:
            # The client sends: to an entity, or requests to $cbs/$management.
            tgt = link.remote_target.address
            p = norm(tgt)
            if p == "$cbs":
                link.sb_kind = "cbs"
            elif p.endswith("/$management"):
                if self.mgmt_entity(tgt) is None:
                    return self.refuse(link, "amqp:not-found", "The messaging entity '%s' could not be found." % tgt)
                link.sb_kind = "mgmt"
            else:
                t = self.send_target(tgt)
                if t is None:
                    return self.refuse(link, "amqp:not-found", "The messaging entity '%s' could not be found." % tgt)
                link.sb_kind = "send"
                link.sb_store = t
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            link.max_message_size = MAX_MESSAGE_SIZE
            link.open()
            link.flow(500)

    def open_session_link(self, link, st, sid):
        t = now_ms()
        if sid is None:
            sid = self.next_free_session(st, t)
            if sid is None:
                # Wait for a session to become available, up to the
                # requested server timeout (default one minute).
                timeout = 60_000
                props = link.remote_properties or {}
                v = props.get(symbol("com.microsoft:timeout"))
                if v:
                    timeout = int(v)
                link.sb_store = st
                link.sb_session = None
                self.pending_session_links.append((t + timeout, link, st))
                return
        else:
            sl = st.session_locks.get(sid)
            if sl is not None and sl.locked_until > t:
                return self.refuse(link, "com.microsoft:session-cannot-be-locked",
                                   "The requested session '%s' cannot be accepted. It may be locked by another receiver." % sid)
        self.grant_session(link, st, sid, t)

    def grant_session(self, link, st, sid, t):
        until = t + st.lock_ms
        st.session_locks[sid] = SessionLock(link, until)
        link.sb_session = sid
        link.sb_store = st
        f = link.source.filter
        f.clear()
        f.put_object({SESSION_FILTER: Described(SESSION_FILTER_CODE, sid)})
        link.properties = {LOCKED_UNTIL_UTC: session_ticks(until)}
        st.links.append(link)
        link.open()
        st.peer.dirty.add(st)

    def next_free_session(self, st, t):
        best = None
        for sid, heap in st.sessions.items():
            sl = st.session_locks.get(sid)
            if sl is not None and sl.locked_until > t:
                continue
            if not st.has_available(sid):
                continue
            first = heap[0]
            if best is None or first < best[0]:
                best = (first, sid)
        return best[1] if best else None

    def assign_pending_sessions(self):
        t = now_ms()
        for item in list(self.pending_session_links):
            deadline, link, st = item
            if link.state & Endpoint.LOCAL_CLOSED or link.state & Endpoint.REMOTE_CLOSED:
                self.pending_session_links.remove(item)
                continue
            sid = self.next_free_session(st, t)
            if sid is not None:
                self.pending_session_links.remove(item)
                self.grant_session(link, st, sid, t)

    def on_link_remote_close(self, event):
        self.drop_link(event.link)
        event.link.close()

    def drop_link(self, link):
        """Forgets a link the client detached (or whose AMQP session
        ended): its session lock, if any, is released."""
        self.entity_links.discard(link)
        self.pending_session_links = [p for p in self.pending_session_links if p[1] != link]
        st = getattr(link, "sb_store", None)
        if isinstance(st, Store):
            if link in st.links:
                st.links.remove(link)
            sid = getattr(link, "sb_session", None)
            if sid is not None:
                sl = st.session_locks.get(sid)
                if sl is not None and sl.link == link:
                    st.release_session(sid)
        if getattr(link, "sb_kind", None) == "reply":
            tgt = link.remote_target.address
            if link.connection.reply_links.get(tgt) == link:
                del link.connection.reply_links[tgt]

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender and getattr(link, "sb_kind", None) == "receive":
            self.pump_link(link)

    # -- deliveries

    def on_delivery(self, event):
        dlv = event.delivery
        link = dlv.link
        if link.is_receiver:
            if dlv.partial or not dlv.readable:
                return
            raw = link.recv(dlv.pending)
            link.advance()
            try:
                self.incoming(link, dlv, raw)
            except Exception as e:  # a bad message must not kill the peer
                log("incoming failed:", repr(e))
                if not dlv.settled:
                    dlv.local.condition = Condition("amqp:decode-error", str(e))
                    dlv.update(Delivery.REJECTED)
                    dlv.settle()
            if link.credit < 250:
                link.flow(500 - link.credit)
        else:
            if dlv.updated and dlv.remote_state:
                self.disposition(dlv)

    def incoming(self, link, dlv, raw):
        kind = link.sb_kind
        if kind == "cbs":
            req = Message()
            req.decode(raw)
            self.reply(link.connection, req, 202, "Accepted", None)
        elif kind == "mgmt":
            req = Message()
            req.decode(raw)
            try:
                status, desc, body = self.management(link, req)
            except PeerError as e:
                status, desc, body = e.status, e.description, None
            except Exception as e:  # answer, so that the client does not wait
                log("management failed:", repr(e))
                status, desc, body = 500, "test peer error: %r" % e, None
            self.reply(link.connection, req, status, desc, body)
        elif kind == "send":
            msgs = decode_incoming(raw)
            target = link.sb_store
            if isinstance(target, Store) and target.requires_session and any(m.session_id is None for m in msgs):
                raise ValueError("the entity requires sessions: a message has no session id")
            for m in msgs:
                self.accept_message(target, m)
        if not dlv.settled:
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
        self.pump_all()

    def accept_message(self, target, m):
        m.enqueued = now_ms()
        sched = m.annotations.get(symbol("x-opt-scheduled-enqueue-time"))
        target.assign_seq(m)
        if sched is not None and int(sched) > m.enqueued:
            heapq.heappush(self.scheduled, (int(sched), m.seq, target, m))
            return m.seq
        target.enqueue(m, keep_seq=True)
        return m.seq

    def reply(self, conn, req, status, desc, body):
        link = conn.reply_links.get(req.reply_to)
        if link is None:
            log("no reply link for", req.reply_to)
            return
        resp = Message(body=body, correlation_id=req.id,
                       properties={"status-code": int32(status), "status-description": desc})
        d = link.delivery("r%d" % self.next_n())
        link.send(resp.encode())
        link.advance()
        d.settle()

    def next_n(self):
        self.n += 1
        return self.n

    # -- receiving links

    def pump_all(self):
        self.assign_pending_sessions()
        dirty, self.dirty = self.dirty, set()
        for st in dirty:
            if len(st.links) > 1:
                # Competing receivers: start with a different one each time.
                st.links.append(st.links.pop(0))
            for link in list(st.links):
                self.pump_link(link)

    def pump_link(self, link):
        st = link.sb_store
        if link.state & Endpoint.LOCAL_CLOSED:
            return
        sessionful = st.requires_session
        sid = link.sb_session
        if sessionful and sid is None:
            return
        while link.credit > 0:
            m = st.pop_available(sid, sessionful)
            if m is None:
                break
            st.lock(m, link)
            tag = m.lock_token.bytes_le.decode("latin-1")  # .NET GUID byte order, as the service sends it
            d = link.delivery(tag)
            d.sb = (st, m.lock_token)
            link.send(m.encode(locked=True))
            link.advance()
            if link.snd_settle_mode == Link.SND_SETTLED:
                # ReceiveAndDelete: a pre-settled delivery removes the message.
                d.settle()
                st.complete(m)
        if link.drain_mode:
            link.drained()

    def disposition(self, dlv):
        info = getattr(dlv, "sb", None)
        if info is None or dlv.settled:
            return
        st, token = info
        rs = dlv.remote_state
        m = st.locked(token)
        if m is None:
            if rs == Delivery.RELEASED:
                dlv.settle()
                self.pump_all()
                return
            dlv.local.condition = Condition(
                "com.microsoft:message-lock-lost",
                "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")
            dlv.update(Delivery.REJECTED)
            dlv.settle()
            return
        if rs == Delivery.ACCEPTED:
            st.complete(m)
        elif rs == Delivery.RELEASED:
            st.abandon(m, count=False)
        elif rs == Delivery.MODIFIED:
            props = {}
            ann = dlv.remote.annotations
            if ann:
                props = {str(k): v for k, v in ann.items()}
            if dlv.remote.undeliverable:
                # Defer is not implemented by this test peer.
                dlv.local.condition = Condition("amqp:not-implemented", "deferral is not implemented by the test peer")
                dlv.update(Delivery.REJECTED)
                dlv.settle()
                return
            st.abandon(m, props=props)
        elif rs == Delivery.REJECTED:
            cond = dlv.remote.condition
            info_map = dict(cond.info or {}) if cond is not None else {}
            reason = str(info_map.pop("DeadLetterReason", "") or "")
            desc = str(info_map.pop("DeadLetterErrorDescription", "") or "")
            props = {str(k): v for k, v in info_map.items()}
            st.dead_letter(m, reason, desc, props=props)
        dlv.update(rs)
        dlv.settle()
        self.pump_all()

    # -- $management

    def management(self, link, req):
        op = (req.properties or {}).get("operation")
        entity = self.mgmt_entity(link.remote_target.address)
        if entity is None:
            raise PeerError(404, "The messaging entity could not be found.")
        body = req.body if isinstance(req.body, dict) else {}
        body = {str(k): v for k, v in body.items()}
        if op == "com.microsoft:renew-lock":
            exps = []
            if isinstance(entity, Store) and entity.requires_session:
                raise PeerError(400, "The lock of a session's message is the session lock: renew the session lock instead.")
            for tok in body.get("lock-tokens") or []:
                m = entity.locked(tok) if isinstance(entity, Store) else None
                if m is None:
                    raise PeerError(410, "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")
                m.locked_until = now_ms() + entity.lock_ms
                self.push_expiry(m.locked_until, entity, m.lock_token)
                exps.append(timestamp(m.locked_until))
            return 200, "OK", {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *exps)}
        if op == "com.microsoft:peek-message":
            if not isinstance(entity, Store):
                raise PeerError(400, "peek is not supported on a topic")
            frm = int(body.get("from-sequence-number") or 0)
            count = int(body.get("message-count") or 1)
            msgs = entity.peek(frm, max(count, 1))
            if body.get("session-id") is not None:
                msgs = [m for m in msgs if m.session_id == body.get("session-id")]
            if not msgs:
                return 204, "No Content", None
            return 200, "OK", {"messages": [{"message": m.encode(locked=m.state == "locked")} for m in msgs]}
        if op == "com.microsoft:schedule-message":
            target = entity if isinstance(entity, Topic) else entity
            if isinstance(target, Store) and target.dlq_of is not None:
                raise PeerError(400, "cannot schedule to a dead-letter queue")
            seqs = []
            for item in body.get("messages") or []:
                item = {str(k): v for k, v in item.items()}
                m = Msg.decode(bytes(item["message"]))
                if m.annotations.get(symbol("x-opt-scheduled-enqueue-time")) is None:
                    raise PeerError(400, "the message has no scheduled enqueue time")
                seqs.append(self.accept_message(target, m))
            return 200, "OK", {"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *seqs)}
        if op == "com.microsoft:cancel-scheduled-message":
            for seq in body.get("sequence-numbers") or []:
                self.cancelled.add((id(entity), int(seq)))
            return 200, "OK", None
        if op == "com.microsoft:update-disposition":
            status = body.get("disposition-status")
            for tok in body.get("lock-tokens") or []:
                m = entity.locked(tok)
                if m is None:
                    raise PeerError(410, "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")
                props = {str(k): v for k, v in (body.get("properties-to-modify") or {}).items()}
                if status == "completed":
                    entity.complete(m)
                elif status == "abandoned":
                    entity.abandon(m, props=props)
                elif status == "suspended":
                    entity.dead_letter(m, str(body.get("deadletter-reason") or ""),
                                       str(body.get("deadletter-description") or ""), props=props)
                else:
                    raise PeerError(501, "disposition %s is not implemented by the test peer" % status)
            return 200, "OK", None
        if op == "com.microsoft:renew-session-lock":
            sid = body.get("session-id")
            sl = entity.session_locks.get(sid)
            if sl is None or sl.locked_until <= now_ms():
                raise PeerError(410, "The session lock has expired.")
            sl.locked_until = now_ms() + entity.lock_ms
            for m in entity.locks.values():
                if m.session_id == sid:
                    m.locked_until = sl.locked_until
            return 200, "OK", {"expiration": timestamp(sl.locked_until)}
        if op == "com.microsoft:get-session-state":
            sid = body.get("session-id")
            return 200, "OK", {"session-state": entity.session_state.get(sid)}
        if op == "com.microsoft:set-session-state":
            sid = body.get("session-id")
            entity.session_state[sid] = body.get("session-state")
            return 200, "OK", None
        raise PeerError(501, "operation %s is not implemented by the test peer" % op)

    # -- admin channel (JSON lines on stdin, answers on stdout)

    def on_admin(self, event):
        line = event.subject
        try:
            cmd = json.loads(line)
        except ValueError as e:
            return self.answer({"error": "bad command: %s" % e})
        resp = {"id": cmd.get("id")}
        try:
            resp.update(self.admin(cmd) or {})
            resp["ok"] = True
        except Exception as e:
            resp["error"] = str(e)
        self.answer(resp)
        self.pump_all()

    def admin(self, cmd):
        op = cmd.get("op")
        lock_ms = int(cmd.get("lock_duration_ms") or DEFAULT_LOCK_MS)
        max_delivery = int(cmd.get("max_delivery_count") or DEFAULT_MAX_DELIVERY)
        sessions = bool(cmd.get("requires_session"))
        name = str(cmd.get("name") or "").lower()
        if op == "ping":
            return {}
        if op == "create_queue":
            if not name or name in self.queues or name in self.topics:
                raise ValueError("queue %r: bad or existing name" % name)
            self.queues[name] = Store(self, name, lock_ms, max_delivery, sessions)
            return {}
        if op == "create_topic":
            if not name or name in self.queues or name in self.topics:
                raise ValueError("topic %r: bad or existing name" % name)
            self.topics[name] = Topic(self, name)
            return {}
        if op == "create_subscription":
            topic = self.topics.get(str(cmd.get("topic") or "").lower())
            if topic is None:
                raise ValueError("topic %r not found" % cmd.get("topic"))
            if not name or name in topic.subscriptions:
                raise ValueError("subscription %r: bad or existing name" % name)
            topic.subscriptions[name] = Store(self, topic.path + "/subscriptions/" + name, lock_ms, max_delivery, sessions)
            return {}
        if op == "delete":
            path = norm(cmd.get("path"))
            if "/subscriptions/" in path:
                t, s = path.split("/subscriptions/", 1)
                topic = self.topics.get(t)
                if topic:
                    topic.subscriptions.pop(s, None)
            else:
                self.topics.pop(path, None)
                self.queues.pop(path, None)
            # The service detaches the links of a deleted entity.
            for link in list(self.entity_links):
                e = link.sb_entity
                if e == path or e.startswith(path + "/"):
                    self.drop_link(link)
                    if not (link.state & Endpoint.LOCAL_CLOSED):
                        link.condition = Condition("amqp:not-found", "The messaging entity '%s' has been deleted." % path)
                        link.close()
            self.pending_session_links = [p for p in self.pending_session_links if norm(p[2].path) != path
                                          and not norm(p[2].path).startswith(path + "/")]
            return {}
        if op == "drop_connections":
            # What a gateway failover or a service update does: every
            # client connection is closed with amqp:connection:forced.
            n = 0
            for c in list(self.conns):
                if not (c.state & Endpoint.LOCAL_CLOSED):
                    c.condition = Condition("amqp:connection:forced",
                                            "The connection was closed by the test peer (drop_connections).")
                    c.close()
                    n += 1
                self.drop_connection(c)
            note("dropped", n, "connections")
            return {"dropped": n}
        if op == "counts":
            st = self.store(cmd.get("path"))
            if st is None:
                raise ValueError("entity %r not found" % cmd.get("path"))
            active = sum(1 for m in st.messages.values() if m.state == "active")
            locked = sum(1 for m in st.messages.values() if m.state == "locked")
            sched = sum(1 for (_, seq, tgt, m) in self.scheduled
                        if (id(tgt), seq) not in self.cancelled
                        and (tgt is st or (isinstance(tgt, Topic) and st in tgt.subscriptions.values())))
            return {"active": active, "locked": locked, "scheduled": sched,
                    "dead_letters": len(st.dlq.messages) if st.dlq is not None else 0}
        raise ValueError("unknown op %r" % op)

    def on_atom(self, event):
        fn, box = event.subject
        try:
            box["status"], box["result"] = fn(AtomOps(self))
        except Exception as e:
            box["error"] = e
        box["done"].set()
        self.pump_all()

    def answer(self, obj):
        with self.out_lock:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()

    def on_stdin_closed(self, event):
        log("stdin closed: exiting")
        os._exit(0)


# ---------------------------------------------------------------------------
# Administration: ATOM over HTTP (the SDK's admin.Client)

ATOM_NS = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
EMPTY_FEED = ('<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services</title>'
              '<id>uuid:00000000-0000-0000-0000-000000000000</id><updated>2026-01-01T00:00:00Z</updated></feed>')


def iso_duration(ms):
    return "PT%gS" % (ms / 1000.0)


def parse_iso_duration(text):
    """Milliseconds of an ISO 8601 duration such as PT1M or PT30S."""
    m = re.fullmatch(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?", text or "")
    if not m or not any(m.groups()):
        raise ValueError("bad duration %r" % text)
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return int(((d * 24 + h) * 60 + mi) * 60000 + s * 1000)


def local(tag):
    return tag.rsplit("}", 1)[-1]


def description_fields(body):
    """(kind, {field: text}) of the description in a PUT entry."""
    root = ET.fromstring(body)
    for el in root.iter():
        kind = local(el.tag)
        if kind in ("QueueDescription", "TopicDescription", "SubscriptionDescription"):
            return kind, {local(c.tag): (c.text or "") for c in el}
    raise ValueError("no entity description in the entry")


class AtomError(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status


def atom_entry(host, path, kind, fields):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    parts = []
    for k, v in fields:
        if k == "CountDetails":
            inner = "".join("<d2p1:%s>%d</d2p1:%s>" % (n, c, n) for n, c in v)
            parts.append('<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus">%s</CountDetails>' % inner)
        else:
            parts.append("<%s>%s</%s>" % (k, xml_escape(str(v)), k))
    parts += ["<Status>Active</Status>", "<CreatedAt>%s</CreatedAt>" % now,
              "<UpdatedAt>%s</UpdatedAt>" % now, "<AccessedAt>%s</AccessedAt>" % now]
    title = path.rsplit("/", 1)[-1]
    return ('<entry xmlns="%s"><id>http://%s/%s</id><title type="text">%s</title><updated>%s</updated>'
            '<content type="application/xml"><%s xmlns="%s" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">%s</%s>'
            '</content></entry>') % (ATOM_NS, xml_escape(host), xml_escape(path), xml_escape(title), now,
                                      kind, SB_NS, "".join(parts), kind)


class AtomOps:
    """The administration operations, run on the reactor thread."""

    def __init__(self, peer):
        self.peer = peer

    def store_fields(self, st):
        c = self.peer.admin({"op": "counts", "path": st.path})
        active = c["active"] + c["locked"]
        return [("LockDuration", iso_duration(st.lock_ms)),
                ("RequiresSession", "true" if st.requires_session else "false"),
                ("MaxDeliveryCount", st.max_delivery),
                ("MessageCount", active + c["scheduled"] + c["dead_letters"]),
                ("CountDetails", [("ActiveMessageCount", active), ("DeadLetterMessageCount", c["dead_letters"]),
                                  ("ScheduledMessageCount", c["scheduled"]), ("TransferDeadLetterMessageCount", 0),
                                  ("TransferMessageCount", 0)])]

    def get(self, host, path):
        p = norm(path)
        if "/subscriptions/" in p:
            st = self.peer.store(p)
            if st is None:
                return EMPTY_FEED
            return atom_entry(host, path, "SubscriptionDescription", self.store_fields(st))
        if p in self.peer.queues:
            return atom_entry(host, path, "QueueDescription", self.store_fields(self.peer.queues[p]))
        if p in self.peer.topics:
            t = self.peer.topics[p]
            return atom_entry(host, path, "TopicDescription", [
                ("SubscriptionCount", len(t.subscriptions)),
                ("CountDetails", [("ActiveMessageCount", 0), ("DeadLetterMessageCount", 0),
                                  ("ScheduledMessageCount", 0), ("TransferDeadLetterMessageCount", 0),
                                  ("TransferMessageCount", 0)])])
        return EMPTY_FEED

    def put(self, host, path, body, update):
        kind, f = description_fields(body)
        p = norm(path)
        cmd = {"name": p}
        if "LockDuration" in f:
            cmd["lock_duration_ms"] = parse_iso_duration(f["LockDuration"])
        if "MaxDeliveryCount" in f:
            cmd["max_delivery_count"] = int(f["MaxDeliveryCount"])
        sessions = f.get("RequiresSession", "false").lower() == "true"
        cmd["requires_session"] = sessions
        if kind == "QueueDescription":
            cmd["op"] = "create_queue"
        elif kind == "TopicDescription":
            cmd["op"] = "create_topic"
        else:
            if "/subscriptions/" not in p:
                raise AtomError(400, "a subscription's path is <topic>/Subscriptions/<name>")
            cmd["op"], (cmd["topic"], cmd["name"]) = "create_subscription", p.split("/subscriptions/", 1)
        exists = (p in self.peer.queues or p in self.peer.topics) if kind != "SubscriptionDescription" else self.peer.store(p) is not None
        if not update:
            if exists:
                raise AtomError(409, "entity %s already exists" % path)
            if kind == "SubscriptionDescription" and cmd["topic"] not in self.peer.topics:
                raise AtomError(404, "topic %s not found" % cmd["topic"])
            self.peer.admin(cmd)
            return self.get(host, path)
        if not exists:
            raise AtomError(404, "entity %s not found" % path)
        if kind != "TopicDescription":
            st = self.peer.store(p)
            if sessions != st.requires_session:
                raise AtomError(400, "RequiresSession cannot be changed")
            if "lock_duration_ms" in cmd:
                st.lock_ms = st.dlq.lock_ms = cmd["lock_duration_ms"]
            if "max_delivery_count" in cmd:
                st.max_delivery = cmd["max_delivery_count"]
        return self.get(host, path)


def serve_atom(host, injector):
    """Starts the administration endpoint on a free port; returns the port."""

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log("atom: " + fmt % args)

        def run(self, fn):
            if "skn=listen-send" in (self.headers.get("Authorization") or "") or \
                    "skn=listen-send" in (self.headers.get("ServiceBusAuthorization") or ""):
                return self.reply(401, "<Error><Code>401</Code><Detail>Manage,EntityRead claims required for this operation.</Detail></Error>")
            box = {"done": threading.Event()}
            injector.trigger(ApplicationEvent("atom", subject=(fn, box)))
            if not box["done"].wait(30):
                return self.reply(500, "<Error><Code>500</Code><Detail>peer busy</Detail></Error>")
            if "error" in box:
                e = box["error"]
                status = e.status if isinstance(e, AtomError) else 400
                return self.reply(status, "<Error><Code>%d</Code><Detail>%s</Detail></Error>" % (status, xml_escape(str(e))))
            self.reply(box.get("status", 200), box["result"])

        def reply(self, status, body):
            b = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def path_only(self):
            return self.path.split("?", 1)[0].strip("/")

        def do_GET(self):
            path = self.path_only()
            self.run(lambda ops: (200, ops.get(self.headers.get("Host", ""), path)))

        def do_PUT(self):
            path = self.path_only()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            update = self.headers.get("If-Match") == "*"
            self.run(lambda ops: (200 if update else 201, ops.put(self.headers.get("Host", ""), path, body, update)))

    srv = http.server.ThreadingHTTPServer((host, 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]



def session_filter(terminus):
    """Returns (present, session id) of a source's com.microsoft:session-filter."""
    d = terminus.filter
    d.rewind()
    if not d.next():
        return False, None
    obj = d.get_object()
    if not isinstance(obj, dict):
        return False, None
    for k, v in obj.items():
        if str(k) == str(SESSION_FILTER):
            if isinstance(v, Described):
                v = v.value
            return True, v
    return False, None


def session_ticks(ms):
    """The session lock expiry as the service sends it: .NET ticks (100 ns
    since 0001-01-01)."""
    return ms * 10_000 + 621355968000000000


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose

    injector = EventInjector()
    peer = Peer(args.port, injector)

    def read_stdin():
        for line in sys.stdin:
            line = line.strip()
            if line:
                injector.trigger(ApplicationEvent("admin", subject=line))
        injector.trigger(ApplicationEvent("stdin_closed"))

    c = Container(peer)
    c.selectable(injector)
    c.listen("%s:%d" % (args.host, args.port))
    threading.Thread(target=read_stdin, daemon=True).start()
    atom_port = serve_atom(args.host, injector)
    peer.answer({"ready": True, "port": args.port, "atom_port": atom_port})
    c.run()


if __name__ == "__main__":
    main()
