"""The small HTML pages the public endpoint answers with: one title, one message, no scripts."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}}
button{{font:inherit;padding:.5em 1.2em;border-radius:6px;border:1px solid #555;background:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""

BY_REPLY = "<p>Reply to any of our emails with “unsubscribe” instead, and we will take you off our list.</p>"


def page(status: int, title: str, body: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """`body` is HTML: escape whatever in it came from a request or the database."""
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status, {"Cache-Control": "no-store", **(headers or {})})


def text(value: object) -> str:
    return html.escape(str(value))
