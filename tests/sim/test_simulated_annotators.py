"""Simulated annotators as real Label Studio users ranking by the VADER gold scorer with noise."""

import itertools
import json
import subprocess
import sys

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.templates import TEMPLATES, candidate_data
from services.sim.gold import vader_positivity

pytestmark = pytest.mark.integration

BODIES = [
    ["What a wonderful, happy day, thank you!", "It is a day.", "This is awful and I hate it."],
    ["Great job, I love this!", "Okay.", "Terrible, sad and boring."],
    ["Thanks, this is excellent and kind.", "Fine I guess.", "Horrible, stupid answer."],
    ["I am delighted to help, great question!", "Here is the answer.", "Go away, this is a waste of time."],
]


def test_three_simulated_annotators_rank_every_task_following_the_gold_scorer(labelstudio, tmp_path):
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    project = admin.projects.create(title="simulation", label_config=TEMPLATES["ranker"].label_config)
    tasks = [candidate_data(f"Prompt {i}", bodies, TEMPLATES["ranker"], {}) for i, bodies in enumerate(BODIES)] * 3
    admin.projects.import_tasks(project.id, request=tasks, return_task_ids=True)
    command = [sys.executable, "-m", "services.cli", "annotate", "simulate", "--project", str(project.id),
               "--annotators", "3", "--data-dir", str(labelstudio.data_dir)]  # fmt: skip
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    assert sorted(out["annotations_by_user"].values()) == [12, 12, 12]
    assert 0.05 < out["temperature"] < 2  # calibrated to ~73% agreement on these candidates

    exported = admin.projects.exports.as_json(project.id)
    agree_with_gold = total = 0
    for task in exported:
        annotators = {a["completed_by"] for a in task["annotations"]}
        assert len(task["annotations"]) == 3 and len(annotators) == 3  # three distinct real users
        bodies = {c["id"]: c["body"] for c in task["data"]["candidates"]}
        for annotation in task["annotations"]:
            order = annotation["result"][0]["value"]["ranker"]["rank"]
            for better, worse in itertools.combinations(order, 2):
                total += 1
                agree_with_gold += vader_positivity("", bodies[better]) > vader_positivity("", bodies[worse])
    # Noise tuned for ~73% agreement between annotators means ~85% agreement with the gold.
    assert 0.7 <= agree_with_gold / total < 1.0

    again = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    assert sorted(again["annotations_by_user"].values()) == [0, 0, 0]  # nothing left: same accounts, reused
