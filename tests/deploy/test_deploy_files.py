"""The monitoring and deployment files, checked by the tools that run them: promtool, docker-compose, hadolint,
kubernetes-validate (installed by `make test`), and against the metrics catalogue."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from services.controller.loop_config import LoopConfig
from tests.fixtures.metrics_catalogue import all_metrics, metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
REWARD_REPLICAS = "dns:///reward-headless.rlhf-loop.svc.cluster.local:50051"
JOBS = {"rlhf-reward", "rlhf-policy", "rlhf-backend", "rlhf-controller"}
# Grafana's own variables, given values promtool accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is installed by `make test` (see the Makefile's tools target)"
    return found


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_prometheus_config_and_alert_rules_pass_promtool(tmp_path):
    promtool = tool("promtool")
    run(promtool, "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    run(promtool, "check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    tested = run(promtool, "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in tested.stdout
    # The compose stack's copy scrapes the same jobs, by service name, with the same rules.
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path)
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path)
    run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    for path in (DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"):
        assert {job["job_name"] for job in yaml.safe_load(path.read_text())["scrape_configs"]} == JOBS


def test_every_alert_is_tested_and_reads_only_catalogued_metrics():
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == {r["alert"] for r in rules}  # each alert is shown to fire in alerts_test.yml
    known = set(all_metrics())
    for rule in rules:
        assert metric_names(rule["expr"]) <= known, rule["alert"]


def dashboard_targets(dashboard: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_have_what_grafana_requires_and_only_valid_promql_on_exported_metrics(path, tmp_path):
    dashboard = json.loads(path.read_text())
    for field in ("uid", "title", "panels", "schemaVersion", "time"):
        assert field in dashboard, field
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "gridPos", "targets"} <= set(panel), panel.get("title")
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == uid and panel["targets"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    # promtool parses every expression (as recording rules); Grafana's variables get sample values.
    exprs = dashboard_targets(dashboard)
    rules = []
    for i, (_, expr) in enumerate(exprs):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:panel_{i}", "expr": expr})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": dashboard["uid"], "rules": rules}]}))
    run(tool("promtool"), "check", "rules", str(rule_file))
    known = set(all_metrics()) | {"up"}
    for title, expr in exprs:
        used = metric_names(expr) | ({"up"} if re.search(r"\bup\{", expr) else set())
        assert used and used <= known, (title, used - known)


def test_the_dashboards_cover_what_users_watch():
    used = {name for path in DASHBOARDS for _, e in dashboard_targets(json.loads(path.read_text())) for name in
            metric_names(e)}  # fmt: skip
    for metric in ("rlhf_reward_requests_total", "rlhf_reward_request_duration_seconds", "rlhf_reward_batch_size",
                   "rlhf_reward_queue_depth", "rlhf_policy_tokens_per_second", "rlhf_reward_model_info",
                   "rlhf_policy_model_info", "rlhf_loop_stage", "rlhf_loop_rankings_collected",
                   "rlhf_loop_annotator_agreement", "rlhf_loop_reward_model_accuracy", "rlhf_loop_policy_win_rate",
                   "rlhf_loop_kl", "rlhf_loop_gold_win_rate", "rlhf_loop_decisions_total"):  # fmt: skip
        assert metric in used, metric


def test_grafana_provisioning_points_at_the_mounted_dashboards():
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "rlhf-loop.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_the_compose_stack_validates(tmp_path):
    result = run(tool("docker-compose"), "-f", str(DEPLOY / "compose" / "docker-compose.yml"),
                 "--env-file", str(DEPLOY / "compose" / "example.env"), "config")  # fmt: skip
    stack = yaml.safe_load(result.stdout)["services"]
    assert set(stack) == {"postgres", "labelstudio", "backend", "reward", "policy", "controller", "prometheus",
                          "grafana"}  # fmt: skip
    # The backend and the controller share the store through PostgreSQL, not a volume of SQLite files.
    for writer in ("backend", "controller"):
        assert stack[writer]["environment"]["PGPASSWORD"] == "change-me-postgres-password"
        assert stack[writer]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert not any("preference" in str(v) for v in stack[writer].get("volumes", []))
    assert "postgresql://rlhf@postgres:5432/rlhf" in stack["backend"]["command"]
    for gpu_service in ("reward", "policy"):
        (device,) = stack[gpu_service]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        assert stack[gpu_service]["healthcheck"]["test"][:2] == ["CMD", "rlhf-loop"]  # gRPC health
    assert stack["labelstudio"]["environment"]["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    # Without the secrets, compose refuses to start rather than running with defaults.
    refused = subprocess.run([tool("docker-compose"), "-f", str(DEPLOY / "compose" / "docker-compose.yml"), "config"],
                             cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "in .env" in refused.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/compose/labelstudio.Dockerfile"])
def test_the_dockerfiles_lint_clean(dockerfile):
    run(tool("hadolint"), "--failure-threshold", "style", dockerfile)


def test_kubernetes_manifests_validate_strictly():
    manifests = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    run(tool("kubernetes-validate"), "--strict", *manifests)
    kinds = {(d["kind"], d["metadata"]["name"]) for p in manifests for d in yaml.safe_load_all(Path(p).read_text())}
    for part in ("reward", "policy", "backend", "controller", "labelstudio"):
        assert ("Deployment", part) in kinds and ("Service", part) in kinds
    # The shared state is a database with its own ReadWriteOnce volume. Only the model registries are
    # ReadWriteMany: the reward replicas share theirs, and so do the nodes of a policy training job.
    assert ("StatefulSet", "postgres") in kinds and ("Service", "postgres") in kinds
    documents = [d for p in manifests for d in yaml.safe_load_all(Path(p).read_text())]
    claims = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    claims |= {t["metadata"]["name"]: t["spec"] for d in documents if d["kind"] == "StatefulSet"
               for t in d["spec"]["volumeClaimTemplates"]}  # fmt: skip
    shared = {name for name, claim in claims.items() if claim["accessModes"] == ["ReadWriteMany"]}
    assert shared == {"reward-registry", "policy-registry"}
    assert all(claims[name]["accessModes"] == ["ReadWriteOnce"] for name in set(claims) - shared)
    for gpu_part in ("reward", "policy"):
        (deployment,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{gpu_part}.yaml").read_text())
                         if d["kind"] == "Deployment"]  # fmt: skip
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["readinessProbe"]["grpc"]["port"] == container["ports"][0]["containerPort"]


def test_the_deployed_loop_configs_are_valid_loop_configs(tmp_path):
    (config_map,) = yaml.safe_load_all((DEPLOY / "k8s" / "loop-config.yaml").read_text())
    k8s_config = tmp_path / "loop.toml"
    k8s_config.write_text(config_map["data"]["loop.toml"])
    for path in (k8s_config, DEPLOY / "compose" / "loop.toml"):
        config = LoopConfig.from_toml(path)
        config.validate()  # a deployed (non-simulated) config must name its prompts file
        assert config.metrics_port == 9466 and config.metrics_host == "0.0.0.0"
    # Compose runs one reward process; Kubernetes runs replicas, which the loop reaches through DNS.
    assert tomllib.loads((DEPLOY / "compose" / "loop.toml").read_text())["reward_url"] == "reward:50051"
    assert tomllib.loads(k8s_config.read_text())["reward_url"] == REWARD_REPLICAS


def test_the_reward_replicas_sit_behind_a_headless_service_with_a_disruption_budget():
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "reward.yaml").read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 3 and deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    (headless,) = [d for d in documents if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"]
    assert headless["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert f"dns:///{headless['metadata']['name']}.rlhf-loop.svc.cluster.local:50051" == REWARD_REPLICAS
    (budget,) = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] < replicas
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == "reward-registry"
    # Every client of the reward service balances over the replicas.
    for part in ("policy", "backend"):
        (client,) = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{part}.yaml").read_text())
                     if d["kind"] == "Deployment"]  # fmt: skip
        args = client["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--reward-url") + 1] == REWARD_REPLICAS, part
