"""The online stages' reward functions (rlhf_studio/rewards.py) and the arithmetic demo set they score.

Each function is called the way TRL's GRPOTrainer calls it: keywords prompts, completions, completion_ids,
trainer_state and the dataset's other columns.
"""

import json
import operator
import re
from pathlib import Path

import pytest

from rlhf_studio import rewards
from rlhf_studio.rewards import (
    RewardError,
    RuleRewardSettings,
    answer_reward,
    completion_text,
    configured_rewards,
    format_reward,
    length_reward,
    load_reward_file,
    parse_number,
    rule_reward_errors,
    rule_rewards,
    split_words,
    words_reward,
)

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


def call(function, completions: list, **columns) -> list:
    """Call a reward function with the keywords TRL 1.16 passes."""
    prompts = ["question"] * len(completions)
    ids = [[1, 2]] * len(completions)
    return function(
        prompts=prompts, completions=completions, completion_ids=ids, trainer_state=None, **columns
    )


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_completion_text_reads_plain_conversational_and_parts():
    assert completion_text("plain") == "plain"
    assert completion_text(chat("hello")) == "hello"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"
    with_tool = [*chat("call"), {"role": "tool", "content": "TOOL OUTPUT"}, *chat("done")]
    assert completion_text(with_tool) == "call\ndone"


def test_format_reward_needs_a_full_match_of_the_stripped_text():
    function = format_reward(r"<answer>\d+</answer>")
    completions = [
        "<answer>42</answer>",
        "  <answer>7</answer>\n",
        "so <answer>42</answer>",
        "<answer>x</answer>",
    ]
    assert call(function, completions) == [1.0, 1.0, 0.0, 0.0]
    assert call(function, [chat("<answer>42</answer>")]) == [1.0]
    assert function.__name__ == "format"


def test_format_reward_dot_spans_lines():
    function = format_reward(r"<think>.*</think>\s*<answer>.*</answer>")
    assert call(function, ["<think>step 1\nstep 2</think>\n<answer>5</answer>"]) == [1.0]


def test_format_reward_refuses_a_bad_pattern():
    with pytest.raises(RewardError, match="not a valid regular expression"):
        format_reward("(unclosed")


def test_words_reward_scores_the_share_present_minus_one_for_an_avoided_word():
    function = words_reward(["Paris", "Eiffel Tower"], ["London"])
    completions = [
        "paris is lovely",
        "PARIS and the eiffel\n tower",
        "Paris, not London, has the Eiffel Tower",
        "parish and towers",
        "London only",
    ]
    assert call(function, completions) == [0.5, 1.0, 0.0, 0.0, -1.0]
    assert function.__name__ == "words"


def test_words_reward_with_only_words_to_avoid_scores_one_or_zero():
    function = words_reward([], ["sorry", "as an ai"])
    assert call(function, ["Here it is.", "Sorry, no.", "As an  AI I cannot", "sorrynot a word"]) == [
        1.0,
        0.0,
        0.0,
        1.0,
    ]


def test_words_match_symbols_whole():
    assert call(words_reward(["c++"], []), ["I like C++.", "I like cc++ and c"]) == [1.0, 0.0]


def test_split_words_trims_and_drops_empties_and_repeats():
    assert split_words(" Paris, ,eiffel   tower, paris ,") == ("Paris", "eiffel tower")


def test_length_reward_is_one_in_the_band_and_falls_linearly_outside():
    function = length_reward(5, 10)
    texts = [" ".join(["w"] * count) for count in (0, 4, 5, 10, 15, 20, 30)]
    assert call(function, texts) == [0.0, 0.8, 1.0, 1.0, 0.5, 0.0, 0.0]
    assert function.__name__ == "length"


def test_length_reward_with_one_bound():
    assert call(length_reward(None, 4), ["", "a b c d e f"]) == [1.0, 0.5]
    assert call(length_reward(4, None), ["a b", "a " * 100]) == [0.5, 1.0]
    with pytest.raises(RewardError):
        length_reward(None, None)
    with pytest.raises(RewardError):
        length_reward(10, 5)


def test_exact_answer_reads_the_final_answer():
    function = answer_reward("answer", "exact")
    completions = [
        "<answer>Paris</answer> and later <answer> paris. </answer>",
        "Let me think.\nAnswer: Paris!\nHope that helps.",
        "2 + 3 = Paris",
        "  PARIS  ",
        "The capital is Paris.",
        chat("answer:   paris"),
    ]
    assert call(function, completions, answer=["Paris"] * 6) == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    assert function.__name__ == "answer"


def test_exact_answer_collapses_whitespace_and_drops_trailing_punctuation():
    function = answer_reward("answer", "exact")
    assert call(function, ["Answer: New   York City."], answer=["new york city"]) == [1.0]
    assert call(function, ["Answer: New York"], answer=["New York City"]) == [0.0]


def test_exact_answer_with_an_empty_reference_is_not_applicable():
    assert call(answer_reward("answer", "exact"), ["Paris", "Paris"], answer=["", None]) == [None, None]


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        ("The total is 1,000.", "1000.0"),
        ("1000.0", "1,000"),
        ("It is 1e3 grams.", "1000"),
        ("That makes 1 000 grams.", "1e3"),
        ("x = -3.50", "-3.5"),
        ("The temperature fell to \u22127 degrees.", "-7"),
        ("17 + 25 = 42", 42),
        ("Half of 7 is 3.5.", 3.5),
        ("3 metres is 300 centimetres", "300"),
        ("17-3=14", "14"),
    ],
)
def test_numeric_answer_matches_normalised_numbers(completion, reference):
    assert call(answer_reward("answer", "numeric"), [completion], answer=[reference]) == [1.0]


@pytest.mark.parametrize(
    ("completion", "reference"),
    [("41", "42"), ("no number here", "42"), ("300 centimetres in 3 metres", "300"), ("1, 2, 3", "123")],
)
def test_numeric_answer_misses(completion, reference):
    assert call(answer_reward("answer", "numeric"), [completion], answer=[reference]) == [0.0]


def test_numeric_answer_against_a_value_that_is_not_a_number_is_not_applicable():
    function = answer_reward("answer", "numeric")
    references = ["forty-two", "", None, "3 m", True, float("nan")]
    assert call(function, ["42"] * 6, answer=references) == [None] * 6


def test_numeric_answer_on_conversational_completions_row_by_row():
    function = answer_reward("solution", "numeric")
    assert call(function, [chat("It is 42."), chat("It is 42.")], solution=["42", "43"]) == [1.0, 0.0]


def test_answer_reward_names_a_missing_column():
    with pytest.raises(RewardError, match=r"'answer'.*the data has: solution"):
        call(answer_reward("answer"), ["42"], solution=["42"])


def test_parse_number_forms():
    assert parse_number("1 000") == parse_number("1,000") == parse_number("1e3") == 1000.0
    assert parse_number(" -3.50 ") == -3.5
    assert parse_number(".5") == 0.5
    assert parse_number("1.2.3") is None and parse_number(float("inf")) is None


def test_empty_settings_build_no_rewards():
    assert rule_rewards(RuleRewardSettings()) == []
    assert configured_rewards(RuleRewardSettings()) == {}
    assert rule_reward_errors(RuleRewardSettings()) == []
    assert rule_rewards(RuleRewardSettings(must_contain=" , ", min_words=0)) == []


def test_rule_rewards_carry_names_and_weights():
    settings = RuleRewardSettings(
        format_regex=r".*<answer>.*</answer>",
        format_weight=0.5,
        must_avoid="sorry",
        words_weight=0.0,
        max_words=20,
        length_weight=0.25,
        answer_column="answer",
        answer_match="numeric",
        answer_weight=2.0,
    )
    built = rule_rewards(settings)
    assert configured_rewards(settings) == {"format": 0.5, "words": 0.0, "length": 0.25, "answer": 2.0}
    assert [(name, weight) for name, _, weight in built] == [
        ("format", 0.5),
        ("words", 0.0),
        ("length", 0.25),
        ("answer", 2.0),
    ]
    assert all(function.__name__ == name for name, function, _ in built)
    scores = {
        name: call(function, ["Sorry. <answer>42</answer>"], answer=["42"]) for name, function, _ in built
    }
    assert scores == {"format": [1.0], "words": [0.0], "length": [1.0], "answer": [1.0]}


def test_rule_reward_errors_name_the_field_and_reason():
    with pytest.raises(re.error) as regex_error:
        re.compile("(unclosed")
    settings = RuleRewardSettings(
        format_regex="(unclosed",
        must_contain="paris",
        must_avoid="Paris",
        min_words=30,
        max_words=20,
        answer_column="answer",
        answer_match="fuzzy",
        answer_weight=-1.0,
    )
    assert rule_reward_errors(settings) == [
        "min_words: 30 is more than max_words (20)",
        f"format_regex: not a valid regular expression ({regex_error.value})",
        "must_avoid: 'Paris' is also a must-contain word",
        "answer_match: must be exact or numeric, not 'fuzzy'",
        "answer_weight: must be 0 or more (0 logs the reward without training on it)",
    ]
    with pytest.raises(RewardError, match="format_regex"):
        rule_rewards(settings)


def test_rule_reward_errors_for_counts():
    assert rule_reward_errors(RuleRewardSettings(min_words=-2)) == ["min_words: must be 0 or more, not -2"]
    assert rule_reward_errors(RuleRewardSettings(max_words=0)) == [
        "max_words: must be at least 1 (leave it empty for no upper bound)"
    ]
    assert rule_reward_errors(RuleRewardSettings(max_words=2.5)) == [
        "max_words: must be a whole number of words, not 2.5"
    ]
    assert rule_rewards(RuleRewardSettings(min_words=2.0, max_words=4.0))[0][0] == "length"


def test_weights_of_rewards_not_configured_are_not_checked():
    assert rule_reward_errors(RuleRewardSettings(format_weight=-5.0, answer_match="fuzzy")) == []


def test_rule_reward_errors_check_the_answer_column_against_the_dataset():
    settings = RuleRewardSettings(answer_column="answer")
    assert rule_reward_errors(settings, columns=["prompt", "answer"]) == []
    assert rule_reward_errors(settings, columns=["prompt", "solution"]) == [
        "answer_column: the dataset has no column 'answer' (its columns: prompt, solution)"
    ]


REWARD_FILE = """
from pathlib import Path

Path(__file__).with_name("loaded").write_text("yes")


def reward(prompts, completions, answer, **columns):
    return [float(len(columns["completion_ids"][i])) if a else None for i, a in enumerate(answer)]
"""


def test_reward_file_is_refused_without_the_launch_flag(monkeypatch, tmp_path):
    monkeypatch.delenv(rewards.ALLOW_REWARD_CODE_ENV, raising=False)
    path = tmp_path / "my_reward.py"
    path.write_text(REWARD_FILE)
    with pytest.raises(RewardError, match="restart the studio with --allow-reward-code if you trust it"):
        load_reward_file(path)
    assert not (tmp_path / "loaded").exists()
    monkeypatch.setenv(rewards.ALLOW_REWARD_CODE_ENV, "true")
    with pytest.raises(RewardError, match="--allow-reward-code"):
        load_reward_file(path)


def test_reward_file_is_used_with_the_launch_flag(monkeypatch, tmp_path):
    monkeypatch.setenv(rewards.ALLOW_REWARD_CODE_ENV, "1")
    path = tmp_path / "my-reward.py"
    path.write_text(REWARD_FILE)
    function = load_reward_file(str(path))
    assert (tmp_path / "loaded").read_text() == "yes"
    assert function.__name__ == "my_reward"
    assert call(function, ["a", "b"], answer=["42", ""]) == [2.0, None]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (None, "does not exist"),
        ("def score(prompts, completions, **columns):\n    return []\n", "defines no function reward"),
        ("reward = 3\n", "defines no function reward"),
        ("x = 1\ndef reward(:\n", "syntax error on line 2"),
        ("import no_such_module_here\n", "failed while loading: ModuleNotFoundError"),
    ],
)
def test_bad_reward_files_give_one_sentence(monkeypatch, tmp_path, source, message):
    monkeypatch.setenv(rewards.ALLOW_REWARD_CODE_ENV, "1")
    path = tmp_path / "bad.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(RewardError, match=message):
        load_reward_file(path)


def test_a_folder_is_not_a_reward_file(monkeypatch, tmp_path):
    monkeypatch.setenv(rewards.ALLOW_REWARD_CODE_ENV, "1")
    with pytest.raises(RewardError, match="is not a file"):
        load_reward_file(tmp_path)


@pytest.mark.parametrize(
    ("returned", "message"),
    [("0.5", "returned float"), ("[1.0]", "returned 1 scores for 2"), ("[1.0, 'x']", "'x', which is not")],
)
def test_reward_file_results_are_checked(monkeypatch, tmp_path, returned, message):
    monkeypatch.setenv(rewards.ALLOW_REWARD_CODE_ENV, "1")
    path = tmp_path / "odd.py"
    path.write_text(f"def reward(prompts, completions, **columns):\n    return {returned}\n")
    with pytest.raises(RewardError, match=message):
        call(load_reward_file(path), ["a", "b"])


def demo_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO / name).read_text(encoding="utf-8").splitlines()]


def question_key(prompt: str) -> str:
    """One key per question however it is worded: minus/-, times/x, half of n = n / 2, a + b = b + a."""
    text = prompt.casefold().replace(" minus ", " - ").replace(" times ", " x ")
    text = re.sub(r"half of (\d+)", r"\1 divided by 2", text)
    match = re.fullmatch(r"what is (\d+) ([+x]) (\d+)\?", text)
    return f"{match[2]} {sorted([int(match[1]), int(match[3])])}" if match else text


def test_arithmetic_demo_sets_are_numeric_short_and_held_out():
    train, held_out = demo_rows("arithmetic.jsonl"), demo_rows("arithmetic_eval.jsonl")
    assert 100 <= len(train) <= 140 and 30 <= len(held_out) <= 50
    for row in train + held_out:
        assert set(row) == {"prompt", "answer"} and isinstance(row["answer"], str)
        assert parse_number(row["answer"]) is not None, row
        assert len(row["prompt"].split()) <= 12, row
    train_keys = {question_key(row["prompt"]) for row in train}
    assert len(train_keys) == len(train)
    assert [row["prompt"] for row in held_out if question_key(row["prompt"]) in train_keys] == []


def test_arithmetic_demo_answers_are_right():
    operations = {"+": operator.add, "-": operator.sub, "minus": operator.sub, "x": operator.mul}
    operations |= {"times": operator.mul, "divided by": operator.truediv}
    checked = 0
    for row in demo_rows("arithmetic.jsonl") + demo_rows("arithmetic_eval.jsonl"):
        match = re.fullmatch(r"What is (\d+) (\+|-|minus|x|times|divided by) (\d+)\?", row["prompt"])
        if match:
            expected = operations[match[2]](int(match[1]), int(match[3]))
            assert parse_number(row["answer"]) == expected, row
            checked += 1
    assert checked >= 80
