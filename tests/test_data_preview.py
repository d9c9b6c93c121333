from tiny_model import build_tokenizer

from rlhf_studio.data.preview import display_rows, token_lengths

CONVERSATIONAL = {
    "prompt": [{"role": "user", "content": "What is the capital of France?"}],
    "chosen": [{"role": "assistant", "content": "Paris."}],
    "rejected": [{"role": "assistant", "content": "The capital of France is Paris, a large city."}],
}


def test_display_rows_flatten_conversations_and_keep_column_order():
    rows = display_rows([CONVERSATIONAL, {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}])
    assert list(rows[0]) == ["prompt", "chosen", "rejected"]
    assert rows[0]["prompt"] == "user: What is the capital of France?"
    assert rows[1]["rejected"] == "Go away"


def test_display_rows_respects_the_limit():
    assert len(display_rows([{"text": str(index)} for index in range(100)], limit=7)) == 7


def test_token_lengths_count_tokens_per_field():
    tokenizer = build_tokenizer()
    standard = {"prompt": "What is the capital of France?", "completion": "Paris."}
    lengths = token_lengths([standard, CONVERSATIONAL], tokenizer)
    assert lengths["prompt"][0] == len(tokenizer(standard["prompt"], add_special_tokens=False)["input_ids"])
    assert lengths["completion"] == [len(tokenizer("Paris.", add_special_tokens=False)["input_ids"])]
    assert lengths["rejected"][0] > lengths["chosen"][0] > 0
