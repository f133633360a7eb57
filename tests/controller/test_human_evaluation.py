"""The people's gate in plain Python: tasks with shuffled sides, votes read back, judges compared."""

import random

from labelstudio_backend.templates import PAIRWISE_CONFIG
from services.controller.human_evaluation import evaluation_tasks, judged_tasks, judges_agreement, task_key


def pairwise_annotation(annotation_id: int, side: str, cancelled: bool = False) -> dict:
    result = [{"type": "pairwise", "from_name": "comparison", "to_name": "answer1,answer2",
               "value": {"selected": side}}]  # fmt: skip
    return {"id": annotation_id, "completed_by": annotation_id, "result": result, "was_cancelled": cancelled}


def test_evaluation_tasks_shuffle_the_sides_and_remember_which_is_new():
    prompts = [f"prompt {i}" for i in range(40)]
    tasks = evaluation_tasks(3, prompts, [f"new {i}" for i in range(40)], [f"old {i}" for i in range(40)],
                             ("policy-0004", "policy-0003"), random.Random(0))  # fmt: skip
    sides = [t["evaluation"]["new_index"] for t in tasks]
    assert 10 < sum(sides) < 30  # both sides used
    for i, task in enumerate(tasks):
        new_side = task["answer1"] if task["evaluation"]["new_index"] == 0 else task["answer2"]
        assert new_side == f"new {i}" and task["key"] == task_key(3, f"prompt {i}") and task["iteration"] == 3
    assert task_key(3, "prompt 0") != task_key(4, "prompt 0")  # each iteration asks again


def test_votes_count_for_the_new_answer_whichever_side_it_was_on():
    new_left, new_right = evaluation_tasks(1, ["p", "q"], ["new p", "new q"], ["old p", "old q"], ("n", "a"),
                                           random.Random(0))  # fmt: skip
    new_left["evaluation"]["new_index"], new_left["answer1"], new_left["answer2"] = 0, "new p", "old p"
    new_right["evaluation"]["new_index"], new_right["answer1"], new_right["answer2"] = 1, "old q", "new q"
    for task in (new_left, new_right):
        task["candidates"] = [{"id": f"c{i}", "body": task[f"answer{i + 1}"]} for i in range(2)]
    exported = [
        {"id": 1, "data": new_left, "annotations": [pairwise_annotation(1, "left"), pairwise_annotation(2, "right"),
                                                    pairwise_annotation(3, "right", cancelled=True)]},
        {"id": 2, "data": new_right, "annotations": [pairwise_annotation(4, "right"), pairwise_annotation(5, "right")]},
        {"id": 3, "data": new_left, "annotations": []},
    ]  # fmt: skip
    first, second, unanswered = judged_tasks(exported, 1, PAIRWISE_CONFIG)
    assert (first.new, first.active, first.votes, first.people) == ("new p", "old p", (1.0, 0.0), 0.5)
    assert (second.new, second.votes, second.people) == ("new q", (1.0, 1.0), 1.0)
    assert unanswered.people is None


def test_judges_agree_where_both_take_a_side():
    opinions = {"proxy": [1.0, 0.0, 1.0, 0.5], "people": [1.0, 1.0, 0.5, 1.0], "gold": [1.0, 0.0, 0.0, 1.0]}
    agreement = judges_agreement(opinions)
    assert agreement["proxy_people"] == 0.5  # tasks 1 and 2 (ties and no-side left out)
    assert agreement["proxy_gold"] == 2 / 3 and agreement["people_gold"] == 2 / 3
