"""Every command example in README.md and docs/ runs: the `sh` blocks of each page, in order,
against the seven services, so an example that drifts from the code fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.devstack.services import REPO_ROOT
from tests.integration.docs.conftest import DocsStack
from tests.integration.docs.examples import (
    Block,
    Outcome,
    Shell,
    base_environment,
    blocks,
    documents,
    on_this_stack,
)
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

# A read the loop answers asynchronously: a profile, a segment's members, a received message.
_LOOP_WITHIN_S = 120.0
_RUNNABLE = [document for document in documents() if any(b.runs for b in blocks(document))]


def test_every_command_example_is_marked_to_run() -> None:
    unmarked = [
        str(block)
        for document in documents()
        for block in blocks(document)
        if "curl " in block.text and not block.runs
    ]
    assert unmarked == [], "curl examples outside a ```sh block are never run"
    assert REPO_ROOT / "README.md" in _RUNNABLE


@pytest.mark.parametrize(
    "document", _RUNNABLE, ids=[str(d.relative_to(REPO_ROOT)) for d in _RUNNABLE]
)
async def test_the_examples_of_a_page_run_in_order(
    docs_stack: DocsStack, document: Path, tmp_path: Path
) -> None:
    shell = Shell(base_environment(docs_stack.admin_token), tmp_path / "env")
    for block in (block for block in blocks(document) if block.runs):
        await _run(shell, block, on_this_stack(block.text, docs_stack.addresses))


async def _run(shell: Shell, block: Block, text: str) -> None:
    last = Outcome(-1, "")

    async def succeeded() -> bool:
        nonlocal last
        last = await shell.run(text)
        return last.returncode == 0

    if block.retried:
        try:
            await wait_for(succeeded, within=_LOOP_WITHIN_S, what=str(block), every=0.5)
        except AssertionError:
            unfiltered = await shell.run(_before_its_filter(text))
            pytest.fail(
                f"{block} never succeeded; last output:\n{last.output}\n"
                f"its command without the final filter answered:\n{unfiltered.output}"
            )
    else:
        assert await succeeded(), f"{block} failed ({last.returncode}):\n{text}\n{last.output}"


def _before_its_filter(text: str) -> str:
    """A retried example's command without its last `| grep …`, to show what it answered."""
    command, pipe, _ = text.rpartition("| grep")
    return command if pipe else text
