"""Anchoring: annotators who keep the reward model's pre-ranking teach it its own order back.

A real Label Studio, the backend and the reward service on the tiny model,
untrained: its order is noise to the gold. The same simulated annotators, who
submit a shown pre-ranking unchanged 90% of the time, rank two projects that
differ only in `project init --pre-rank`: the default shows no pre-ranking,
the other pre-ranks every task.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.preference_store import PreferenceStore
from labelstudio_backend.project_setup import init_project
from labelstudio_backend.sync import sync_project
from labelstudio_backend.templates import TEMPLATES, candidate_data
from services.controller.reward_evaluation import pair_accuracy, score_pairs
from services.core.rankings import rankings_to_pairs
from services.reward.client import RewardClient
from services.sim.simulated_annotators import simulated_annotators
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess
from tests.fixtures.gold_scorers import friendliness
from tests.labelstudio_backend.test_labelstudio_backend import wait_until

pytestmark = pytest.mark.integration

TRAIN = {"epochs": 5, "learning_rate": 1e-3, "batch_size": 16, "seed": 1}  # 120 rankings: as many steps as 60 x 10
ANCHORING = 0.9


@pytest.fixture(scope="module")
def services(labelstudio, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("anchoring")
    reward = ServiceProcess(
        "reward", ["--registry", str(root / "reward"), "--model", str(tiny_model_dir)], root / "r.log"
    )
    reward.wait_ready()
    store_url = f"sqlite:///{root / 'prefs.db'}"
    backend = ServiceProcess(
        "backend",
        ["--store", store_url, "--reward-url", reward.target, "--labelstudio-url", labelstudio.url],
        root / "backend.log",
        env={"RLHF_LOOP_LABELSTUDIO_TOKEN": labelstudio.token},
    )
    backend.wait_ready()
    yield reward, backend, PreferenceStore(store_url), root
    backend.stop()
    reward.stop()


def annotated_project(admin, labelstudio, backend, store, root, title: str, **options) -> int:
    """A project of the 60 synthetic prompts, ranked by two anchoring annotators; returns its id."""
    setup = init_project(admin, template="ranker", title=title, backend_url=backend.http, candidates=4, **options)
    tasks = [
        candidate_data(r.prompt, list(r.candidates), TEMPLATES["ranker"], {"policy_version": "synthetic"})
        for r in synthetic_rankings(60, 4, seed=1)
    ]
    admin.projects.import_tasks(setup.project_id, request=tasks, return_task_ids=True)
    annotators = simulated_annotators(
        labelstudio.url, labelstudio.token, root / "annotators.json", 2, temperature=0.3, seed=3, anchoring=ANCHORING
    )
    with ThreadPoolExecutor(len(annotators)) as pool:  # people annotate at the same time, too
        done = list(pool.map(lambda annotator: annotator.annotate(setup.project_id, friendliness), annotators))
    assert [len(d) for d in done] == [60, 60]
    wait_until(lambda: len(store.all(setup.project_id)) == 120, 120, f"120 rankings of {title} in the store")
    return setup.project_id


def gold_accuracy(client: RewardClient, rankings) -> float:
    """Train a reward model on `rankings`; its accuracy against the rule on 40 prompts it never saw."""
    version = list(client.train(rankings, **TRAIN))[-1].version.id
    pairs = [p for r in synthetic_rankings(40, 4, seed=99) for p in rankings_to_pairs(r)]
    return pair_accuracy(score_pairs(client, version, pairs))


def test_pre_ranking_with_anchoring_teaches_the_model_its_own_order_and_the_default_does_not(labelstudio, services):
    reward, backend, store, root = services
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    default = annotated_project(admin, labelstudio, backend, store, root, "anchoring: default")
    pre_ranked = annotated_project(admin, labelstudio, backend, store, root, "anchoring: pre-ranked", pre_rank=1.0)

    plain = store.all(default)
    assert not any(p.from_prediction for p in plain)
    assert {p.shown_order for p in plain} == {(0, 1, 2, 3)}  # the task's own (shuffled) order
    anchored = store.all(pre_ranked)
    met = {(p.from_prediction, p.prediction_version) for p in anchored}
    assert met == {(True, "reward-0001")}, met
    assert all(sorted(p.shown_order) == [0, 1, 2, 3] for p in anchored)
    untouched = sum(p.untouched_prediction for p in anchored)
    assert 0.75 * 120 <= untouched < 120  # ~90% kept the shown order
    assert all(p.prediction_distance > 0 for p in anchored if not p.untouched_prediction)
    assert all(p.lead_time_s and p.lead_time_s > 0 for p in plain + anchored)
    # The export carries the same context (the pre-rankings with the tasks): a sync changes nothing.
    assert vars(sync_project(admin, store, pre_ranked)) == {"added": 0, "updated": 0, "removed": 0}

    with RewardClient(reward.target, timeout_s=600) as client:
        own = gold_accuracy(client, [p.ranking for p in plain])
        echoed = gold_accuracy(client, [p.ranking for p in anchored])
    # ~240 held-out pairs: 0.7 is > 6 standard deviations above chance, a drop of 0.15 > 4.
    assert own >= 0.7, own
    assert echoed <= own - 0.15, (own, echoed)
