"""Monitoring with real processes: the catalogue equals what each part exports; a real Prometheus scrapes them."""

import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.controller.metrics import LoopMetrics
from services.policy.client import PolicyClient
from services.reward.client import RewardClient
from services.tools.service_process import free_port
from tests.fixtures.metrics_catalogue import catalogue
from tests.fixtures.prometheus_server import all_up, prometheus_scraping, query, wait_for
from tests.fixtures.tiny_stack import start_tiny_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parts(tiny_model_dir, tmp_path_factory):
    """Reward, policy and backend as processes, the controller's metrics endpoint, each used a little."""
    reward, policy, backend, _ = start_tiny_stack(tmp_path_factory.mktemp("monitoring"), tiny_model_dir)
    controller_port = free_port()
    loop_metrics = LoopMetrics()
    loop_metrics.serve(controller_port)
    loop_metrics.record(1, "collect", {"rankings": 12, "agreement": 0.7})
    loop_metrics.decisions.labels("promote").inc()
    with RewardClient(reward.target) as client:
        client.score([("How are you?", "Fine, thanks!")] * 3)
    with PolicyClient(policy.target) as client:
        client.generate(["Hello"], n=2, max_new_tokens=4)
    candidates = [{"id": "c0", "body": "a"}, {"id": "c1", "body": "b"}]
    body = {"tasks": [{"id": 1, "data": {"prompt": "p", "candidates": candidates}}]}
    request = urllib.request.Request(f"{backend.http}/predict", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=60).read()
    urls = {
        "Reward service": f"{reward.http}/metrics",
        "Policy service": f"{policy.http}/metrics",
        "Label Studio backend": f"{backend.http}/metrics",
        "Loop controller": f"http://127.0.0.1:{controller_port}/metrics",
    }
    yield {"urls": urls, "reward": reward, "policy": policy, "backend": backend, "controller_port": controller_port}
    for process in (backend, policy, reward):
        process.stop()


def scrape(url: str) -> dict[str, tuple[str, frozenset[str] | None]]:
    """{family as exposed: (type, labels seen on its samples, None when it has none yet)}."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    exported = {}
    for family in text_string_to_metric_families(text):
        # The parser strips _total and _info; the catalogue lists names as a scrape exposes them.
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        kind = "gauge" if family.type in ("info", "stateset") else family.type
        seen = {label for sample in family.samples for label in sample.labels} - {"le"}
        exported[name] = (kind, frozenset(seen) if family.samples and (seen or not _labelled(text, name)) else None)
    return exported


def _labelled(text: str, name: str) -> bool:
    return any(line.startswith(name + "{") for line in text.splitlines())


def test_the_catalogue_lists_exactly_what_each_part_exports(parts):
    documented = catalogue()
    assert set(documented) == set(parts["urls"])
    for part, url in parts["urls"].items():
        exported = scrape(url)
        assert set(exported) == set(documented[part]), part
        for name, (kind, labels) in exported.items():
            doc_kind, doc_labels = documented[part][name]
            assert kind == doc_kind, (part, name)
            if labels is not None:  # a labelled metric shows its labels once it has a sample
                assert labels == doc_labels, (part, name)
    # The calls above gave the request metrics samples, so their labels were compared.
    assert scrape(parts["urls"]["Reward service"])["rlhf_reward_requests_total"][1] == {"method", "code"}


@pytest.fixture
def prometheus(parts, tmp_path):
    targets = {
        "rlhf-reward": parts["reward"].http, "rlhf-policy": parts["policy"].http,
        "rlhf-backend": parts["backend"].http, "rlhf-controller": f"http://127.0.0.1:{parts['controller_port']}",
    }  # fmt: skip
    with prometheus_scraping({job: url.removeprefix("http://") for job, url in targets.items()}, tmp_path) as url:
        yield url


def test_a_real_prometheus_scrapes_every_part_and_sees_the_calls(parts, prometheus):
    wait_for(prometheus, 'up{job=~"rlhf-.*"}', all_up(4))
    before = query(prometheus, 'rlhf_reward_requests_total{method="Score",code="OK"}')
    scored_before = float(before[0]["value"][1]) if before else 0.0
    with RewardClient(parts["reward"].target) as reward, PolicyClient(parts["policy"].target) as policy:
        for _ in range(5):
            reward.score([("Q", "A")])
        policy.generate(["Hi", "Bye"], n=2, max_new_tokens=4)
    wait_for(prometheus, 'rlhf_reward_requests_total{method="Score",code="OK"}',
             lambda r: float(r[0]["value"][1]) >= scored_before + 5)  # fmt: skip
    generated = wait_for(prometheus, 'sum(rlhf_policy_requests_total{method="Generate",code="OK"})',
                         lambda r: float(r[0]["value"][1]) >= 2)  # fmt: skip
    assert float(generated[0]["value"][1]) >= 2
    tokens = wait_for(prometheus, "rlhf_policy_generated_tokens_total", lambda r: float(r[0]["value"][1]) > 0)
    assert tokens[0]["metric"]["job"] == "rlhf-policy"
    stage = wait_for(prometheus, "rlhf_loop_stage == 1", lambda r: len(r) == 1)
    assert stage[0]["metric"]["rlhf_loop_stage"] == "collect"


def test_the_health_command_the_containers_use(parts):
    def health(target: str) -> int:
        command = [sys.executable, "-m", "services.cli", "health", target, "--timeout-s", "2"]
        return subprocess.run(command, capture_output=True).returncode

    assert health(parts["reward"].target) == 0 and health(parts["policy"].target) == 0
    assert health(f"{parts['backend'].http}/health") == 0
    assert health(f"127.0.0.1:{free_port()}") == 1 and health(f"http://127.0.0.1:{free_port()}/health") == 1
