"""Extract the command-line flag names of SGLang and vLLM from their own sources, statically.

The sources are read, never imported (they need torch and a GPU). Run it on an unpacked
wheel of each engine and commit the result:

    pip download sglang==0.5.23 --no-deps -d /tmp/sgl && (cd /tmp/sgl && unzip -q sglang-*.whl)
    python tools/extract_engine_flags.py sglang /tmp/sgl 0.5.23 > dslocal/cluster/engine_flags/sglang.txt
    pip download vllm==0.33.0 --no-deps --only-binary :all: -d /tmp/vllm && (cd /tmp/vllm && unzip -q vllm-*.whl)
    python tools/extract_engine_flags.py vllm /tmp/vllm 0.33.0 > dslocal/cluster/engine_flags/vllm.txt

What counts as a flag:
* every string starting with ``-`` passed positionally to an ``add_argument(...)`` call;
* SGLang: every dataclass field annotated ``A[T, "help"]`` or ``A[T, Arg(...)]`` (its ``--field-name``,
  or ``Arg(cli_name=...)``, plus ``Arg(aliases=[...])``), unless ``Arg(no_cli=True)``
  (sglang/srt/arg_groups/arg_utils.py: add_cli_args_from_dataclass);
* vLLM: every field of the frontend argument classes in entrypoints/common/cli_args.py
  (``--field-name``: BaseFrontendArgs.add_cli_args).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [s for item in node.elts for s in _strings(item)]
    return []


def add_argument_flags(tree: ast.AST) -> set[str]:
    flags = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags.update(s for arg in node.args for s in _strings(arg) if s.startswith("-"))
    return flags


def _arg_call(annotation: ast.AST) -> ast.Call | None | bool:
    """The Arg(...) call of an ``A[T, ...]`` annotation; True for a bare help string; None when not one."""
    if not (isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "A"):
        return None
    parts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    for part in parts[1:]:
        if isinstance(part, ast.Call) and getattr(part.func, "id", None) == "Arg":
            return part
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            return True
    return None


def sglang_field_flags(tree: ast.AST) -> set[str]:
    flags = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        meta = _arg_call(node.annotation)
        if meta is None:
            continue
        keywords = {k.arg: k.value for k in meta.keywords} if isinstance(meta, ast.Call) else {}
        if isinstance(keywords.get("no_cli"), ast.Constant) and keywords["no_cli"].value is True:
            continue
        cli = _strings(keywords["cli_name"]) if "cli_name" in keywords else []
        flags.add(cli[0] if cli else "--" + node.target.id.replace("_", "-"))
        flags.update(_strings(keywords.get("aliases", ast.List(elts=[]))))
    return flags


def vllm_frontend_flags(tree: ast.AST) -> set[str]:
    flags = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name.endswith("FrontendArgs"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    flags.add("--" + item.target.id.replace("_", "-"))
    return flags


FILES = {
    "sglang": ["sglang/srt/server_args.py", "sglang/srt/arg_groups/fields/*.py"],
    "vllm": ["vllm/engine/arg_utils.py", "vllm/entrypoints/common/cli_args.py", "vllm/entrypoints/openai/cli_args.py",
             "vllm/entrypoints/cli/serve.py"],
}


def extract(engine: str, root: Path) -> tuple[set[str], list[str]]:
    flags: set[str] = set()
    read = []
    for pattern in FILES[engine]:
        for path in sorted(root.glob(pattern)):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            flags |= add_argument_flags(tree)
            flags |= sglang_field_flags(tree) if engine == "sglang" else vllm_frontend_flags(tree)
            read.append(str(path.relative_to(root)))
    return flags, read


def main(engine: str, root: str, version: str) -> None:
    flags, read = extract(engine, Path(root))
    print(f"# {engine} {version}: flag names extracted by tools/extract_engine_flags.py from {', '.join(read)}")
    for flag in sorted(flags):
        print(flag)


if __name__ == "__main__":
    main(*sys.argv[1:4])
