"""The reward service's vLLM, Cohere/Jina and OpenAI-list HTTP APIs, against the real process on the tiny model.

Every value is checked against gRPC Score on the same text: the HTTP APIs
only translate JSON, the batcher and the model are the same.
"""

import math

import cohere
import httpx
import pytest

from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess

pytestmark = pytest.mark.integration

TOKEN = "http-token-51c3e7"
PAIRS = [("What is 2+2?", "Four."), ("Hi", "Hello there, happy to help!"), ("Hi", "Go away.")]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.http, timeout=60) as h:
        yield h


@pytest.fixture(scope="module")
def served(http) -> str:
    """The name the service goes by: its `--model` value, first in /v1/models."""
    return http.get("/v1/models").json()["data"][0]["id"]


def whole(texts: list[str]) -> list[tuple[str, str]]:
    """Whole texts as gRPC Score items: how /classify and /pooling score `input`."""
    return [("", t) for t in texts]


def test_v1_models_lists_the_served_name_then_every_version(http, client, served, tiny_model_dir):
    reply = http.get("/v1/models")
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "list" and served == str(tiny_model_dir)
    active = client.info().active_version
    first, *versions = body["data"]
    assert first == {
        "id": served,
        "object": "model",
        "created": first["created"],
        "owned_by": "rlhf-loop",
        "root": active,
        "parent": None,
        "max_model_len": 512,
    }
    assert isinstance(first["created"], int) and first["created"] > 1_600_000_000
    assert [v["id"] for v in versions] == [v.id for v in client.list_versions().versions]
    assert all(v["parent"] == served and v["object"] == "model" for v in versions)


def test_classify_has_vllms_shape_and_grpc_scores(http, client, served):
    texts = [f"{p} {r}" for p, r in PAIRS]
    direct, _ = client.score(whole(texts))
    reply = http.post("/classify", json={"model": served, "input": texts})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"id", "object", "created", "model", "data", "usage"}
    assert body["id"].startswith("classify-") and body["object"] == "list" and body["model"] == served
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(set(d) == {"index", "label", "probs", "num_classes"} and d["num_classes"] == 1 for d in body["data"])
    # Activation on by default, as vLLM's classify: the sigmoid of the reward.
    assert [d["probs"][0] for d in body["data"]] == pytest.approx([sigmoid(s) for s in direct], abs=1e-5)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0 and usage["completion_tokens"] == 0
    raw = http.post("/classify", json={"input": texts, "use_activation": False}).json()  # model omitted
    assert [d["probs"][0] for d in raw["data"]] == pytest.approx(direct, abs=1e-5)
    one = http.post("/classify", json={"model": served, "input": texts[0]}).json()
    assert len(one["data"]) == 1 and one["data"][0]["probs"] == pytest.approx([sigmoid(direct[0])], abs=1e-5)


def test_verls_reward_model_call_reads_the_raw_reward(http, client, served):
    """verl's discriminative reward-model client, verbatim: one text, activation off, data[-1].probs[-1]."""
    text = "<|user|>What is 2+2?<|assistant|>Four."
    (expected,), _ = client.score(whole([text]))
    for switch in ("use_activation", "activation"):  # verl before vLLM 0.11.2 sends `activation`
        output = http.post("/classify", json={"model": served, "input": text, switch: False}).json()
        assert output["data"][-1]["probs"][-1] == pytest.approx(expected, abs=1e-5)


def test_chat_messages_score_the_last_assistant_turn_against_the_rest(http, client, served):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, happy to help!"}]
    body = http.post("/classify", json={"model": served, "messages": messages, "use_activation": False}).json()
    (expected,), _ = client.score([("Hi", "Hello there, happy to help!")])
    assert body["data"][0]["probs"][0] == pytest.approx(expected, abs=1e-5)
    # vLLM's sequence_reward_online.py example: one user turn with text parts, scored whole.
    parts = [{"role": "user", "content": [{"type": "text", "text": "vLLM is great!"}]}]
    pooled = http.post("/pooling", json={"model": served, "messages": parts, "use_activation": False}).json()
    (whole_text,), _ = client.score(whole(["vLLM is great!"]))
    assert pooled["data"][0]["data"] == pytest.approx([whole_text], abs=1e-5)


def test_pooling_returns_the_heads_outputs(http, client, served):
    """vLLM's pooling example: `input` as a completion, `data[].data` the pooled vector."""
    (reward,), _ = client.score(whole(["vLLM is great!"]))
    body = http.post("/pooling", json={"model": served, "input": "vLLM is great!"}).json()
    assert body["id"].startswith("pool-") and body["object"] == "list" and set(body["usage"]) >= {"prompt_tokens"}
    assert body["data"] == [{"index": 0, "object": "pooling", "data": [pytest.approx(sigmoid(reward), abs=1e-5)]}]
    raw = http.post("/pooling", json={"input": ["vLLM is great!"], "task": "classify", "use_activation": False})
    assert raw.json()["data"][0]["data"] == pytest.approx([reward], abs=1e-5)


def test_score_pairs_text_1_with_text_2_one_to_one_one_to_many_and_many_to_many(http, client, served):
    """vLLM's openai_cross_encoder_score.py, its three cases; text_1 is the prompt, text_2 the response."""
    cases = [
        ("What is the capital of Brazil?", "The capital of Brazil is Brasilia."),
        ("What is the capital of France?", ["The capital of Brazil is Brasilia.", "The capital of France is Paris."]),
        (
            ["What is the capital of Brazil?", "What is the capital of France?"],
            ["The capital of Brazil is Brasilia.", "The capital of France is Paris."],
        ),
    ]
    for text_1, text_2 in cases:
        responses = text_2 if isinstance(text_2, list) else [text_2]
        prompts = text_1 if isinstance(text_1, list) else [text_1] * len(responses)
        direct, _ = client.score(list(zip(prompts, responses, strict=True)))
        body = http.post("/score", json={"model": served, "text_1": text_1, "text_2": text_2}).json()
        assert body["id"].startswith("score-") and body["object"] == "list" and body["model"] == served
        assert [d["index"] for d in body["data"]] == list(range(len(responses)))
        assert all(d["object"] == "score" for d in body["data"])
        assert [d["score"] for d in body["data"]] == pytest.approx([sigmoid(s) for s in direct], abs=1e-5)
    newer = http.post("/score", json={"queries": "Hi", "documents": ["Hello!", "Go away."], "use_activation": False})
    direct, _ = client.score([("Hi", "Hello!"), ("Hi", "Go away.")])
    assert [d["score"] for d in newer.json()["data"]] == pytest.approx(direct, abs=1e-5)
    assert http.post("/v1/score", json={"text_1": "Hi", "text_2": "Hello!"}).status_code == 200  # vLLM's old path


def test_cohere_sdk_reranks_with_top_n(server, client, served):
    query = "How do I make bread?"
    documents = ["Mix flour, water, yeast; knead, proof, bake.", "No.", "Bread is food.", "Go away."]
    direct, _ = client.score([(query, d) for d in documents])
    expected = sorted(range(len(documents)), key=lambda i: -direct[i])

    v2 = cohere.ClientV2(api_key="unused-without-a-server-token", base_url=server.http)
    reply = v2.rerank(model=served, query=query, documents=documents, top_n=2)
    assert isinstance(reply, cohere.V2RerankResponse) and reply.id.startswith("rerank-")
    assert [r.index for r in reply.results] == expected[:2]
    assert [r.relevance_score for r in reply.results] == pytest.approx([sigmoid(direct[i]) for i in expected[:2]])
    assert reply.meta.api_version.version == "2" and reply.meta.tokens.input_tokens > 0

    v1 = cohere.Client(api_key="unused-without-a-server-token", base_url=server.http)
    reply = v1.rerank(model=served, query=query, documents=documents, top_n=3, return_documents=True)
    assert isinstance(reply, cohere.RerankResponse) and reply.meta.api_version.version == "1"
    assert [(r.index, r.document.text) for r in reply.results] == [(i, documents[i]) for i in expected[:3]]
    bare = v1.rerank(model=served, query=query, documents=documents, return_documents=False)
    assert len(bare.results) == 4 and all(r.document is None for r in bare.results)


def test_jina_and_vllm_shaped_rerank(http, client, served):
    """vLLM's jinaai_rerank_client.py body on /rerank; Cohere v1's {"text": ...} documents keep their fields."""
    query, documents = "What is the capital of France?", ["The capital of Brazil is Brasilia.", "Paris.", "Horses."]
    direct, _ = client.score([(query, d) for d in documents])
    body = http.post("/rerank", json={"model": served, "query": query, "documents": documents}).json()
    assert set(body) == {"id", "model", "results", "meta", "usage"} and body["model"] == served
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert {r["index"]: r["relevance_score"] for r in body["results"]} == {
        i: pytest.approx(sigmoid(s), abs=1e-5) for i, s in enumerate(direct)
    }
    assert all(r["document"] == {"text": documents[r["index"]]} for r in body["results"])
    objects = [{"text": d, "id": f"doc-{i}"} for i, d in enumerate(documents)]
    body = http.post("/v1/rerank", json={"query": query, "documents": objects, "top_n": 1}).json()
    (best,) = body["results"]
    assert best["document"] == objects[best["index"]] and best["index"] == max(range(3), key=direct.__getitem__)


def test_a_request_may_name_a_registered_version_that_is_not_active(http, client, served):
    events = list(client.train(synthetic_rankings(20, 3, seed=4), epochs=1, learning_rate=1e-3, seed=1))
    version = events[-1].version.id
    assert client.info().active_version != version
    assert version in [m["id"] for m in http.get("/v1/models").json()["data"]]
    texts = [f"{p} {r}" for p, r in PAIRS]
    named, served_by = client.score(whole(texts), version=version)
    active, _ = client.score(whole(texts))
    assert served_by == version and named != pytest.approx(active, abs=1e-6)  # the versions differ
    body = http.post("/classify", json={"model": version, "input": texts, "use_activation": False}).json()
    assert body["model"] == version and [d["probs"][0] for d in body["data"]] == pytest.approx(named, abs=1e-5)
    body = http.post("/classify", json={"model": served, "input": texts, "use_activation": False}).json()
    assert [d["probs"][0] for d in body["data"]] == pytest.approx(active, abs=1e-5)
    missing = http.post("/classify", json={"model": "reward-9999", "input": "x"})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "The model `reward-9999` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    assert http.post("/v2/rerank", json={"model": "../etc", "query": "q", "documents": ["d"]}).status_code == 404


MALFORMED = [
    ("/classify", b"{not json"),
    ("/classify", b"\xff\xfe"),
    ("/classify", b"[" * 50_000 + b"]" * 50_000),
    ("/classify", b"[]"),
    ("/classify", b'{"input": 5}'),
    ("/classify", b'{"input": []}'),
    ("/classify", b'{"input": [[1, 2, 3]]}'),
    ("/classify", b'{"input": "  "}'),
    ("/classify", b'{"input": "x", "use_activation": "no"}'),
    ("/classify", b'{"input": "x", "messages": [{"role": "user", "content": "y"}]}'),
    ("/classify", b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'),
    ("/classify", b'{"model": 7, "input": "x"}'),
    ("/pooling", b'{"input": "x", "encoding_format": "base64"}'),
    ("/pooling", b'{"messages": []}'),
    ("/score", b'{"text_1": "q"}'),
    ("/score", b'{"text_1": ["a", "b", "c"], "text_2": ["x", "y"]}'),
    ("/score", b'{"text_1": "q", "text_2": "r", "queries": "q", "documents": "r"}'),
    ("/v1/rerank", b'{"query": 3, "documents": ["d"]}'),
    ("/v1/rerank", b'{"query": "q", "documents": []}'),
    ("/v1/rerank", b'{"query": "q", "documents": [{"title": "no text"}]}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["d"], "top_n": -1}'),
    ("/v2/rerank", b'{"query": "q", "documents": ["d"], "top_n": true}'),
    ("/rerank", b'{"query": "q", "documents": ["d"], "rank_fields": ["title"]}'),
]


@pytest.mark.parametrize("path, body", MALFORMED)
def test_malformed_bodies_get_400_with_vllms_error_body(http, path, body):
    reply = http.post(path, content=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400 and error["message"]


def test_over_the_limits_gets_the_status_get_reward_gets(http):
    """Characters per item (the server allows 2000) -> 400; more items than the queue (64) holds -> 429."""
    cases = [(["x" * 2500], 400), (["x"] * 100, 429), (["x"] * 300, 400)]  # 300 > --max-items 256
    for texts, status in cases:
        assert http.post("/get_reward", json={"query": texts}).status_code == status
        assert http.post("/classify", json={"input": texts}).status_code == status
        assert http.post("/pooling", json={"input": texts}).status_code == status
        assert http.post("/score", json={"text_1": "q", "text_2": texts}).status_code == status
        assert http.post("/v1/rerank", json={"query": "q", "documents": texts}).status_code == status
    assert "2000" in http.post("/classify", json={"input": ["x" * 2500]}).json()["error"]["message"]


def test_every_route_refuses_a_missing_or_wrong_token_like_grpc(tiny_model_dir, tmp_path):
    process = ServiceProcess(
        "reward",
        ["--registry", str(tmp_path / "registry"), "--model", str(tiny_model_dir)],
        tmp_path / "reward.log",
        env={"RLHF_LOOP_AUTH_TOKEN": TOKEN},
    )
    calls = [
        ("POST", "/get_reward", {"query": ["Hi Hello"]}),
        ("POST", "/classify", {"input": "Hi Hello"}),
        ("POST", "/pooling", {"input": "Hi Hello"}),
        ("POST", "/score", {"text_1": "Hi", "text_2": "Hello"}),
        ("POST", "/rerank", {"query": "Hi", "documents": ["Hello"]}),
        ("POST", "/v1/rerank", {"query": "Hi", "documents": ["Hello"]}),
        ("POST", "/v2/rerank", {"query": "Hi", "documents": ["Hello"]}),
        ("GET", "/v1/models", None),
    ]
    try:
        process.wait_ready()
        with httpx.Client(base_url=process.http, timeout=60) as h:
            for method, path, body in calls:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                    reply = h.request(method, path, json=body, headers=headers)
                    assert reply.status_code == 401, (path, headers)
                    assert reply.headers["WWW-Authenticate"] == "Bearer"
                    assert "bearer token" in str(reply.json()["error"])
                right = h.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
                assert right.status_code == 200, (path, right.text)
            assert h.get("/metrics").status_code == 200  # Prometheus scrapes without a token
        # The Cohere SDK sends its api_key as the bearer token.
        request = {"model": str(tiny_model_dir), "query": "Hi", "documents": ["Hello", "Go away"], "top_n": 1}
        assert len(cohere.ClientV2(api_key=TOKEN, base_url=process.http).rerank(**request).results) == 1
        with pytest.raises(cohere.errors.UnauthorizedError):
            cohere.ClientV2(api_key="wrong", base_url=process.http).rerank(**request)
    finally:
        assert process.stop() == 0
    assert TOKEN not in process.log()
