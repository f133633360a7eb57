"""Credentials across the stack: TLS + bearer tokens on every RPC, basic auth and a webhook secret on the backend."""

import base64
import json
import urllib.error
import urllib.request

import grpc
import pytest
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.proto.rlhf.v1 import policy_pb2, reward_pb2
from services.rpc.client import GrpcClient
from services.tools.service_process import ServiceProcess
from tests.fixtures.certificates import self_signed_certificate

pytestmark = pytest.mark.integration

TOKEN = "grpc-token-7d2a91"
PASSWORD = "backend-pass-3c8e"
SECRET = "webhook-secret-b41f"


@pytest.fixture(scope="module")
def secured(tiny_model_dir, tmp_path_factory):
    """Reward and policy over TLS with a bearer token; the backend with basic auth and a webhook secret."""
    root = tmp_path_factory.mktemp("secured")
    cert, key = self_signed_certificate(root)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    env = {"RLHF_LOOP_AUTH_TOKEN": TOKEN}
    reward = ServiceProcess(
        "reward", ["--registry", str(root / "r"), "--model", str(tiny_model_dir), *tls], root / "r.log", env=env
    )
    policy = ServiceProcess(
        "policy", ["--registry", str(root / "p"), "--model", str(tiny_model_dir), *tls], root / "p.log", env=env
    )
    backend = ServiceProcess(
        "backend",
        ["--store", f"sqlite:///{root / 'prefs.db'}", "--reward-url", reward.target, "--basic-auth-user", "ls"],
        root / "b.log", env={"RLHF_LOOP_BACKEND_PASSWORD": PASSWORD, "RLHF_LOOP_WEBHOOK_SECRET": SECRET},
    )  # fmt: skip
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    for process in (reward, policy):
        with GrpcClient(process.target, tls_ca=cert) as client:
            client.wait_ready(300)
    backend.wait_ready()
    yield {"RewardService": reward, "PolicyService": policy, "backend": backend, "credentials": credentials,
           "root": root}  # fmt: skip
    for process in (backend, policy, reward):
        process.stop()


def methods():
    return [
        pytest.param(service, method, id=f"{service.name}.{method.name}")
        for module, name in ((reward_pb2, "RewardService"), (policy_pb2, "PolicyService"))
        for service in [module.DESCRIPTOR.services_by_name[name]]
        for method in service.methods
    ]


def call(channel, service, method, metadata) -> grpc.StatusCode:
    path = f"/{service.full_name}/{method.name}"
    request = GetMessageClass(method.input_type)()
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    stub = kind(path, type(request).SerializeToString, GetMessageClass(method.output_type).FromString)
    try:
        reply = stub(request, timeout=10, metadata=metadata)
        if method.server_streaming:
            list(reply)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("service, method", methods())
def test_every_rpc_refuses_a_missing_or_wrong_token_over_tls(secured, service, method):
    with grpc.secure_channel(secured[service.name].target, secured["credentials"]) as channel:
        assert call(channel, service, method, None) == grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, service, method, (("authorization", "Bearer wrong"),)) == grpc.StatusCode.UNAUTHENTICATED
        assert call(channel, service, method, (("authorization", TOKEN),)) == grpc.StatusCode.UNAUTHENTICATED
        # With the token the call gets past authentication (to whatever the empty request deserves).
        allowed = call(channel, service, method, (("authorization", f"Bearer {TOKEN}"),))
        assert allowed != grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("name", ["RewardService", "PolicyService"])
def test_health_needs_no_token_and_plaintext_is_refused(secured, name):
    target = secured[name].target
    with grpc.secure_channel(target, secured["credentials"]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(target) as plaintext:
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def request(url: str, body: bytes | None = None, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers or {}), timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_backend_lets_in_only_the_right_password(secured):
    url = secured["backend"].http
    assert request(f"{url}/versions", headers={"Authorization": basic("ls", PASSWORD)}) != 401
    assert request(f"{url}/health") == 200  # Label Studio's health probe needs no credentials
    assert request(f"{url}/metrics") == 200  # nor Prometheus, as on the services' metrics ports

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(header=st.one_of(
        st.text(max_size=60).filter(lambda h: h.isascii() and h.isprintable()),
        st.builds(basic, st.sampled_from(["ls", "admin", ""]), st.text(max_size=20).filter(lambda p: p != PASSWORD)
                  .filter(lambda p: p.isascii())),
    ))  # fmt: skip
    def intruder(header):
        assert request(f"{url}/versions", headers={"Authorization": header}) == 401
        assert request(f"{url}/predict", b"{}", {"Authorization": header, "Content-Type": "application/json"}) == 401

    intruder()


def test_webhooks_need_the_shared_secret(secured):
    url = f"{secured['backend'].http}/webhook"
    body = json.dumps({"action": "START_TRAINING", "project": {"id": 1}}).encode()
    headers = {"Authorization": basic("ls", PASSWORD), "Content-Type": "application/json"}
    assert request(url, body, headers) == 401
    assert request(url, body, {**headers, "X-Rlhf-Loop-Webhook-Secret": "guess"}) == 401
    assert request(url, body, {**headers, "X-Rlhf-Loop-Webhook-Secret": SECRET}) == 200


def test_no_credential_reaches_a_log_or_a_metric(secured):
    """After the refused and accepted calls above (this test runs last in the module)."""
    texts = [path.read_text(errors="replace") for path in secured["root"].glob("*.log")]
    texts.append(urllib.request.urlopen(
        urllib.request.Request(f"{secured['backend'].http}/metrics", headers={"Authorization": basic("ls", PASSWORD)}),
        timeout=10).read().decode())  # fmt: skip
    assert len(texts) == 4
    for secret in (TOKEN, PASSWORD, SECRET, base64.b64encode(f"ls:{PASSWORD}".encode()).decode()):
        assert not any(secret in text for text in texts)
