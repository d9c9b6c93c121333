"""Export: a finished run becomes a standalone folder that plain transformers loads and that computes what the
run computed (adapters merged); zip; Hub push refusals; the `export` command."""

from __future__ import annotations

import zipfile

import pytest
import torch
from test_chat_cache import chained_lora_run
from test_chat_engine import full_run, lora_run

from rlhf_studio.cli import main
from rlhf_studio.export import ExportError, export_model, push_to_hub, zip_export
from rlhf_studio.runner.runs import COMPLETED, RUNNING, init_run_folder, now_iso, update_status
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig

IDS = torch.tensor([[5, 17, 42, 8, 99, 3]])


def completed(workspace, spec: str, config) -> str:
    """Make the run folder that holds `spec`'s model/ a completed run of `config`; return its id."""
    run_id = spec.removeprefix("run:")
    folder = workspace.runs_dir / run_id
    init_run_folder(folder, config)
    update_status(folder, state=COMPLETED, started=now_iso(), ended=now_iso(), summary={"train_loss": 1.25})
    return run_id


def causal_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_a_lora_run_exports_merged_and_computes_what_the_adapter_computed(workspace, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = lora_run(workspace, tiny_model_dir, "sft-lora", seed=1)
    run_id = completed(workspace, spec, SFTJobConfig(model=str(tiny_model_dir), dataset="demo-sft"))
    reports = []
    folder = export_model(workspace, run_id, progress=lambda fraction, text: reports.append(fraction))

    assert folder == workspace.runs_dir / run_id / "export" / run_id
    assert reports[-1] == 1.0
    names = {path.name for path in folder.iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    exported = AutoModelForCausalLM.from_pretrained(folder)
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder.parents[1] / "model"
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.testing.assert_close(causal_logits(exported), causal_logits(adapter), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(causal_logits(exported), causal_logits(base), atol=1e-3)  # the merge mattered

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template
    assert exported.generation_config.eos_token_id == tokenizer.eos_token_id
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\ntags:\n- rlhf-studio\n- sft\n")
    assert "pipeline_tag: text-generation" in card and "| dataset | `demo-sft` |" in card


def test_full_runs_export_and_the_card_tells_the_lineage(workspace, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    hub_base = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the SFT run says it started from
    sft = completed(workspace, full_run(workspace, tiny_model_dir, "sft-full"), SFTJobConfig(model=hub_base))
    dpo_spec = chained_lora_run(workspace, f"run:{sft}", "dpo-lora", seed=2)
    dpo = completed(workspace, dpo_spec, DPOJobConfig(model=f"run:{sft}", dataset="prefs"))

    exported = AutoModelForCausalLM.from_pretrained(export_model(workspace, sft))
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.testing.assert_close(causal_logits(exported), causal_logits(original))

    folder = export_model(workspace, dpo)
    card = (folder / "README.md").read_text()
    assert f"base_model: {hub_base}\n" in card and "- dpo\n" in card
    assert f"| lineage | `{dpo}` ← `{sft}` ← `{hub_base}` |" in card
    assert "| train_loss | 1.25 |" in card
    assert not torch.allclose(
        causal_logits(AutoModelForCausalLM.from_pretrained(folder)), causal_logits(exported)
    )


def test_reward_model_runs_export_as_one_label_classifiers(workspace, tiny_reward_dir):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = RewardJobConfig(model=str(tiny_reward_dir), dataset="prefs")
    full = completed(workspace, full_run(workspace, tiny_reward_dir, "rm-full"), config)
    torch.manual_seed(3)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="SEQ_CLS")
    adapted = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir), lora)
    adapted.save_pretrained(workspace.runs_dir / "rm-lora" / "model")
    lora_id = completed(workspace, "rm-lora", config)

    def scores(model) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=IDS).logits

    original = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir)
    adapter = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir),
        workspace.runs_dir / "rm-lora" / "model",
    )
    for run_id, expected in ((full, scores(original)), (lora_id, scores(adapter))):
        folder = export_model(workspace, run_id)
        exported = AutoModelForSequenceClassification.from_pretrained(folder)
        assert exported.config.num_labels == 1 and exported.config.pad_token_id is not None
        torch.testing.assert_close(scores(exported), expected, atol=1e-5, rtol=1e-4)
        assert "pipeline_tag: text-classification" in (folder / "README.md").read_text()


def test_runs_without_a_finished_model_are_refused_in_one_sentence(workspace, tiny_model_dir):
    spec = full_run(workspace, tiny_model_dir, "busy")
    completed(workspace, spec, SFTJobConfig(model=str(tiny_model_dir)))
    update_status(workspace.runs_dir / "busy", state=RUNNING)
    with pytest.raises(ExportError, match=r"^Run busy is running: only a completed run can be exported\.$"):
        export_model(workspace, "busy")
    (workspace.runs_dir / "empty").mkdir()
    completed(workspace, "empty", SFTJobConfig(model=str(tiny_model_dir)))
    with pytest.raises(ExportError, match="completed but saved no model"):
        export_model(workspace, "empty")
    with pytest.raises(ExportError, match="^There is no run missing.$"):
        export_model(workspace, "missing")
    with pytest.raises(ExportError, match="is not a valid run id"):
        export_model(workspace, "../busy")


def test_an_export_never_half_exists_and_never_overwrites_a_users_folder(
    workspace, tiny_model_dir, monkeypatch
):
    run_id = completed(
        workspace, full_run(workspace, tiny_model_dir, "sft"), SFTJobConfig(model=str(tiny_model_dir))
    )
    occupied = workspace.root / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="already exists and is not empty"):
        export_model(workspace, run_id, out_dir=occupied)
    assert (occupied / "notes.txt").read_text() == "keep me"

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rlhf_studio.export.model_card", disk_full)
    with pytest.raises(ExportError, match="^Could not write the export to .*: No space left on device.$"):
        export_model(workspace, run_id)
    assert list((workspace.runs_dir / run_id / "export").iterdir()) == []


def test_the_zip_holds_every_exported_file_under_the_run_id(workspace, tiny_model_dir):
    run_id = completed(
        workspace, full_run(workspace, tiny_model_dir, "sft"), SFTJobConfig(model=str(tiny_model_dir))
    )
    folder = export_model(workspace, run_id)
    archive = zip_export(folder)
    assert archive == folder.with_name(f"{run_id}.zip")
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None
        assert sorted(opened.namelist()) == sorted(f"{run_id}/{path.name}" for path in folder.iterdir())
        assert opened.read(f"{run_id}/model.safetensors") == (folder / "model.safetensors").read_bytes()


def test_pushing_is_refused_offline_without_a_token_and_when_the_hub_says_no(tmp_path, monkeypatch):
    import httpx2
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(ExportError, match=r"^The studio is offline \(HF_HUB_OFFLINE=1\)"):
        push_to_hub(tmp_path, "me/model", token="hf_x")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ExportError, match="^No Hugging Face token: paste a token with write access"):
        push_to_hub(tmp_path, "me/model")
    with pytest.raises(ExportError, match="is not a Hub repo id: write it as owner/name"):
        push_to_hub(tmp_path, "model", token="hf_x")

    def answer(status: int):
        def create_repo(self, *args, **kwargs):
            request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
            raise HfHubHTTPError("denied", response=httpx2.Response(status, request=request))

        return create_repo

    monkeypatch.setattr(HfApi, "create_repo", answer(401))
    with pytest.raises(ExportError, match=r"^The Hub refused the token \(invalid or expired\)"):
        push_to_hub(tmp_path, "me/model", token="hf_bad")
    monkeypatch.setattr(HfApi, "create_repo", answer(403))
    with pytest.raises(ExportError, match="^The token may not write to me/model"):
        push_to_hub(tmp_path, "me/model", token="hf_read_only")

    def unreachable(self, *args, **kwargs):
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    with pytest.raises(ExportError, match=r"^Could not reach the Hugging Face Hub \(\[Errno -2\]"):
        push_to_hub(tmp_path, "me/model", token="hf_x")


def test_the_export_command_writes_the_folder_and_zip_and_reports_refusals(workspace, tiny_model_dir, capsys):
    run_id = completed(
        workspace, full_run(workspace, tiny_model_dir, "sft"), SFTJobConfig(model=str(tiny_model_dir))
    )
    out = workspace.root / "exported"
    assert main(["export", run_id, "--out", str(out), "--zip"]) == 0
    assert (out / "model.safetensors").is_file() and (workspace.root / "exported.zip").is_file()
    assert f"zip: {workspace.root / 'exported.zip'}" in capsys.readouterr().out

    assert main(["export", run_id, "--push", "me/model"]) == 1  # refused before exporting
    assert (
        capsys.readouterr().err
        == "error: The studio is offline (HF_HUB_OFFLINE=1): unset it to push to the Hugging Face Hub.\n"
    )
    assert not (workspace.runs_dir / run_id / "export").exists()
    assert main(["export", "missing"]) == 1
    assert capsys.readouterr().err == "error: There is no run missing.\n"
