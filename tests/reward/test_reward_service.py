"""The reward service as a real process: `rlhf-loop serve reward` on free ports with the tiny model."""

import json
import math
import statistics
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.controller.reward_evaluation import pair_accuracy, score_pairs
from services.core.rankings import Ranking, group_pairs_by_prompt
from services.reward.client import RewardClient
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess
from tests.fixtures.certificates import self_signed_certificate

pytestmark = pytest.mark.integration

TRAIN = {"epochs": 10, "learning_rate": 1e-3, "batch_size": 16, "seed": 1}


@pytest.fixture(scope="module")
def trained(client):
    """Train once on the friendliness rule; returns the stream of events."""
    return list(client.train(synthetic_rankings(60, 4, seed=1), **TRAIN))


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def http_post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_is_serving_and_reflection_lists_the_service(server, client):
    health = health_pb2_grpc.HealthStub(client.channel)
    for name in ("", "rlhf.v1.RewardService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = ProtoReflectionDescriptorDatabase(client.channel).get_services()
    assert "rlhf.v1.RewardService" in services and "grpc.health.v1.Health" in services


def test_score_and_rank_have_the_right_shapes_and_are_deterministic(client):
    items = [("What is 2+2?", "Four."), ("Hi", "Hello there, happy to help!"), ("Hi", "Go away.")]
    scores, version = client.score(items)
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores) and version.startswith("reward-")
    assert client.score(items) == (scores, version)
    ranked = client.rank("Hi", ["Hello!", "Go away.", "Happy to help.", "Meh."])
    assert sorted(ranked.order) == [0, 1, 2, 3]
    assert [ranked.scores[i] for i in ranked.order] == sorted(ranked.scores, reverse=True)
    p = ranked.probabilities
    assert len(p) == 4 and all(len(row) == 4 for row in p)
    assert all(p[i][j] + p[j][i] == pytest.approx(1.0, abs=1e-5) for i in range(4) for j in range(4))


def test_training_streams_progress_then_evaluation_then_a_version(client, trained):
    kinds = [event.WhichOneof("event") for event in trained]
    assert kinds[-2:] == ["evaluation", "version"] and set(kinds[:-2]) == {"progress"}
    progress = [e.progress for e in trained[:-2]]
    assert [p.step for p in progress] == sorted(p.step for p in progress)
    assert progress[-1].step == progress[-1].total_steps
    evaluation, version = trained[-2].evaluation, trained[-1].version
    # ~12 held-out prompts (~60 pairs) that follow the rule: 0.7 is > 3 standard deviations above chance.
    assert evaluation.heldout_accuracy >= 0.7, evaluation
    prompts_with_pairs = len(group_pairs_by_prompt(synthetic_rankings(60, 4, seed=1)))  # all-tie prompts drop
    assert evaluation.heldout_prompts >= 10
    assert evaluation.train_prompts + evaluation.heldout_prompts == prompts_with_pairs
    assert version.metrics["heldout_accuracy"] == pytest.approx(evaluation.heldout_accuracy)
    assert version.parent == "reward-0001" and len(version.data_hash) == 16 and not version.active
    listed = client.list_versions()
    assert [v.id for v in listed.versions] == ["reward-0001", version.id] and listed.active == "reward-0001"


def test_promote_swaps_while_16_clients_keep_scoring(server, client, trained):
    new = trained[-1].version.id
    errors, versions_seen, stop = [], set(), threading.Event()

    def keep_scoring(n: int) -> None:
        with RewardClient(server.target, timeout_s=30) as own:
            while not stop.is_set():
                try:
                    _, version = own.score([(f"client {n}", "Happy to help!")])
                    versions_seen.add(version)
                except grpc.RpcError as error:
                    errors.append(error)

    threads = [threading.Thread(target=keep_scoring, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    try:
        change = client.promote(new)
        assert (change.active, change.previous) == (new, "reward-0001")
        _, version = client.score([("after", "promotion")])
        assert version == new
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert new in versions_seen
    ranking_scores, _ = client.score([("Hi", "Happy to help! Great question."), ("Hi", "Go away. I do not care.")])
    assert ranking_scores[0] > ranking_scores[1]  # the promoted model learned the rule
    assert client.rollback().active == "reward-0001"
    assert client.promote(new).active == new


def test_callers_held_out_rankings_and_scoring_with_a_named_version(client, trained):
    """The loop's fair gate: the caller holds out comparisons, then scores any version on exactly them."""
    rankings = synthetic_rankings(40, 4, seed=3)
    heldout_prompts = {r.prompt for r in rankings[:8]}
    train = [r for r in rankings if r.prompt not in heldout_prompts]
    heldout = [r for r in rankings if r.prompt in heldout_prompts]
    events = list(client.train(train, heldout_rankings=heldout, **TRAIN))
    evaluation, version = events[-2].evaluation, events[-1].version
    assert evaluation.train_prompts == len(group_pairs_by_prompt(train))
    assert evaluation.heldout_prompts == len(group_pairs_by_prompt(heldout))
    assert json.loads(version.metadata_json)["heldout_rankings"] == len(heldout)
    pairs = [p for group in group_pairs_by_prompt(heldout).values() for p in group]
    assert pair_accuracy(score_pairs(client, version.id, pairs)) == pytest.approx(evaluation.heldout_accuracy, abs=1e-6)
    # The untrained base, named while another version serves, is about chance on the same pairs.
    assert pair_accuracy(score_pairs(client, "reward-0001", pairs)) < evaluation.heldout_accuracy - 0.2
    scores, served_by = client.score([(p.prompt, p.chosen) for p in pairs[:3]], version="reward-0001")
    assert served_by == "reward-0001" and client.info().active_version != "reward-0001"
    assert client.rank(pairs[0].prompt, [pairs[0].chosen, pairs[0].rejected], version="reward-0001").scores == (
        pytest.approx(scores[:1] + client.score([(pairs[0].prompt, pairs[0].rejected)], version="reward-0001")[0])
    )
    assert status_of(lambda: client.score([("p", "r")], version="reward-9999"))[0] == grpc.StatusCode.NOT_FOUND
    code, details = status_of(lambda: list(client.train(rankings, heldout_rankings=heldout, **TRAIN)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "also appear in the training rankings" in details


def test_an_ensemble_returns_a_spread_larger_out_of_distribution_than_on_its_training_text(client, trained):
    rankings = synthetic_rankings(60, 4, seed=1)
    events = list(client.train(rankings, ensemble_size=4, **TRAIN))
    version = events[-1].version.id
    assert events[-2].evaluation.heldout_accuracy >= 0.7
    seen = [(r.prompt, c) for r in rankings[:12] for c in r.candidates]  # under the test server's queue of 64
    # Text of a kind it never saw: another script entirely.
    unseen = [("Wie spät ist es?", "".join(chr(0x4E00 + (i * 7919 + j * 31) % 2000) for j in range(30)))
              for i in range(30)]  # fmt: skip
    scores, seen_spreads, served_by = client.score_with_spread(seen, version=version)
    _, unseen_spreads, _ = client.score_with_spread(unseen, version=version)
    assert served_by == version and len(seen_spreads) == len(seen) == len(scores)
    # Measured 1.6x-3.4x over 4 training seeds (0.10-0.14 vs 0.23-0.37).
    assert statistics.fmean(unseen_spreads) > 1.3 * statistics.fmean(seen_spreads)
    ranked = client.rank(seen[0][0], [c for _, c in seen[:4]], version=version)
    assert len(ranked.spreads) == 4 and ranked.spreads == pytest.approx(seen_spreads[:4], abs=1e-5)
    # A single model has no spread; old clients that read only `scores` see the mean either way.
    assert client.score_with_spread(seen[:2], version=trained[-1].version.id)[1] == []
    assert client.rank(seen[0][0], [c for _, c in seen[:2]]).spreads == []


def test_bad_inputs_get_precise_status_codes(client):
    InvalidArgument = grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: client.score([]))[0] == InvalidArgument
    assert status_of(lambda: client.score([("prompt", "  ")]))[0] == InvalidArgument
    code, details = status_of(lambda: client.score([("p", "x" * 2500)]))
    assert code == InvalidArgument and "2000" in details
    code, details = status_of(lambda: client.rank("p", ["only one"]))
    assert code == InvalidArgument
    code, details = status_of(lambda: client.score([("p", "r")] * 100))  # the queue holds 64
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "64" in details
    rankings = synthetic_rankings(10, 3)
    code, details = status_of(lambda: list(client.train(rankings, learning_rate=math.nan)))
    assert code == InvalidArgument and "learning_rate" in details
    code, details = status_of(lambda: list(client.train(rankings[:1])))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "1 prompts" in details
    bad_tier = [Ranking("p", ("a", "b"), ((0,), (5,)))]
    assert status_of(lambda: list(client.train(bad_tier)))[0] == InvalidArgument
    assert status_of(lambda: client.promote("reward-9999"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_of(lambda: client.promote("../../etc"))[0] == InvalidArgument
    assert status_of(lambda: list(client.train(rankings, init_version="nope")))[0] == grpc.StatusCode.NOT_FOUND


def test_cancelling_training_stops_it_and_writes_no_version(server, client, trained):
    before = [v.id for v in client.list_versions().versions]
    stream = client.train(synthetic_rankings(60, 4, seed=2), epochs=100, learning_rate=1e-3, batch_size=4)
    first = next(stream)
    assert first.WhichOneof("event") == "progress"
    stream.cancel()
    assert status_of(lambda: next(stream))[0] == grpc.StatusCode.CANCELLED
    # The service notices at the next step and is free for the next run.
    for _ in range(100):
        if not client.info().training:
            break
        threading.Event().wait(0.1)
    assert not client.info().training
    assert [v.id for v in client.list_versions().versions] == before
    assert "training ended without a version" in server.log()


def test_openrlhf_get_reward_returns_rewards_scores_and_extra_logs(server, client):
    body = {"query": ["Hi Happy to help!", "Hi Go away."], "prompts": ["Hi ", "Hi "], "labels": ["", ""]}
    status, reply = http_post(f"{server.http}/get_reward", json.dumps(body).encode())
    assert status == 200
    assert set(reply) == {"rewards", "scores", "extra_logs"} and len(reply["rewards"]) == 2
    direct, version = client.score([("Hi ", "Happy to help!"), ("Hi ", "Go away.")])
    assert reply["rewards"] == pytest.approx(direct, abs=1e-5)
    # `scores` is what OpenRLHF's dynamic filtering compares with 0-1 bounds: the sigmoid of each reward.
    assert reply["scores"] == pytest.approx([1 / (1 + math.exp(-r)) for r in direct], abs=1e-5)
    assert reply["extra_logs"] == {"model_version": version}
    assert http_post(f"{server.http}/get_reward", b"{not json")[0] == 400
    assert http_post(f"{server.http}/get_reward", b'{"query": "not a list"}')[0] == 400


def test_metrics_expose_requests_latency_batches_queue_version_and_training(server, client, trained):
    client.score([("p", "r")])
    text = urllib.request.urlopen(f"{server.http}/metrics", timeout=10).read().decode()
    for needle in (
        'rlhf_reward_requests_total{code="OK",method="Score"}',
        'rlhf_reward_requests_total{code="INVALID_ARGUMENT",method="Score"}',
        "rlhf_reward_request_duration_seconds_bucket",
        "rlhf_reward_batch_size_bucket",
        "rlhf_reward_queue_depth",
        'rlhf_reward_model_info{architecture="llama",version="reward-',
        "rlhf_reward_train_loss",
        "rlhf_reward_train_accuracy",
        "rlhf_reward_heldout_accuracy",
        'rlhf_reward_train_runs_total{outcome="completed"}',
    ):
        assert needle in text, needle


def test_auth_token_is_required_on_every_rpc_but_health(tiny_model_dir, tmp_path):
    process = ServiceProcess(
        "reward",
        ["--registry", str(tmp_path / "registry"), "--model", str(tiny_model_dir)],
        tmp_path / "reward.log",
        env={"RLHF_LOOP_AUTH_TOKEN": "s3cret-token"},
    )
    try:
        process.wait_ready()
        with RewardClient(process.target, retries=0) as anonymous:
            assert status_of(lambda: anonymous.score([("p", "r")]))[0] == grpc.StatusCode.UNAUTHENTICATED
            assert status_of(lambda: anonymous.list_versions())[0] == grpc.StatusCode.UNAUTHENTICATED
            assert status_of(lambda: list(anonymous.train([])))[0] == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(process.target, token="wrong", retries=0) as wrong:
            assert status_of(lambda: wrong.info())[0] == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(process.target, token="s3cret-token") as right:
            assert len(right.score([("p", "r")])[0]) == 1
    finally:
        assert process.stop() == 0
    assert "s3cret-token" not in process.log()


def test_tls_with_a_self_signed_certificate(tiny_model_dir, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    process = ServiceProcess(
        "reward",
        [
            "--registry",
            str(tmp_path / "registry"),
            "--model",
            str(tiny_model_dir),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        tmp_path / "reward.log",
    )
    try:
        with RewardClient(process.target, tls_ca=cert) as secure:
            secure.wait_ready(120)
            assert len(secure.score([("p", "r")])[0]) == 1
        with RewardClient(process.target, retries=0, timeout_s=5) as plaintext:
            assert status_of(lambda: plaintext.info())[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        assert process.stop() == 0


def test_sigterm_shuts_down_gracefully(tiny_model_dir, tmp_path):
    process = ServiceProcess(
        "reward",
        ["--registry", str(tmp_path / "registry"), "--model", str(tiny_model_dir)],
        tmp_path / "r.log",
    )
    process.wait_ready()
    assert process.stop() == 0
    events = [json.loads(line)["msg"] for line in process.log().splitlines() if line.startswith("{")]
    assert events.index("shutting down") < events.index("stopped")


def test_grpcurl_reaches_score_through_reflection(server):
    """The README's grpcurl call, verbatim apart from the port."""
    grpcurl = Path(sys.executable).parent / "grpcurl"
    body = '{"items": [{"prompt": "Hi", "response": "Hello!"}]}'
    reply = subprocess.run(
        [str(grpcurl), "-plaintext", "-d", body, server.target, "rlhf.v1.RewardService/Score"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    parsed = json.loads(reply.stdout)
    assert len(parsed["scores"]) == 1 and parsed["model_version"].startswith("reward-")
