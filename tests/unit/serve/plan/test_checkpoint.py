"""A model by Hugging Face Hub id: a cache laid out as huggingface_hub lays it out, offline misses, gated repos.

No test reaches the network: the Hub is a cache on disk (``hub_cache``) or a stand-in on loopback
(``hub_standin``, via ``HF_ENDPOINT``). The CLI runs as a subprocess where the environment matters (huggingface_hub
reads HF_HOME, HF_HUB_OFFLINE and HF_ENDPOINT when it is imported), in-process elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from lab_llm.plan import DoesNotFitError, PlanInputError, plan_fit
from lab_llm.plan.checkpoint import is_hub_id, read_checkpoint
from lab_llm.plan.memory import total_weight_bytes
from lab_llm.plan.model import WeightFormat, load_model_spec
from tests.unit.serve.plan.hub_standin import COMMIT, HubRepo, hub_cache, hub_standin, model_files
from tests.unit.serve.plan.plan_inputs import model_path

LLAMA = "meta-llama/Meta-Llama-3-8B"
# metadata.total_size of the published model.safetensors.index.json: 8,030,261,248 bf16 parameters x 2 bytes.
LLAMA_SAFETENSORS_BYTES = 16_060_522_496


@pytest.fixture
def offline_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HOME in tmp_path, offline (as huggingface_hub would read HF_HOME / HF_HUB_OFFLINE at import)."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, cache: Path) -> None:
    """What HF_ENDPOINT, HF_HOME and an unset HF_HUB_OFFLINE give when huggingface_hub is imported."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lab-llm plan`` in a fresh interpreter, so huggingface_hub reads this environment."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from lab_llm.cli import main; main()", "plan", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_hub_ids_and_local_paths_are_told_apart(tmp_path: Path) -> None:
    assert is_hub_id("Qwen/Qwen2.5-32B-Instruct-AWQ")
    assert not is_hub_id("gpt2")  # one part: a (missing) local path, never a Hub lookup
    assert not is_hub_id("a/b/c")
    assert not is_hub_id("org/bad--name")
    assert not is_hub_id(str(model_path("llama-3-8b")))
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "model").mkdir()
    assert not is_hub_id(str(tmp_path / "org" / "model"))


def test_offline_cache_hit_reads_config_and_safetensors_index(offline_cache: Path) -> None:
    hub_cache(offline_cache, LLAMA, model_files("llama-3-8b", LLAMA_SAFETENSORS_BYTES))
    checkpoint = read_checkpoint(LLAMA)
    assert checkpoint.name == LLAMA
    assert checkpoint.commit == COMMIT
    assert checkpoint.source == f"hub:{LLAMA}@{COMMIT}"
    assert checkpoint.safetensors_total_bytes == LLAMA_SAFETENSORS_BYTES
    plan = plan_fit(LLAMA, {"nodes": [{"name": "n", "gpus": [{"class": "rtx-3090"}]}]}, context_length=8192)
    assert plan.engine_config["model"] == LLAMA
    assert plan.model_source == f"hub:{LLAMA}@{COMMIT}"
    # The planner's arithmetic is the published count to the byte (vocab 128256 needs no padding).
    assert plan.weights_check is not None
    assert plan.weights_check.agrees
    assert plan.weights_check.difference_percent == 0.0


def test_weights_that_disagree_with_the_index_are_a_note(offline_cache: Path) -> None:
    # A float32 checkpoint of the same shape stores twice the bytes the 16-bit arithmetic gives.
    hub_cache(offline_cache, LLAMA, model_files("llama-3-8b", 2 * LLAMA_SAFETENSORS_BYTES))
    plan = plan_fit(LLAMA, {"nodes": [{"name": "n", "gpus": [{"class": "rtx-3090"}]}]}, context_length=8192)
    assert plan.weights_check is not None
    assert not plan.weights_check.agrees
    assert plan.weights_check.difference_percent == -50.0
    assert any("29.92 GiB" in note and "14.96 GiB" in note and "float32" in note for note in plan.notes)


def test_separate_gptq_quantize_config_is_read(offline_cache: Path) -> None:
    config = json.loads(model_path("llama-2-7b").read_text())
    files = {
        "config.json": json.dumps(config).encode(),
        "quantize_config.json": json.dumps({"bits": 4, "group_size": 128, "desc_act": False}).encode(),
    }
    hub_cache(offline_cache, "TheBloke/Llama-2-7B-GPTQ", files)
    spec = load_model_spec("TheBloke/Llama-2-7B-GPTQ")
    assert spec.checkpoint_weights == WeightFormat(dtype="gptq", bits=4, group_size=128)
    assert spec.checkpoint_bytes == 0  # no index in this repo: nothing to check


def test_revision_picks_its_ref(offline_cache: Path) -> None:
    hub_cache(offline_cache, LLAMA, model_files("llama-3-8b"), revision="v1.0")
    assert read_checkpoint(LLAMA, revision="v1.0").commit == COMMIT
    with pytest.raises(PlanInputError, match="HF_HUB_OFFLINE"):
        read_checkpoint(LLAMA, revision="main")


def test_offline_miss_is_one_line_naming_what_to_do(offline_cache: Path) -> None:
    with pytest.raises(PlanInputError) as caught:
        read_checkpoint("Qwen/Qwen2.5-32B-Instruct-AWQ")
    message = str(caught.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE is set" in message
    # Every small JSON file, not config.json alone: offline, a quant_config.json (AutoAWQ) or safetensors index
    # missing from the cache would read as "the repo has none" and the plan would size the weights as 16-bit.
    assert "hf download Qwen/Qwen2.5-32B-Instruct-AWQ --include '*.json'" in message
    assert str(offline_cache / "hub") in message
    with pytest.raises(
        PlanInputError, match=r"hf download Qwen/Qwen2.5-32B-Instruct-AWQ --include '\*.json' --revision v1.0"
    ):
        read_checkpoint("Qwen/Qwen2.5-32B-Instruct-AWQ", revision="v1.0")


def test_local_directory_with_index_and_quant_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(model_path("llama-2-7b").read_bytes())
    (tmp_path / "quant_config.json").write_text(json.dumps({"w_bit": 4, "q_group_size": 128, "zero_point": True}))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 3_900_000_000}}))
    spec = load_model_spec(tmp_path)
    assert spec.checkpoint_weights == WeightFormat(dtype="awq", bits=4, group_size=128)
    assert spec.checkpoint_bytes == 3_900_000_000
    assert spec.source == str(tmp_path / "config.json")
    with pytest.raises(PlanInputError, match="revision 'main' applies to Hub model ids"):
        read_checkpoint(tmp_path, revision="main")


def test_cli_honours_hf_home_and_offline(tmp_path: Path) -> None:
    hub_cache(tmp_path, LLAMA, model_files("llama-3-8b", LLAMA_SAFETENSORS_BYTES))
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    hit = run_cli("-m", LLAMA, "--gpus", "3090", "--context", "8192", "--json", env=env)
    assert hit.returncode == 0, hit.stderr
    answer = json.loads(hit.stdout)
    assert answer["plan"]["engine_config"]["model"] == LLAMA
    assert answer["plan"]["weights_check"]["agrees"] is True
    assert answer["vllm_serve"].startswith(f"vllm serve {LLAMA} ")
    miss = run_cli("-m", "Qwen/Qwen2.5-32B-Instruct-AWQ", "--gpus", "3090", env=env)
    assert miss.returncode == 2
    assert miss.stdout == ""
    assert miss.stderr.count("\n") == 1
    assert miss.stderr.startswith("error: model Qwen/Qwen2.5-32B-Instruct-AWQ is not in the Hugging Face cache")


def test_online_download_fills_the_cache_then_offline_reuses_it(tmp_path: Path) -> None:
    repos = {LLAMA: HubRepo(model_files("llama-3-8b", LLAMA_SAFETENSORS_BYTES))}
    with hub_standin(repos) as (endpoint, requests):
        online = run_cli("-m", LLAMA, "--gpus", "3090", "--context", "8192", "--json",
                         env={"HF_HOME": str(tmp_path), "HF_ENDPOINT": endpoint})  # fmt: skip
    assert online.returncode == 0, online.stderr
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in requests if method == "GET" and "/resolve/" in path}
    assert fetched == {"config.json", "model.safetensors.index.json"}  # never weights
    snapshot = tmp_path / "hub" / "models--meta-llama--Meta-Llama-3-8B" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file()
    offline = run_cli("-m", LLAMA, "--gpus", "3090", "--context", "8192", "--json",
                      env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["plan"] == json.loads(online.stdout)["plan"]


def test_gated_repo_without_token_then_with_a_token_without_access(tmp_path: Path) -> None:
    gated = "meta-llama/Llama-3.1-8B-Instruct"
    repos = {gated: HubRepo(model_files("llama-3-8b"), gated=True, granted_tokens=frozenset({"hf_granted"}))}
    env = {"HF_HOME": str(tmp_path)}
    with hub_standin(repos) as (endpoint, requests):
        env["HF_ENDPOINT"] = endpoint
        anonymous = run_cli("-m", gated, "--gpus", "3090", env=env)
        refused = run_cli("-m", gated, "--gpus", "3090", env={**env, "HF_TOKEN": "hf_not_granted"})
        invalid = run_cli("-m", gated, "--gpus", "3090", env={**env, "HF_TOKEN": "hf_invalid_token"})
        granted = run_cli("-m", gated, "--gpus", "3090", "--context", "8192", "--json",
                          env={**env, "HF_TOKEN": "hf_granted"})  # fmt: skip
    assert anonymous.returncode == 2
    assert anonymous.stderr.count("\n") == 1
    assert f"model {gated} is gated: accept its conditions on {endpoint}/{gated}" in anonymous.stderr
    assert "set HF_TOKEN" in anonymous.stderr
    assert refused.returncode == 2
    assert "the token in HF_TOKEN has no access" in refused.stderr
    assert "hf_not_granted" not in refused.stderr + refused.stdout  # the token never shows
    assert invalid.returncode == 2
    assert "refused the token in HF_TOKEN (HTTP 401, invalid credentials)" in invalid.stderr
    assert "hf_invalid_token" not in invalid.stderr + invalid.stdout
    assert granted.returncode == 0, granted.stderr
    assert {token for _, _, token in requests} == {None, "hf_not_granted", "hf_invalid_token", "hf_granted"}


def test_unknown_repo_and_revision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with hub_standin({LLAMA: HubRepo(model_files("llama-3-8b"))}) as (endpoint, _):
        use_endpoint(monkeypatch, endpoint, tmp_path / "hub")
        with pytest.raises(PlanInputError, match="neither a local path nor a model on the Hub"):
            read_checkpoint("nobody/no-such-model")
        with pytest.raises(PlanInputError, match="has no revision 'v9' on the Hub"):
            read_checkpoint(LLAMA, revision="v9")
        assert read_checkpoint(LLAMA).safetensors_total_bytes is None  # the repo has no index: not an error


def test_hub_out_of_reach_without_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_endpoint(monkeypatch, "http://127.0.0.1:9", tmp_path / "hub")  # discard port: connection refused
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub retries 5 times with back-off
    with pytest.raises(PlanInputError, match="out of reach and the Hugging Face cache"):
        read_checkpoint(LLAMA)


def test_weights_arithmetic_matches_the_published_parameter_counts() -> None:
    """The check the index makes possible, on the fixtures whose parameter counts are published."""
    llama = load_model_spec(model_path("llama-3-8b"))
    assert total_weight_bytes(llama, WeightFormat(dtype="bf16")) == LLAMA_SAFETENSORS_BYTES
    llama2 = load_model_spec(model_path("llama-2-7b"))
    assert total_weight_bytes(llama2, WeightFormat(dtype="fp16")) == 6_738_415_616 * 2
    qwen7 = load_model_spec(model_path("qwen2.5-7b-awq"))
    assert qwen7.checkpoint_weights == WeightFormat(dtype="awq", bits=4, group_size=128)
    assert total_weight_bytes(qwen7, WeightFormat(dtype="bf16")) == 7_615_616_512 * 2


def test_compressed_tensors_and_unmodelled_quantization(offline_cache: Path) -> None:
    config = json.loads(model_path("llama-3-8b").read_text())
    w4a16 = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
                                                                         "strategy": "group", "group_size": 128}}},
    }  # fmt: skip
    spec = load_model_spec({**config, "quantization_config": w4a16})
    assert spec.checkpoint_weights == WeightFormat(dtype="gptq", bits=4, group_size=128)
    fp8 = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}
    assert load_model_spec({**config, "quantization_config": fp8}).checkpoint_weights == WeightFormat(dtype="fp8")
    bnb = {**config, "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
    inventory = {"nodes": [{"name": "n", "gpus": [{"class": "rtx-3090"}]}]}
    with pytest.raises(PlanInputError, match="quantized with bitsandbytes, which the planner does not model"):
        plan_fit(bnb, inventory, context_length=4096)
    assert plan_fit(bnb, inventory, weights="awq", context_length=4096).weights == "awq-4bit-g128"


def test_null_fields_of_a_config_count_as_absent() -> None:
    config = json.loads(model_path("llama-2-7b").read_text())
    spec = load_model_spec({**config, "head_dim": None, "num_key_value_heads": None, "sliding_window": None})
    assert (spec.head_size, spec.kv_heads) == (128, 32)


# google/gemma-2-9b-it's config.json as a vLLM usage issue quotes it ("Can we extend the context length of gemma2
# model", `cat models--google--gemma-2-9b-it/config.json`; eos/bos/pad ids and dropouts left out here):
# transformers leaves out of config.json every field equal to its config class's default, so it has no
# tie_word_embeddings (Gemma2Config defaults to True: lm_head is the embedding matrix).
GEMMA2_9B_IT = {
    "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attn_logit_softcapping": 50.0,
    "cache_implementation": "hybrid", "final_logit_softcapping": 30.0, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "intermediate_size": 14336,
    "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 16, "num_hidden_layers": 42,
    "num_key_value_heads": 8, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "sliding_window": 4096, "sliding_window_size": 4096, "torch_dtype": "bfloat16", "vocab_size": 256000,
}  # fmt: skip
# Gemma 3 27B's text_config as TensorRT-LLM's tests quote google/gemma-3-27b-it (num_hidden_layers as published):
# no vocab_size, max_position_embeddings or tie_word_embeddings - Gemma3TextConfig's defaults.
GEMMA3_27B_IT = {
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "text_config": {
        "head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504, "model_type": "gemma3_text",
        "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16, "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024,
    },
    "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model", "num_hidden_layers": 27},
}  # fmt: skip


def test_fields_config_json_leaves_out_take_the_config_class_default(offline_cache: Path) -> None:
    """vLLM reads config.json through transformers, so a field it omits has its config class's default: Gemma ties
    lm_head to the embeddings (planned untied it carried a second 256000 x 3584 matrix, 10 % too much)."""
    hub_cache(offline_cache, "google/gemma-2-9b-it", {"config.json": json.dumps(GEMMA2_9B_IT).encode()})
    gemma2 = load_model_spec("google/gemma-2-9b-it")
    assert gemma2.tie_word_embeddings
    # 9,241,705,984 parameters, Gemma 2 9B's published count (its safetensors index: 18,483,411,968 bytes in bf16).
    assert total_weight_bytes(gemma2, WeightFormat(dtype="bf16")) == pytest.approx(18_483_411_968, rel=1e-4)
    gemma3 = load_model_spec(GEMMA3_27B_IT)
    assert (gemma3.vocab_size, gemma3.max_position_embeddings, gemma3.tie_word_embeddings) == (262208, 131072, True)
    # Said explicitly, the config wins over the class default.
    assert not load_model_spec({**GEMMA2_9B_IT, "tie_word_embeddings": False}).tie_word_embeddings


def test_class_defaults_match_transformers() -> None:
    """The table of config-class defaults is transformers' own; a model type missing from it defaults to what
    ModelSpec assumes (untied embeddings)."""
    transformers = pytest.importorskip("transformers")
    from lab_llm.plan.model import CONFIG_CLASS_DEFAULTS

    for model_type, defaults in CONFIG_CLASS_DEFAULTS.items():
        config = transformers.CONFIG_MAPPING[model_type]()
        assert {key: getattr(config, key) for key in defaults} == defaults, model_type
    for model_type in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "phimoe",
                       "olmo2", "granite", "deepseek_v3", "gpt_oss", "glm4", "llama4"):  # fmt: skip
        assert model_type not in CONFIG_CLASS_DEFAULTS
        config = transformers.CONFIG_MAPPING[model_type]()
        assert not getattr(config, "tie_word_embeddings", config.get_text_config().tie_word_embeddings)


def test_offline_cache_that_cannot_tell_the_quantization_says_so(offline_cache: Path) -> None:
    """A cache holding config.json alone (``hf download ORG/NAME config.json``) cannot tell whether the repo has an
    AutoAWQ quant_config.json / AutoGPTQ quantize_config.json: the plan says so instead of silently planning 16-bit.
    A repo the Hub said has none (huggingface_hub's .no_exist marker) plans without the note."""
    repo = "casperhansen/mixtral-instruct-awq"
    storage = hub_cache(offline_cache, repo, model_files("llama-2-7b"))
    spec = load_model_spec(repo)
    assert any("quant_config.json" in caveat and "--include '*.json'" in caveat for caveat in spec.caveats)
    # Where it matters most - planned as 16-bit, a 4-bit checkpoint may "not fit" - the refusal carries it too.
    with pytest.raises(DoesNotFitError) as caught:
        plan_fit(repo, {"nodes": [{"name": "n", "gpus": [{"class": "rtx-3060"}]}]}, context_length=4096)
    assert caught.value.notes == list(spec.caveats)
    assert "Note: the Hugging Face cache does not say" in str(caught.value)
    # What hf_hub_download leaves for files the Hub answered 404 for (file_download.py, _cache_commit_hash_for_
    # specific_revision / no_exist_file_path): an empty file under .no_exist/<commit>/.
    (storage / ".no_exist" / COMMIT).mkdir(parents=True)
    for name in ("quantize_config.json", "quant_config.json"):
        (storage / ".no_exist" / COMMIT / name).touch()
    assert not load_model_spec(repo).caveats
