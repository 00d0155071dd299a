"""Rewrite a JSON document by splicing its bytes: what does not change is copied, what changes is written in the
document's own style. tokenizer.json keeps the formatting it came with (issue 12) without re-serialising a 262k-entry
vocabulary (issue 10).

`splice(doc, old, new)` takes `doc`, the bytes `old` was parsed from, and returns `new` as a list of pieces: byte
ranges `(start, stop)` of `doc` copied as they are, and `bytes` of new text. A container (object or array) whose
content changed is walked item by item: the items before the first change and after the last one are copied as one
range each, an item that changed is spliced in turn (an object member keeps its key's bytes; an array element is
matched to the old element it came from: an equal one, else, for objects, the one equal but for "id"), and new
items are written with `json.dumps` in the style around them (the indentation of the item's line, the separators
the container uses, raw UTF-8 or \\u escapes as the file has them).

The scanner reads structure only: strings (with escapes), numbers, literals and brackets. Large homogeneous
containers (a BPE vocabulary of "token": id, arrays of merges or of small objects such as the added tokens) are
skipped by one regular expression at C speed, which also proves their syntax; such a container, when it changes, is
read item by item only around the items that change, from whichever end is nearer (backwards, a string's opening
quote is the nearest quote not escaped by an odd run of backslashes). Every item the splice reads is checked against
the parsed document (a member's key, a vocabulary entry's token and id, an element's value, the number of items:
the keys of a vocabulary are counted at C speed, so a duplicate key cannot shift entries), so a scan that does not
describe `old` is refused. Anything the scanner cannot prove raises `Unprovable`, and the caller re-serialises the
whole document instead.

Values are compared with `==` (at C speed), so a value that changes only between equal numbers of different types
(true and 1, 1 and 1.0) inside a container keeps its bytes; renumbering never makes such a change.
"""

from __future__ import annotations

import json
import re
from collections import deque
from itertools import compress, count
from operator import ne

MAX_DEPTH = 64  # tokenizer.json nests 6 levels; deeper is refused rather than recursed into


class Unprovable(Exception):
    """The scanner cannot prove that a splice gives `new`: re-serialise instead."""


_WS = rb"[ \t\n\r]*+"
_STR = rb'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+"'
_NUM = rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"
_SCALAR = rb"(?:" + _STR + rb"|" + _NUM + rb"|true|false|null)"
_INT = rb"[0-9]++"


def _flat_object(value: bytes) -> bytes:
    member = _STR + _WS + rb":" + _WS + value + _WS
    return rb"\{" + _WS + rb"(?:" + member + rb"(?:," + _WS + member + rb")*+)?\}"


def _flat_array(item: bytes) -> bytes:
    return rb"\[" + _WS + rb"(?:" + item + _WS + rb"(?:," + _WS + item + _WS + rb")*+)?\]"


_WS_RE = re.compile(_WS)
_STR_RE = re.compile(_STR)
_SCALAR_RE = re.compile(_SCALAR)
_FLAT_INT_OBJECT = re.compile(_flat_object(_INT))  # a BPE vocabulary: {"token": id, ...}
_FLAT_OBJECT = re.compile(_flat_object(_SCALAR))
_SHALLOW_ARRAY = re.compile(_flat_array(rb"(?:" + _SCALAR + rb"|" + _flat_array(_SCALAR) + rb"|"
                                        + _flat_object(_SCALAR) + rb")"))  # merges, added_tokens, Unigram vocab
_KEY_COLON = re.compile(_STR + _WS + rb":")
_FLAT_MEMBER = re.compile(rb"(" + _STR + rb")" + _WS + rb":" + _WS + rb"(" + _SCALAR + rb")" + _WS + rb"(?:(,)"
                          + _WS + rb"|(?=\}))")
_SEP = re.compile(rb",[ \t]*+")
_KV = re.compile(rb"[ \t]*+:[ \t]*+")
_WS_BYTES = b" \t\n\r"
_SCALAR_BYTES = b"0123456789+-.eEtrufalsn"
_LAZY_MIN = 64  # a "token": id object or a proved array with more items is read only around its changes


class Style:
    """How `doc` is written: the indentation unit (None: on one line), the key-value separator, \\u escapes."""

    def __init__(self, doc: bytes):
        self.ensure_ascii = doc.isascii() and b"\\u" in doc
        start = _document_start(doc)
        gap = doc[start + 1:_WS_RE.match(doc, start + 1).end()] if doc[start:start + 1] in (b"{", b"[") else b""
        self.unit = gap.rpartition(b"\n")[2].decode() if b"\n" in gap else None
        self.newline = b"\r\n" if b"\r\n" in gap else b"\n"
        key = _STR_RE.match(doc, start + 1 + len(gap)) if doc[start:start + 1] == b"{" else None
        kv = _KV.match(doc, key.end()) if key else None
        self.kv = kv.group().decode() if kv and b"\n" not in kv.group() else ": "
        if self.unit is None and kv:
            # a one-line document: json.dumps' default is ", " / ": ", tokenizers' is "," / ":"
            value_end = _skip_scalar(doc, _WS_RE.match(doc, kv.end()).end())
            sep = _SEP.match(doc, value_end) if value_end is not None else None
            self.item_sep = sep.group().decode() if sep else ","
        else:
            self.item_sep = ","
        self._line = json.JSONEncoder(ensure_ascii=self.ensure_ascii, separators=(self.item_sep, self.kv))
        self._lines = json.JSONEncoder(ensure_ascii=self.ensure_ascii, indent=self.unit, separators=(",", self.kv))

    def dumps(self, value: object, indent: bytes | None) -> bytes:
        """`value` as JSON in this style; `indent`: the indentation of the line it starts on (None: one line)."""
        if type(value) is int:
            return str(value).encode()
        if indent is None or self.unit is None or not isinstance(value, (dict, list)):
            return self._line.encode(value).encode("utf-8")
        return self._lines.encode(value).encode("utf-8").replace(b"\n", self.newline + indent)


def _document_start(doc: bytes) -> int:
    """Where the JSON value of `doc` starts: after a UTF-8 byte order mark and blanks."""
    return _WS_RE.match(doc, 3 if doc.startswith(b"\xef\xbb\xbf") else 0).end()


def _skip_scalar(doc: bytes, pos: int) -> int | None:
    m = _SCALAR_RE.match(doc, pos)
    return m.end() if m else None


def dump_like(value: object, doc: bytes | None) -> bytes:
    """`value` serialised whole in `doc`'s style (compact when there is no `doc`): the fallback of `splice`."""
    if doc is None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    out = Style(doc).dumps(value, b"")
    start = _document_start(doc)
    return doc[:start] + out + doc[len(doc.rstrip(_WS_BYTES)):]


def _same(old: object, new: object) -> bool:
    return old is new or type(old) is type(new) and old == new


def _put(items: list | dict, k: int, value: int) -> None:
    if isinstance(items, dict):
        items[k] = value
    elif k == len(items):
        items.append(value)
    else:
        raise Unprovable("items read out of order")


def _first_difference(a: list, b: list) -> int:
    """The first index where two lists differ (the shorter length if one is a prefix of the other): halving
    slices compared at C speed (mostly identical objects), about 2 * len element comparisons in all."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while hi - lo > 1:  # a[:lo] == b[:lo], a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: list, b: list) -> int:
    """How many items two lists share at their ends."""
    n = min(len(a), len(b))
    if not n or a[-1] != b[-1]:
        return 0
    if n < 64:
        return next(compress(count(), map(ne, reversed(a), reversed(b))), n)
    return _first_difference(a[-n:][::-1], b[-n:][::-1])


class _Container:
    """The items of one object or array of `doc`: for item k, `starts[k]` (its key, or its value in an array) and
    `ends[k]` (the end of its value); for objects `key_ends[k]` and `value_starts[k]`. A lazily read big object
    holds only the indices it read (dicts)."""

    def __init__(self, start: int, end: int, is_object: bool, n: int):
        self.start, self.end, self.is_object, self.n = start, end, is_object, n
        self.starts: dict[int, int] | list[int] = []
        self.ends: dict[int, int] | list[int] = []
        self.key_ends: dict[int, int] | list[int] = []
        self.value_starts: dict[int, int] | list[int] = []

    def sep_before(self, k: int, doc: bytes) -> bytes:
        return doc[self.ends[k - 1]:self.starts[k]]


class _Splicer:
    def __init__(self, doc: bytes):
        self.doc = doc
        self.style = Style(doc)
        self.validated: dict[int, int] = {}  # start of a container whose syntax a regular expression proved -> end
        self.token_ids: set[int] = set()  # the starts of those that are "token": id objects (a BPE vocabulary)
        self.parsed: dict[int, _Container] = {}
        self.decoded: dict[bytes, str] = {}  # the bytes of an object key -> the key (the added tokens share 7)

    # --- scanning ------------------------------------------------------------------------------------------------

    def ws(self, pos: int) -> int:
        return _WS_RE.match(self.doc, pos).end()

    def skip(self, pos: int, depth: int) -> int:
        """The end of the value starting at `pos`."""
        if depth > MAX_DEPTH:
            raise Unprovable("nested too deeply")
        if pos in self.validated:
            return self.validated[pos]
        c = self.doc[pos:pos + 1]
        if c == b"{" or c == b"[":
            m = None
            if c == b"[":
                m = _SHALLOW_ARRAY.match(self.doc, pos)
            else:
                m = _FLAT_INT_OBJECT.match(self.doc, pos)
                if m:
                    self.token_ids.add(pos)
                else:
                    m = _FLAT_OBJECT.match(self.doc, pos)
            if m is None:
                return self.container(pos, depth).end
            self.validated[pos] = m.end()
            return m.end()
        end = _skip_scalar(self.doc, pos)
        if end is None:
            raise Unprovable(f"no JSON value at byte {pos}")
        return end

    def container(self, start: int, depth: int) -> _Container:
        """Every item of the object or array at `start`."""
        if start in self.parsed:
            return self.parsed[start]
        doc = self.doc
        is_object = doc[start:start + 1] == b"{"
        close = b"}" if is_object else b"]"
        c = _Container(start, 0, is_object, 0)
        pos = self.ws(start + 1)
        if is_object and start in self.validated and doc[pos:pos + 1] != close:
            more = True
            while more:
                m = _FLAT_MEMBER.match(doc, pos)
                if m is None:
                    raise Unprovable(f"no object member at byte {pos}")
                c.starts.append(pos)
                c.key_ends.append(m.end(1))
                c.value_starts.append(m.start(2))
                c.ends.append(m.end(2))
                pos, more = m.end(), m.start(3) >= 0
            if doc[pos:pos + 1] != close:
                raise Unprovable(f"expected '}}' at byte {pos}")
        elif doc[pos:pos + 1] != close:
            k = 0
            while True:
                self._item_at(c, k, pos, depth)
                pos = self.ws(c.ends[k])
                k += 1
                if doc[pos:pos + 1] == b",":
                    pos = self.ws(pos + 1)
                elif doc[pos:pos + 1] == close:
                    break
                else:
                    raise Unprovable(f"expected ',' or {close.decode()!r} at byte {pos}")
        c.end, c.n = pos + 1, len(c.starts)
        self.parsed[start] = c
        return c

    def _item_at(self, c: _Container, k: int, pos: int, depth: int) -> None:
        """Read item k of `c`, which starts at `pos`; lists grow by appending (k is then their length)."""
        doc = self.doc
        value = pos
        if c.is_object:
            key = _STR_RE.match(doc, pos)
            if key is None:
                raise Unprovable(f"no object key at byte {pos}")
            kv = self.ws(key.end())
            if doc[kv:kv + 1] != b":":
                raise Unprovable(f"no ':' after the key at byte {pos}")
            value = self.ws(kv + 1)
            _put(c.key_ends, k, key.end())
            _put(c.value_starts, k, value)
        _put(c.starts, k, pos)
        _put(c.ends, k, self.skip(value, depth + 1))

    def keys(self, c: _Container, indices) -> list[str]:
        out, known, doc = [], self.decoded, self.doc
        try:
            for k in indices:
                raw = doc[c.starts[k]:c.key_ends[k]]
                key = known.get(raw)
                if key is None:
                    key = known[raw] = json.loads(raw)
                out.append(key)
        except (ValueError, UnicodeDecodeError):
            raise Unprovable("an object key does not decode") from None
        return out

    # --- a big container whose syntax a regular expression proved, read around its changes ------------------------

    def lazy(self, start: int, keys: list[str] | None, values: list, lo: int, hi: int, depth: int) -> _Container:
        """Items lo..hi (inclusive) of the container at `start` (an object's `keys`, None for an array, and its
        `values` as parsed), read from whichever end is nearer; each item read checked against the parsed ones. The
        container's syntax is proved (self.validated); for an object, that it has len(keys) members (no duplicate
        key hides one) is proved by counting its keys, so item k of the bytes is item k parsed."""
        doc, end, n = self.doc, self.validated[start], len(values)
        is_object = keys is not None
        if is_object and self._key_count(start, end, keys) != n:
            raise Unprovable(f"the object at byte {start} has a duplicate key")
        c = _Container(start, end, is_object, n)
        c.starts, c.ends, c.key_ends, c.value_starts = {}, {}, {}, {}
        opening, close = (b"{", b"}") if is_object else (b"[", b"]")
        if hi + 1 <= n - lo:  # forward from the opening bracket
            read = range(hi + 1)
            pos = self.ws(start + 1)
            for k in read:
                self._item_at(c, k, pos, depth)
                pos = self.ws(c.ends[k])
                if doc[pos:pos + 1] != (b"," if k < n - 1 else close):
                    raise Unprovable(f"unexpected byte after the item at {c.starts[k]}")
                pos = self.ws(pos + 1) if k < n - 1 else pos
        else:  # backward from the closing bracket
            read = range(lo, n)
            pos = end - 1
            for k in reversed(read):
                at = self._item_start_before(pos, start, is_object)
                self._item_at(c, k, at, depth)
                if self.ws(c.ends[k]) != pos:
                    raise Unprovable(f"the item before byte {pos} does not end there")
                before = self._blank_before(at, start)
                if doc[before:before + 1] != (b"," if k > 0 else opening) or (k == 0 and before != start):
                    raise Unprovable(f"unexpected byte before the item at {at}")
                pos = before
        used = range(lo, hi + 1)
        if is_object:
            if self.keys(c, read) != keys[read.start:read.stop]:
                raise Unprovable(f"the object at byte {start} does not hold its parsed keys")
            if any(json.loads(doc[c.value_starts[k]:c.ends[k]]) != values[k] for k in used):
                raise Unprovable(f"the object at byte {start} does not hold its parsed values")
        elif any(json.loads(doc[c.starts[k]:c.ends[k]]) != values[k] for k in used):
            raise Unprovable(f"the array at byte {start} does not hold its parsed elements")
        return c

    def _key_count(self, start: int, end: int, keys: list[str]) -> int:
        """The number of members of the "token": id object doc[start:end] (syntax proved), at C speed.

        Its commas are the separators (members - 1) and those inside tokens, which are at least the commas of
        `keys` (every key is a token of the bytes) when no comma is escaped (\\u002c). So commas - commas of `keys`
        + 1 == len(keys) proves at most, hence exactly, len(keys) members: no duplicate key. Otherwise every key
        is counted by a regular expression (exact: the values hold no quotes)."""
        doc = self.doc
        if start in self.token_ids and not doc.count(b"\\u002", start, end):
            if doc.count(b",", start, end) - "".join(keys).count(",") + 1 == len(keys):
                return len(keys)
        return _KEY_COLON.subn(b"", doc[start:end])[1]

    def _item_start_before(self, pos: int, floor: int, is_object: bool) -> int:
        """Where the item ending before `pos` (its ',' or the closing bracket) starts, read backwards in a container
        of proved syntax: a string's opening quote is the nearest quote before its closing one that is preceded by
        an even number of backslashes (a quote inside a string always follows an odd number)."""
        doc = self.doc
        j = self._blank_before(pos, floor)
        j = self._value_start_before(j, floor)
        if is_object:
            j = self._blank_before(j, floor)
            if doc[j] != 0x3A:  # ':'
                raise Unprovable(f"no ':' before byte {j + 1}")
            j = self._blank_before(j, floor)
            if doc[j] != 0x22:
                raise Unprovable(f"no key before byte {j + 1}")
            j = self._string_start(j, floor)
        return j

    def _blank_before(self, pos: int, floor: int) -> int:
        """The last non-blank byte before `pos`."""
        j = pos - 1
        while j > floor and self.doc[j] in _WS_BYTES:
            j -= 1
        return j

    def _string_start(self, close: int, floor: int) -> int:
        doc, q = self.doc, close
        while True:
            q = doc.rfind(b'"', floor, q)
            if q <= floor:
                raise Unprovable(f"no opening quote before byte {close}")
            slashes = 0
            while doc[q - 1 - slashes] == 0x5C:
                slashes += 1
            if slashes % 2 == 0:
                return q

    def _value_start_before(self, last: int, floor: int) -> int:
        """The start of the value whose last byte is at `last`."""
        doc = self.doc
        c = doc[last]
        if c == 0x22:
            return self._string_start(last, floor)
        if c in b"]}":
            depth, j = 0, last
            while j > floor:
                c = doc[j]
                if c == 0x22:
                    j = self._string_start(j, floor)
                elif c in b"]}":
                    depth += 1
                elif c in b"[{":
                    depth -= 1
                    if depth == 0:
                        return j
                j -= 1
            raise Unprovable(f"no opening bracket before byte {last}")
        j = last
        while j > floor and doc[j] in _SCALAR_BYTES:
            j -= 1
        return j + 1

    # --- splicing ------------------------------------------------------------------------------------------------

    def value(self, start: int, end: int, old: object, new: object, depth: int, indent: bytes | None) -> list:
        """`new` in place of the value `old` at doc[start:end]; `indent`: that of the line the value starts on."""
        if depth > MAX_DEPTH:
            raise Unprovable("nested too deeply")
        if _same(old, new):
            return [(start, end)]
        if isinstance(old, dict) and isinstance(new, dict) or isinstance(old, list) and isinstance(new, list):
            return self.items(start, old, new, depth, indent)
        return [self.style.dumps(new, indent)]

    def items(self, start: int, old: dict | list, new: dict | list, depth: int, indent: bytes | None) -> list:
        """`new` in place of the container `old` at `start` (they differ)."""
        doc = self.doc
        is_object = isinstance(old, dict)
        if doc[start:start + 1] != (b"{" if is_object else b"["):
            raise Unprovable(f"expected {'an object' if is_object else 'an array'} at byte {start}")
        if is_object:
            old_keys, new_keys = list(old), list(new)
            old_values, new_values = list(old.values()), list(new.values())
            if old_keys == new_keys and new and len(old) <= _LAZY_MIN:
                return self._members_in_place(start, old_keys, old_values, new_values, depth, indent)
            p = _first_difference(old_values, new_values)
            p = _first_difference(old_keys[:p], new_keys[:p])
            s = _common_suffix(old_values, new_values)
            s = _common_suffix(old_keys[len(old_keys) - s:], new_keys[len(new_keys) - s:]) if s else 0
        else:
            old_values, new_values = old, new
            p = _first_difference(old, new)
            s = _common_suffix(old, new)
        n, m = len(old_values), len(new_values)
        s = min(s, n - p, m - p)
        self.skip(start, depth)  # proves the syntax of a big container before it is read lazily
        if m == 0:
            return [b"{}" if is_object else b"[]"]
        lo, hi = max(p - 1, 0), min(n - s, n - 1)
        if n >= 2 and hi == lo:
            lo, hi = (lo, hi + 1) if hi + 1 < n else (lo - 1, hi)
        if start in self.validated and n > _LAZY_MIN and (not is_object or start in self.token_ids):
            c = self.lazy(start, old_keys if is_object else None, old_values, lo, hi, depth)
        else:
            c = self.container(start, depth)
            if c.n != n:
                raise Unprovable(f"the {'object' if is_object else 'array'} at byte {start} has {c.n} items, "
                                 f"parsed {n}")
            if is_object and self.keys(c, range(n)) != old_keys:
                raise Unprovable(f"the object at byte {start} does not hold its parsed keys (a duplicate key?)")
        item_indent = self._item_indent(c, lo, indent)
        if n >= 2:
            sep = c.sep_before(p, doc) if 1 <= p <= hi else c.sep_before(hi, doc)
        elif n == 1:
            sep = b"," + doc[start + 1:c.starts[0]]
        else:
            sep = (b"," + self.style.newline + item_indent) if item_indent is not None \
                else self.style.item_sep.encode()
        if is_object:
            kv = doc[c.key_ends[lo]:c.value_starts[lo]] if n else self.style.kv.encode()
            by_key = {key: k for k, key in zip(range(p, n - s), old_keys[p:n - s], strict=True)}
            sources = [by_key.get(key) for key in new_keys[p:m - s]]
        else:
            sources = _match_elements(old_values[p:n - s], new_values[p:m - s], p)

        out: list = []
        if p > 0:
            out.append((start, c.ends[p - 1]))
        elif n:
            out.append((start, c.starts[0]))
        else:
            out.append(doc[start:start + 1] + (self.style.newline + item_indent if item_indent is not None else b""))
        previous = p - 1 if p > 0 else None
        emitted = p > 0
        for j, source in zip(range(p, m - s), sources, strict=True):
            if emitted:
                out.append(c.sep_before(source, doc) if source is not None and previous is not None
                           and source == previous + 1 else sep)
            emitted = True
            if source is None:
                item = ((self.style.dumps(new_keys[j], None) + kv) if is_object else b"") \
                    + self.style.dumps(new_values[j], item_indent)
                out.append(item)
            else:
                value_start = c.value_starts[source] if is_object else c.starts[source]
                if value_start != c.starts[source]:
                    out.append((c.starts[source], value_start))
                old_value = old_values[source]
                if start in self.token_ids and type(old_value) is int and type(new_values[j]) is int:
                    out.append(str(new_values[j]).encode() if new_values[j] != old_value
                               else (value_start, c.ends[source]))
                else:
                    out += self.value(value_start, c.ends[source], old_value, new_values[j], depth + 1,
                                      item_indent)
            previous = source
        if s > 0:
            k = n - s
            if emitted:
                out.append(c.sep_before(k, doc) if previous is not None and k == previous + 1 else sep)
            out.append((c.starts[k], c.end))
        elif n:
            out.append((c.ends[n - 1], c.end))
        else:
            out.append((self.style.newline + indent if item_indent is not None and indent is not None else b"")
                       + doc[c.end - 1:c.end])
        return out

    def _members_in_place(self, start: int, keys: list[str], old_values: list, new_values: list, depth: int,
                          indent: bytes | None) -> list:
        """An object whose keys stay as they are: its bytes with the values that change spliced in."""
        c = self.container(start, depth)
        if c.n != len(keys) or self.keys(c, range(c.n)) != keys:
            raise Unprovable(f"the object at byte {start} does not hold its parsed keys (a duplicate key?)")
        out, pos = [], start
        for k, old, new in zip(range(c.n), old_values, new_values, strict=True):
            if _same(old, new):
                continue
            out.append((pos, c.value_starts[k]))
            item_indent = self._item_indent(c, k, indent) if isinstance(new, (dict, list)) else None
            out += self.value(c.value_starts[k], c.ends[k], old, new, depth + 1, item_indent)
            pos = c.ends[k]
        out.append((pos, c.end))
        return out

    def _item_indent(self, c: _Container, k: int, indent: bytes | None) -> bytes | None:
        """The indentation of the lines the container's items start on (None: they share a line); for an empty
        container, its own line's `indent` plus the document's unit."""
        doc = self.doc
        if c.n == 0:
            return None if self.style.unit is None or indent is None else indent + self.style.unit.encode()
        pos = c.starts[k]
        line = doc.rfind(b"\n", c.start, pos)
        if line < 0:
            return None
        lead = doc[line + 1:pos]
        return lead if not lead.strip(_WS_BYTES) else None


def _match_elements(old: list, new: list, offset: int) -> list[int | None]:
    """For each element of `new`, the index (plus `offset`) of the element of `old` it is written over: an equal
    one, else for an object the one equal but for "id" (an added token renumbered), each used once, in order."""
    def key(value: object, drop_id: bool) -> object:
        if isinstance(value, dict):
            items = tuple(sorted((k, v) for k, v in value.items() if not drop_id or k != "id"))
            try:
                hash(items)
                return items
            except TypeError:
                value = dict(items)
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    out: list[int | None] = [None] * len(new)
    for drop_id in (False, True):
        free: dict[object, deque[int]] = {}
        taken = set(i for i in out if i is not None)
        for i, value in enumerate(old):
            if i + offset not in taken and (not drop_id or isinstance(value, dict)):
                free.setdefault(key(value, drop_id), deque()).append(i + offset)
        for j, value in enumerate(new):
            if out[j] is None and (not drop_id or isinstance(value, dict)):
                queue = free.get(key(value, drop_id))
                if queue:
                    out[j] = queue.popleft()
    return out


def splice(doc: bytes, old: object, new: object) -> list:
    """`new` as pieces of `doc` (the bytes `old` was parsed from) and new bytes: `(start, stop)` ranges of `doc`
    and `bytes`, in order. Raises Unprovable when the scanner cannot prove the result parses to `new`."""
    splicer = _Splicer(doc)
    start = _document_start(doc)
    try:
        end = splicer.skip(start, 0)
        body = splicer.value(start, end, old, new, 0, b"" if splicer.style.unit is not None else None)
    except (IndexError, RecursionError, ValueError) as e:  # ValueError: an item read does not decode
        raise Unprovable(f"the scan went wrong ({type(e).__name__})") from None
    if splicer.ws(end) != len(doc):
        raise Unprovable("bytes after the document")
    return _coalesce([(0, start), *body, (end, len(doc))])


def _coalesce(pieces: list) -> list:
    out: list = []
    for piece in pieces:
        if isinstance(piece, tuple):
            if piece[0] == piece[1]:
                continue
            if out and isinstance(out[-1], tuple) and out[-1][1] == piece[0]:
                out[-1] = (out[-1][0], piece[1])
                continue
        elif not piece:
            continue
        out.append(piece)
    return out
