"""The backend against a real Label Studio server, real annotator accounts, and the real services."""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.annotators import create_annotator
from labelstudio_backend.preference_store import PreferenceStore
from labelstudio_backend.project_setup import init_project
from services.tools.service_process import ServiceProcess

pytestmark = pytest.mark.integration

BACKEND_USER, BACKEND_PASSWORD = "labelstudio", "backend-pass-123"


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def post(url: str, body: bytes, auth: tuple[str, str] | None = (BACKEND_USER, BACKEND_PASSWORD)) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"raw": text[:200].decode(errors="replace")}


@pytest.fixture(scope="module")
def stack(labelstudio, tiny_model_dir, tmp_path_factory):
    """Reward + policy services on the tiny model, and the backend (basic auth on) in front of them."""
    root = tmp_path_factory.mktemp("stack")
    reward = ServiceProcess(
        "reward", ["--registry", str(root / "reward"), "--model", str(tiny_model_dir)], root / "r.log"
    )
    reward.wait_ready()
    policy = ServiceProcess(
        "policy",
        ["--registry", str(root / "policy"), "--model", str(tiny_model_dir), "--reward-url", reward.target],
        root / "p.log",
    )
    policy.wait_ready()
    store_url = f"sqlite:///{root / 'prefs.db'}"
    backend_args = [
        "--store", store_url, "--reward-url", reward.target, "--policy-url", policy.target, "--candidates", "5",
        "--max-new-tokens", "8", "--basic-auth-user", BACKEND_USER, "--labelstudio-url", labelstudio.url,
    ]  # fmt: skip
    env = {"RLHF_LOOP_LABELSTUDIO_TOKEN": labelstudio.token, "RLHF_LOOP_BACKEND_PASSWORD": BACKEND_PASSWORD}
    backend = ServiceProcess("backend", backend_args, root / "backend.log", env=env)
    backend.wait_ready()
    stack = {"reward": reward, "policy": policy, "backend": backend, "store": PreferenceStore(store_url),
             "store_url": store_url, "backend_args": backend_args, "env": env, "root": root}  # fmt: skip
    yield stack
    for process in (stack["backend"], policy, reward):
        process.stop()


@pytest.fixture(scope="module")
def admin(labelstudio):
    return LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)


@pytest.fixture(scope="module")
def annotators(labelstudio):
    """Two real accounts, signed up through the organisation's invite link."""
    return [
        LabelStudio(
            base_url=labelstudio.url,
            api_key=create_annotator(labelstudio.url, labelstudio.token, f"annotator{i}@example.com", "pass-word-123"),
        )
        for i in range(2)
    ]


@pytest.fixture(scope="module")
def projects(admin, stack):
    made = {}
    for template in ("ranker", "ranker-buckets", "pairwise"):
        setup = init_project(
            admin, template=template, title=f"test {template}", backend_url=stack["backend"].http,
            basic_auth=(BACKEND_USER, BACKEND_PASSWORD), candidates=3, pre_rank=1.0,
        )  # fmt: skip
        assert "project" in setup.created and "ml_backend" in setup.created
        again = init_project(
            admin, template=template, title=f"test {template}", backend_url=stack["backend"].http,
            basic_auth=(BACKEND_USER, BACKEND_PASSWORD), candidates=3, pre_rank=1.0,
        )  # fmt: skip
        assert again.created == () and again.project_id == setup.project_id
        assert len(admin.ml.list(project=setup.project_id)) == 1
        assert len(admin.webhooks.list(project=str(setup.project_id))) == 1
        made[template] = setup.project_id
    return made


def ranker(value: dict) -> list[dict]:
    return [{"type": "ranker", "from_name": "rank", "to_name": "candidates", "value": {"ranker": value}}]


def annotation_payload(admin, project_id: int, task_id: int, data: dict, annotation: dict) -> dict:
    project = {"id": project_id, "label_config": admin.projects.get(id=project_id).label_config}
    return {"action": "ANNOTATION_CREATED", "project": project, "task": {"id": task_id, "data": data},
            "annotation": annotation}  # fmt: skip


def import_prompts(admin, project_id: int, prompts: list[str], pairwise: bool = False) -> list[int]:
    empty = {"answer1": "", "answer2": ""} if pairwise else {}
    reply = admin.projects.import_tasks(
        project_id, request=[{"prompt": p, "candidates": [], **empty} for p in prompts], return_task_ids=True
    )
    return list(reply.task_ids)


def task_data(admin, task_id: int) -> dict:
    return admin.tasks.get(id=str(task_id)).data


def with_candidates(admin, task_id: int) -> dict:
    return wait_until(lambda: task_data(admin, task_id).get("candidates") and task_data(admin, task_id), 120,
                      f"candidates in task {task_id}")  # fmt: skip


def rankings_in_store(stack, project_id: int) -> dict[int, tuple]:
    return {p.annotation_id: p.ranking.tiers for p in stack["store"].all(project_id)}


def test_imported_prompts_get_candidates_from_the_policy_service(admin, projects):
    (task_id,) = import_prompts(admin, projects["ranker"], ["Tell me about the sea"])
    data = with_candidates(admin, task_id)
    assert [c["id"] for c in data["candidates"]] == ["c0", "c1", "c2"]
    assert data["generation"]["policy_version"] == "policy-0001" and data["generation"]["max_new_tokens"] == 8
    (pair_task,) = import_prompts(admin, projects["pairwise"], ["Say hello"], pairwise=True)
    pair = with_candidates(admin, pair_task)
    assert len(pair["candidates"]) == 2 and pair["answer1"] == pair["candidates"][0]["body"]


def test_rankings_from_real_annotators_reach_the_store_for_all_templates(admin, annotators, projects, stack):
    alice, bob = annotators
    (ranker_task,) = import_prompts(admin, projects["ranker"], ["Explain rainbows"])
    (bucket_task,) = import_prompts(admin, projects["ranker-buckets"], ["Describe bread"])
    (pair_task,) = import_prompts(admin, projects["pairwise"], ["Say hi"], pairwise=True)
    for task in (ranker_task, bucket_task, pair_task):
        with_candidates(admin, task)
    a1 = alice.annotations.create(id=ranker_task, result=ranker({"rank": ["c2", "c0", "c1"]}))
    a2 = bob.annotations.create(id=ranker_task, result=ranker({"rank": ["c2", "c1", "c0"]}))
    b1 = alice.annotations.create(
        id=bucket_task, result=ranker({"best": ["c0", "c2"], "acceptable": [], "bad": [], "_": ["c1"]})
    )
    choice = {
        "type": "pairwise",
        "from_name": "comparison",
        "to_name": "answer1,answer2",
        "value": {"selected": "right"},
    }
    p1 = bob.annotations.create(id=pair_task, result=[choice])
    wait_until(lambda: len(rankings_in_store(stack, projects["ranker"])) >= 2, what="ranker rankings")
    assert rankings_in_store(stack, projects["ranker"])[a1.id] == ((2,), (0,), (1,))
    assert rankings_in_store(stack, projects["ranker"])[a2.id] == ((2,), (1,), (0,))
    # bucket members tie (no pair between c0 and c2); c1 left unsorted is unranked: no pairs at all
    assert wait_until(lambda: rankings_in_store(stack, projects["ranker-buckets"]).get(b1.id)) == ((0, 2),)
    assert wait_until(lambda: rankings_in_store(stack, projects["pairwise"]).get(p1.id)) == ((1,), (0,))
    stored = {p.annotation_id: p for p in stack["store"].all()}
    assert stored[a1.id].annotator != stored[a2.id].annotator
    assert stored[a1.id].ranking.candidates == tuple(c["body"] for c in task_data(admin, ranker_task)["candidates"])

    # An update replaces, a delete removes.
    alice.annotations.update(id=a1.id, result=ranker({"rank": ["c0", "c1", "c2"]}))
    wait_until(lambda: rankings_in_store(stack, projects["ranker"])[a1.id] == ((0,), (1,), (2,)), what="update")
    bob.annotations.delete(id=a2.id)
    wait_until(lambda: a2.id not in rankings_in_store(stack, projects["ranker"]), what="delete")

    stats = subprocess.run(
        [sys.executable, "-m", "services.cli", "prefs", "stats", "--store", stack["store_url"]],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert json.loads(stats)["annotations"] == len(stack["store"].all())


def test_a_duplicate_webhook_delivery_changes_nothing(admin, annotators, projects, stack):
    (task_id,) = import_prompts(admin, projects["ranker"], ["Name a colour"])
    data = with_candidates(admin, task_id)
    result = ranker({"rank": ["c1", "c0", "c2"]})
    annotation = annotators[0].annotations.create(id=task_id, result=result)
    wait_until(lambda: annotation.id in rankings_in_store(stack, projects["ranker"]), what="first delivery")
    before = stack["store"].all()
    delivered = {"id": annotation.id, "result": result, "completed_by": annotation.completed_by}
    payload = annotation_payload(admin, projects["ranker"], task_id, data, delivered)
    status, reply = post(f"{stack['backend'].http}/webhook", json.dumps(payload).encode())
    assert (status, reply["status"]) == (200, "unchanged")
    assert stack["store"].all() == before


def test_predict_gives_rankings_label_studio_shows_as_predictions(admin, labelstudio, projects, stack):
    task_ids = import_prompts(admin, projects["ranker-buckets"], [f"Prompt {i}" for i in range(3)])
    # Opening a task makes Label Studio ask for its prediction; before the candidates are in there is none,
    # and no empty one may be stored (Label Studio would never ask again for that task).
    assert admin.tasks.get(id=str(task_ids[0])).predictions == []
    for task_id in task_ids:
        with_candidates(admin, task_id)
    reward_version = "reward-0001"
    reply = urllib.request.Request(
        f"{labelstudio.url}/api/dm/actions?id=retrieve_tasks_predictions&project={projects['ranker-buckets']}",
        data=json.dumps({"selectedItems": {"all": False, "included": task_ids}}).encode(),
        headers={"Authorization": f"Token {labelstudio.token}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(reply, timeout=120).read()
    for task_id in task_ids:
        predictions = admin.tasks.get(id=str(task_id)).predictions
        assert [(p.model_version, bool(p.result)) for p in predictions] == [(reward_version, True)]
        value = predictions[0].result[0]["value"]["ranker"]
        assert sorted(cid for ids in value.values() for cid in ids) == ["c0", "c1", "c2"]
        assert set(value) <= {"best", "acceptable", "bad"}
        assert 0 <= predictions[0].score <= 1


def test_predict_answers_50_tasks_well_inside_the_timeout(admin, projects, stack):
    def task(i: int) -> dict:
        candidates = [{"id": f"c{j}", "body": f"answer {i} {j}"} for j in range(4)]
        return {"id": 10_000 + i, "data": {"prompt": f"p{i}", "candidates": candidates}}

    tasks = [task(i) for i in range(50)]
    label_config = admin.projects.get(id=projects["ranker"]).label_config
    began = time.monotonic()
    status, reply = post(
        f"{stack['backend'].http}/predict", json.dumps({"tasks": tasks, "label_config": label_config}).encode()
    )
    assert status == 200 and len(reply["results"]) == 50
    assert time.monotonic() - began < 20  # Label Studio waits 100 s
    assert all(
        r["model_version"] == "reward-0001" and len(r["result"][0]["value"]["ranker"]["rank"]) == 4
        for r in reply["results"]
    )


def test_missed_webhooks_are_recovered_by_sync(admin, annotators, labelstudio, projects, stack):
    (task_id,) = import_prompts(admin, projects["ranker"], ["Offline prompt"])
    with_candidates(admin, task_id)
    stack["backend"].stop()
    result = [
        {
            "type": "ranker",
            "from_name": "rank",
            "to_name": "candidates",
            "value": {"ranker": {"rank": ["c0", "c2", "c1"]}},
        }
    ]
    missed = annotators[1].annotations.create(id=task_id, result=result)
    # Same port: Label Studio's ML backend and webhook still point there.
    port = stack["backend"].port
    backend = ServiceProcess("backend", stack["backend_args"], stack["root"] / "b2.log", env=stack["env"], port=port)
    backend.wait_ready()
    stack["backend"] = backend
    assert missed.id not in rankings_in_store(stack, projects["ranker"])
    command = [sys.executable, "-m", "services.cli", "sync", "--project", str(projects["ranker"]),
               "--store", stack["store_url"], "--labelstudio-url", labelstudio.url]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **stack["env"]}).stdout
    assert json.loads(out)["added"] >= 1
    assert rankings_in_store(stack, projects["ranker"])[missed.id] == ((0,), (2,), (1,))
    exported = {
        a["id"]
        for t in admin.projects.exports.as_json(projects["ranker"])
        for a in t["annotations"]
        if not a["was_cancelled"]
    }
    assert set(rankings_in_store(stack, projects["ranker"])) == exported


def test_basic_auth_refuses_a_wrong_password(stack):
    status, _ = post(f"{stack['backend'].http}/setup", b"{}", auth=(BACKEND_USER, "wrong"))
    assert status == 401
    assert post(f"{stack['backend'].http}/setup", b"{}", auth=None)[0] == 401
    status, reply = post(f"{stack['backend'].http}/setup", b"{}")
    assert status == 200 and reply["model_version"] == "reward-0001"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"no_action": 1}',
        b'{"action": 5}',
        b'{"action": "ANNOTATION_CREATED"}',
        b'{"action": "ANNOTATION_CREATED", "annotation": "x", "project": {"id": 1}}',
        b'{"action": "ANNOTATION_CREATED", "annotation": {"id": "7"}, "task": {"id": 1}, "project": {"id": 1}}',
        b'{"action": "ANNOTATIONS_DELETED", "annotations": "all"}',
        b'{"action": "TASKS_CREATED", "tasks": [{"id": "x"}]}',
    ],
)
def test_malformed_webhooks_get_4xx_and_change_nothing(stack, body):
    before = stack["store"].all()
    status, _ = post(f"{stack['backend'].http}/webhook", body)
    assert 400 <= status < 500
    assert stack["store"].all() == before


def test_unknown_candidate_ids_and_huge_bodies_are_refused(admin, projects, stack):
    (task_id,) = import_prompts(admin, projects["ranker"], ["Unknown ids"])
    data = with_candidates(admin, task_id)
    before = stack["store"].all()
    project = {"id": projects["ranker"], "label_config": admin.projects.get(id=projects["ranker"]).label_config}
    bad = [
        {
            "type": "ranker",
            "from_name": "rank",
            "to_name": "candidates",
            "value": {"ranker": {"rank": ["c0", "c9", "c1"]}},
        }
    ]
    payload = {"action": "ANNOTATION_CREATED", "project": project, "task": {"id": task_id, "data": data},
               "annotation": {"id": 99_999, "result": bad, "completed_by": 1}}  # fmt: skip
    status, reply = post(f"{stack['backend'].http}/webhook", json.dumps(payload).encode())
    assert status == 422 and "c9" in reply["error"]
    huge = json.dumps({"action": "ANNOTATION_CREATED", "padding": "x" * (10 * 1024 * 1024)}).encode()
    assert post(f"{stack['backend'].http}/webhook", huge)[0] == 413
    assert stack["store"].all() == before
    token = base64.b64encode(f"{BACKEND_USER}:{BACKEND_PASSWORD}".encode()).decode()
    scrape = urllib.request.Request(f"{stack['backend'].http}/metrics", headers={"Authorization": f"Basic {token}"})
    metrics = urllib.request.urlopen(scrape, timeout=10).read().decode()
    assert "rlhf_backend_rejected_results_total 1.0" in metrics
    assert 'rlhf_backend_webhooks_total{action="ANNOTATION_CREATED",outcome="rejected"}' in metrics


def test_start_training_is_recorded_for_the_controller_and_answers_at_once(stack, projects):
    pending = stack["store"].pending_training_requests()
    began = time.monotonic()
    status, reply = post(
        f"{stack['backend'].http}/webhook",
        json.dumps({"action": "START_TRAINING", "project": {"id": projects["ranker"]}}).encode(),
    )
    assert status == 200 and reply["status"] == "training_requested"
    assert time.monotonic() - began < 5
    assert len(stack["store"].pending_training_requests()) == len(pending) + 1


def test_tasks_import_generates_candidates_first(admin, labelstudio, projects, stack, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "First imported prompt"}\n{"prompt": "Second imported prompt"}\n')
    command = [sys.executable, "-m", "services.cli", "tasks", "import", str(prompts),
               "--project", str(projects["ranker"]), "--policy-url", stack["policy"].target,
               "--max-new-tokens", "6", "--labelstudio-url", labelstudio.url]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **stack["env"]}).stdout
    task_ids = json.loads(out)["task_ids"]
    assert len(task_ids) == 2
    for task_id in task_ids:
        data = task_data(admin, task_id)  # no waiting: the candidates came with the import
        assert len(data["candidates"]) == 3 and data["generation"]["policy_version"] == "policy-0001"
