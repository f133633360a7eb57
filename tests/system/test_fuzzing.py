"""Property-based fuzzing of every RPC and the HTTP endpoints (backend, reward APIs), against the real processes.

Every call must end in a defined status -- never UNKNOWN or INTERNAL, never an
HTTP 5xx -- and the services must still answer health afterwards. Hypothesis
runs derandomized (the same examples every run) and bounded in examples.
"""

import json
import math
import urllib.error
import urllib.request

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelstudio_backend.preference_store import PreferenceStore
from labelstudio_backend.templates import TEMPLATES
from services.proto.rlhf.v1 import policy_pb2, reward_pb2
from services.rpc.client import GrpcClient
from tests.fixtures.tiny_stack import start_tiny_stack

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
UNDEFINED = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1), FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}  # fmt: skip
# Short strings, unicode of every kind, and strings far over any length limit.
TEXT = st.one_of(st.text(max_size=40), st.builds(lambda c, n: c * n, st.characters(), st.integers(10_000, 200_000)))


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_STRING:
        return TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)  # any bytes, invalid UTF-8 included
    if field.type in INTS:
        low, high = INTS[field.type]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, 1]))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
        return st.one_of(st.floats(width=width), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0]))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    raise AssertionError(f"no strategy for field type {field.type}")


def message(descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of this type with any subset of fields set to hostile values; empty repeated fields included."""
    fields = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry.GetOptions().map_entry:
                key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
                fields[field.name] = st.dictionaries(scalar(key), scalar(value), max_size=3)
                continue
            value = message(entry, depth + 1) if depth < 3 else st.just({})
        else:
            value = scalar(field)
        fields[field.name] = st.lists(value, max_size=4) if field.is_repeated else value
    return st.fixed_dictionaries({}, optional=fields)


def build(cls, values: dict):
    instance = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                getattr(instance, name).extend(value)
            else:
                setattr(instance, name, value)
        elif field.message_type.GetOptions().map_entry:
            getattr(instance, name).update(value)
        elif field.is_repeated:
            for item in value:
                getattr(instance, name).add().CopyFrom(build(GetMessageClass(field.message_type), item))
        else:
            getattr(instance, name).CopyFrom(build(GetMessageClass(field.message_type), value))
    return instance


def rpcs(module, service_name: str) -> list:
    service = module.DESCRIPTOR.services_by_name[service_name]
    return [pytest.param(service, method, id=f"{service_name}.{method.name}") for method in service.methods]


@pytest.fixture(scope="module")
def processes(tiny_model_dir, tmp_path_factory):
    reward, policy, backend, store = start_tiny_stack(tmp_path_factory.mktemp("fuzz"), tiny_model_dir)
    yield {"RewardService": reward, "PolicyService": policy, "backend": backend, "store": PreferenceStore(store)}
    for process in (backend, policy, reward):
        process.stop()


def call(target: str, service, method, request) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        path = f"/{service.full_name}/{method.name}"
        serialize, output = type(request).SerializeToString, GetMessageClass(method.output_type).FromString
        try:
            if method.server_streaming:
                for _ in channel.unary_stream(path, serialize, output)(request, timeout=3):
                    pass
            else:
                channel.unary_unary(path, serialize, output)(request, timeout=3)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("service, method", rpcs(reward_pb2, "RewardService") + rpcs(policy_pb2, "PolicyService"))
def test_every_rpc_answers_hostile_requests_with_a_defined_status(processes, service, method):
    process = processes[service.name]
    request_class = GetMessageClass(method.input_type)
    seen = set()

    @FUZZ
    @given(values=message(method.input_type))
    def fuzz(values):
        code = call(process.target, service, method, build(request_class, values))
        seen.add(code)
        assert code not in UNDEFINED, (method.full_name, values)

    fuzz()
    assert seen  # the property ran
    with GrpcClient(process.target) as client:
        client.wait_ready(30)  # and the service still answers health


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def post(url: str, body: bytes, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("path", ["/predict", "/webhook", "/setup"])
def test_backend_endpoints_answer_random_and_malformed_json_without_5xx(processes, path):
    url = processes["backend"].http + path

    @FUZZ
    @given(body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                          st.fixed_dictionaries({"tasks": JSON, "action": JSON, "label_config": JSON}).map(
                              lambda v: json.dumps(v).encode())))  # fmt: skip
    def fuzz(body):
        assert post(url, body) < 500, body

    fuzz()
    with urllib.request.urlopen(processes["backend"].http + "/health", timeout=10) as reply:
        assert reply.status == 200


# The reward service's HTTP APIs: a valid body each, and the other fields each reads.
REWARD_HTTP = {
    "/get_reward": ({"query": ["Hi Hello"], "prompts": ["Hi "], "labels": [""]}, ()),
    "/classify": ({"input": ["Hi Hello"], "use_activation": False}, ("model", "messages", "activation")),
    "/pooling": ({"input": "Hi Hello", "task": "classify", "encoding_format": "float"}, ("model", "messages")),
    "/score": ({"text_1": "Hi", "text_2": ["Hello", "Go away"]}, ("model", "queries", "documents", "use_activation")),
    "/rerank": ({"query": "Hi", "documents": ["Hello", {"text": "Go away"}], "top_n": 1}, ("model", "rank_fields")),
    "/v2/rerank": ({"query": "Hi", "documents": ["Hello"], "return_documents": False}, ("model", "use_activation")),
}
HOSTILE = st.one_of(
    JSON,
    TEXT,
    st.lists(TEXT, max_size=4),
    st.lists(st.just("x"), min_size=250, max_size=300),  # about the 256-items limit
    st.lists(st.fixed_dictionaries({}, optional={"role": JSON | TEXT, "content": JSON | TEXT}), max_size=3),
    st.lists(st.fixed_dictionaries({}, optional={"text": JSON | TEXT, "type": JSON}), max_size=3),
)


@st.composite
def one_field_off(draw, valid: dict, fields: list[str]) -> dict:
    """A valid body with one field dropped or given a hostile value."""
    body, name = dict(valid), draw(st.sampled_from(fields))
    if draw(st.booleans()):
        body.pop(name, None)
    else:
        body[name] = draw(HOSTILE)
    return body


@pytest.mark.parametrize("path", list(REWARD_HTTP))
def test_reward_http_apis_answer_random_and_malformed_json_without_5xx(processes, path):
    http = processes["RewardService"].http
    valid, extra = REWARD_HTTP[path]
    fields = [*valid, *extra]
    anything = st.fixed_dictionaries({}, optional=dict.fromkeys(fields, HOSTILE))
    bodies = st.one_of(JSON, anything, one_field_off(valid, fields))
    seen = set()

    @FUZZ
    @given(body=st.one_of(bodies.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
    def fuzz(body):
        status = post(http + path, body)
        seen.add(status)
        assert status < 500, body

    fuzz()
    assert post(http + path, json.dumps(valid).encode()) == 200
    assert 200 in seen and 400 in seen, seen  # the property reached the model and the checks both
    with urllib.request.urlopen(http + "/v1/models", timeout=10) as reply:  # and the service still answers
        assert reply.status == 200


def real_payload() -> dict:
    """An ANNOTATION_CREATED delivery in the shape a real Label Studio 1.23 sends, for a Ranker project."""
    candidates = [{"id": f"c{i}", "body": f"answer {i}"} for i in range(3)]
    result = [{"type": "ranker", "from_name": "rank", "to_name": "candidates",
               "value": {"ranker": {"rank": ["c2", "c0", "c1"]}}}]  # fmt: skip
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 7, "label_config": TEMPLATES["ranker"].label_config},
        "task": {"id": 70, "data": {"prompt": "Say hi", "candidates": candidates}},
        "annotation": {"id": 700, "result": result, "completed_by": 3, "was_cancelled": False},
    }


BREAKING = [
    # fields dropped
    ("annotation", "result"), ("annotation", "id"), ("task", "id"), ("task", "data"), ("project", "id"),
    ("task", "data", "candidates"), ("annotation", "result", 0, "value"),
]  # fmt: skip
WRONG_TYPES = [None, "7", 7.5, [], {}, True, "x" * 100]


def dig(payload: dict, path: tuple):
    for key in path[:-1]:
        payload = payload[key]
    return payload, path[-1]


@st.composite
def mutated(draw):
    payload = real_payload()
    kind = draw(st.sampled_from(["drop", "retype", "swap"]))
    if kind == "swap":  # the annotation arrives with another task, whose candidates it does not rank
        payload["task"] = {"id": 71, "data": {"prompt": "Other", "candidates": [{"id": "d0", "body": "x"},
                                                                               {"id": "d1", "body": "y"}]}}  # fmt: skip
        return payload
    container, key = dig(payload, draw(st.sampled_from(BREAKING)))
    if kind == "drop":
        del container[key]
    else:
        container[key] = draw(st.sampled_from([v for v in WRONG_TYPES if type(v) is not type(container[key])]))
    return payload


def test_mutated_real_webhook_payloads_are_never_stored_and_never_crash(processes):
    url = processes["backend"].http + "/webhook"
    assert post(url, json.dumps(real_payload()).encode()) == 200  # the unmutated payload is stored ...
    assert [p.annotation_id for p in processes["store"].all(7)] == [700]
    processes["store"].delete(700)

    @FUZZ
    @given(payload=mutated())
    def fuzz(payload):
        status = post(url, json.dumps(payload).encode())
        assert 400 <= status < 500, payload
        assert processes["store"].all() == []  # ... a mutated one never

    fuzz()
