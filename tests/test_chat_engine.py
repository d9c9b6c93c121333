"""Chat engine: panes stream together, seeds repeat, the sampling loop matches `generate`, stop, fallback.

Also holds the helpers the other test_chat_* files import: LoRA "runs" saved from the tiny model and arenas
on them.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import deque
from pathlib import Path

import pytest
import torch

from rlhf_studio.chat import ChatArena, ChatError, GenerationSettings, ModelCache
from rlhf_studio.chat.generation import reply_text, stream_reply
from rlhf_studio.chat.streaming import interleave
from rlhf_studio.chat.templates import FALLBACK_NOTICE, Prompt, conversation, fallback_text, render_prompt

SAMPLED = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=3)
GREEDY = GenerationSettings(max_new_tokens=8, greedy=True)


def lora_run(workspace, base_dir: Path, run_id: str, seed: int) -> str:
    """A finished LoRA "run" on `base_dir`: runs/<id>/model holds a random adapter (no tokenizer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), lora)
    model.save_pretrained(workspace.runs_dir / run_id / "model")
    adapter = json.loads((workspace.runs_dir / run_id / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base_dir)
    return f"run:{run_id}"


def full_run(workspace, model_dir: Path, run_id: str) -> str:
    """A finished full fine-tune "run": a copy of a model folder in runs/<id>/model."""
    shutil.copytree(model_dir, workspace.runs_dir / run_id / "model")
    return f"run:{run_id}"


def other_model_dir(tmp_path: Path, seed: int) -> Path:
    from tiny_model import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path / f"tiny-{seed}", seed=seed)


def replies(views) -> list[str]:
    return [view.messages[-1]["content"] for view in views]


def last_views(stream):
    return deque(stream, maxlen=1).pop()


# ---------------------------------------------------------------- streaming


def test_every_pane_shows_tokens_before_any_pane_finishes(workspace, tiny_model_dir, tmp_path):
    models = [
        str(tiny_model_dir),
        lora_run(workspace, tiny_model_dir, "lora-a", 1),
        str(other_model_dir(tmp_path, 7)),
    ]
    arena = ChatArena(ModelCache(workspace), models)
    history = [
        ([bool(text) for text in replies(views)], [view.writing for view in views])
        for views in arena.send("What is the capital of France?", SAMPLED)
    ]
    first_finish = next(step for step, (_, writing) in enumerate(history) if not all(writing))
    shown, _ = history[first_finish - 1]
    assert all(shown), "a pane finished before every pane had a token"
    assert history[-1][1] == [False, False, False]
    assert all(replies(arena.views()))


def test_interleave_takes_one_step_of_each_pane_in_turn():
    def pane(name: str, steps: int):
        for step in range(steps):
            yield f"{name}{step}"

    def broken():
        yield "x0"
        raise RuntimeError("no template")

    events = list(interleave([pane("a", 2), broken(), pane("c", 3)]))
    texts = [(index, update) for index, update in events if isinstance(update, str)]
    assert texts == [(0, "a0"), (1, "x0"), (2, "c0"), (0, "a1"), (2, "c1"), (2, "c2")]
    errors = [(index, str(update)) for index, update in events if isinstance(update, Exception)]
    assert errors == [(1, "no template")]
    assert [index for index, update in events if update is None] == [0, 2]


def test_same_seed_same_reply_and_another_seed_another(workspace, tiny_model_dir):
    models = [str(tiny_model_dir), lora_run(workspace, tiny_model_dir, "lora-a", 1)]
    cache = ModelCache(workspace)

    def answer(seed: int) -> list[str]:
        arena = ChatArena(cache, models)
        settings = GenerationSettings(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=seed)
        return replies(last_views(arena.send("Tell me about tea.", settings)))

    first = answer(11)
    assert answer(11) == first
    assert answer(12) != first


def test_greedy_reply_is_what_generate_writes(workspace, tiny_model_dir):
    """The KV-cache loop with the chat template gives token for token what `model.generate` gives."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = lora_run(workspace, tiny_model_dir, "lora-a", 1)
    arena = ChatArena(ModelCache(workspace), [str(tiny_model_dir), run])
    settings = GenerationSettings(max_new_tokens=10, greedy=True, system_prompt="Answer briefly.")
    ours = replies(last_views(arena.send("Boil water?", settings)))

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = conversation("Answer briefly.", [{"role": "user", "content": "Boil water?"}])
    ids = tokenizer(render_prompt(tokenizer, messages).text, add_special_tokens=False, return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), workspace.runs_dir / "lora-a" / "model"
    ).merge_and_unload()
    expected = []
    for model in (base, merged):
        output = model.generate(**ids, max_new_tokens=10, do_sample=False)
        expected.append(tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    assert ours == [text.lstrip() for text in expected]
    assert ours[0] != ours[1]


# ---------------------------------------------------------------- conversation


def test_history_is_kept_per_pane_and_regenerate_replaces_the_last_reply(workspace, tiny_model_dir):
    arena = ChatArena(
        ModelCache(workspace), [str(tiny_model_dir), lora_run(workspace, tiny_model_dir, "a", 1)]
    )
    first = replies(last_views(arena.send("Hello", GREEDY)))
    views = last_views(arena.send("And then?", GREEDY))
    for view, reply in zip(views, first, strict=True):
        assert [m["role"] for m in view.messages] == ["user", "assistant", "user", "assistant"]
        assert view.messages[1]["content"] == reply
        assert view.messages[2]["content"] == "And then?"
    again = last_views(arena.regenerate(GREEDY))
    assert [view.messages for view in again] == [view.messages for view in views]
    assert all(len(view.messages) == 4 for view in again)
    arena.clear()
    assert [view.messages for view in arena.views()] == [[], []]


def test_stop_ends_every_reply_where_it_is(workspace, tiny_model_dir):
    arena = ChatArena(ModelCache(workspace), [str(tiny_model_dir), str(tiny_model_dir)])
    settings = GenerationSettings(temperature=1.0, max_new_tokens=200, seed=1)
    seen = []
    for views in arena.send("Tell a long story.", settings):
        seen.append(views)
        if len(seen) == 4:
            arena.stop()
    assert len(seen) < 12
    views = seen[-1]
    assert all(view.stopped and not view.writing for view in views)
    assert all(len(view.messages) == 2 for view in views)
    with pytest.raises(ChatError, match="Type a message"):
        next(arena.send("   ", settings))
    with pytest.raises(ChatError, match="temperature"):
        next(arena.send("Hi", GenerationSettings(temperature=0)))
    assert all(len(view.messages) == 2 for view in arena.views())  # refused messages are not kept


def test_concurrent_panes_on_one_base_do_not_mix_adapters(workspace, tiny_model_dir):
    """Two sessions stream from two adapters of one shared base in two threads at once."""
    runs = [lora_run(workspace, tiny_model_dir, name, seed) for name, seed in (("a", 1), ("b", 2))]
    cache = ModelCache(workspace)
    settings = GenerationSettings(max_new_tokens=40, greedy=True)
    alone = [replies(last_views(ChatArena(cache, [run, run]).send("Hi", settings)))[0] for run in runs]
    assert alone[0] != alone[1]
    together: dict[str, str] = {}

    def chat(run: str) -> None:
        together[run] = replies(last_views(ChatArena(cache, [run, run]).send("Hi", settings)))[0]

    threads = [threading.Thread(target=chat, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [together[run] for run in runs] == alone
    assert len(cache.loaded()) == 1


# ---------------------------------------------------------------- chat templates


def test_a_model_without_chat_template_gets_the_notice_and_the_plain_fallback(
    workspace, tiny_model_dir, tmp_path
):
    plain = shutil.copytree(tiny_model_dir, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))

    arena = ChatArena(ModelCache(workspace), [str(tiny_model_dir), str(plain)])
    views = last_views(arena.send("Hi", GREEDY))
    assert views[0].notice is None
    assert views[1].notice == FALLBACK_NOTICE
    assert views[1].error is None

    messages = conversation(
        "Be kind.", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    )
    messages.append({"role": "user", "content": "Bye"})
    assert fallback_text(messages) == "System: Be kind.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:"


def test_the_fallback_reply_ends_where_the_model_starts_the_next_user_turn(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = tokenizer(" Paris is the capital.\nUser: And Lyon?", add_special_tokens=False)["input_ids"]
    assert reply_text(tokenizer, tokens, ("\nUser:",), partial=True) == ("Paris is the capital.", True)
    assert reply_text(tokenizer, tokens, (), partial=True) == (
        "Paris is the capital.\nUser: And Lyon?",
        False,
    )
    split_character = tokenizer("é", add_special_tokens=False)["input_ids"]
    assert len(split_character) == 2  # a byte-level BPE without a merge for it: two byte tokens
    assert reply_text(tokenizer, tokens[:3] + split_character[:1], (), partial=True)[0] == "Paris is"
    assert reply_text(tokenizer, tokens[:3] + split_character, (), partial=True)[0] == "Paris isé"


def test_a_conversation_too_long_for_the_model_is_refused_in_its_pane(workspace, tiny_model_dir):
    cache = ModelCache(workspace)
    pane_model = cache.load(str(tiny_model_dir))
    prompt = Prompt(text="tea " * 600, stop_strings=(), notice=None)
    with pytest.raises(ChatError, match="clear the chat"):
        next(stream_reply(pane_model, prompt, GREEDY, threading.Event()))
