"""list, recommend and show as a person reads them (newcomer trial A11, B1, B2, B6)."""

from __future__ import annotations

import json

from ollama_double import run_ollama


def test_list_recommend_and_plan_use_the_running_servers_version(cli, dslocal_home, tmp_path):
    with run_ollama(tmp_path / "store", "0.5.7") as ollama:
        env = {"OLLAMA_HOST": ollama.url.removeprefix("http://")}
        for command in (["list"], ["recommend"]):
            data = json.loads(cli(*command, "--json", env=env).stdout)["data"]
            assert data["ollama_version"] == "0.5.7", command
            other = json.loads(cli(*command, "--hw", "rtx4090-64gb", "--json", env=env).stdout)["data"]
            assert other["ollama_version"] == "0.5.7", "as plan does, and as --help says"
            pinned = json.loads(cli(*command, "--ollama-version", "0.32.15", "--json", env=env).stdout)["data"]
            assert pinned["ollama_version"] == "0.32.15"


def test_tables_have_headers_and_columns_line_up(cli, dslocal_home):
    env = {"OLLAMA_HOST": "127.0.0.1:9"}
    listing = cli("list", "--hw", "rtx4090-64gb", env=env).stdout.splitlines()
    assert listing[0].split()[:4] == ["FITS", "ID", "ALIAS", "SIZE"]
    assert all(line.split()[0] in ("yes", "no") for line in listing[1:])
    ranking = cli("recommend", "--hw", "rtx4090-64gb", "--all", env=env).stdout.splitlines()
    header, rows = ranking[0], [r for r in ranking[1:] if r[:3].strip().rstrip(".").isdigit()]
    column = header.index("VARIANT")
    assert len(rows) > 10 and all(row[column - 1] == " " and row[column] != " " for row in rows), rows


def test_show_keeps_research_notes_out_of_the_human_output(cli, dslocal_home):
    out = cli("show", "r1-671b-q2").stdout
    assert "Unsloth calls it" not in out and "tree listing" not in out
    assert "approximate" in out
    data = json.loads(cli("show", "r1-671b-q2", "--json").stdout)["data"]
    assert data["size_source"].startswith("approx"), "the detail stays in --json"


def test_speeds_are_never_in_scientific_notation(cli, dslocal_home):
    """Newcomer trial B4: 'prefill ~4.72e+03 tok/s' on 2x H100."""
    import re

    from dslocal.units import format_rate

    assert [format_rate(x) for x in (0.291, 5.07, 35.84, 4719.4, 60612.0)] == ["0.29", "5.1", "35.8", "4,719", "60,612"]
    env = {"OLLAMA_HOST": "127.0.0.1:9"}
    for args in (["plan", "r1-distill-qwen-1.5b", "--hw", "2xh100-512gb"], ["recommend", "--hw", "2xh100-512gb", "--all"],
                 ["list", "--hw", "2xh100-512gb"]):
        out = cli(*args, env=env).stdout
        assert not re.search(r"\d[eE][+-]\d", out), (args, out)


def test_cluster_plans_follow_the_model_and_the_machine(cli, dslocal_home):
    """Newcomer trial A8: the FP8 plan used a made-up 8 x H100 node, and --cluster planned any model."""
    env = {"OLLAMA_HOST": "127.0.0.1:9"}
    node = json.loads(cli("plan", "r1-671b-fp8", "--hw", "8xh20-2tb", "--json", env=env).stdout)["data"]
    assert (node["nodes"], node["gpus_per_node"], node["gpu"], node["fits"]) == (1, 8, "H20", False)
    assert node["sglang"] == [] and node["vllm"] == [], "no launch commands for a cluster that cannot hold it"
    two = json.loads(cli("plan", "r1-671b-fp8", "--cluster", "2x8xH20", "--json", env=env).stdout)["data"]
    assert two["fits"] and all("--model-path deepseek-ai/DeepSeek-R1 " in c for c in two["sglang"])
    wrong = cli("plan", "r1-distill-qwen-7b", "--cluster", "2x8xH20", env=env)
    assert wrong.returncode == 2 and "not one" in wrong.stderr and "Traceback" not in wrong.stderr
    nogpu = cli("plan", "r1-671b-fp8", "--hw", "cpu-only-32gb", env=env)
    assert nogpu.returncode == 2 and "--cluster" in nogpu.stderr


def test_plan_output_in_plain_words_and_a_short_exact_ot_pattern(cli, dslocal_home):
    """Newcomer trial B5: jargon, a paragraph for num_gpu, a 43-number regex printed twice."""
    import re

    from dslocal.planner.fit import number_range_regex

    for first, last in ((0, 60), (9, 60), (3, 7), (58, 60), (95, 112)):
        pattern = re.compile(rf"blk\.({number_range_regex(first, last)})\.ffn_up_exps\.weight")
        assert [n for n in range(130) if pattern.fullmatch(f"blk.{n}.ffn_up_exps.weight")] == list(range(first, last + 1))
    out = cli("plan", "r1-0528-iq1s", "--hw", "rtx4090-64gb", env={"OLLAMA_HOST": "127.0.0.1:9"}).stdout
    assert "(mmap)" not in out.splitlines()[0] and "streaming weights from disk" in out.splitlines()[0]
    assert out.count("ffn_.*_exps") == 1 and 'blk\\.(9|[1-5][0-9]|60)\\.' in out
    assert max(len(line) for line in out.splitlines() if line.startswith("num_gpu")) < 80
    nogpu = cli("plan", "r1-671b-q4", "--hw", "cpu-only-32gb", env={"OLLAMA_HOST": "127.0.0.1:9"}).stdout
    assert "beyond the GPUs" not in nogpu


def test_one_node_cluster_specs_are_understood():
    """Newcomer trial A8: '--cluster 8xH200' (one node) was 'not a cluster spec'."""
    from dslocal.planner.cluster import parse_cluster

    for text in ("8xH200", "8 H200", "1x8xH200", "1 node x 8 H200"):
        spec = parse_cluster(text)
        assert (spec.nodes, spec.gpus_per_node, spec.gpu) == (1, 8, "H200"), text


def test_show_says_when_no_template_is_written(cli, dslocal_home):
    out = cli("show", "v4-flash-q2").stdout
    line = next(x for x in out.splitlines() if x.startswith("template"))
    assert "runs: gguf" in line and "no TEMPLATE" in line and "can do more" not in line
