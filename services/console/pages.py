"""Server-rendered pages: Jinja2 with autoescaping on, so every user-supplied text is shown as
text, and the headers that keep the pages from being framed or running others' scripts."""

from __future__ import annotations

import json
from typing import Any, Final

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_templates: Final = Environment(
    loader=PackageLoader("services.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)


def _as_json(value: Any) -> str:
    """A value as indented JSON text, for reading; escaped like any other text."""
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)


_templates.filters["as_json"] = _as_json

# Scripts and styles only from the console itself (no inline script can run, so text that
# slipped through escaping still could not); no framing; no referrer beyond the console.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def page(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template rendered with `context`, with the console's security headers."""
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
