"""`prefs export`: the store as TRL / OpenRLHF preference pairs and whole rankings, split by prompt."""

import argparse
import json
import math
from pathlib import Path

import pytest

from labelstudio_backend.preference_export import FORMATS, MANIFEST, export_preferences
from labelstudio_backend.preference_import import IMPORT_PROJECT
from labelstudio_backend.preference_store import PreferenceStore, StoredPreference, pairwise_agreement
from services.cli import prefs
from services.core.errors import InvalidRequestError, PreconditionError
from services.core.rankings import Ranking, group_pairs_by_prompt, rankings_to_pairs, split_by_prompt

RAINBOW = "Explain how a rainbow forms."
ANSWERS = ("Light refracts in raindrops.", "Magic.", "Sunlight and rain.", "I do not know.")
# A role/content chat template for the tiny test tokenizer, which has none.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)
TEST_SHARE, SEED = 0.25, 0


def fill_store(store: PreferenceStore) -> list[StoredPreference]:
    """Three annotators on one task (a tie, and carol against the others on answers 0 vs 1), two on six more."""
    prefs = [
        StoredPreference(101, 1, 1, "alice", Ranking(RAINBOW, ANSWERS, ((0,), (1, 2), (3,))), "policy-v1"),
        StoredPreference(102, 1, 1, "bob", Ranking(RAINBOW, ANSWERS, ((0,), (1,), (2,), (3,))), "policy-v1"),
        StoredPreference(103, 1, 1, "carol", Ranking(RAINBOW, ANSWERS, ((1,), (0,), (2, 3))), "policy-v1"),
    ]
    for task in range(2, 8):
        prompt, answers = f"Write a line about the number {task}.", (f"{task} is great!", f"{task}.", "No.")
        for annotation, annotator in ((200 + task, "alice"), (300 + task, "bob")):
            prefs.append(StoredPreference(annotation, 1, task, annotator, Ranking(prompt, answers, ((0,), (1,), (2,)))))
    # All tied: no pair. Ranked only in part: the unsorted candidate 2 is in no tier.
    prefs.append(StoredPreference(801, 1, 8, "alice", Ranking("Say hi.", ("Hi.", "Hello."), ((0, 1),))))
    prefs.append(StoredPreference(901, 1, 9, "bob", Ranking("Name a colour.", ("Red.", "Blue.", "Meh."), ((1,), (0,)))))
    for pref in prefs:
        store.upsert(pref)
    return prefs


@pytest.fixture
def store(tmp_path) -> PreferenceStore:
    store = PreferenceStore(f"sqlite:///{tmp_path / 'prefs.db'}")
    fill_store(store)
    return store


def rows(out: Path) -> dict[str, list[dict]]:
    return {split: [json.loads(line) for line in (out / f"{split}.jsonl").open()] for split in ("train", "test")}


def export(store: PreferenceStore, out: Path, **options) -> dict[str, list[dict]]:
    export_preferences(store.all(), out, test_share=TEST_SHARE, seed=SEED, **options)
    return rows(out)


def find(found: list[dict], annotator: str, chosen: str, rejected: str) -> dict:
    (row,) = [
        r
        for r in found
        if r["annotator"] == annotator
        and r["chosen"][0]["content"] == chosen
        and r["rejected"][0]["content"] == rejected
    ]
    return row


def test_trl_rows_are_conversational_pairs_with_a_margin_and_their_source(store, tmp_path):
    exported = export(store, tmp_path / "out")
    found = exported["train"] + exported["test"]
    assert len(found) == sum(len(rankings_to_pairs(r)) for r in store.rankings())
    for row in found:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["margin"] == row["rank_gap"] - 1
        assert {"annotator", "annotation_id", "project_id", "task_id", "policy_version", "agreement", "votes"} <= set(
            row
        )
    assert "Say hi." not in {r["prompt"][0]["content"] for r in found}  # all tied: no pair
    bob_far = find(found, "bob", ANSWERS[0], ANSWERS[3])
    assert (bob_far["rank_gap"], bob_far["margin"], bob_far["policy_version"]) == (3, 2.0, "policy-v1")
    # Answers 0 vs 1: alice and bob one way, carol the other; answers 1 vs 2: alice tied them, so no vote.
    assert find(found, "alice", ANSWERS[0], ANSWERS[1])["agreement"] == pytest.approx(2 / 3)
    carol = find(found, "carol", ANSWERS[1], ANSWERS[0])
    assert (carol["agreement"], carol["votes"], carol["annotation_id"]) == (pytest.approx(1 / 3), 3, 103)
    assert find(found, "bob", ANSWERS[1], ANSWERS[2])["votes"] == 2


def test_the_split_is_by_prompt_the_reward_trainers_held_out_prompts_in_every_view(store, tmp_path):
    expected = {p.prompt for p in split_by_prompt(group_pairs_by_prompt(store.rankings()), TEST_SHARE, SEED).heldout}
    for view, options in {"pairs": {}, "merged": {"merged": True}, "agreed": {"min_agreement": 0.9}}.items():
        exported = export(store, tmp_path / view, **options)
        train, test = ({r["prompt"][0]["content"] for r in exported[s]} for s in ("train", "test"))
        assert test == expected and not train & test, view
    rankings = export(store, tmp_path / "rankings", data_format="listwise")
    assert {r["prompt"] for r in rankings["test"]} == expected
    assert not {r["prompt"] for r in rankings["train"]} & expected
    manifest = json.loads((tmp_path / "pairs" / MANIFEST).read_text())
    assert (manifest["test_prompts"], manifest["train_prompts"]) == (2, 6)


def test_jsonl_parquet_and_the_saved_dataset_dict_hold_the_same_rows(store, tmp_path):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    out = tmp_path / "out"
    exported = export(store, out, merged=True)
    saved = load_from_disk(str(out))
    assert set(saved) == {"train", "test"}
    for split in ("train", "test"):
        assert saved[split].to_list() == exported[split] == pq.read_table(out / f"{split}.parquet").to_pylist()


def test_merged_is_pairwise_agreements_majority_one_row_per_pair(store, tmp_path):
    exported = export(store, tmp_path / "out", merged=True)
    found = exported["train"] + exported["test"]
    majority = {(m["task_id"], m["chosen"], m["rejected"]) for m in pairwise_agreement(store.all())["merged"]}
    pairs = [(r["task_id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in found]
    assert len(pairs) == len(set(pairs)) and set(pairs) == majority
    disputed = find(found, "majority", ANSWERS[0], ANSWERS[1])
    assert disputed["agreement"] == pytest.approx(2 / 3)
    assert (disputed["votes"], disputed["annotation_ids"]) == (3, [101, 102])
    # Answers 1 over 2: bob one tier apart, carol two (alice tied them): the margin is the mean.
    assert find(found, "majority", ANSWERS[1], ANSWERS[2])["margin"] == pytest.approx(0.5)


def test_min_agreement_keeps_the_pairs_enough_voters_agree_on(store, tmp_path):
    everything = export(store, tmp_path / "all")
    agreed = export(store, tmp_path / "agreed", min_agreement=0.5)
    assert len(agreed["train"]) + len(agreed["test"]) == len(everything["train"]) + len(everything["test"]) - 1
    found = agreed["train"] + agreed["test"]
    assert all(r["agreement"] >= 0.5 for r in found)
    with pytest.raises(ValueError):  # carol's minority vote, answer 1 over answer 0, is gone
        find(found, "carol", ANSWERS[1], ANSWERS[0])


def test_listwise_rows_are_whole_rankings_with_ties_and_no_unsorted_candidates(store, tmp_path):
    exported = export(store, tmp_path / "out", data_format="listwise")
    by_annotation = {r["annotation_id"]: r for r in exported["train"] + exported["test"]}
    assert len(by_annotation) == len(store.all())
    assert by_annotation[101]["tiers"] == [[0], [1, 2], [3]] and by_annotation[101]["candidates"] == list(ANSWERS)
    assert by_annotation[801]["tiers"] == [[0, 1]]
    assert by_annotation[901]["tiers"] == [[1], [0]] and len(by_annotation[901]["candidates"]) == 3
    with pytest.raises(InvalidRequestError, match="apply to pairs"):
        export_preferences(store.all(), tmp_path / "bad", data_format="listwise", merged=True)


def test_openrlhf_rows_are_the_message_lists_its_reward_dataset_joins_under_a_chat_template(
    store, tmp_path, tiny_model_dir
):
    from transformers import AutoTokenizer

    openrlhf = export(store, tmp_path / "openrlhf", data_format="openrlhf")
    assert openrlhf == export(store, tmp_path / "trl")
    assert json.loads((tmp_path / "openrlhf" / MANIFEST).read_text())["format"] == "openrlhf"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = CHAT_TEMPLATE
    for row in openrlhf["train"][:3]:
        # What OpenRLHF's preprocess_data does with --data.prompt_key prompt --data.apply_chat_template:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        chosen = tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)[len(prompt) :]
        rejected = tokenizer.apply_chat_template(row["prompt"] + row["rejected"], tokenize=False)[len(prompt) :]
        assert row["prompt"][0]["content"] in prompt
        assert chosen.startswith(row["chosen"][0]["content"]) and rejected.startswith(row["rejected"][0]["content"])
        assert isinstance(row["margin"], float)  # read when --model.margin_loss_enable is set


def test_a_test_share_of_zero_leaves_an_empty_test_split_of_the_same_columns(store, tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "out"
    export_preferences(store.all(), out, test_share=0)
    saved = load_from_disk(str(out))
    assert len(saved["test"]) == 0 and saved["test"].features == saved["train"].features
    assert (out / "test.jsonl").read_text() == ""


def test_an_earlier_export_is_replaced_and_any_other_directory_refused(store, tmp_path):
    out = tmp_path / "out"
    export(store, out)
    export(store, out, merged=True)
    assert json.loads((out / MANIFEST).read_text())["view"] == "merged"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(PreconditionError, match="refusing"):
        export(store, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_reward_trainer_and_dpo_trainer_train_on_the_saved_export_as_it_is(store, tmp_path, tiny_model_dir):
    from datasets import load_from_disk
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from services.models.loading import load_reward_model
    from services.policy.policy_model import load_causal_lm, pick_device

    out = tmp_path / "out"
    export(store, out)
    train = load_from_disk(str(out))["train"]
    # On CPU: no bf16, no gradient checkpointing (TRL's defaults), as services/reward/trainer.py sets them.
    cpu = {"bf16": False, "gradient_checkpointing": False, "use_cpu": True, "report_to": [], "save_strategy": "no"}
    quick = {"max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1, "disable_tqdm": True} | cpu

    reward_model, tokenizer = load_reward_model(tiny_model_dir, members=1)
    tokenizer.chat_template = CHAT_TEMPLATE
    reward = RewardTrainer(
        model=reward_model,
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **quick),
        train_dataset=train,
        processing_class=tokenizer,
    )
    assert reward.train().global_step == 1 and math.isfinite(reward.state.log_history[0]["loss"])

    policy, tokenizer = load_causal_lm(tiny_model_dir, pick_device())
    tokenizer.chat_template = CHAT_TEMPLATE
    dpo = DPOTrainer(
        model=policy,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=128, **quick),
        train_dataset=train,
        processing_class=tokenizer,
    )
    assert dpo.train().global_step == 1 and math.isfinite(dpo.state.log_history[0]["loss"])


def run_prefs(*argv: str) -> int:
    """`rlhf-loop prefs ARGV` through the parsers and handlers services/cli/prefs.py adds."""
    parser = argparse.ArgumentParser(prog="rlhf-loop")
    prefs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prefs", *argv])
    return args.func(args)


def test_the_cli_exports_and_imports(store, tmp_path, capsys):
    url = str(store.engine.url)
    assert run_prefs("export", "--store", url, "--out", str(tmp_path / "out"), "--test-share", "0.25") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "trl" and report["test_prompts"] == 2
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert run_prefs("import", str(tmp_path / "out" / "train.jsonl"), "--store", fresh) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == report["train_rows"]
    # The parser spells out what importing the modules would cost every command to look up.
    assert (prefs.FORMATS, prefs.IMPORT_PROJECT) == (FORMATS, IMPORT_PROJECT)
