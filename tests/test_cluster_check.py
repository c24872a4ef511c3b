"""Issue 20: 'dslocal cluster check' against loopback doubles of SGLang and vLLM servers (tests/cluster_double.py)
that answer, refuse (a closed port) and serve the wrong model."""

from __future__ import annotations

import json
import socket

import pytest
from cluster_double import EngineDouble

from dslocal.cluster.check import check_cluster

R1 = "deepseek-ai/DeepSeek-R1"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connections are refused


@pytest.mark.parametrize("flavor", ["sglang", "vllm"])
def test_a_cluster_that_answers(flavor):
    with EngineDouble(flavor, R1, max_model_len=163840) as head:
        report = check_cluster([head.url], model=R1, ctx=32768)
    assert report.ok, report.problems
    assert report.nodes[0].models == ((R1, 163840),) and report.chat.reasoning and report.chat.content == "42"
    posted = [r for r in head.requests if r[0] == "POST"]
    assert [p for _, p, _ in posted] == ["/v1/chat/completions"]


def test_a_node_that_refuses():
    with EngineDouble("sglang", R1) as head:
        report = check_cluster([head.url, closed_port_url()], model=R1)
    assert not report.ok and report.chat.ok, "the head still answers"
    worker = report.nodes[1]
    assert not worker.reachable and "nothing answers" in worker.problems[0]
    alone = check_cluster([closed_port_url()], model=R1)
    assert not alone.ok and alone.chat is None


def test_the_wrong_model_and_a_short_context():
    with EngineDouble("vllm", "deepseek-ai/DeepSeek-V3", max_model_len=163840) as head:
        wrong = check_cluster([head.url], model=R1)
    assert not wrong.ok and wrong.chat is None
    assert "serves deepseek-ai/DeepSeek-V3, not deepseek-ai/DeepSeek-R1" in wrong.problems[0]
    with EngineDouble("sglang", R1, max_model_len=4096) as head:
        short = check_cluster([head.url], model=R1, ctx=32768)
    assert not short.ok and "context of 4096 tokens, less than the plan's 32768" in short.problems[0]


def test_a_reply_without_reasoning_names_the_fix():
    with EngineDouble("sglang", R1, reasoning="") as head:
        report = check_cluster([head.url], model=R1)
    assert not report.ok and "--reasoning-parser" in report.problems[0]


def test_a_starting_node_and_an_api_key():
    with EngineDouble("vllm", R1, api_key="sk-cluster-secret") as head:
        head.starting = True
        starting = check_cluster([head.url], model=R1, api_key="sk-cluster-secret")
        head.starting = False
        refused = check_cluster([head.url], model=R1)
        fine = check_cluster([head.url], model=R1, api_key="sk-cluster-secret")
    assert not starting.ok and "answered 503 (still loading)" in starting.problems[0]
    assert not refused.ok and "refused the API key (401)" in refused.problems[0]
    assert fine.ok, fine.problems


def test_the_cli_reports_and_never_prints_the_key(cli, dslocal_home):
    key = "sk-cluster-secret-7f3a"
    with EngineDouble("sglang", R1, api_key=key) as head:
        ok = cli("cluster", "check", head.url, closed_port_url(), "--model", R1, "--json",
                 env={"DSLOCAL_CLUSTER_API_KEY": key})
        human = cli("cluster", "check", head.url, "--model", "deepseek-ai/DeepSeek-V3", "--api-key", key)
        sent = [h.get("Authorization") for _, _, h in head.requests]
    doc = json.loads(ok.stdout)
    assert ok.returncode == 1 and doc["command"] == "cluster check" and doc["data"]["ok"] is False
    assert doc["data"]["nodes"][0]["healthy"] and doc["data"]["chat"]["ok"] and not doc["data"]["nodes"][1]["reachable"]
    assert human.returncode == 1 and "not deepseek-ai/DeepSeek-V3" in human.stdout and "cluster: NOT ok" in human.stdout
    for failed in (ok, human):  # the report, then one error line; under --json the report is stdout's only document
        assert failed.stderr.startswith("dslocal: error: the cluster check failed: "), failed.stderr
    assert f"Bearer {key}" in sent
    for out in (ok.stdout, ok.stderr, human.stdout, human.stderr):
        assert key not in out and "7f3a" not in out
    bad = cli("cluster", "check", "10.0.0.1:30000")
    assert bad.returncode == 2 and "is not an http(s) URL" in bad.stderr and "Traceback" not in bad.stderr
