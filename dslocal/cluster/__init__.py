"""Beyond one machine: plan, launch and check DeepSeek on SGLang, vLLM, vLLM-Ascend or MindIE across nodes.

dslocal runs no distributed runtime of its own: :mod:`.plan` sizes a deployment for an engine
(memory per GPU, parallelism, verdict, published throughput), :mod:`.commands` writes each
node's launch line the way the engine's documentation does (every flag checked against the
engine's own argument list, :mod:`.flags`), and :mod:`.check` asks a running cluster whether
it answers.
"""
