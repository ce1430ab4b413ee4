"""Reading an inbound message defensively: MIME tree, headers, addresses, dates and text. Pure: no I/O.

Mail from outside is broken often enough (undeclared 8-bit headers, unknown charsets, truncated
multiparts, parts nested for no reason) that nothing in this module raises: whatever cannot be read
is read as well as it can be, or left empty. Attachments are never decoded, and only the head of a
huge message is parsed, since the text, the delivery reports and the headers come before them.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime

import html2text

from outreach.mail import subjects

PARSE_LIMIT = 2 * 1024 * 1024  # bytes of a message that go through the MIME parser
TEXT_LIMIT = 256 * 1024  # bytes of one text part that are decoded
HTML_LIMIT = 200 * 1024  # characters of HTML that are converted to text
_MSGID = re.compile(r"<([^<>\s]+)>")
_SPACE = re.compile(r"\s+")
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])")  # html2text writes Markdown; we want text
_BLANK_LINES = re.compile(r"\n[^\S\n]*(\n[^\S\n]*)+\n")  # empty <div>s and <br>s pile up blank lines
# a line that opens a part: '--' and a boundary (at most 70 characters, RFC 2046), then the part's header
_DELIMITER = re.compile(rb"^--([^\s\"]{1,70}?)[ \t]*\r?\n(?=[\w-]+:)", re.MULTILINE)
_MENDS = 20  # damaged multiparts mended in one message, at most: each mend parses its body again
ADDRESS = re.compile(r"[^@\s\"<>(),;:\[\]{}]+@[^@\s\"<>(),;:\[\]{}]+")


class _RawHeaders(Compat32):
    """compat32, except that headers with undeclared 8-bit bytes come back as text, not Header objects.

    That lets `header()` try UTF-8 on them (what such senders nearly always mean) instead of
    replacing every non-ASCII byte.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


POLICY = _RawHeaders()


def load(raw: bytes) -> Message:
    """The MIME tree of a message; on a structure the parser cannot walk, its headers alone."""
    try:
        msg = BytesParser(policy=POLICY).parsebytes(raw[:PARSE_LIMIT])
    except RecursionError:  # parts nested thousands deep exhaust the parser's recursion
        head = re.split(rb"\r?\n\r?\n", raw[:PARSE_LIMIT], maxsplit=1)[0].decode("utf-8", "surrogateescape")
        return HeaderParser(policy=POLICY).parsestr(head, headersonly=True)
    _mend(msg)
    return msg


def _mend(msg: Message) -> None:
    """Split the multiparts whose declared boundary is not in their body (or that declare none) at
    the delimiter their body does use, if it uses one: mail clients and gateways that rewrite a
    message sometimes change one and not the other. Left alone, such a part's body is one string,
    MIME headers and encoded text included."""
    mended = 0
    for part in parts(msg):  # walks into the parts a mend finds, so nested damage is mended too
        if part.get_content_maintype() != "multipart" or not isinstance(part.get_payload(), str) or mended >= _MENDS:
            continue
        body = part.get_payload(decode=True)  # as it came: the text form has its 8-bit bytes replaced
        found = _DELIMITER.search(body) if isinstance(body, bytes) else None
        if found is None or not isinstance(body, bytes):
            continue
        head = f'Content-Type: multipart/{part.get_content_subtype()}; boundary="'.encode() + found.group(1) + b'"\n\n'
        try:
            split = BytesParser(policy=POLICY).parsebytes(head + body)
        except RecursionError:
            continue
        if isinstance(split.get_payload(), list):
            part.set_payload(split.get_payload())
            mended += 1


def unmangle(value: str) -> str:
    """Undo the surrogate escapes the parser leaves for raw 8-bit bytes: UTF-8, else Windows-1252."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def header(msg: Message, name: str) -> str:
    """A header as one line of text, RFC 2047 words decoded; '' when absent."""
    value = msg.get(name)
    if value is None:
        return ""
    text = unmangle(str(value))
    try:
        text = "".join(_decoded_word(part, charset) for part, charset in decode_header(text))
    except (ValueError, AssertionError, IndexError):  # a broken encoded word: keep the header as it came
        pass
    return _SPACE.sub(" ", text).strip()


def _decoded_word(part: str | bytes, charset: str | None) -> str:
    if isinstance(part, str):
        return part
    if charset is None:  # text outside encoded words, which decode_header hands back this way
        return part.decode("raw-unicode-escape", "replace")
    return part.decode(_codec(charset) or "utf-8", "replace")


def own_subject(subject: str) -> str:
    """The part of a subject before any reply prefix ('Re:', 'AW:', '回复：'): see `subjects.own_part`."""
    return subjects.own_part(subject)


def addresses(msg: Message, *names: str) -> tuple[str, ...]:
    """The lower-cased mail addresses in the named headers, in order, without repeats.

    Addresses are read before encoded words are decoded: a display name such as
    '=?utf-8?q?boss=40example.com?=' must stay a name and not become a second address.
    """
    values = [_SPACE.sub(" ", unmangle(str(v))) for name in names for v in msg.get_all(name) or ()]
    try:
        pairs = getaddresses(values)
    except (ValueError, IndexError, TypeError):
        pairs = []
    found: dict[str, None] = {}
    for _name, addr in pairs:
        addr = addr.strip().lower()
        if ADDRESS.fullmatch(addr):
            found[addr] = None
    return tuple(found)


def message_ids(value: str) -> tuple[str, ...]:
    """Message-IDs in a header value, in '<id>' form as we write them, without repeats."""
    ids = [f"<{m}>" for m in _MSGID.findall(value)]
    if not ids and "@" in value and len(value.split()) == 1:
        ids = [f"<{value.strip('<>')}>"]
    return tuple(dict.fromkeys(ids))


def date(value: str) -> dt.datetime | None:
    """A Date header as an aware UTC datetime; a date without zone is taken as UTC."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return when.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def body_bytes(raw: bytes) -> bytes:
    """The raw body (everything after the first blank line), with line endings made uniform."""
    data = raw.replace(b"\r\n", b"\n")
    parts = data.split(b"\n\n", 1)
    return parts[1].rstrip() if len(parts) == 2 else b""


def fallback_key(raw: bytes, fields: tuple[str, ...]) -> str:
    """A stable identity for a message without Message-ID: the same message read twice hashes alike."""
    digest = hashlib.sha256()
    for field in fields:
        digest.update(field.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(body_bytes(raw))
    return digest.hexdigest()


def is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    return disposition == "attachment"


def parts(msg: Message) -> Iterator[Message]:
    """Every part of the message itself, depth first, without recursion; attached messages are not entered."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload()
        if isinstance(payload, list) and part.get_content_maintype() != "message":
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))


def attached_messages(msg: Message) -> Iterator[Message]:
    """Messages carried inside this one: message/rfc822 parts and text/rfc822-headers parts."""
    for part in parts(msg):
        kind = part.get_content_type()
        payload = part.get_payload()
        if kind == "message/rfc822" and isinstance(payload, list):
            yield from (p for p in payload if isinstance(p, Message))
        elif kind == "text/rfc822-headers":
            yield HeaderParser(policy=POLICY).parsestr(decode(part), headersonly=True)


def decode(part: Message) -> str:
    """The text of a part: in its declared charset if that works, else UTF-8, else Windows-1252."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    data = payload[:TEXT_LIMIT]
    declared = _codec(part.get_content_charset() or part.get_param("charset") or "")
    for charset in dict.fromkeys(c for c in (declared, "utf-8", "cp1252") if c):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _codec(name: object) -> str:
    if not isinstance(name, str):
        return ""
    try:
        return codecs.lookup(name.strip().strip('"')).name
    except (LookupError, ValueError):
        return ""


def html_to_text(html: str) -> str:
    """Readable text from HTML; block quotes become '> ' lines, so quoted history stays recognisable."""
    converter = html2text.HTML2Text(bodywidth=0)
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    try:
        text = converter.handle(html[:HTML_LIMIT])
    except Exception:  # noqa: BLE001 - html2text trips on some malformed markup; fall back to dropping the tags
        return re.sub(r"<[^>]*>", " ", html[:HTML_LIMIT])
    return _BLANK_LINES.sub("\n\n", _MARKDOWN_ESCAPE.sub(r"\1", text))


def text_body(msg: Message) -> tuple[str, str]:
    """(text, 'plain' or 'html') of the message's own body: its first inline text/plain part, else its HTML."""
    html = None
    for part in parts(msg):
        if is_attachment(part) or part.get_content_maintype() != "text":
            continue
        kind = part.get_content_subtype()
        if kind == "plain":
            return decode(part), "plain"
        if kind == "html" and html is None:
            html = part
    if html is not None:
        return html_to_text(decode(html)), "html"
    if isinstance(msg.get_payload(), str):  # a multipart with no part found in its body: the body is all there is
        return decode(msg), "plain"
    return "", "plain"
