"""Quant recipes as data: the packaged ones load, a broken one is refused naming its line, lookups and the CLI."""

from __future__ import annotations

import json
import textwrap

import pytest

from dslocal.errors import ExitCode, NotFoundError
from dslocal.quant.recipes import (
    IMATRIX_TYPES,
    RecipeError,
    find_recipe,
    packaged_files,
    packaged_recipes,
    parse_recipe,
)

GOOD = textwrap.dedent("""\
    name = "test"
    architecture = "deepseek2"
    default_type = "Q4_K"
    imatrix = false

    [[rules]]
    pattern = '\\.ffn_down_exps\\.weight$'
    type = "Q6_K"

    [[rules]]
    pattern = '^blk\\.0\\.'
    type = "q8_0"
    """)


def test_every_packaged_recipe_loads_and_r1_has_its_four_published_variants():
    assert "deepseek2-ud-iq1_s.toml" in packaged_files()
    recipes = {r.name: r for r in packaged_recipes()}
    assert {"R1-UD-IQ1_S", "R1-UD-IQ1_M", "R1-UD-IQ2_XXS", "R1-UD-Q2_K_XL"} <= set(recipes)
    sizes = {n: recipes[n].published_size_gib for n in ("R1-UD-IQ1_S", "R1-UD-IQ1_M", "R1-UD-IQ2_XXS", "R1-UD-Q2_K_XL")}
    assert sizes == {"R1-UD-IQ1_S": 131, "R1-UD-IQ1_M": 158, "R1-UD-IQ2_XXS": 183, "R1-UD-Q2_K_XL": 212}
    # The blog: the first three use an importance matrix, the 212 GB one has no calibration.
    assert [recipes[n].imatrix for n in sizes] == [True, True, True, False]
    assert not recipes["R1-UD-Q2_K_XL"].needs_imatrix()


def test_rules_are_tried_in_order_and_types_are_normalised():
    recipe = parse_recipe(GOOD, "good.toml")
    assert recipe.type_for("blk.0.ffn_down_exps.weight") == "Q6_K"  # the first rule wins over the second
    assert recipe.type_for("blk.0.attn_q_a.weight") == "Q8_0"
    assert recipe.type_for("blk.3.attn_q_a.weight") == "Q4_K"  # the default
    assert [r.line for r in recipe.rules] == [6, 10]


R1 = "quant_recipes/deepseek2-ud-iq1_s.toml"


def test_the_packaged_r1_recipe_gives_the_blogs_types():
    r = find_recipe("R1-UD-IQ1_S")
    assert r.type_for("blk.10.ffn_gate_exps.weight") == "IQ1_S"
    assert r.type_for("blk.3.ffn_down_exps.weight") == "IQ2_XXS"
    assert r.type_for("blk.30.ffn_down_exps.weight") == "IQ1_S"
    assert r.type_for("blk.30.ffn_up_shexp.weight") == "Q6_K"
    assert r.type_for("blk.1.ffn_down.weight") == "Q6_K"
    assert r.type_for("blk.7.attn_kv_b.weight") == "Q6_K"
    assert r.type_for("token_embd.weight") == "Q4_K" and r.type_for("output.weight") == "Q6_K"
    assert r.type_for("blk.5.ffn_gate_inp.weight") == "F32" and r.type_for("blk.5.attn_norm.weight") == "F32"


BROKEN = [
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n[[rules]]\npattern = '('\ntype = 'Q4_K'\n",
     6, "not a regular expression"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n[[rules]]\npattern = 'a'\ntype = 'Q4_KM'\n",
     7, "'Q4_KM' is not a ggml type"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q9'\nimatrix = false\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n",
     3, "'Q9' is not a ggml type"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = 'yes'\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n",
     4, "imatrix must be a boolean"),
    (("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n"
     "\n[[rules]]\npatern = 'b'\ntype = 'Q6_K'\n"), 10, "unknown key 'patern' in rule 2"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n[[rules]]\npattern = 'a'\n",
     5, "rule 1 has no 'type'"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'IQ1_S'\nimatrix = false\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n",
     4, "imatrix = false, but the recipe names IQ1_S"),
    ("name = 'x'\narchitecture = 'deepseek2'\nimatrix = false\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n",
     1, "the recipe has no 'default_type'"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n", 1, "at least one [[rules]]"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\n[[rules]\n", 5, "not valid TOML"),
    ("name = 'x'\narchitecture = 'deepseek2'\ndefault_type = 'Q4_K'\nimatrix = false\nsize = 3\n[[rules]]\npattern = 'a'\ntype = 'Q4_K'\n",
     5, "unknown key 'size' in the recipe"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BROKEN)
def test_a_broken_recipe_is_refused_naming_the_line_at_fault(text, line, problem):
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, "bad.toml")
    assert info.value.message.startswith(f"bad.toml:{line}: "), info.value.message
    assert problem in info.value.message
    assert info.value.exit_code == ExitCode.INPUT and info.value.hint


def test_find_recipe_by_name_stem_or_path(tmp_path):
    assert find_recipe("r1-ud-iq1_m").name == "R1-UD-IQ1_M"
    assert find_recipe("deepseek2-ud-q2_k_xl").name == "R1-UD-Q2_K_XL"
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert find_recipe(str(path)).name == "test"
    with pytest.raises(NotFoundError, match="no quant recipe named 'nope'"):
        find_recipe("nope")


def test_imatrix_types_are_the_ones_llama_cpp_lists():
    # the types llama.cpp refuses without an imatrix; the test of that refusal in
    # llama.cpp itself is tests/test_quant_recipes_apply.py::test_llama_cpp_refuses_exactly_these_without_an_imatrix
    assert IMATRIX_TYPES == {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"}


def test_cli_ls_and_show(cli, dslocal_home):
    ls = cli("recipe", "ls", "--json")
    assert ls.returncode == 0, ls.stderr
    doc = json.loads(ls.stdout)
    assert doc["command"] == "recipe ls"
    names = [r["name"] for r in doc["data"]["recipes"]]
    assert "R1-UD-IQ1_S" in names
    show = cli("recipe", "show", "R1-UD-Q2_K_XL", "--json")
    data = json.loads(show.stdout)["data"]
    assert data["imatrix"] is False and data["rules"][0]["type"] == "F32" and data["rules"][0]["line"] > 1
    human = cli("recipe", "show", "R1-UD-IQ1_S")
    assert "first match wins" in human.stdout and "IQ2_XXS" in human.stdout


def test_cli_refuses_a_broken_recipe_file_in_one_line(cli, dslocal_home, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN[1][0])
    run = cli("recipe", "show", str(bad))
    assert run.returncode == ExitCode.INPUT
    assert "Traceback" not in run.stderr
    assert f"{bad}:7: 'Q4_KM' is not a ggml type" in run.stderr.splitlines()[0]
    missing = cli("recipe", "show", "nope")
    assert missing.returncode == ExitCode.NOT_FOUND and "dslocal recipe ls" in missing.stderr
