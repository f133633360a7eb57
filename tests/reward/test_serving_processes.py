"""`serve reward --processes N`: N processes on one gRPC port, each with its own HTTP port, stopped as one."""

import asyncio
import time
import urllib.request

import grpc
import psutil

from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.tools.service_process import ServiceProcess


def start_two(tmp_path) -> tuple[ServiceProcess, list[str]]:
    service = ServiceProcess(
        "reward", ["--registry", str(tmp_path / "registry"), "--null-model", "--processes", "2"], tmp_path / "log"
    )
    service.wait_ready()
    https = [f"http://127.0.0.1:{service.metrics_port + i}" for i in range(2)]
    deadline = time.monotonic() + 60
    while True:  # the companion binds its ports once its model is loaded
        try:
            urllib.request.urlopen(f"{https[1]}/metrics", timeout=2).close()
            return service, https
        except OSError:
            assert time.monotonic() < deadline, service.log()
            time.sleep(0.2)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def scored(http: str) -> float:
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("rlhf_reward_items_scored"))


async def score_over_connections(target: str, connections: int) -> list[list[float]]:
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per channel, not one shared
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(prompt="Hi", response="Hello!")])
    try:
        replies = await asyncio.gather(
            *(reward_pb2_grpc.RewardServiceStub(c).Score(request, timeout=30) for c in channels)
        )
    finally:
        for channel in channels:
            await channel.close()
    return [list(reply.scores) for reply in replies]


def test_processes_share_the_grpc_port_and_each_has_its_own_http_port(tmp_path):
    service, https = start_two(tmp_path)
    try:
        assert asyncio.run(score_over_connections(service.target, 16)) == [[6.0]] * 16
        # The kernel spread the 16 connections over both processes (all on one: a chance of 2 in 65536).
        counts = [scored(http) for http in https]
        assert sum(counts) == 16 and min(counts) > 0
        assert len(list((tmp_path / "registry" / "replicas").glob("*.json"))) == 2  # a replica each
        processes = [service.process.pid, *(p.pid for p in psutil.Process(service.process.pid).children())]
    finally:
        assert service.stop() == 0, service.log()
    deadline = time.monotonic() + 30  # multiprocessing's resource tracker leaves once its parent has
    while any(running(pid) for pid in processes):
        assert time.monotonic() < deadline, [pid for pid in processes if running(pid)]
        time.sleep(0.1)


def test_a_companion_that_dies_stops_the_whole_group_with_an_error(tmp_path):
    service, _ = start_two(tmp_path)
    try:
        companion = next(
            p for p in psutil.Process(service.process.pid).children() if "spawn_main" in " ".join(p.cmdline())
        )
        companion.kill()
        assert service.process.wait(timeout=60) == 1
    finally:
        service.stop()
    assert "companion-1" in service.log() and "exited with code -9" in service.log()
