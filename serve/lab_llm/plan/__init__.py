"""Fit planner: from a model and the real GPUs to a vLLM layout that fits, or "it does not fit, because...".

Pure Python (stdlib, pydantic, PyYAML; huggingface_hub only to read a model by Hub id): no GPU, no vLLM or torch
needed to plan.

Entry point, stable for the CLI, the Ansible module ``lab.llm.llm_fit_plan`` and the Ray stages::

    from lab_llm.plan import plan_fit, DoesNotFitError, PlanInputError

    plan = plan_fit(
        model="Qwen/Qwen2.5-32B-Instruct-AWQ",  # Hub id (see lab_llm.plan.checkpoint), config.json or its
                                             # directory, a dict of config.json fields, or ModelSpec
        revision=None,                       # branch, tag or commit of a Hub model
        inventory={"nodes": [{"name": "gpu-3090-1", "gpus": [{"class": "rtx-3090"}]}], "network": "10gbe"},
        weights="awq",                       # fp16 | bf16 | fp8 | awq | gptq  (or {"dtype", "bits", "group_size"});
                                             # None: the checkpoint's quantization_config, else bf16
        group_size=128,                      # AWQ/GPTQ group size
        kv_cache_dtype="auto",               # auto | fp16 | bf16 | fp8
        context_length=32768,                # None: the longest the chosen layout holds (at least 4096)
        concurrency=1,                       # requests of context_length the KV cache must hold at once
        limits={"gpu_memory_utilization": 0.95, "cpu_offload_gib": 0, "allow_tp_over_network": False},
        model_name="org/model", served_model_name="model",
    )

``model`` fields (config.json names): ``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
``intermediate_size``, ``vocab_size`` (required); ``num_key_value_heads``, ``head_dim``, ``tie_word_embeddings``,
``attention_bias``, ``num_local_experts`` / ``num_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``,
``max_position_embeddings`` (optional). ``text_config`` of multimodal wrappers is read too. A field left out
has its transformers config class's default for the ``model_type`` (``lab_llm.plan.model.CONFIG_CLASS_DEFAULTS``:
Gemma ties its embeddings), as vLLM reads it.

``inventory``: ``nodes`` - each ``{name, gpus: [{class, memory_gib?, bandwidth_gbs?}], link?}`` (``link``
between the node's GPUs: ``pcie`` default, ``nvlink``...) - and ``network`` between nodes (``10gbe`` default,
or ``{name, bandwidth_gbs, latency_us}``). Known classes (``GPU_CLASSES``) need only their name.
``lab_llm.plan.gpus`` builds nodes from the PCI ids Stage 1 found (``PCI_GPU_CLASSES``) and from short forms
(``3090,3090``, ``2x3090``).

``limits``: ``gpu_memory_utilization`` ceiling (0.95), ``cpu_offload_gib`` per GPU allowed (0),
``allow_tp_over_network`` (False), ``max_num_seqs`` (256), ``max_num_batched_tokens`` (2048), ``enforce_eager``.

Returns ``FitPlan`` (pydantic, ``plan.model_dump(mode="json")`` for a dict):

- ``tensor_parallel_size``, ``pipeline_parallel_size``, ``stages`` (each: ``gpus`` [{node, index, gpu_class}],
  ``layers``, ``first_layer``, ``end_layer``, ``embeddings``, ``lm_head``, ``max_gpu_memory_utilization`` - what
  the TP group's smallest card allows), ``layer_partition``;
- ``gpu_memory_utilization`` (one value for all workers, low enough for the smallest card's CUDA context),
  ``max_model_len``, ``kv_cache_tokens`` (what the whole engine holds: the most constrained worker's blocks),
  ``max_concurrency`` (kv_cache_tokens / max_model_len), ``cpu_offload_gb``;
- ``gpus``: per card ``total``, ``weights``, ``kv_cache``, ``activations``, ``overhead``, ``free`` (GiB);
- ``decode``: estimated single-stream ``tokens_per_s`` with its ``memory_ms`` / ``communication_ms`` /
  ``overhead_ms`` (engine, plus a fixed cost per pipeline-stage boundary: ``lab_llm.plan.performance``);
- ``weights_check``: the weight arithmetic against the checkpoint's safetensors index, when it has one;
  ``model_source``: where config.json was read;
- ``engine_config``: a dict with exactly the fields of ``lab_llm.config.EngineConfig`` (``model``,
  ``served_model_name``, ``tensor_parallel_size``, ``pipeline_parallel_size``, ``gpu_memory_utilization``,
  ``cpu_offload_gb``, ``max_model_len``, ``dtype``, ``quantization``, ``kv_cache_dtype``, ``enforce_eager``,
  ``max_num_seqs``, ``env``) - ``env`` carries ``VLLM_PP_LAYER_PARTITION`` for PP > 1, and
  ``VLLM_RAY_BUNDLE_INDICES`` when stages use different card classes;
- ``worker_groups``: ``[{"gpu_class", "replicas", "gpus_per_worker"}]`` for the RayService;
- ``ray_placement_bundles``: one bundle per rank, in rank order, ``{"CPU": 1, "GPU": 1, <gpu_class>: 1}``
  - the convention is that each Ray worker advertises a custom resource named after its gpu_class, one unit
  per GPU, so a bundle lands on the card its layers were sized for;
- ``alternatives`` (other layouts that fit, fastest first) and ``notes``.

``lab_llm.plan.engine_args`` turns a plan into a ``vllm serve`` command line and the playbooks' variables;
``lab_llm.plan.verify`` compares the KV cache a running vLLM allocated with the plan's.

Raises ``PlanInputError`` (a ValueError) for missing fields, zero GPUs, unknown dtypes, a model the Hub or its cache
cannot give; ``DoesNotFitError`` with
``reasons`` and ``suggestions`` (shorter context, fp8 KV cache, 4-bit weights, CPU offload, one more GPU; cheapest
first) when nothing fits.
"""

from lab_llm.plan.errors import DoesNotFitError, FitSuggestion, PlanInputError
from lab_llm.plan.inventory import GPU_CLASSES, LINK_CLASSES, GpuInventory, Limits, load_inventory
from lab_llm.plan.model import ModelSpec, WeightFormat, load_model_spec
from lab_llm.plan.planner import plan_fit
from lab_llm.plan.result import FitPlan, GpuBudget, LayoutSummary, Stage

__all__ = [
    "GPU_CLASSES",
    "LINK_CLASSES",
    "DoesNotFitError",
    "FitPlan",
    "FitSuggestion",
    "GpuBudget",
    "GpuInventory",
    "LayoutSummary",
    "Limits",
    "ModelSpec",
    "PlanInputError",
    "Stage",
    "WeightFormat",
    "load_inventory",
    "load_model_spec",
    "plan_fit",
]
