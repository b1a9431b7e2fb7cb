"""Which scripts each page loads: a page script that uses the shared `ConsolePage` (posting,
making elements) comes after `console-page.js`, and every script is one of the console's own
files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from services.console.app import STATIC_DIR

TEMPLATES: Final = STATIC_DIR.parent / "templates"
_SCRIPT_SRC: Final = re.compile(r'<script src="/static/([^"]+)"></script>')
_SHARED: Final = "console-page.js"


def _scripts(template: Path) -> list[str]:
    return _SCRIPT_SRC.findall(template.read_text())


def test_every_script_that_uses_the_shared_one_is_loaded_after_it() -> None:
    using = {
        script.name
        for script in STATIC_DIR.glob("*.js")
        if script.name != _SHARED and "ConsolePage" in script.read_text()
    }
    assert using >= {"journey-canvas.js", "segment-builder.js", "template-editor.js"}
    for template in TEMPLATES.glob("*.html"):
        loaded = _scripts(template)
        for script in using.intersection(loaded):
            assert _SHARED in loaded, (template.name, script)
            assert loaded.index(_SHARED) < loaded.index(script), (template.name, script)


def test_only_the_shared_script_reads_the_csrf_token_and_makes_elements_from_attributes() -> None:
    for shared_part in ('meta[name="csrf-token"]', "function el("):
        holders = [
            script.name for script in STATIC_DIR.glob("*.js") if shared_part in script.read_text()
        ]
        assert holders == [_SHARED], shared_part


def test_every_script_a_page_loads_is_a_console_file() -> None:
    for template in TEMPLATES.glob("*.html"):
        for script in _scripts(template):
            assert (STATIC_DIR / script).is_file(), (template.name, script)
