"""Event-time sessionization of the click stream: the logic of the sessionizer agent, without Faust.

`SessionizerCore.process(batch)` turns a batch of input messages into output records (inference
requests, closed sessions for the training log, dead letters, re-keyed clicks) and the state
changes the agent must persist to its changelog-backed Table. The rules, in order, per message:

* A tick record (any record of the ticks topic, or one keyed `codec.TICK_KEY`) only drives the idle
  fallback: when a partition has had no click for `idle_close` wall-clock seconds, its open
  sessions close (reason `idle`).
* A message already applied before a crash (its offset is covered by the persisted state) is
  skipped and counted as `replayed` -- this is what makes a SIGKILL restart lose nothing and
  duplicate no click inside the sessions (see "Durability" below).
* Undecodable or invalid values go to dead letters with the codec's reason.
* A click whose Kafka key is not its session key is re-produced to the re-key topic, keyed by the
  session key, so that every session's state lives in one partition (counted as `rekeyed`).
* A click of key k with an open session S (last event time l):
  t - l > gap (jump_core.sessions.is_new_session): S closes (reason `gap`), a new session opens;
  l - grace <= ... : in order (t >= l) it is appended; out of order (t < l) it is inserted in time
  order if stream time - t <= grace, else dead-lettered as `late`.
* A click with no open session opens one, unless stream time - t > grace (`late`).
* A duplicate `event_id` within its open session is dropped and counted.
* A session at `max_session_clicks` dead-letters further clicks (`session_too_long`).
* After the batch, sessions whose last event + gap + grace is behind the partition's stream time
  (the largest event time accepted there) close (reason `stream_time`).

Each accepted click yields one inference request carrying the session's most recent
`context_clicks` clicks up to and including it (time order). A closing session yields one
training-log record with its dwell tuples from jump_core.sessions.censor (eq. 4) -- the same
function `jump prepare` uses, so the training log equals offline preparation of the same clicks.

Durability: every key's state records the last source offset applied to it, and each partition's
meta record (stream time + last applied offsets) is written after the batch's state writes. On
restart a message is a replay when its offset is <= its key's recorded offset, or <= the
partition's meta offset (its batch was fully persisted). A closed session's key is deleted only
*after* the meta record (`Output.deletes`), and a session that got clicks in the batch that closes
it is first written in its final state: a deletion persisted ahead of the meta record would leave
neither offset covering the clicks it had in that batch, and their replay would open a second
session made of them (seen as an extra session after a SIGKILL). A crash between the meta record
and the deletions restores the closed session, which closes again with the same content.
The agent sends a batch's outputs and waits for their delivery *before* writing the state, so a
persisted state never hides an output that was lost; the converse (output sent, state lost)
re-sends records with the same keys -- at-least-once with idempotent keys. The agent writes a
partition's state records, then its meta record, then its deletions as *one* record batch of the
changelog when they fit one (runtime.batches): the broker appends a batch whole or not at all, so
the order above holds without a round trip between the steps; when they do not fit, each step is
delivered before the next is sent.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_right
from dataclasses import dataclass, field

import msgpack

from jump_core.sessions import censor, is_new_session, session_id

from .. import codec
from ..config import Settings

META_PREFIX = b"\x00meta:"  # table key of a partition's meta record: META_PREFIX + partition
TICKS = 2  # Message.topic of the ticks topic (every record there is a tick, whatever its key)


@dataclass(slots=True)
class Message:
    """One consumed Kafka message, as the agent hands it over."""

    topic: int  # 0: the clicks topic, 1: the re-key topic, 2 (TICKS): the ticks topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # Kafka message timestamp (s)


@dataclass(slots=True)
class Session:
    sid: str
    partition: int
    items: list[str]
    ts: list[float]
    event_ids: list[str | None]
    arrivals: int  # clicks accepted so far (the next click's `position`)
    offsets: list[int]  # last source offset applied, per source topic

    @property
    def last_ts(self) -> float:
        return self.ts[-1]

    def pack(self) -> bytes:
        return codec.pack(
            {
                "sid": self.sid,
                "p": self.partition,
                "items": self.items,
                "ts": self.ts,
                "eids": self.event_ids,
                "n": self.arrivals,
                "off": self.offsets,
            }
        )

    @staticmethod
    def unpack(raw: bytes) -> Session:
        d = msgpack.unpackb(raw, raw=False)
        return Session(d["sid"], d["p"], d["items"], d["ts"], d["eids"], d["n"], d["off"])


@dataclass(slots=True)
class Meta:
    stream_time: float = float("-inf")
    offsets: list[int] = field(default_factory=lambda: [-1, -1])

    def pack(self) -> bytes:
        return codec.pack({"st": self.stream_time, "off": self.offsets})

    @staticmethod
    def unpack(raw: bytes) -> Meta:
        d = msgpack.unpackb(raw, raw=False)
        return Meta(d["st"], d["off"])


def meta_key(partition: int) -> bytes:
    return META_PREFIX + str(partition).encode()


@dataclass
class Output:
    """What one batch produces. Requests and re-keyed clicks are (partition, key, value) triples
    (a request goes to its click's partition: co-partitioned with the state); training-log records
    and dead letters are (headers, key, value) triples, keyed by the session key (a dead letter: by
    the rejected message's key) and partitioned by the key (Kafka's default partitioner), with their
    identity in the `jump-id` header (codec.output_headers)."""

    requests: list = field(default_factory=list)
    training_log: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    rekeyed: list = field(default_factory=list)
    state: dict = field(default_factory=dict)  # table key -> (partition, Session): write first
    meta: dict = field(default_factory=dict)  # partition -> (table key, bytes): write second
    deletes: dict = field(default_factory=dict)  # table key -> partition: delete last (closed sessions)
    counts: dict = field(default_factory=dict)  # outcome -> n
    dead_reasons: dict = field(default_factory=dict)  # reason -> n
    closed: list = field(default_factory=list)  # (close_reason, n_clicks, tau list) for metrics

    def count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n


class SessionizerCore:
    """Open sessions of the assigned partitions, mirrored from (and persisted to) the Table."""

    def __init__(self, settings: Settings, topic_names: tuple[str, ...] | None = None, clock=time.time):
        self.s = settings
        self.topic_names = topic_names or (settings.topic_clicks, settings.topic_rekeyed, settings.topic_ticks)
        self.clock = clock
        self.sessions: dict[bytes, Session] = {}
        self.meta: dict[int, Meta] = {}
        self.deadlines: dict[int, list] = {}  # partition -> heap of (deadline, key)
        self.last_input_wall: dict[int, float] = {}

    # -- state ---------------------------------------------------------------------------------
    def load(self, items, keep: frozenset | set = frozenset()) -> None:
        """Rebuild the in-memory mirror from the Table's (key, value) pairs (after recovery).

        Partitions in `keep` stay as they are in memory: this process owned them before the
        rebalance, and its mirror is newer than the Table, which Faust's in-process re-recovery
        can roll back to the changelog's last flushed records (a key absent from that prefix keeps
        its new value, one present reverts), mixing old and new state.
        """
        kept = {k: s for k, s in self.sessions.items() if s.partition in keep}
        kept_meta = {p: m for p, m in self.meta.items() if p in keep}
        self.sessions, self.meta, self.deadlines = kept, kept_meta, {}
        now = self.clock()
        for key, raw in items:
            if raw is None:
                continue
            if key.startswith(META_PREFIX):
                p = int(key[len(META_PREFIX) :])
                if p not in keep:
                    self.meta[p] = Meta.unpack(raw)
            else:
                sess = Session.unpack(raw)
                if sess.partition not in keep:
                    self.sessions[key] = sess
        for key, sess in self.sessions.items():
            self._push_deadline(key, sess)
        self.last_input_wall = {p: self.last_input_wall.get(p, now) if p in keep else now for p in self.meta}

    @property
    def open_sessions(self) -> int:
        return len(self.sessions)

    def _push_deadline(self, key: bytes, s: Session) -> None:
        heapq.heappush(
            self.deadlines.setdefault(s.partition, []), (s.last_ts + self.s.session_gap_s + self.s.grace_s, key)
        )

    # -- the batch -----------------------------------------------------------------------------
    def process(self, batch: list[Message]) -> Output:
        out = Output()
        touched: set[int] = set()
        now = self.clock()
        for m in batch:
            p = m.partition
            meta = self.meta.get(p)
            if meta is None:
                meta = self.meta[p] = Meta()
            self.last_input_wall.setdefault(p, now)
            if m.topic == TICKS or codec.is_tick(m.key):  # (a tick on clicks: written by an older version)
                out.count("ticks")
                self._on_tick(p, now, out)
                touched.add(p)
                continue
            out.count("consumed")
            self.last_input_wall[p] = now
            if m.offset <= meta.offsets[m.topic]:
                out.count("replayed")
                continue
            touched.add(p)
            meta.offsets[m.topic] = m.offset
            self._on_click(m, meta, now, out)
        for p in touched:
            self._close_expired(p, out)
            out.meta[p] = (meta_key(p), self.meta[p].pack())
        return out

    def _dead(self, m: Message, reason: str, detail: str, out: Output) -> None:
        topic = self.topic_names[m.topic]
        headers, value = codec.dead_letter(
            reason, detail, topic, m.partition, m.offset, m.key, m.value, self.clock(), self.s.output_format
        )
        out.dead_letters.append((headers, m.key, value))
        out.dead_reasons[reason] = out.dead_reasons.get(reason, 0) + 1
        out.count("dead_lettered")

    def _on_click(self, m: Message, meta: Meta, now: float, out: Output) -> None:
        s = self.s
        try:
            click = codec.decode_click(m.value, s.key_fields, now=now, max_future_s=s.max_future_s)
        except codec.BadInput as e:
            self._dead(m, e.reason, e.detail, out)
            return
        key = click.key.encode()
        if m.key != key:
            # Not keyed by its session key: this partition does not own the session. Re-produce it
            # keyed by the session key (the producer's partitioner then picks the owner).
            out.rekeyed.append((None, key, m.value))
            out.count("rekeyed")
            return
        sess = self.sessions.get(key)
        if sess is not None and m.offset <= sess.offsets[m.topic]:
            out.count("replayed")
            return
        late_by = meta.stream_time - click.ts
        if sess is not None and is_new_session(sess.last_ts, click.ts, s.session_gap_s):
            self._close(key, sess, "gap", out)
            sess = None
        if sess is not None:
            if click.event_id is not None and click.event_id in sess.event_ids:
                out.count("duplicates")
                return
            if click.ts < sess.last_ts and late_by > s.grace_s:
                self._dead(
                    m, "late", f"ts {click.ts:.3f} is {late_by:.0f} s behind stream time (grace {s.grace_s:g} s)", out
                )
                return
            if len(sess.items) >= s.max_session_clicks:
                self._dead(
                    m,
                    "session_too_long",
                    f"session {sess.sid} already has {len(sess.items)} clicks (JUMP_MAX_SESSION_CLICKS)",
                    out,
                )
                return
        elif late_by > s.grace_s:
            self._dead(
                m,
                "late",
                f"ts {click.ts:.3f} is {late_by:.0f} s behind stream time "
                f"(grace {s.grace_s:g} s) and the key has no open session",
                out,
            )
            return
        if sess is None:
            sess = Session(session_id(click.key, click.ts), m.partition, [], [], [], 0, [-1, -1])
            self.sessions[key] = sess
        # insert in event-time order (ties keep arrival order, as the offline stable sort does)
        at = len(sess.ts) if not sess.ts or click.ts >= sess.ts[-1] else bisect_right(sess.ts, click.ts)
        sess.items.insert(at, click.item)
        sess.ts.insert(at, click.ts)
        sess.event_ids.insert(at, click.event_id)
        position = sess.arrivals
        sess.arrivals += 1
        sess.offsets[m.topic] = m.offset
        if click.ts > meta.stream_time:
            meta.stream_time = click.ts
        lo = max(0, at + 1 - s.context_clicks)
        request = {
            "session_key": click.key,
            "session_id": sess.sid,
            "position": position,
            "items": sess.items[lo : at + 1],
            "ts": sess.ts[lo : at + 1],
            "event_ts": click.ts,
            "ingest_ts": m.timestamp,
            "partition": m.partition,
        }
        out.requests.append((m.partition, key, codec.encode("request", request)))
        out.state[key] = (sess.partition, sess)
        out.deletes.pop(key, None)  # the key's session closed earlier in this batch: a new one lives
        if at == len(sess.ts) - 1:
            self._push_deadline(key, sess)
        out.count("accepted")

    def _close(self, key: bytes, sess: Session, reason: str, out: Output) -> None:
        tau, delta = censor(sess.ts, None, self.s.c1, self.s.c2)
        tau, delta = tau.tolist(), delta.tolist()
        record = {
            "session_key": key.decode(),
            "session_id": sess.sid,
            "start_ts": sess.ts[0],
            "end_ts": sess.ts[-1],
            "n_clicks": len(sess.items),
            "items": list(sess.items),
            "ts": list(sess.ts),
            "tau": tau,
            "delta": delta,
            "close_reason": reason,
        }
        fmt = self.s.output_format
        headers = codec.output_headers(codec.identity("training_log", record), fmt)
        out.training_log.append((headers, key, codec.encode("training_log", record, fmt)))
        out.closed.append((reason, len(sess.items), tau, delta))
        del self.sessions[key]
        if out.state.get(key, (None, None))[1] is not sess:  # its final state is already persisted
            out.state.pop(key, None)
        out.deletes[key] = sess.partition

    def _close_expired(self, p: int, out: Output) -> None:
        heap = self.deadlines.get(p)
        if not heap:
            return
        stream_time = self.meta[p].stream_time
        span = self.s.session_gap_s + self.s.grace_s
        while heap and heap[0][0] < stream_time:
            deadline, key = heapq.heappop(heap)
            sess = self.sessions.get(key)
            if sess is not None and sess.last_ts + span == deadline:  # else: a stale entry
                self._close(key, sess, "stream_time", out)
        if len(heap) > 4 * max(16, len(self.sessions)):  # drop stale entries
            live = [(s.last_ts + span, k) for k, s in self.sessions.items() if s.partition == p]
            heapq.heapify(live)
            self.deadlines[p] = live

    def _on_tick(self, p: int, now: float, out: Output) -> None:
        if now - self.last_input_wall.get(p, now) < self.s.idle_close:
            return
        for key, sess in [(k, s) for k, s in self.sessions.items() if s.partition == p]:
            self._close(key, sess, "idle", out)
        self.deadlines[p] = []

    def flush_all(self, out: Output | None = None) -> Output:
        """Close every open session (tests and a clean shutdown of a bounded replay)."""
        out = out or Output()
        for key, sess in list(self.sessions.items()):
            self._close(key, sess, "idle", out)
        return out
