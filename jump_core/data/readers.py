"""Readers: raw click files -> a stream of ``(session_key, item_id, ts_seconds)``.

Every reader yields ``(key: str, item: str, ts: float)`` with ``ts`` in Unix **seconds** (UTC),
in file order. Readers do not sort, sessionize by gap, filter by support or censor dwell times:
that is done downstream with :mod:`jump_core.sessions`. ``default_gap`` says which inactivity
gap to split each key's clicks with (``None``: the key already is a session).

=========================  =====  ======  ==============================================  ==============  =======
format                     delim  header  key / item / time columns                       time unit       key is
=========================  =====  ======  ==============================================  ==============  =======
``rsc15``                  ,      no      0 session_id / 2 item_id / 1 timestamp          ISO-8601 (Z)    session
``rsc15-prepared``         tab    yes     SessionId / ItemId / Time                       s               session
``diginetica``             ;      yes     session_id / item_id / timeframe (+ eventdate)  ms + day        session
``reddit``                 ,      yes     username / subreddit / utc                      s               user
``retailrocket`` (sample)  tab    yes     session_id / item_id / timestamp                s               session
``retailrocket`` (events)  ,      yes     visitorid / itemid / timestamp (views only)     ms              user
``lastfm``                 tab    no      0 userid / 4 track-mbid (*) / 1 timestamp       ISO-8601 (Z)    user
``csv``                    opt.   opt.    session_col|user_col / item_col / time_col      time_unit       opt.
=========================  =====  ======  ==============================================  ==============  =======

Notes per format:

* ``rsc15``: raw YooChoose ``yoochoose-clicks.dat`` (``session_id,timestamp,item_id,category``).
* ``rsc15-prepared``: session-rec / GRU4Rec output. Its ``Time`` is the true UTC epoch minus 7200 s
  (the preprocessing parsed ``...Z`` as CEST); values are kept as they are, gaps are unaffected.
* ``diginetica``: CIKM Cup 2016 ``train-item-views.csv``; snake_case or original camelCase header.
  ``timeframe`` is milliseconds relative within the session and rows are not in time order, so
  ``ts = epoch(earliest eventdate of the session, 00:00 UTC) + timeframe / 1000``: gaps inside a
  session are exact and each session keeps its day. This reader holds the whole input in memory.
* ``retailrocket``: the layout is detected from the header. SR-GTM sample
  (``timestamp\\tuser_id\\titem_id\\tsession_id``, seconds, keyed by session) or raw Kaggle
  ``events.csv`` (``timestamp,visitorid,event,itemid,transactionid``, milliseconds, keyed by
  visitor); for the latter only ``event == "view"`` rows are clicks, the others are counted in
  ``ReadStats.filtered`` (reason ``"not a view"``), not as errors.
* ``lastfm``: Last.fm 1K TSV, no header, read with quoting disabled. (*) Item = track mbid, or
  ``artist-name + "\\x1f" + track-name`` where the mbid is empty.
* ``csv``: generic; options ``delimiter`` (","), exactly one of ``session_col`` / ``user_col``,
  ``item_col``, ``time_col``, ``time_unit`` in ``{"s", "ms", "us", "iso"}`` ("s"), ``header``
  (True; without a header the ``*_col`` options are 0-based indices), ``gap`` (s, for
  ``default_gap``). The project's synthetic ``session_id,user_id,item_id,timestamp`` files read as
  ``read_clicks("csv", path, session_col="session_id", item_col="item_id", time_col="timestamp")``.

Common rules: files ending in ``.gz`` are decompressed on the fly; text is UTF-8 (a BOM is
dropped, undecodable bytes become U+FFFD); blank lines are ignored and not counted; ids are kept
verbatim. ISO-8601 times without an offset are taken as UTC. A malformed row (wrong number of
fields, empty key or item, unparseable / non-finite / negative time) raises
:class:`MalformedRowError` naming ``path:line``, or with ``skip_bad=True`` is skipped and counted
in :class:`ReadStats`. The option ``gap`` is accepted by every format (it only feeds
``default_gap``); any other unknown option is a ``ValueError``.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Literal

from jump_core.sessions import REDDIT_GAP

__all__ = ["FORMATS", "MalformedRowError", "ReadStats", "default_gap", "key_kind", "parse_timestamp", "read_clicks"]

Click = tuple[str, str, float]
Column = str | int  # a header name, or a 0-based field index
KeyKind = Literal["session", "user"]
PathArg = str | os.PathLike | Sequence[str | os.PathLike]

FORMATS: tuple[str, ...] = ("rsc15", "rsc15-prepared", "diginetica", "reddit", "retailrocket", "lastfm", "csv")
TIME_UNITS: tuple[str, ...] = ("s", "ms", "us", "iso")
_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}
_MISSING = "missing field"


# --------------------------------------------------------------------------- errors and stats


class MalformedRowError(ValueError):
    """A data row that is not a valid click; ``str(err)`` is ``"path:line: reason"`` (line 1-based)."""

    def __init__(self, path: str, line: int, reason: str, category: str = "malformed row"):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason, self.category = path, line, reason, category

    def __reduce__(self):  # keep picklable despite the custom signature
        return type(self), (self.path, self.line, self.reason, self.category)


class _RowProblem(Exception):
    """Internal: the row at hand is malformed (category is a ReadStats reason)."""

    def __init__(self, category: str, reason: str):
        super().__init__(reason)
        self.category, self.reason = category, reason


class _NotAClick(_RowProblem):
    """Internal: a well-formed row deliberately left out (e.g. a Retailrocket non-view event)."""


@dataclass
class ReadStats:
    """Counts of one or more ``read_clicks`` calls (pass the same object to accumulate).

    ``rows`` = every data row read (header and blank lines excluded) = clicks + skipped + filtered.
    ``skipped`` = malformed rows skipped (only with ``skip_bad=True``); ``filtered`` = well-formed
    rows that are not clicks by the format's definition. ``skipped_reasons`` maps a reason category
    (``"bad timestamp"``, ``"missing field"``, ``"wrong field count"``, ``"unparseable line"``,
    ``"not a view"``) to its count, for skipped and filtered rows alike.
    """

    rows: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    filtered: int = 0

    @property
    def clicks(self) -> int:
        """Rows that parsed as clicks."""
        return self.rows - self.skipped - self.filtered

    def count(self, category: str, malformed: bool) -> None:
        """Record one skipped (malformed) or filtered row under ``category``."""
        if malformed:
            self.skipped += 1
        else:
            self.filtered += 1
        self.skipped_reasons[category] = self.skipped_reasons.get(category, 0) + 1

    def summary(self) -> str:
        """One line with every count."""
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped_reasons.items()))
        return f"rows={self.rows} clicks={self.clicks} skipped={self.skipped} filtered={self.filtered}" + (
            f" ({reasons})" if reasons else ""
        )


# --------------------------------------------------------------------------- timestamps


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_timestamp(raw: str, unit: str) -> float:
    """Unix seconds (float) from ``raw`` in ``unit``: "s", "ms", "us" (numbers) or "iso" (ISO-8601;
    a trailing ``Z`` or no offset means UTC; a bare date is its midnight UTC).

    Raises ValueError for unparseable, non-finite or negative times.
    """
    if unit == "iso":
        text = raw.strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(f"timestamp {raw!r} is not ISO-8601") from None
        ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    else:
        try:
            ts = float(raw) / _SCALE[unit]
        except ValueError:
            hint = " (it looks like an ISO-8601 time: --time-unit iso)" if _ISO_DATE.match(raw.strip()) else ""
            raise ValueError(f"timestamp {raw!r} is not a number{hint}") from None
    if not math.isfinite(ts):
        raise ValueError(f"timestamp {raw!r} is not finite")
    if ts < 0:
        raise ValueError(f"timestamp {raw!r} is negative")
    return ts


# --------------------------------------------------------------------------- format descriptions


@dataclass(frozen=True)
class _Format:
    """How one file layout maps to clicks. Columns are header names (matched exactly, else
    case/underscore-insensitively) or 0-based indices (required when ``header`` is False)."""

    delimiter: str
    key: Column
    item: Column
    time: Column
    unit: str  # unit of the time column, see parse_timestamp
    kind: KeyKind = "session"  # what the key column holds
    header: bool = True
    width: int | None = None  # headerless: exact field count (None: enough for the columns)
    quoting: int = csv.QUOTE_MINIMAL
    item_fallback: tuple[Column, ...] = ()  # joined with "\x1f" when the item column is empty
    keep: tuple[Column, str, str] | None = None  # (column, value, reason): other rows are filtered out
    day: Column | None = None  # ISO day; ts = session's earliest day + time (diginetica)


Builder = Callable[[str | None, dict], _Format]


def _rsc15(path: str | None, options: dict) -> _Format:
    """Raw YooChoose clicks: ``session_id,timestamp(ISO-8601 Z),item_id,category``, no header."""
    return _Format(",", key=0, item=2, time=1, unit="iso", header=False, width=4)


def _rsc15_prepared(path: str | None, options: dict) -> _Format:
    """session-rec/GRU4Rec ``SessionId\\tItemId\\tTime``; Time = float s (UTC - 7200, kept as is)."""
    return _Format("\t", key="SessionId", item="ItemId", time="Time", unit="s")


def _diginetica(path: str | None, options: dict) -> _Format:
    """CIKM16 ``session_id;user_id;item_id;timeframe(ms in session);eventdate(YYYY-MM-DD)``."""
    return _Format(";", key="session_id", item="item_id", time="timeframe", unit="ms", day="eventdate")


def _reddit(path: str | None, options: dict) -> _Format:
    """Kaggle reddit ``username,subreddit,utc`` (utc float s), keyed by user."""
    return _Format(",", key="username", item="subreddit", time="utc", unit="s", kind="user")


_RR_SESSIONS = _Format("\t", key="session_id", item="item_id", time="timestamp", unit="s")
_RR_EVENTS = _Format(
    ",", key="visitorid", item="itemid", time="timestamp", unit="ms", kind="user", keep=("event", "view", "not a view")
)


def _retailrocket(path: str | None, options: dict) -> _Format:
    """SR-GTM sample (tab, seconds, session ids) or raw ``events.csv`` (comma, ms, visitors, views
    only), told apart by the header; without a path the session layout is assumed."""
    if path is None:
        return _RR_SESSIONS
    line = _first_line(path)
    for layout in (_RR_SESSIONS, _RR_EVENTS):
        names = [_norm(c) for c in line.split(layout.delimiter)]
        if all(_norm(str(c)) in names for c in (layout.key, layout.item, layout.time)):
            return layout
    raise ValueError(
        f"{path}:1: unrecognised retailrocket header {line!r} (expected "
        "'timestamp\\tuser_id\\titem_id\\tsession_id' or "
        "'timestamp,visitorid,event,itemid,transactionid')"
    )


def _lastfm(path: str | None, options: dict) -> _Format:
    """Last.fm 1K TSV, no header, quoting off; item = track mbid or artist-name\\x1ftrack-name."""
    return _Format(
        "\t",
        key=0,
        item=4,
        time=1,
        unit="iso",
        kind="user",
        header=False,
        width=6,
        quoting=csv.QUOTE_NONE,
        item_fallback=(3, 5),
    )


_DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t"}
_CSV_OPTIONS = frozenset({"delimiter", "session_col", "user_col", "item_col", "time_col", "time_unit", "header"})


def _csv(path: str | None, options: dict) -> _Format:
    """Generic delimited file described by the options (see the module docstring)."""
    header = options.get("header", True)
    if not isinstance(header, bool):
        raise ValueError(f"csv: header must be True or False, got {header!r}")
    if ("session_col" in options) == ("user_col" in options):
        raise ValueError(
            "csv: give exactly one of session_col (key = session) or user_col (key = user, sessions split by gap)"
        )
    for name in ("item_col", "time_col"):
        if name not in options:
            raise ValueError(f"csv: option {name} is required")
    unit = options.get("time_unit", "s")
    if unit not in TIME_UNITS:
        raise ValueError(f"csv: time_unit must be one of {TIME_UNITS}, got {unit!r}")
    delimiter = options.get("delimiter", ",")
    delimiter = _DELIMITER_ALIASES.get(delimiter, delimiter)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"csv: delimiter must be one character, got {delimiter!r}")
    kind: KeyKind = "session" if "session_col" in options else "user"
    cols = [_csv_column(options[n], header, n) for n in (f"{kind}_col", "item_col", "time_col")]
    return _Format(delimiter, *cols, unit=unit, kind=kind, header=header)


def _csv_column(value: object, header: bool, option: str) -> Column:
    """A csv column option: a name (with a header) or an int / digit string index."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        if header:
            return value
        if value.isdigit():
            return int(value)
    raise ValueError(
        f"csv: {option}={value!r} must be "
        + ("a column name or index" if header else "a 0-based column index (header=False)")
    )


_BUILDERS: dict[str, Builder] = {
    "rsc15": _rsc15,
    "rsc15-prepared": _rsc15_prepared,
    "diginetica": _diginetica,
    "reddit": _reddit,
    "retailrocket": _retailrocket,
    "lastfm": _lastfm,
    "csv": _csv,
}


def _builder(fmt: str, options: dict) -> Builder:
    """The format's builder, after checking ``fmt`` and the option names (ValueError)."""
    if fmt not in _BUILDERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    allowed = {"gap"} | (_CSV_OPTIONS if fmt == "csv" else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{fmt}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    return _BUILDERS[fmt]


# --------------------------------------------------------------------------- row parsing


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "").replace(" ", "")


def _column(col: Column, header: list[str] | None, where: str) -> int:
    """Index of ``col`` in ``header`` (exact name, else unique case/underscore-insensitive match)."""
    if isinstance(col, int):
        return col
    assert header is not None, "named columns need a header"
    names = [h.strip() for h in header]
    if col in names:
        return names.index(col)
    loose = [k for k, h in enumerate(names) if _norm(h) == _norm(col)]
    if len(loose) == 1:
        return loose[0]
    hint = ""
    if len(header) == 1:  # one column: the file is likely split by another delimiter
        for d in (";", "\t", "|", ","):
            if len(header[0].split(d)) > 1:
                hint = f" (the header is one column: is the delimiter {d!r}? --delimiter {d!r})"
                break
    raise ValueError(f"{where}: header {header!r} has no column {col!r}{hint}")


def _row_parser(fmt: _Format, header: list[str] | None, where: str) -> Callable[[list[str]], tuple]:
    """Compile ``fmt`` against a file's header into ``fields -> (key, item, ts[, day_ts])``.

    Raises _NotAClick for rows ``fmt.keep`` excludes and _RowProblem for malformed ones.
    """

    def col(c: Column) -> int:
        return _column(c, header, where)

    def label(c: Column) -> str:
        return repr(header[col(c)].strip()) if header else f"column {col(c)}"

    k, i, t = col(fmt.key), col(fmt.item), col(fmt.time)
    fallback = tuple(col(c) for c in fmt.item_fallback)
    keep = (col(fmt.keep[0]), fmt.keep[1], fmt.keep[2]) if fmt.keep else None
    d = None if fmt.day is None else col(fmt.day)
    used = [k, i, t, *fallback, *([keep[0]] if keep else []), *([d] if d is not None else [])]
    width = len(header) if header else fmt.width
    need = max(used) + 1
    key_label, item_label = label(fmt.key), label(fmt.item)

    def stamp(raw: str, unit: str) -> float:
        try:
            return parse_timestamp(raw, unit)
        except ValueError as exc:
            raise _RowProblem("bad timestamp", str(exc)) from None

    def parse(f: list[str]) -> tuple:
        if (len(f) != width) if width else (len(f) < need):
            raise _RowProblem("wrong field count", f"expected {width or f'at least {need}'} fields, got {len(f)}")
        if keep and f[keep[0]] != keep[1]:
            raise _NotAClick(keep[2], f"{f[keep[0]]!r} row is not a click")
        key, item = f[k], f[i]
        if not key.strip():
            raise _RowProblem(_MISSING, f"empty {key_label}")
        if not item.strip():
            parts = [f[c] for c in fallback]
            if not parts or not all(p.strip() for p in parts):
                raise _RowProblem(_MISSING, f"empty {item_label}")
            item = "\x1f".join(parts)
        ts = stamp(f[t], fmt.unit)
        return (key, item, ts) if d is None else (key, item, ts, stamp(f[d], "iso"))

    return parse


# --------------------------------------------------------------------------- files


def _open_text(path: str) -> IO[str]:
    """Open ``path`` for csv reading; ``.gz`` files are decompressed transparently. A directory, or a
    ``.gz`` name whose content is not gzip, is a ValueError naming the file."""
    kwargs = {"encoding": "utf-8-sig", "errors": "replace", "newline": ""}
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a file (give the files in it)")
    if path.endswith(".gz"):
        with open(path, "rb") as raw:
            if raw.read(2) not in (b"\x1f\x8b", b""):
                raise ValueError(f"{path}: not a gzip file, though its name ends in .gz")
        return gzip.open(path, "rt", **kwargs)
    return open(path, **kwargs)


def _first_line(path: str) -> str:
    """The first non-blank line of ``path`` (without its line ending)."""
    with _open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return ""


def _records(fh: IO[str], fmt: _Format) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(1-based line, fields) for every non-blank record; a record csv cannot split gives its error."""
    reader = csv.reader(fh, delimiter=fmt.delimiter, quoting=fmt.quoting)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, exc
            continue
        if fields and (len(fields) > 1 or fields[0].strip()):
            yield reader.line_num, fields


def _read_file(path: str, fmt: _Format, skip_bad: bool, stats: ReadStats) -> Iterator[tuple]:
    """The shared row loop: header, line numbers, skip_bad and stats for one file."""
    parse = None if fmt.header else _row_parser(fmt, None, path)
    with _open_text(path) as fh:
        try:
            yield from _parsed_rows(path, fh, fmt, parse, skip_bad, stats)
        except (EOFError, OSError, zlib.error) as exc:  # a truncated or corrupt .gz, a read error
            raise ValueError(f"{path}: cannot read it: {exc}") from None


def _parsed_rows(path: str, fh: IO[str], fmt: _Format, parse, skip_bad: bool, stats: ReadStats) -> Iterator[tuple]:
    for line, fields in _records(fh, fmt):
        if parse is None:
            if isinstance(fields, csv.Error):
                raise ValueError(f"{path}:{line}: unreadable header: {fields}")
            parse = _row_parser(fmt, fields, f"{path}:{line}")
            continue
        stats.rows += 1
        try:
            if isinstance(fields, csv.Error):
                raise _RowProblem("unparseable line", f"unparseable line: {fields}")
            click = parse(fields)
        except _NotAClick as exc:
            stats.count(exc.category, malformed=False)
            continue
        except _RowProblem as exc:
            if not skip_bad:
                raise MalformedRowError(path, line, exc.reason, exc.category) from None
            stats.count(exc.category, malformed=True)
            continue
        yield click


def _paths(paths: PathArg) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [os.fspath(p) for p in paths]
    if not files:
        raise ValueError("no input files given")
    return files


def _anchor_to_first_day(rows: Iterable[tuple[str, str, float, float]]) -> Iterator[Click]:
    """(key, item, t_in_session, day_ts) -> (key, item, earliest day_ts of the key + t_in_session).

    Needs every row of a session first, so it holds the input in memory; file order is kept.
    """
    rows = list(rows)
    first_day: dict[str, float] = {}
    for key, _, _, day in rows:
        if day < first_day.get(key, math.inf):
            first_day[key] = day
    for key, item, offset, _ in rows:
        yield key, item, first_day[key] + offset


# --------------------------------------------------------------------------- public API


def read_clicks(
    fmt: str, paths: PathArg, *, skip_bad: bool = False, stats: ReadStats | None = None, **options
) -> Iterator[Click]:
    """Yield ``(session_key, item_id, ts_seconds)`` from ``paths`` (one path or several, read in order).

    ``ts`` is Unix seconds (float, UTC), converted from the format's unit; rows come in file order.
    A malformed row raises MalformedRowError (``path:line: reason``) unless ``skip_bad``, when it
    is skipped and counted in ``stats``. Streams row by row, except ``diginetica`` which needs
    whole sessions. Unknown ``fmt`` or options raise ValueError at call time; missing files and
    bad headers raise when iteration reaches them.
    """
    builder = _builder(fmt, options)
    template = builder(None, options)  # validates the options now, not at first next()
    files = _paths(paths)
    stats = stats if stats is not None else ReadStats()

    def clicks() -> Iterator[tuple]:
        for path in files:
            yield from _read_file(path, builder(path, options), skip_bad, stats)

    return _anchor_to_first_day(clicks()) if template.day is not None else clicks()


def key_kind(fmt: str, paths: PathArg | None = None, **options) -> KeyKind:
    """``"session"`` when the format's key is a session id, ``"user"`` when clicks must be split into
    sessions by an inactivity gap. Only ``retailrocket`` looks at the files (header sniffing; without
    paths the session-id layout is assumed); ``csv`` follows session_col / user_col."""
    builder = _builder(fmt, options)
    kinds = {builder(p, options).kind for p in (_paths(paths) if paths is not None else [None])}
    if len(kinds) > 1:
        raise ValueError(f"{fmt}: files mix session-keyed and user-keyed layouts")
    return kinds.pop()


def default_gap(fmt: str, paths: PathArg | None = None, **options) -> float | None:
    """Inactivity gap in seconds that splits a key's clicks into sessions.

    ``options["gap"]`` wins when given (any format). Otherwise ``None`` when the key is a session id
    (rsc15, rsc15-prepared, diginetica, retailrocket sample layout, csv with session_col) and
    ``jump_core.sessions.REDDIT_GAP`` (3600 s) when it is a user (reddit, lastfm, retailrocket raw
    events.csv -- pass ``paths`` so the layout can be sniffed --, csv with user_col).
    """
    gap = options.get("gap")
    if gap is not None:
        gap = float(gap)
        if not gap >= 0:
            raise ValueError(f"gap must be a non-negative number of seconds, got {options['gap']!r}")
        _builder(fmt, options)(None, options)  # still reject an unknown format or bad options
        return gap
    return None if key_kind(fmt, paths, **options) == "session" else REDDIT_GAP
