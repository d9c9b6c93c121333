"""PPO rollouts on the tiny model: sampling with the KV cache, log-probs, padding, scoring format, data."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_studio.training.ppo.core import logprobs_from_logits, response_mask
from rlhf_studio.training.ppo.data import collate, sft_example, step_prompts
from rlhf_studio.training.ppo.rollout import (
    RewardModelScorer,
    SamplingSettings,
    encode_prompts,
    filter_logits,
    left_pad,
    response_logits,
    sample,
)
from rlhf_studio.training.ppo.step import pad_right, trim_columns

PROMPTS = ["What is the capital of France?", "Hi", [{"role": "user", "content": "Make tea, step by step."}]]


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads, and lose a lot to a busy CPU's spin waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def settings(tokenizer, **overrides) -> SamplingSettings:
    values = dict(
        max_new_tokens=10,
        temperature=0.8,
        top_k=0,
        top_p=1.0,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    return SamplingSettings(**{**values, **overrides})


def test_prompts_are_chat_formatted_and_left_padded(tiny):
    _, tokenizer = tiny
    encoded = encode_prompts(PROMPTS, tokenizer, max_tokens=64)
    assert tokenizer.decode(encoded[1]).endswith("<|im_start|>assistant\n")
    assert len(encode_prompts(PROMPTS, tokenizer, max_tokens=5)[0]) == 5  # the end is kept
    ids, mask = left_pad(encoded, tokenizer.pad_token_id, "cpu")
    shortest = min(range(3), key=lambda row: len(encoded[row]))
    assert mask[shortest, 0] == 0 and mask[:, -1].all()
    assert ids[shortest, -len(encoded[shortest]) :].tolist() == encoded[shortest]


def test_sampled_logprobs_equal_a_full_forward(tiny):
    """The 'old' log-probs come from the KV-cache loop: they must match one batched forward exactly."""
    model, tokenizer = tiny
    ids, mask = left_pad(encode_prompts(PROMPTS, tokenizer, 64), tokenizer.pad_token_id, "cpu")
    sampled = sample(model, ids, mask, settings(tokenizer), torch.Generator().manual_seed(0))
    real = response_mask(sampled.responses, tokenizer.eos_token_id)
    query_responses = torch.cat([ids, sampled.responses], dim=1)
    attention = torch.cat([mask, real.long()], dim=1)
    with torch.no_grad():
        logits, _ = response_logits(model, query_responses, attention, ids.shape[1])
    logprobs = logprobs_from_logits(logits / 0.8, sampled.responses)
    assert torch.allclose(logprobs[real], sampled.logprobs[real], atol=1e-4)
    assert (sampled.entropy[real] > 0).all()


def test_sampling_stops_at_eos_and_pads_after_it(tiny):
    model, tokenizer = tiny
    ids, mask = left_pad(encode_prompts(PROMPTS[:2], tokenizer, 64), tokenizer.pad_token_id, "cpu")
    eos = tokenizer.eos_token_id
    forced = settings(tokenizer, top_k=1)  # greedy: find the first greedy token and call it EOS
    first = sample(model, ids, mask, forced).responses[:, 0]
    stopped = sample(model, ids, mask, settings(tokenizer, top_k=1, eos_token_ids=[int(first[0]), eos]))
    assert stopped.responses[0, 0] == first[0]
    if stopped.responses.shape[1] > 1:
        assert (stopped.responses[0, 1:] == tokenizer.pad_token_id).all()


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=1.0)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_k=0, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_k=0, top_p=0.4)).tolist() == [[False, True, True, True]]


def test_reward_model_text_is_the_reward_trainer_format(tiny):
    _, tokenizer = tiny
    scorer = RewardModelScorer(model=None, tokenizer=tokenizer, batch_size=2, max_length=64)
    text = scorer.text("Hi", "Ahoy!")
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}], tokenize=False
    )
    assert text == expected


def test_trim_columns_and_pad_right():
    ids = torch.tensor([[0, 0, 5, 6, 7, 0], [0, 4, 5, 6, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]])
    trimmed, trimmed_mask, context, kept = trim_columns(ids, mask, context_length=3)
    assert trimmed.tolist() == [[0, 5, 6, 7], [4, 5, 6, 0]] and context == 2 and kept == 2
    assert trimmed_mask.sum() == mask.sum()
    padded = pad_right([torch.ones(1, 2), torch.ones(2, 3)], value=0.0)
    assert padded.tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 1]]


def test_step_prompts_cover_every_prompt_each_pass_and_split_across_processes():
    prompts = [f"p{i}" for i in range(10)]
    first_pass = step_prompts(prompts, 0, 5, 1, 0, seed=1) + step_prompts(prompts, 1, 5, 1, 0, seed=1)
    assert sorted(first_pass) == sorted(prompts)
    rank0, rank1 = (step_prompts(prompts, 0, 5, 2, rank, seed=1) for rank in (0, 1))
    assert sorted(rank0 + rank1) == sorted(prompts)


def test_sft_examples_for_ptx_train_on_the_completion_only(tiny):
    _, tokenizer = tiny
    ids, prompt_length = sft_example({"prompt": "Hi", "completion": "Hello there."}, tokenizer, 128)
    assert tokenizer.decode(ids[prompt_length:]).startswith("Hello there.<|im_end|>")
    batch = collate([(ids, prompt_length), (ids[:3], 1)], tokenizer.pad_token_id, "cpu")
    assert (batch["labels"][0, :prompt_length] == -100).all()
    assert batch["labels"][0, prompt_length:].tolist() == ids[prompt_length:]
    assert batch["attention_mask"][1].tolist()[:4] == [1, 1, 1, 0]
