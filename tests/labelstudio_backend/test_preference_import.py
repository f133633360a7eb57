"""`prefs import`: TRL, OpenRLHF and HH preference files into the store, all or nothing, once."""

import json
from collections import Counter
from pathlib import Path

import pytest

from labelstudio_backend.preference_export import export_preferences
from labelstudio_backend.preference_import import PreferenceFileError, import_file, read_pairs
from labelstudio_backend.preference_store import PreferenceStore
from services.core.errors import InvalidRequestError
from tests.labelstudio_backend.test_preference_export import fill_store


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def texts(path: Path) -> list[tuple[str, str, str]]:
    return [(p.prompt, p.chosen, p.rejected) for p in read_pairs(path)]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_export_then_import_gives_the_same_pairs(tmp_path):
    source = PreferenceStore(f"sqlite:///{tmp_path / 'source.db'}")
    fill_store(source)
    out = tmp_path / "out"
    export_preferences(source.all(), out, test_share=0.25)
    exported = Counter(
        (r["prompt"][0]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"])
        for split in ("train", "test")
        for r in map(json.loads, (out / f"{split}.jsonl").open())
    )
    for name in ("train.jsonl", "test.parquet"):  # a file of each kind: both come back the same
        target = PreferenceStore(f"sqlite:///{tmp_path / name}.db")
        import_file(target, out / name)
        import_file(target, out / ("test.jsonl" if name == "train.jsonl" else "train.parquet"))
        imported = Counter(
            (p.ranking.prompt, p.ranking.candidates[p.ranking.tiers[0][0]], p.ranking.candidates[p.ranking.tiers[1][0]])
            for p in target.all()
        )
        assert imported == exported, name


def test_hh_transcripts_give_their_shared_turns_as_the_prompt(tmp_path):
    joke = "\n\nHuman: Hi!\n\nAssistant: Hello, how can I help?\n\nHuman: Tell me a joke."
    sums = "\n\nHuman: What is 2+2?"
    path = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            # Both answers start with "I ": the prompt still ends at the last shared turn.
            {"chosen": joke + "\n\nAssistant: I know one about atoms.", "rejected": joke + "\n\nAssistant: I won't."},
            {"chosen": sums + "\n\nAssistant: 4.", "rejected": sums + "\n\nAssistant: 5."},
        ],
    )
    earlier_turns = "Human: Hi!\n\nAssistant: Hello, how can I help?\n\nHuman: Tell me a joke."
    assert texts(path) == [(earlier_turns, "I know one about atoms.", "I won't."), ("What is 2+2?", "4.", "5.")]


def test_standard_and_conversational_forms_explicit_or_implicit(tmp_path):
    question = "What colour is the sky?"
    sky = [user(question)]
    brief = [{"role": "system", "content": "Be brief."}, *sky]
    rows = [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"chosen": "The sky is blue.", "rejected": "The sky is bleak."},  # shares "The sky is bl": cut at the space
        {"prompt": sky, "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]},
        {"chosen": [*sky, assistant("Blue.")], "rejected": [*sky, assistant("Green.")]},
        {"prompt": question, "chosen": [*sky, assistant("Blue.")], "rejected": [*sky, assistant("Red.")]},
        {"prompt": brief, "chosen": [assistant("Blue.")], "rejected": [assistant("Grey.")]},
    ]
    assert texts(write_jsonl(tmp_path / "forms.jsonl", rows)) == [
        ("The sky is", " blue.", " green."),
        ("The sky is", " blue.", " bleak."),
        (question, "Blue.", "Green."),
        (question, "Blue.", "Green."),
        (question, "Blue.", "Red."),
        (f"System: Be brief.\n\nHuman: {question}", "Blue.", "Grey."),
    ]
    json_file = tmp_path / "forms.json"
    json_file.write_text(json.dumps(rows))
    assert texts(json_file) == texts(tmp_path / "forms.jsonl")


def test_a_bad_row_is_named_and_nothing_is_imported(tmp_path):
    store = PreferenceStore(f"sqlite:///{tmp_path / 'prefs.db'}")
    fill_store(store)
    before = store.all()
    good = {"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good | {"chosen": "Sure."}, {"prompt": "Q?", "chosen": "Yes."}])
    with pytest.raises(PreferenceFileError, match=r"row 3: missing 'rejected'") as error:
        import_file(store, path)
    assert error.value.problems == ["row 3: missing 'rejected'"]
    assert store.all() == before


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}, "the same text"),
        ({"prompt": [user("Q?")], "chosen": [assistant("A."), assistant("B.")], "rejected": []}, "no messages"),
        (
            {"prompt": [user("Q?")], "chosen": [assistant("A."), assistant("B.")], "rejected": [assistant("C.")]},
            "exactly one assistant message",
        ),
        ({"chosen": [user("Q?"), assistant("A.")], "rejected": [user("Other?"), assistant("B.")]}, "share no leading"),
        ({"prompt": "Q?", "chosen": [assistant("A.")], "rejected": "B."}, "both be strings or both be lists"),
        ({"chosen": "\n\nHuman: Q?\n\nAssistant: A.", "rejected": "B."}, "HH transcript and the other is not"),
        (
            {
                "prompt": [{"role": "robot", "content": "Q?"}],
                "chosen": [assistant("A.")],
                "rejected": [assistant("B.")],
            },
            "needs a role",
        ),
    ],
)
def test_each_kind_of_bad_row_says_what_is_wrong(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}, row])
    with pytest.raises(PreferenceFileError, match=f"row 2: .*{problem}"):
        read_pairs(path)


def test_a_line_that_is_not_json_is_named_by_its_line_number(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}\n\n{"prompt": "Q?", \n')
    with pytest.raises(PreferenceFileError, match="row 3: not JSON"):
        read_pairs(path)


def test_importing_a_file_again_adds_nothing_and_imports_keep_clear_of_label_studio(database_url, tmp_path):
    store = PreferenceStore(database_url)
    fill_store(store)
    rows = [
        {"prompt": "Q?", "chosen": "Yes.", "rejected": "No.", "annotator": "dana"},
        {"prompt": "Q?", "chosen": "No.", "rejected": "Yes.", "annotator": "erin"},  # a second vote, not a duplicate
        {"prompt": "Why?", "chosen": "Because.", "rejected": "No idea."},
        {"prompt": "Why?", "chosen": "Because.", "rejected": "No idea."},  # the same row twice in one file
    ]
    path = write_jsonl(tmp_path / "votes.jsonl", rows)
    first = import_file(store, path)
    assert (first.rows, first.imported, first.duplicates, first.project_id) == (4, 3, 1, 0)
    again = import_file(store, path)
    assert (again.imported, again.duplicates) == (0, 4)
    imported = store.all(0)
    assert len(imported) == 3 and store.count() == len(store.all(1)) + 3
    assert all(p.annotation_id < 0 and p.task_id < 0 for p in imported)
    assert {p.annotator for p in imported} == {f"import:votes.jsonl{who}" for who in (":dana", ":erin", "")}
    assert len({p.task_id for p in imported}) == 2  # one task per prompt: dana's and erin's votes meet
    with pytest.raises(InvalidRequestError, match="project 0 or below"):
        import_file(store, path, project_id=1)
