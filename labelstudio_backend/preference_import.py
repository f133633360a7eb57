"""Preference pairs from files (TRL, OpenRLHF, Anthropic HH) into the preference store, all or nothing.

Row forms read (JSONL, JSON array, parquet):
- standard: `prompt`, `chosen`, `rejected` strings, or only `chosen` / `rejected`
  whose shared start is the prompt (cut at the last whitespace they share);
- HH: `chosen` / `rejected` whole "\\n\\nHuman: ... \\n\\nAssistant: ..." transcripts
  that differ only in the last Assistant turn;
- conversational: `prompt` a list of role/content messages and `chosen` /
  `rejected` one assistant message each, or whole conversations whose shared
  messages are the prompt.

The store is Label Studio's, keyed by annotation id, and `sync` replaces a
project's rows with that project's export. Imported rows therefore live in a
project Label Studio cannot have (0 by default, never positive) under negative
annotation and task ids (one task per prompt), so neither a sync nor a real
annotation ever meets them. Their annotator is "import:<file name>" (with the
row's own annotator appended when it names one), and a row whose content that
source already holds is a duplicate: importing a file again adds nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labelstudio_backend.preference_store import PreferenceStore
from services.core.errors import InvalidRequestError, NotFoundError
from services.core.rankings import Ranking

IMPORT_PROJECT = 0  # Label Studio numbers its projects from 1
ROLES = ("system", "user", "assistant")
# How several prompt messages become the store's one prompt text: HH's own turn labels.
TURN_LABELS = {"system": "System", "user": "Human", "assistant": "Assistant"}
MAX_ANNOTATOR = 255  # the store's column width
SHOWN_PROBLEMS = 10

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


class PreferenceFileError(InvalidRequestError):
    """Rows of a preference file that cannot be imported; nothing of the file was imported."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(f"{path}: {len(problems)} bad row(s), nothing imported: {shown}{more}")


class _BadRow(ValueError):
    """One row's problem; the reader collects them all before giving up."""


@dataclass(frozen=True)
class ImportedPair:
    row: int  # 1-based; for JSONL the line number
    prompt: str
    chosen: str
    rejected: str
    annotator: str  # "import:<file name>", then ":<the row's own annotator>" when it names one


@dataclass(frozen=True)
class ImportReport:
    file: str
    project_id: int
    rows: int
    imported: int
    duplicates: int  # rows whose content this source already had in the store (or earlier in the file)


def read_records(path: Path) -> list[tuple[int, object]]:
    """(row number, record) of a JSONL, JSON (an array of objects) or parquet file; bad JSONL lines become _BadRow."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return list(enumerate(pq.read_table(path).to_pylist(), start=1))
        except pa.ArrowException as error:
            raise PreferenceFileError(path, [f"not parquet: {error}"]) from error
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise InvalidRequestError(f"{path}: unknown file type {suffix!r}; use .jsonl, .json or .parquet")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            array = json.loads(text)
        except json.JSONDecodeError as error:
            raise PreferenceFileError(path, [f"not JSON: {error}"]) from error
        if not isinstance(array, list):
            raise PreferenceFileError(path, ["a JSON file must hold an array of rows (JSON lines go in .jsonl)"])
        return list(enumerate(array, start=1))
    records: list[tuple[int, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                records.append((number, _BadRow(f"not JSON: {error.msg}")))
    return records


def parse_row(record: object) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) texts of one row in any of the forms above; _BadRow says what is wrong."""
    if isinstance(record, _BadRow):
        raise record
    if not isinstance(record, dict):
        raise _BadRow(f"not an object but {type(record).__name__}")
    for key in ("chosen", "rejected"):
        if record.get(key) is None:
            raise _BadRow(f"missing {key!r}")
    chosen, rejected, prompt = record["chosen"], record["rejected"], record.get("prompt")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            return _implicit_text(chosen, rejected)
        if not isinstance(prompt, str):
            raise _BadRow("'prompt' must be a string when 'chosen' and 'rejected' are")
        return _checked(prompt, chosen, rejected)
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen, rejected = _conversation(chosen, "chosen"), _conversation(rejected, "rejected")
        if isinstance(prompt, list):
            prompt_messages = _conversation(prompt, "prompt")
        else:
            # No prompt, or a prompt string beside whole conversations (some TRL datasets): the shared messages.
            prompt_messages, chosen, rejected = _split_shared(chosen, rejected)
        return _checked(_prompt_text(prompt_messages), _answer(chosen, "chosen"), _answer(rejected, "rejected"))
    raise _BadRow("'chosen' and 'rejected' must both be strings or both be lists of messages")


def _conversation(messages: list, key: str) -> list[tuple[str, str]]:
    if not messages:
        raise _BadRow(f"{key!r} has no messages")
    turns = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _BadRow(f"{key!r} message {position} needs a role of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise _BadRow(f"{key!r} message {position} needs text content")
        turns.append((message["role"], message["content"]))
    return turns


def _split_shared(chosen: list[tuple[str, str]], rejected: list[tuple[str, str]]):
    """(shared leading messages, chosen's rest, rejected's rest), as TRL's extract_prompt splits them."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise _BadRow("'chosen' and 'rejected' share no leading message to be the prompt")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _answer(messages: list[tuple[str, str]], key: str) -> str:
    if len(messages) != 1 or messages[0][0] != "assistant":
        roles = ", ".join(role for role, _ in messages) or "none"
        raise _BadRow(f"{key!r} must end in exactly one assistant message after the prompt; got {roles}")
    return messages[0][1]


def _prompt_text(messages: list[tuple[str, str]]) -> str:
    """One user message is the prompt itself; several (a system message, earlier turns) become one HH-style text."""
    if len(messages) == 1 and messages[0][0] == "user":
        return messages[0][1]
    return "\n\n".join(f"{TURN_LABELS[role]}: {content}" for role, content in messages)


def _hh_turns(text: str) -> list[tuple[str, str]] | None:
    """The turns of an HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ..."); None for other text."""
    parts = _HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if parts[0].strip() or len(parts) < 5:  # text before the first turn, or not both a Human and an Assistant turn
        return None
    labels = {label: role for role, label in TURN_LABELS.items()}
    return [(labels[label], content.strip()) for label, content in zip(parts[1::2], parts[2::2], strict=True)]


def _implicit_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    chosen_turns, rejected_turns = _hh_turns(chosen), _hh_turns(rejected)
    if chosen_turns and rejected_turns:
        prompt, chosen_rest, rejected_rest = _split_shared(chosen_turns, rejected_turns)
        return _checked(_prompt_text(prompt), _answer(chosen_rest, "chosen"), _answer(rejected_rest, "rejected"))
    if chosen_turns or rejected_turns:
        raise _BadRow("one of 'chosen' and 'rejected' is an HH transcript and the other is not")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # Cut at the last whitespace of the shared start: two answers that begin alike ("I", "I'm") keep it.
    cut = max((i for i in range(min(shared + 1, len(chosen))) if chosen[i].isspace()), default=0)
    return _checked(chosen[:cut], chosen[cut:], rejected[cut:])


def _checked(prompt: str, chosen: str, rejected: str) -> tuple[str, str, str]:
    if not prompt.strip():
        raise _BadRow("no prompt (empty, or chosen and rejected share no leading text)")
    if not chosen.strip() or not rejected.strip():
        raise _BadRow("an empty answer")
    if chosen == rejected:
        raise _BadRow("'chosen' and 'rejected' are the same text")
    return prompt, chosen, rejected


def read_pairs(path: Path) -> list[ImportedPair]:
    """Every row of `path` as a pair; PreferenceFileError naming every bad row when there is one."""
    pairs, problems = [], []
    for number, record in read_records(path):
        try:
            prompt, chosen, rejected = parse_row(record)
            annotator = _annotator(path, record)
        except _BadRow as problem:
            problems.append(f"row {number}: {problem}")
            continue
        pairs.append(ImportedPair(number, prompt, chosen, rejected, annotator))
    if problems:
        raise PreferenceFileError(path, problems)
    if not pairs:
        raise PreferenceFileError(path, ["no rows"])
    return pairs


def _annotator(path: Path, record: dict) -> str:
    own = record.get("annotator")
    annotator = f"import:{path.name}" + (f":{own}" if isinstance(own, str) and own else "")
    if len(annotator) > MAX_ANNOTATOR:
        raise _BadRow(f"annotator {annotator[:40]!r}... is longer than the store's {MAX_ANNOTATOR} characters")
    return annotator


def import_pairs(store: PreferenceStore, pairs: Iterable[ImportedPair], project_id: int = IMPORT_PROJECT) -> int:
    """Add the pairs the store does not hold yet, in one transaction; how many that was."""
    if project_id > 0:
        raise InvalidRequestError(
            f"imports go to project 0 or below, not {project_id}: a Label Studio project's rows are replaced by "
            "its export at the next sync"
        )
    rankings = [
        Ranking(pair.prompt, (pair.chosen, pair.rejected), ((0,), (1,)), annotator=pair.annotator) for pair in pairs
    ]
    return store.add_new(project_id, rankings)


def import_file(store: PreferenceStore, path: Path, project_id: int = IMPORT_PROJECT) -> ImportReport:
    """Validate every row of `path`, then import them all in one transaction (or none)."""
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file")
    pairs = read_pairs(path)
    imported = import_pairs(store, pairs, project_id)
    return ImportReport(str(path), project_id, len(pairs), imported, len(pairs) - imported)
