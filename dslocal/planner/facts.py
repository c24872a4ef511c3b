"""What the planner needs to know about a model: sizes per block and the attention shape.

Exact facts come from a GGUF header (local or remote); a catalog variant alone gives
an estimate (its size spread over the tensors of the known architecture in
proportion to their parameter counts) until the header has been read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dslocal.catalog import Variant
from dslocal.gguf_tools.arch import ModelSpec, tensor_plan
from dslocal.gguf_tools.shards import ShardSet

_BLOCK = re.compile(r"^blk\.(\d+)\.")
_MOE_ARCHES = ("deepseek2", "deepseek32", "deepseek4")
_EXPERTS = re.compile(r"\.ffn_(gate|up|down|gate_up)_(ch)?exps\.")


@dataclass(frozen=True)
class ModelFacts:
    name: str
    architecture: str
    block_count: int
    context_length: int
    n_embd: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    layout: str | None  # deepseek2: "mla" (K-only cache) or "legacy" (MHA-sized); deepseek32: "dsa"; deepseek4: "dsv4"
    n_vocab: int
    expert_count: int
    expert_used: int
    block_bytes: tuple[int, ...]  # weights of each block
    block_expert_bytes: tuple[int, ...]  # the routed experts' share of each block
    embed_bytes: int  # token_embd: llama.cpp keeps the input embedding in system memory
    output_bytes: int  # output + output_norm: "the output layer" offloaded first
    params: int
    exact: bool
    source: str
    indexer_key_length: int = 0  # deepseek32: the lightning indexer's cached key per layer and token
    nextn_layers: int = 0  # MTP blocks counted in block_count; llama.cpp's trunk cache leaves them out
    sliding_window: int = 0  # deepseek4: the raw K cache's window
    compress_ratios: tuple[int, ...] = ()  # deepseek4, per block: 0 (window only), 4 (CSA + indexer), 128 (HCA)

    @property
    def weight_bytes(self) -> int:
        return sum(self.block_bytes) + self.embed_bytes + self.output_bytes

    @property
    def expert_bytes(self) -> int:
        return sum(self.block_expert_bytes)

    @property
    def active_bytes(self) -> int:
        """Weights read per generated token: everything but the routed experts not chosen."""
        if not self.expert_count:
            return self.weight_bytes - self.embed_bytes
        share = self.expert_used / self.expert_count
        return int(self.weight_bytes - self.embed_bytes - self.expert_bytes * (1 - share))


def from_shard_set(shard_set: ShardSet, name: str | None = None) -> ModelFacts:
    """Exact facts from a GGUF header (every shard's tensor infos)."""
    h = shard_set.first
    n_layer = int(h.arch_get("block_count", 0) or 0)
    blocks = [0] * n_layer
    experts = [0] * n_layer
    embed = output = params = 0
    has_output = any(t.name == "output.weight" for _, t in shard_set.tensors())
    for _, tensor in shard_set.tensors():
        params += tensor.n_elements
        match = _BLOCK.match(tensor.name)
        if match and int(match[1]) < n_layer:
            i = int(match[1])
            blocks[i] += tensor.n_bytes
            if _EXPERTS.search(tensor.name):
                experts[i] += tensor.n_bytes
        elif tensor.name.startswith("token_embd."):
            embed += tensor.n_bytes
            if not has_output:  # tied embeddings: the output layer reuses token_embd
                output += tensor.n_bytes
        elif tensor.name.startswith("output"):
            output += tensor.n_bytes
    n_head = int(h.arch_get("attention.head_count", 0) or 0)
    n_embd = int(h.arch_get("embedding_length", 0) or 0)
    head_dim = n_embd // n_head if n_head else 0
    tokens = h.get("tokenizer.ggml.tokens")
    names = {t.name.rsplit(".", 2)[-2] for _, t in shard_set.tensors() if t.name.startswith("blk.")}
    layout = None
    if h.arch == "deepseek2":
        layout = "mla" if "attn_k_b" in names or h.arch_get("attention.key_length_mla") is not None else "legacy"
    elif h.arch == "deepseek32":
        layout = "dsa"
    elif h.arch == "deepseek4":
        layout = "dsv4"
    return ModelFacts(
        name=name or str(h.get("general.name") or shard_set.files[0]),
        architecture=str(h.arch),
        block_count=n_layer,
        context_length=int(h.arch_get("context_length", 4096) or 4096),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=int(h.arch_get("attention.head_count_kv", n_head) or n_head),
        key_length=int(h.arch_get("attention.key_length", head_dim) or head_dim),
        value_length=int(h.arch_get("attention.value_length", head_dim) or head_dim),
        layout=layout,
        n_vocab=len(tokens) if isinstance(tokens, list) else int(h.arch_get("vocab_size", 0) or 0),
        expert_count=int(h.arch_get("expert_count", 0) or 0),
        expert_used=int(h.arch_get("expert_used_count", 0) or 0),
        block_bytes=tuple(blocks),
        block_expert_bytes=tuple(experts),
        embed_bytes=embed,
        output_bytes=output,
        params=params,
        exact=True,
        source="GGUF header",
        indexer_key_length=int(h.arch_get("attention.indexer.key_length", 0) or 0),
        nextn_layers=int(h.arch_get("nextn_predict_layers", 0) or 0),
        sliding_window=int(h.arch_get("attention.sliding_window", 0) or 0),
        compress_ratios=tuple(int(r) for r in h.arch_get("attention.compress_ratios", ()) or ()),
    )


# Dimensions of the catalog's models (config.json of each; DeepSeek-V3/R1 from the facts file).
_R1 = dict(arch="deepseek2", n_embd=7168, n_layer=61, n_head=128, n_ff=18432, q_lora_rank=1536, kv_lora_rank=512,
           rope_dim=64, qk_nope_dim=128, v_head_dim=128, n_dense_lead=3, n_expert=256, n_expert_used=8,
           n_expert_shared=1, n_ff_exp=2048, context_length=163840)
# V3.2: V3.1-Terminus plus the lightning indexer (inference/config_671B_v3.2.json of DeepSeek-V3.2-Exp)
_V32 = dict(_R1, arch="deepseek32", index_n_head=64, index_head_dim=128, index_topk=2048)
# V4-Flash (config.json of DeepSeek-V4-Flash, as reproduced by several inference stacks): 43 layers, the
# compress ratios [0, 0] + [4, 128] * 20 + [4] (the file's list runs on past the layers), 3 hash-routed layers
_V4_FLASH = dict(arch="deepseek4", n_embd=4096, n_layer=43, n_head=64, head_dim=512, rope_dim=64, q_lora_rank=1024,
                 o_groups=8, o_lora_rank=1024, n_dense_lead=0, n_expert=256, n_expert_used=6, n_expert_shared=1,
                 n_ff_exp=2048, index_n_head=64, index_head_dim=128, index_topk=512, sliding_window=128,
                 hc_mult=4, hc_sinkhorn_iters=20, n_hash_layers=3, compress_ratios=(0, 0, *(4, 128) * 20, 4),
                 context_length=1048576)
# V4-Pro (config.json of DeepSeek-V4-Pro, as reproduced by several inference stacks): 61 layers of 7168, 128
# heads, 384 experts of 3072 with 6 active, o_groups 16, indexer top-k 1024, compress ratios [128, 128] +
# [4, 128] * 29 + [4] (the file's list has one more entry, 0, for the MTP block)
_V4_PRO = dict(_V4_FLASH, n_embd=7168, n_layer=61, n_head=128, q_lora_rank=1536, o_groups=16, n_expert=384,
               n_ff_exp=3072, index_topk=1024, compress_ratios=(128, 128, *(4, 128) * 29, 4))
SHAPES: dict[str, tuple[dict, int]] = {  # model -> (ModelSpec fields, vocabulary size)
    "DeepSeek-R1": (_R1, 129280),
    "DeepSeek-V3.1": (_R1, 129280),  # V3.1 / Terminus: V3's structure (config_v3.1.json)
    "DeepSeek-V3.1-Terminus": (_R1, 129280),
    "DeepSeek-V3.2-Exp": (_V32, 129280),
    "DeepSeek-V3.2": (_V32, 129280),
    "DeepSeek-V3.2-Speciale": (_V32, 129280),
    "DeepSeek-V4-Flash": (_V4_FLASH, 129280),
    "DeepSeek-V4-Flash-0731": (_V4_FLASH, 129280),  # the same structure (no MTP block in this checkpoint)
    "DeepSeek-V4-Pro-0813": (_V4_PRO, 129280),
    "DeepSeek-R1-0528": (_R1, 129280),
    "DeepSeek-V3": (_R1, 129280),
    "DeepSeek-V3-0324": (_R1, 129280),
    "DeepSeek-R1-Distill-Qwen-1.5B": (dict(arch="qwen2", n_embd=1536, n_layer=28, n_head=12, n_head_kv=2, n_ff=8960), 151936),
    "DeepSeek-R1-Distill-Qwen-7B": (dict(arch="qwen2", n_embd=3584, n_layer=28, n_head=28, n_head_kv=4, n_ff=18944), 152064),
    "DeepSeek-R1-Distill-Qwen-14B": (dict(arch="qwen2", n_embd=5120, n_layer=48, n_head=40, n_head_kv=8, n_ff=13824), 152064),
    "DeepSeek-R1-Distill-Qwen-32B": (dict(arch="qwen2", n_embd=5120, n_layer=64, n_head=40, n_head_kv=8, n_ff=27648), 152064),
    "DeepSeek-R1-Distill-Llama-8B": (dict(arch="llama", n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336), 128256),
    "DeepSeek-R1-Distill-Llama-70B": (dict(arch="llama", n_embd=8192, n_layer=80, n_head=64, n_head_kv=8, n_ff=28672), 128256),
    # Qwen3-8B: 36 layers, 32 heads of 128 (q/k norms aside, the llama layout)
    "DeepSeek-R1-0528-Qwen3-8B": (dict(arch="llama", n_embd=4096, n_layer=36, n_head=32, n_head_kv=8, n_ff=12288), 151936),
}


def from_variant(variant: Variant) -> ModelFacts:
    """Estimated facts: the variant's size spread over its architecture's tensors by parameter count."""
    fields, n_vocab = SHAPES[variant.model]
    layout = variant.kv_layout if variant.kv_layout in ("mla", "legacy") else "legacy"
    if fields["arch"] == "deepseek32":  # MLA only in llama.cpp
        layout = "mla"
    spec = ModelSpec(**{**fields, "layout": layout, "context_length": variant.context_length})
    plans = tensor_plan(spec, n_vocab)
    total_params = sum(p.n_elements for p in plans)
    per_param = variant.size_bytes / total_params
    blocks = [0.0] * spec.n_layer
    experts = [0.0] * spec.n_layer
    embed = output = 0.0
    for plan in plans:
        size = plan.n_elements * per_param
        match = _BLOCK.match(plan.name)
        if match:
            blocks[int(match[1])] += size
            if _EXPERTS.search(plan.name):
                experts[int(match[1])] += size
        elif plan.name.startswith("token_embd"):
            embed += size
        else:
            output += size
    return ModelFacts(
        name=variant.id,
        architecture=variant.architecture,
        block_count=spec.n_layer,
        context_length=variant.context_length,
        n_embd=spec.n_embd,
        n_head=spec.n_head,
        n_head_kv=spec.head_count_kv,
        key_length=spec.key_length,
        value_length=spec.value_length,
        layout={"deepseek2": layout, "deepseek32": "dsa", "deepseek4": "dsv4"}.get(spec.arch),
        n_vocab=n_vocab,
        expert_count=spec.n_expert if spec.arch in _MOE_ARCHES else 0,
        expert_used=spec.n_expert_used if spec.arch in _MOE_ARCHES else 0,
        block_bytes=tuple(int(b) for b in blocks),
        block_expert_bytes=tuple(int(e) for e in experts),
        embed_bytes=int(embed),
        output_bytes=int(output),
        params=int(variant.params_b * 1e9),
        exact=False,
        source=f"catalog estimate ({variant.size_source or 'size from the catalog'})",
        indexer_key_length=spec.index_head_dim if spec.arch in ("deepseek32", "deepseek4") else 0,
        sliding_window=spec.sliding_window if spec.arch == "deepseek4" else 0,
        compress_ratios=spec.compress_ratios if spec.arch == "deepseek4" else (),
    )
