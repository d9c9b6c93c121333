"""A tiny random Llama and a tokenizer built locally, saved as a model folder: tests never touch a hub."""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Ahoy matey! Arr, the treasure lies beyond the sea, me hearty.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "To make tea, steep the leaves in hot water for three minutes.",
    "The quick brown fox jumps over the lazy dog. 0123456789 ?!.,;:'\"()-",
]
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model_dir(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer random Llama with the local tokenizer to `folder` (safetensors) and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


LAST_TOKEN_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n{% endif %}{% endfor %}"
)


def build_last_token_reward_dir(tiny_model_dir: Path, folder: Path) -> Path:
    """A reward model whose answers are known: it scores only the last token, +4 for '!' and -4 for '?'.

    Every attention and MLP output projection is zero, so the last hidden state is the last token's
    embedding; the embeddings of '!' and '?' and the head are set so that the normalised state reads +-4.
    Its chat template adds nothing after the reply, so the last token is the reply's last character.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = LAST_TOKEN_TEMPLATE
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    hidden = model.config.hidden_size
    assert hidden == 32  # the +-4 below: rms of (+-1, 1, 0, ...) is sqrt(2 / 32) = 1 / 4
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for token, sign in (("!", 1.0), ("?", -1.0)):
            row = torch.zeros(hidden)
            row[0], row[1] = sign, 1.0
            model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids(token)] = row
        model.score.weight.zero_()
        model.score.weight[0, 0] = 1.0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
