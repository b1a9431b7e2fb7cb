"""Which scripts each page loads: a page script that posts through `ConsoleFetch` comes after
the shared `console-fetch.js`, and every script is one of the console's own files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from services.console.app import STATIC_DIR

TEMPLATES: Final = STATIC_DIR.parent / "templates"
_SCRIPT_SRC: Final = re.compile(r'<script src="/static/([^"]+)"></script>')
_SHARED: Final = "console-fetch.js"


def _scripts(template: Path) -> list[str]:
    return _SCRIPT_SRC.findall(template.read_text())


def test_every_script_that_posts_through_the_shared_one_is_loaded_after_it() -> None:
    posting = {
        script.name
        for script in STATIC_DIR.glob("*.js")
        if script.name != _SHARED and "ConsoleFetch" in script.read_text()
    }
    assert posting >= {"journey-canvas.js", "segment-builder.js", "template-editor.js"}
    for template in TEMPLATES.glob("*.html"):
        loaded = _scripts(template)
        for script in posting.intersection(loaded):
            assert _SHARED in loaded, (template.name, script)
            assert loaded.index(_SHARED) < loaded.index(script), (template.name, script)


def test_no_page_script_reads_the_csrf_token_itself() -> None:
    readers = [
        script.name
        for script in STATIC_DIR.glob("*.js")
        if 'meta[name="csrf-token"]' in script.read_text()
    ]
    assert readers == [_SHARED]


def test_every_script_a_page_loads_is_a_console_file() -> None:
    for template in TEMPLATES.glob("*.html"):
        for script in _scripts(template):
            assert (STATIC_DIR / script).is_file(), (template.name, script)
