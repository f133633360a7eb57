"""The project instructions Label Studio shows annotators before their first task (`project init --instructions`).

Label Studio renders a project's `expert_instruction` as HTML in a dialog when
`show_instruction` is on. A ranking is only as good as the annotators' shared
idea of "better", so every project gets one: the default below, or a file.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from services.core.errors import InvalidRequestError

# Label Studio's dialog resets list bullets and paragraph margins; its HTML cleaner drops style attributes but
# keeps a <style> element, scoped here to the dialog's body.
DIALOG_STYLE = (
    "<style>.lsf-modal-ls__body ul { list-style: disc; padding-left: 1.5em; }\n"
    ".lsf-modal-ls__body p, .lsf-modal-ls__body ul { margin: 0 0 0.6em; }</style>\n"
)
DEFAULT_INSTRUCTIONS = (
    DIALOG_STYLE
    + """<p>Each task shows a <b>prompt</b> and responses to it. Put the better responses first.</p>
<p><b>Better</b> means, in this order:</p>
<ul>
  <li><b>Harmless</b>: no dangerous, hateful or abusive content. A polite refusal of a harmful request
  beats any compliance.</li>
  <li><b>Honest</b>: no made-up facts; says so when it is unsure.</li>
  <li><b>Helpful</b>: answers what was asked, correctly and completely, in clear words.</li>
  <li><b>On topic</b>: stays with the prompt; longer is not better by itself.</li>
</ul>
<p><b>Ties</b>: only when two responses are truly equal. Put them in the same bucket; on a pair, choose
<i>Equally good</i> or <i>Both bad</i> instead of a side.</p>
<p><b>Skip</b> a task you cannot judge: unreadable, garbled, in a language you do not read, or a prompt
you cannot understand. Skipped tasks teach the model nothing, wrong rankings teach it wrong. With buckets,
one response you cannot judge may stay unsorted: it is left out, not counted as worst.</p>
<p>The order the responses arrive in means nothing. Judge each task on its own.</p>
<p>Hotkeys: <kbd>Ctrl</kbd>+<kbd>Enter</kbd> submits (or updates), <kbd>Ctrl</kbd>+<kbd>Space</kbd> skips;
on a pair, <kbd>G</kbd> is <i>Equally good</i> and <kbd>N</kbd> <i>Both bad</i> (neither is good).</p>"""
)

HTML_SUFFIXES = (".html", ".htm")


def text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, blank lines between paragraphs, single line breaks kept.

    Quotes stay as they are: Label Studio's cleaner would unescape them, and the stored text would then
    differ from ours on every `project init`.
    """
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return DIALOG_STYLE + "\n".join(
        "<p>" + html.escape(p, quote=False).replace("\n", "<br>\n") + "</p>" for p in paragraphs
    )


def read_instructions(path: Path) -> str:
    """The instructions in `path` as HTML: an .html/.htm file as it is, any other file as plain text."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"cannot read the instructions file: {error}") from None
    if not text.strip():
        raise InvalidRequestError(f"the instructions file {path} is empty")
    return text.strip() if Path(path).suffix.lower() in HTML_SUFFIXES else text_to_html(text)
