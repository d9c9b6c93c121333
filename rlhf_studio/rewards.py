"""Reward functions for the online-RL stages (GRPO, RLOO): rules a user sets in a form, or a Python file.

TRL calls each function as `func(prompts=..., completions=..., completion_ids=..., **columns)`, with every
other dataset column as a list (`answer=[...]`) plus `trainer_state` and a few helpers, and logs it as
`rewards/<__name__>/mean`; it wants one float per completion, or None where the reward does not apply.
Completions are strings, or for conversational data lists of messages (`completion_text` reads both).

The rule rewards and their exact scores:
  format  1.0 if the whole stripped completion matches the regex (re.fullmatch, re.DOTALL: a format is the
          shape of the entire reply; write .* where anything may come before or after), else 0.0.
  words   share of the must-contain words present (1 when there are none) minus 1 if any must-avoid word is
          present, in [-1, 1]; words and phrases match whole, in any case, any whitespace inside a phrase.
  length  n = whitespace-separated words; 1.0 for min <= n <= max, n / min below min (0 at no words), and
          max(0, 2 - n / max) above max (0 at twice max): either side falls by 1 over the bound's own size.
  answer  1.0 / 0.0 against the row's value in a dataset column; None where that value cannot be compared
          (empty, or not a number in numeric mode). See `final_answer` and `last_number` for what is read.

Weights: 0 is allowed (the reward is built and logged, a watched metric that does not steer training); a
negative one is an error. A reward file is the user's code, run in the training process, so it loads only
when the studio was started with --allow-reward-code.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_studio.config.base import _field

ALLOW_REWARD_CODE_ENV = "RLHF_STUDIO_ALLOW_REWARD_CODE"
ANSWER_MATCHES = ("exact", "numeric")
RewardFunction = Callable[..., list[float | None]]
# What TRL passes besides the dataset's columns; left out when naming the columns in an error.
_TRL_KEYWORDS = {"prompts", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_ANSWER_MARKER = re.compile(r"answer\s*:|=", re.IGNORECASE)
_TRAILING = ".,;:!? \t\n"
# A number: optional sign (not glued to a word: "17-3" is 17 and 3), digits with optional thousands groups
# separated by "," or a (no-break, thin) space, an optional decimal part and exponent; or ".5".
_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:(?:\d{1,3}(?:[,\u00a0\u202f ]\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
)
_SEPARATORS = str.maketrans({",": None, " ": None, "\u00a0": None, "\u202f": None, "\u2212": "-"})


class RewardError(ValueError):
    """A reward that cannot be built or used; the message is one sentence for the user."""


@dataclass(frozen=True, kw_only=True)
class RuleRewardSettings:
    """The rule rewards of the settings form; a reward whose own settings are empty is not built."""

    format_regex: str = _field(
        "",
        r"The whole stripped reply must match this regular expression (e.g. <answer>\d+</answer>; .* for "
        "anything before or after). Empty: no format reward.",
        label="Format regex",
    )
    format_weight: float = _field(1.0, "Weight of the format reward (0: logged only).", label="Format weight")
    must_contain: str = _field("", "Comma-separated words or phrases to contain (share present).")
    must_avoid: str = _field("", "Comma-separated words or phrases to avoid (any of them costs 1).")
    words_weight: float = _field(1.0, "Weight of the words reward (0: logged only).", label="Words weight")
    min_words: int | None = _field(None, "Fewest words that score 1 (fewer: down to 0 at no words).")
    max_words: int | None = _field(None, "Most words that score 1 (more: down to 0 at twice this).")
    length_weight: float = _field(1.0, "Weight of the length reward (0: logged only).", label="Length weight")
    answer_column: str = _field(
        "", "Dataset column with each prompt's correct answer. Empty: no answer reward."
    )
    answer_match: str = _field(
        "numeric",
        "numeric: the reply's last number equals the answer (1,000 = 1000.0 = 1e3); exact: its final answer "
        "equals it as text (any case, trailing punctuation ignored).",
        choices=ANSWER_MATCHES,
    )
    answer_weight: float = _field(1.0, "Weight of the answer reward (0: logged only).", label="Answer weight")


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The reply as text: a plain completion as it is, a conversational one as its assistant messages'
    contents (text parts of multimodal content), joined by newlines; tool results are not the model's."""
    if isinstance(completion, str):
        return completion
    texts = [
        _content_text(message.get("content")) for message in completion if message.get("role") == "assistant"
    ]
    return "\n".join(text for text in texts if text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def _named(name: str, score: Callable[[str], float]) -> RewardFunction:
    """A TRL reward function scoring each completion's text alone, named for TRL's logs."""

    def reward(completions: list, **_: Any) -> list[float | None]:
        return [score(completion_text(completion)) for completion in completions]

    reward.__name__ = reward.__qualname__ = name
    return reward


def format_reward(pattern: str) -> RewardFunction:
    """1.0 where the whole stripped completion matches `pattern` (itself stripped; re.DOTALL), else 0.0."""
    try:
        regex = re.compile(pattern.strip(), re.DOTALL)
    except re.error as error:
        raise RewardError(f"The format pattern is not a valid regular expression ({error}).") from error
    return _named("format", lambda text: 1.0 if regex.fullmatch(text.strip()) else 0.0)


def split_words(text: str) -> tuple[str, ...]:
    """The form's comma-separated words: stripped, inner whitespace collapsed, empties and repeats (in any
    case) dropped, first spelling kept."""
    words: dict[str, str] = {}
    for item in text.split(","):
        word = " ".join(item.split())
        if word:
            words.setdefault(word.casefold(), word)
    return tuple(words.values())


def _word_pattern(phrase: str) -> re.Pattern[str]:
    # Lookarounds rather than \b, so a phrase that starts or ends with a symbol ("c++") still matches whole.
    body = r"\s+".join(re.escape(token) for token in phrase.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def words_reward(must_contain: Sequence[str], must_avoid: Sequence[str]) -> RewardFunction:
    """share of `must_contain` present (1 when there are none) minus 1 if any of `must_avoid` is present."""
    wanted = [_word_pattern(word) for word in must_contain if word.strip()]
    avoided = [_word_pattern(word) for word in must_avoid if word.strip()]
    if not wanted and not avoided:
        raise RewardError("The words reward needs at least one word to contain or avoid.")

    def score(text: str) -> float:
        share = sum(1 for pattern in wanted if pattern.search(text)) / len(wanted) if wanted else 1.0
        return share - (1.0 if any(pattern.search(text) for pattern in avoided) else 0.0)

    return _named("words", score)


def length_reward(min_words: int | None, max_words: int | None) -> RewardFunction:
    """1.0 for min_words <= words <= max_words (either bound optional, min 0 = none), falling linearly to 0
    at no words below the band and at twice max_words above it."""
    low = min_words or 0
    if low < 0 or (max_words is None and not low) or (max_words is not None and max_words < max(low, 1)):
        raise RewardError(f"The length band {min_words}..{max_words} words is not a band of 1 or more words.")

    def score(text: str) -> float:
        count = len(text.split())
        if count < low:
            return count / low
        if max_words is not None and count > max_words:
            return max(0.0, 2.0 - count / max_words)
        return 1.0

    return _named("length", score)


def final_answer(text: str) -> str:
    """The reply's final answer: the content of the last <answer>...</answer>; else the first line after the
    last "answer:" or "=", whichever comes later; else the whole stripped text."""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        return text[markers[-1].end() :].strip().split("\n", 1)[0].strip()
    return text.strip()


def normalize_answer(text: str) -> str:
    """Case folded, whitespace runs collapsed to one space, trailing punctuation (.,;:!?) dropped."""
    return " ".join(text.split()).casefold().rstrip(_TRAILING)


def parse_number(value: Any) -> float | None:
    """A dataset value as a number: an int or float, or a string that is one number in the forms `last_number`
    reads ("1,000", "1 000", "-3.50", "1e3"); None for anything else (text, NaN, infinity, booleans)."""
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip().translate(_SEPARATORS))
    else:
        return None
    return number if math.isfinite(number) else None


def last_number(text: str) -> float | None:
    """The last number written in the text (see _NUMBER: "," and spaces group thousands, never decimals)."""
    matches = _NUMBER.findall(text)
    return float(matches[-1].translate(_SEPARATORS)) if matches else None


def _exact_score(text: str, reference: Any) -> float | None:
    expected = normalize_answer(str(reference)) if reference is not None else ""
    if not expected:
        return None
    return 1.0 if normalize_answer(final_answer(text)) == expected else 0.0


def _numeric_score(text: str, reference: Any) -> float | None:
    expected = parse_number(reference)
    if expected is None:
        return None
    found = last_number(text)
    return 1.0 if found is not None and math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-12) else 0.0


def answer_reward(column: str, mode: str = "numeric") -> RewardFunction:
    """1.0 / 0.0 per completion against the same row's value in `column`; None where that value is empty, or
    (numeric) not a number. exact: `final_answer` vs the value, both through `normalize_answer`; numeric:
    `last_number` vs `parse_number(value)`."""
    if mode not in ANSWER_MATCHES:
        raise RewardError(f"The answer match must be exact or numeric, not {mode!r}.")
    score_one = _exact_score if mode == "exact" else _numeric_score

    def answer(completions: list, **columns: Any) -> list[float | None]:
        if column not in columns:
            names = ", ".join(sorted(set(columns) - _TRL_KEYWORDS)) or "none"
            raise RewardError(f"The answer reward needs a column {column!r}; the data has: {names}.")
        rows = zip(completions, columns[column], strict=True)
        return [score_one(completion_text(completion), reference) for completion, reference in rows]

    return answer


def configured_rewards(settings: RuleRewardSettings) -> dict[str, float]:
    """{name: weight} of the rewards whose settings are filled in, in the order `rule_rewards` builds them;
    empty when the form sets no rule reward (so a stage can ask for another reward instead)."""
    filled = {
        "format": bool(settings.format_regex.strip()),
        "words": bool(split_words(settings.must_contain) or split_words(settings.must_avoid)),
        "length": bool(settings.min_words) or settings.max_words is not None,
        "answer": bool(settings.answer_column.strip()),
    }
    return {name: getattr(settings, f"{name}_weight") for name, on in filled.items() if on}


def _count_errors(name: str, value: int | float | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not float(value).is_integer():
        return [f"{name}: must be a whole number of words, not {value!r}"]
    return [f"{name}: must be 0 or more, not {value}"] if value < 0 else []


def _length_errors(settings: RuleRewardSettings) -> list[str]:
    low, high = settings.min_words, settings.max_words
    errors = _count_errors("min_words", low) + _count_errors("max_words", high)
    if errors:
        return errors
    if high == 0:
        return ["max_words: must be at least 1 (leave it empty for no upper bound)"]
    if low is not None and high is not None and low > high:
        return [f"min_words: {low} is more than max_words ({high})"]
    return []


def _answer_errors(settings: RuleRewardSettings, columns: Collection[str] | None) -> list[str]:
    errors = []
    if settings.answer_match not in ANSWER_MATCHES:
        errors.append(f"answer_match: must be exact or numeric, not {settings.answer_match!r}")
    column = settings.answer_column.strip()
    if columns is not None and column not in columns:
        errors.append(
            f"answer_column: the dataset has no column {column!r} (its columns: {', '.join(columns)})"
        )
    return errors


def rule_reward_errors(settings: RuleRewardSettings, columns: Collection[str] | None = None) -> list[str]:
    """One "field: reason" line per problem, so the form reports it before a run starts, not mid-training.
    Only rewards that are filled in are checked; `columns`, when given, are the dataset's columns, which must
    hold the answer column."""
    configured = configured_rewards(settings)
    errors = _length_errors(settings)
    if "format" in configured:
        try:
            re.compile(settings.format_regex.strip(), re.DOTALL)
        except re.error as error:
            errors.append(f"format_regex: not a valid regular expression ({error})")
    both = {word.casefold() for word in split_words(settings.must_contain)}
    errors += [
        f"must_avoid: {word!r} is also a must-contain word"
        for word in split_words(settings.must_avoid)
        if word.casefold() in both
    ]
    if "answer" in configured:
        errors += _answer_errors(settings, columns)
    for name, weight in configured.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            errors.append(f"{name}_weight: must be a number, not {weight!r}")
        elif weight < 0:
            errors.append(f"{name}_weight: must be 0 or more (0 logs the reward without training on it)")
    return errors


def rule_rewards(settings: RuleRewardSettings) -> list[tuple[str, RewardFunction, float]]:
    """(name, function, weight) for each filled-in rule reward; name is the function's __name__, the key of
    TRL's `rewards/<name>/mean`. Raises RewardError with the error lines when the settings have problems."""
    errors = rule_reward_errors(settings)
    if errors:
        raise RewardError("; ".join(errors))
    low = int(settings.min_words) if settings.min_words is not None else None
    high = int(settings.max_words) if settings.max_words is not None else None
    builders: dict[str, Callable[[], RewardFunction]] = {
        "format": lambda: format_reward(settings.format_regex),
        "words": lambda: words_reward(split_words(settings.must_contain), split_words(settings.must_avoid)),
        "length": lambda: length_reward(low, high),
        "answer": lambda: answer_reward(settings.answer_column.strip(), settings.answer_match),
    }
    return [(name, builders[name](), float(weight)) for name, weight in configured_rewards(settings).items()]


def reward_code_allowed() -> bool:
    """Reward files run only when the operator opted in at launch (--allow-reward-code sets the variable)."""
    return os.environ.get(ALLOW_REWARD_CODE_ENV) == "1"


def _read_reward_source(path: Path) -> str:
    if not path.exists():
        raise RewardError(f"The reward file {path} does not exist.")
    if not path.is_file():
        raise RewardError(f"The reward file {path} is not a file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RewardError(f"The reward file {path.name} is not UTF-8 text.") from error


def load_reward_file(path: str | Path) -> RewardFunction:
    """The `reward(prompts, completions, **columns)` a Python file defines, named after the file's stem for
    TRL's logs, its scores checked to be numbers or None. Loading executes the file, so it is refused unless
    `reward_code_allowed()`."""
    path = Path(path)
    if not reward_code_allowed():
        raise RewardError(
            f"The reward file {path.name} is Python code that would run in the training process; restart the "
            "studio with --allow-reward-code if you trust it."
        )
    source = _read_reward_source(path)
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        message = f"The reward file {path.name} has a syntax error on line {error.lineno}: {error.msg}."
        raise RewardError(message) from error
    module = types.ModuleType(f"rlhf_studio_reward_{path.stem}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except Exception as error:
        message = f"The reward file {path.name} failed while loading: {type(error).__name__}: {error}."
        raise RewardError(message) from error
    user_reward = module.__dict__.get("reward")
    if not callable(user_reward):
        raise RewardError(
            f"The reward file {path.name} defines no function reward(prompts, completions, **columns)."
        )
    return _file_reward(re.sub(r"\W+", "_", path.stem) or "reward_file", user_reward)


def _file_reward(name: str, user_reward: Callable[..., Any]) -> RewardFunction:
    """The user's function, checked to return one number or None per completion, under the file's name."""

    def reward(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        scores = user_reward(prompts=prompts, completions=completions, **columns)
        if not isinstance(scores, (list, tuple)):
            raise RewardError(f"reward() in {name} returned {type(scores).__name__}, not a list of numbers.")
        if len(scores) != len(completions):
            raise RewardError(
                f"reward() in {name} returned {len(scores)} scores for {len(completions)} completions."
            )
        bad = [score for score in scores if score is not None and not _is_number(score)]
        if bad:
            raise RewardError(f"reward() in {name} returned {bad[0]!r}, which is not a number or None.")
        return [None if score is None else float(score) for score in scores]

    reward.__name__ = reward.__qualname__ = name
    return reward


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
