"""Data for the study: prompt templates, assistant-only labels, a synthetic task and tiny models.

The study fine-tunes SOLAR 10.7B on OpenOrca-KO. Everything here is shared by that run and by the
``tiny`` preset, which walks the same path offline on a CPU: rows with ``instruction``, ``input``
and ``output`` fields are put into a prompt template (:data:`PROMPT_TEMPLATES`), tokenized with
labels on the assistant's tokens only (:func:`tokenize_example`), trained on, and evaluated by
greedy decoding (:func:`greedy_generate`). For the tiny preset the tokenizer
(:func:`build_char_tokenizer`) and the model (:func:`make_tiny_llama`) are built locally, and the
task is multi-digit addition with a known difficulty knob (:func:`make_addition_rows`): nothing is
downloaded.

The study extra is needed: ``pip install 'zpd-curriculum[study]'``.
"""

from __future__ import annotations

import importlib
import json
import logging
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    import datasets
    import transformers

logger = logging.getLogger(__name__)

__all__ = [
    "ADDITION_INSTRUCTION",
    "CHAR_TOKENIZER_SPECIAL_TOKENS",
    "FIXTURE_PATH",
    "IGNORE_INDEX",
    "PROMPT_TEMPLATES",
    "PromptTemplate",
    "UnusableExampleError",
    "build_char_tokenizer",
    "collect_chars",
    "evaluate_addition",
    "exact_match",
    "format_example",
    "greedy_generate",
    "load_instruction_jsonl",
    "make_addition_rows",
    "make_addition_splits",
    "make_tiny_llama",
    "normalize_row",
    "tokenize_example",
    "tokenize_rows",
]

IGNORE_INDEX = -100
"""Label value that the loss ignores (``torch.nn.CrossEntropyLoss``'s default ``ignore_index``)."""

FIXTURE_PATH = Path(__file__).resolve().parent / "fixtures" / "openorca_ko_sample.jsonl"
"""A small JSONL file in OpenOrca-KO's schema (``id``, ``instruction``, ``input``, ``output``).

Forty-odd Korean instruction rows written for this project (short factual questions, arithmetic word
problems, summarisation, English-to-Korean translation, simple code questions), so that the tiny
preset exercises Hangul text without downloading anything.
"""


def _require(module: str) -> ModuleType:
    """Import an optional dependency, or raise an error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"zpd_curriculum.study needs `{module}`, which is not installed; "
            "run `pip install 'zpd-curriculum[study]'`."
        ) from err


# --------------------------------------------------------------------------------------------------
# Prompt templates
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTemplate:
    r"""A single-turn prompt format: the text before the assistant's answer.

    The user's turn is the row's ``instruction`` and ``input`` joined by ``separator`` (either may
    be empty, not both). The answer follows the prompt directly and is closed by the tokenizer's EOS
    token, which :func:`tokenize_example` appends as a token id, not as text.

    Attributes:
        name: Short name, the key in :data:`PROMPT_TEMPLATES`.
        prompt: The prompt with one ``{user}`` placeholder for the user's turn.
        separator: Placed between ``instruction`` and ``input`` when both are non-empty.

    Examples:
        >>> from zpd_curriculum.study import PromptTemplate
        >>> t = PromptTemplate("plain", "Q: {user}\nA: ")
        >>> t.render("2+2?")
        'Q: 2+2?\nA: '
    """

    name: str
    prompt: str
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        if self.prompt.count("{user}") != 1:
            raise ValueError(
                f"PromptTemplate.prompt must contain the placeholder '{{user}}' exactly once; "
                f"got {self.prompt!r}. Write the prompt as e.g. '### User:\\n{{user}}\\n\\n"
                "### Assistant:\\n'."
            )

    def render(self, user: str) -> str:
        """Return the prompt with ``user`` in place of ``{user}`` (braces in ``user`` are kept)."""
        return self.prompt.replace("{user}", user)


PROMPT_TEMPLATES: Mapping[str, PromptTemplate] = MappingProxyType(
    {
        # SOLAR-10.7B-Instruct:
        # "### User:\n{instruction}\n\n{input}\n\n### Assistant:\n{output}</s>".
        "solar": PromptTemplate("solar", "### User:\n{user}\n\n### Assistant:\n"),
        # Qwen2.5 (ChatML), without a system turn; the answer ends with EOS, which is <|im_end|>
        # for the Instruct tokenizers.
        "chatml": PromptTemplate(
            "chatml", "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        ),
    }
)
"""The prompt formats of the study's models, by name (read-only)."""


def _resolve_template(template: str | PromptTemplate) -> PromptTemplate:
    if isinstance(template, PromptTemplate):
        return template
    if isinstance(template, str):
        try:
            return PROMPT_TEMPLATES[template]
        except KeyError:
            raise ValueError(
                f"template must be one of {sorted(PROMPT_TEMPLATES)} or a PromptTemplate; "
                f"got {template!r}."
            ) from None
    raise TypeError(f"template must be a str or a PromptTemplate; got {type(template).__name__}.")


_OPENORCA_KO_FIELDS = ("instruction", "input", "output")
_GUGUGO_FIELDS = ("system_prompt", "question", "response")


def _text_field(row: Mapping[str, Any], key: str, *, required: bool) -> str:
    if key not in row:
        if required:
            raise ValueError(
                f"row is missing the field {key!r} (it has {sorted(row)}); rows need "
                "'instruction' and 'output' (OpenOrca-KO) or 'question' and 'response' (gugugo)."
            )
        return ""
    value = row[key]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"row field {key!r} must be a str; got {type(value).__name__}: {value!r}.")
    return value


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``row`` in OpenOrca-KO's schema: ``instruction``, ``input`` and ``output`` strings.

    Two schemas are accepted:

    - OpenOrca-KO: ``instruction``, ``output`` and an optional ``input``;
    - OpenOrca-gugugo-ko (the original OpenOrca columns): ``system_prompt`` (optional),
      ``question``, ``response``, mapped to ``instruction``, ``input`` and ``output``, so the system
      prompt comes first in the user's turn, as the instruction does in the SOLAR template.

    ``None`` reads as an empty string. Other fields (``id``, ``digits``...) are kept as they are.

    Args:
        row: A mapping with one of the two schemas.

    Returns:
        A new dict with ``instruction``, ``input`` and ``output`` and the other fields of ``row``.

    Raises:
        ValueError: If a required field is missing or the row mixes the two schemas.
        TypeError: If a text field is not a string.

    Examples:
        >>> from zpd_curriculum.study import normalize_row
        >>> normalize_row({"id": "a", "system_prompt": "", "question": "1+1?", "response": "2"})
        {'id': 'a', 'instruction': '', 'input': '1+1?', 'output': '2'}
        >>> normalize_row({"instruction": "Hi", "output": "Hello"})
        {'instruction': 'Hi', 'input': '', 'output': 'Hello'}
    """
    if not isinstance(row, Mapping):
        raise TypeError(f"row must be a mapping (a dict); got {type(row).__name__}.")
    has_ko = any(key in row for key in _OPENORCA_KO_FIELDS)
    has_gugugo = any(key in row for key in _GUGUGO_FIELDS)
    if has_ko and has_gugugo:
        raise ValueError(
            f"row mixes the OpenOrca-KO fields {_OPENORCA_KO_FIELDS} with the gugugo fields "
            f"{_GUGUGO_FIELDS} (it has {sorted(row)}); keep one schema per row."
        )
    if has_gugugo:
        texts = {
            "instruction": _text_field(row, "system_prompt", required=False),
            "input": _text_field(row, "question", required=True),
            "output": _text_field(row, "response", required=True),
        }
        rest = {k: v for k, v in row.items() if k not in _GUGUGO_FIELDS}
    else:
        texts = {
            "instruction": _text_field(row, "instruction", required=True),
            "input": _text_field(row, "input", required=False),
            "output": _text_field(row, "output", required=True),
        }
        rest = {k: v for k, v in row.items() if k not in _OPENORCA_KO_FIELDS}
    return {**rest, **texts}


def format_example(
    row: Mapping[str, Any], template: str | PromptTemplate = "solar"
) -> tuple[str, str]:
    r"""Split a row into the prompt and the completion the model should learn.

    The user's turn is ``instruction + "\n\n" + input``, or whichever of the two is non-empty.
    The completion is ``output`` verbatim; EOS is not part of the text (see
    :func:`tokenize_example`).

    Args:
        row: A row in either schema accepted by :func:`normalize_row`.
        template: A key of :data:`PROMPT_TEMPLATES` (``"solar"``, ``"chatml"``) or a
            :class:`PromptTemplate`.

    Returns:
        ``(prompt, completion)``; ``prompt + completion`` is the training text before EOS.

    Raises:
        ValueError: If both ``instruction`` and ``input`` are empty, or ``template`` is unknown.

    Examples:
        >>> from zpd_curriculum.study import format_example
        >>> row = {"instruction": "Translate.", "input": "Hello", "output": "안녕"}
        >>> format_example(row, "solar")
        ('### User:\nTranslate.\n\nHello\n\n### Assistant:\n', '안녕')
        >>> format_example({"instruction": "2+2?", "input": "", "output": "4"}, "chatml")[0]
        '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n'
    """
    resolved = _resolve_template(template)
    normalized = normalize_row(row)
    parts = [part for part in (normalized["instruction"], normalized["input"]) if part]
    if not parts:
        raise ValueError(
            f"row {normalized.get('id', '(no id)')!r} has an empty instruction and an empty input, "
            "so there is no user turn; drop the row or fill one of the two fields."
        )
    return resolved.render(resolved.separator.join(parts)), normalized["output"]


# --------------------------------------------------------------------------------------------------
# Tokenization with assistant-only labels
# --------------------------------------------------------------------------------------------------


class UnusableExampleError(ValueError):
    """A row that would train on no answer token: empty output, or a prompt filling max_length."""


def _encode_text(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _bos_prefix(tokenizer: Any) -> list[int]:
    """``[bos_token_id]`` if the tokenizer puts BOS in front of a text, else ``[]``."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return [bos] if with_special[:1] == [bos] and without[:1] != [bos] else []


def _encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt, the same for training (:func:`tokenize_example`) and generation."""
    return _bos_prefix(tokenizer) + _encode_text(tokenizer, prompt)


def _eos_id(tokenizer: Any) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(
            "the tokenizer has no eos_token, so answers cannot be closed; set "
            "`tokenizer.eos_token = ...` (for SOLAR '</s>', for Qwen2.5 '<|im_end|>')."
        )
    return int(eos)


def _check_max_length(max_length: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise TypeError(f"max_length must be an int; got {type(max_length).__name__}.")
    if max_length < 2:
        raise ValueError(
            f"max_length must be at least 2 (one prompt and one answer token); got {max_length}."
        )


def _tokenize(
    row: Mapping[str, Any], tokenizer: Any, template: str | PromptTemplate, max_length: int
) -> tuple[dict[str, list[int]], bool]:
    """Tokenize one row; also say whether the answer was truncated."""
    prompt, completion = format_example(row, template)
    row_id = row.get("id", "(no id)")
    if not completion:
        raise UnusableExampleError(
            f"row {row_id!r} has an empty output, so only EOS would be trained on; drop the row, "
            "or pass on_unusable='drop' to tokenize_rows."
        )
    prompt_ids = _encode_prompt(tokenizer, prompt)
    completion_ids = [*_encode_text(tokenizer, completion), _eos_id(tokenizer)]
    room = max_length - len(prompt_ids)
    if room < 1:
        raise UnusableExampleError(
            f"the prompt of row {row_id!r} is {len(prompt_ids)} tokens, which leaves no room for "
            f"the answer within max_length={max_length}; increase max_length to at least "
            f"{len(prompt_ids) + len(completion_ids)} (the whole example), or pass "
            "on_unusable='drop' to tokenize_rows to skip such rows."
        )
    truncated = len(completion_ids) > room
    completion_ids = completion_ids[:room]
    input_ids = prompt_ids + completion_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }, truncated


def tokenize_example(
    row: Mapping[str, Any],
    tokenizer: transformers.PreTrainedTokenizerBase,
    *,
    template: str | PromptTemplate = "solar",
    max_length: int = 2048,
) -> dict[str, list[int]]:
    r"""Tokenize a row for causal-LM fine-tuning with labels on the answer only.

    The prompt and the completion of :func:`format_example` are tokenized separately and
    concatenated, so the boundary between them is exact: every prompt token is labelled
    :data:`IGNORE_INDEX` (-100); every answer token and the EOS token after it are labelled with
    their own ids (the model shifts labels itself). If the tokenizer puts BOS in front of a text
    (Llama/SOLAR do), the prompt starts with BOS. Tokenizers that add a prefix space at the start of
    a text (SentencePiece) encode the answer as a text start; that is how the answer is learned and
    is the usual convention for completion-only training.

    Truncation keeps the prompt whole and cuts the end of the answer, EOS included (a cut answer
    should not teach the model to stop there). An example that would have no answer token at all
    raises :class:`UnusableExampleError` instead of being returned with only -100 labels: either
    the output is empty or the prompt alone fills ``max_length``. :func:`tokenize_rows` can drop
    such rows and report how many.

    Padding is the collator's job: pad with a dedicated pad token, never EOS, or a collator that
    masks pad positions also masks the labelled EOS (SOLAR has no pad token; add one).

    Args:
        row: A row in either schema accepted by :func:`normalize_row`.
        tokenizer: A Hugging Face tokenizer with an ``eos_token``.
        template: A key of :data:`PROMPT_TEMPLATES` or a :class:`PromptTemplate`.
        max_length: Most tokens in the example, at least 2.

    Returns:
        ``input_ids``, ``attention_mask`` (all ones) and ``labels``, lists of the same length.

    Raises:
        UnusableExampleError: If no answer token would be labelled (see above).
        ValueError: If the tokenizer has no EOS token or ``max_length`` < 2.

    Examples:
        >>> from zpd_curriculum.study import build_char_tokenizer, tokenize_example
        >>> tok = build_char_tokenizer()
        >>> row = {"instruction": "1+1?", "input": "", "output": "2"}
        >>> ex = tokenize_example(row, tok, template="solar", max_length=64)
        >>> tok.decode(ex["input_ids"])
        '### User:\n1+1?\n\n### Assistant:\n2</s>'
        >>> tok.decode([t for t in ex["labels"] if t != -100])
        '2</s>'
    """
    _check_max_length(max_length)
    example, _ = _tokenize(row, tokenizer, template, max_length)
    return example


def tokenize_rows(
    rows: Iterable[Mapping[str, Any]],
    tokenizer: transformers.PreTrainedTokenizerBase,
    *,
    template: str | PromptTemplate = "solar",
    max_length: int = 2048,
    on_unusable: Literal["raise", "drop"] = "raise",
) -> tuple[list[dict[str, list[int]]], list[int]]:
    """Tokenize many rows with :func:`tokenize_example`, dropping unusable ones if asked.

    Args:
        rows: Rows (a list of dicts or a ``datasets.Dataset``).
        tokenizer: A Hugging Face tokenizer with an ``eos_token``.
        template: A key of :data:`PROMPT_TEMPLATES` or a :class:`PromptTemplate`.
        max_length: Most tokens in an example, at least 2.
        on_unusable: ``"raise"`` to stop at the first row with no answer token to train on,
            ``"drop"`` to skip such rows; the number dropped is logged as a warning and can be
            read off as ``len(rows) - len(kept)``. Rows whose answers were cut are counted in a
            warning too.

    Returns:
        ``(examples, kept)``: the tokenized examples and, for each, the index of its row in
        ``rows``, so per-row data (difficulty scores, ids) can be aligned with the examples.

    Raises:
        UnusableExampleError: With ``on_unusable="raise"``, for the first unusable row.
        ValueError: If ``on_unusable`` is not ``"raise"`` or ``"drop"``.

    Examples:
        >>> from zpd_curriculum.study import build_char_tokenizer, tokenize_rows
        >>> tok = build_char_tokenizer()
        >>> rows = [{"instruction": "hi", "output": "hello"}, {"instruction": "x" * 50,
        ...          "output": "y"}]
        >>> examples, kept = tokenize_rows(rows, tok, max_length=40, on_unusable="drop")
        >>> kept
        [0]
    """
    _check_max_length(max_length)
    if on_unusable not in ("raise", "drop"):
        raise ValueError(f"on_unusable must be 'raise' or 'drop'; got {on_unusable!r}.")
    examples: list[dict[str, list[int]]] = []
    kept: list[int] = []
    n_rows = n_truncated = 0
    for index, row in enumerate(rows):
        n_rows += 1
        try:
            example, truncated = _tokenize(row, tokenizer, template, max_length)
        except UnusableExampleError:
            if on_unusable == "raise":
                raise
            continue
        examples.append(example)
        kept.append(index)
        n_truncated += truncated
    n_dropped = n_rows - len(kept)
    if n_dropped:
        logger.warning(
            "dropped %d of %d rows with no answer token to train on (empty output, or a prompt "
            "of max_length=%d tokens or more)",
            n_dropped,
            n_rows,
            max_length,
        )
    if n_truncated:
        logger.warning(
            "cut the answers of %d of %d rows to fit max_length=%d (their EOS is not trained on)",
            n_truncated,
            n_rows,
            max_length,
        )
    return examples, kept


# --------------------------------------------------------------------------------------------------
# Synthetic task: multi-digit addition, answer reversed
# --------------------------------------------------------------------------------------------------

ADDITION_INSTRUCTION = "Add the two numbers. Write the sum reversed, ones digit first."
"""The instruction of every addition row."""

_MAX_DIGITS = 18  # operands stay below 10**18 < 2**63, so numpy int64 draws are exact
_CHOICE_LIMIT = 10**7  # below this many distinct problems, sample them without replacement


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}.")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}.")


def _check_digits(digits: Iterable[int]) -> tuple[int, ...]:
    levels = tuple(digits)
    if not levels:
        raise ValueError("digits must name at least one level, e.g. digits=(1, 2, 3).")
    for d in levels:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"digits must hold ints; got {type(d).__name__}: {d!r}.")
        if not 1 <= d <= _MAX_DIGITS:
            raise ValueError(f"each digits level must be in [1, {_MAX_DIGITS}]; got {d}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"digits must not repeat a level; got {levels}.")
    return tuple(sorted(int(d) for d in levels))


def _level_counts(n: int, levels: int) -> list[int]:
    """``n`` split over ``levels`` as evenly as possible, the first levels taking the remainder."""
    base, extra = divmod(n, levels)
    return [base + (i < extra) for i in range(levels)]


def _addition_row(a: int, b: int, digits: int) -> dict[str, Any]:
    left, right = f"{a:0{digits}d}", f"{b:0{digits}d}"
    return {
        "id": f"add{digits}-{left}+{right}",
        "instruction": ADDITION_INSTRUCTION,
        "input": f"{left}+{right}",
        "output": f"{a + b:0{digits + 1}d}"[::-1],
        "digits": digits,
    }


def _sample_problems(count: int, digits: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` distinct operand pairs with ``digits`` digits each."""
    size = 10**digits
    space = size * size
    if count > space:
        raise ValueError(
            f"asked for {count} distinct {digits}-digit problems, but only {space} exist; "
            "lower n, or drop that level from digits."
        )
    if space <= _CHOICE_LIMIT:
        codes = rng.choice(space, size=count, replace=False)
        return [(int(c) // size, int(c) % size) for c in codes]
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        a, b = (int(x) for x in rng.integers(0, size, size=2))
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((a, b))
    return pairs


def make_addition_splits(
    n_train: int,
    n_eval: int,
    *,
    digits: Iterable[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval rows of the addition task, with no problem in both.

    See :func:`make_addition_rows` for the rows. Each level's problems are drawn once, without
    replacement, and split between train and eval, so the two never share a problem (nor an
    ``id``), and each split is balanced over the levels.

    Args:
        n_train: Number of training rows.
        n_eval: Number of evaluation rows.
        digits: The difficulty levels (operand lengths), each in [1, 18].
        seed: Seed of the draw (>= 0); the same arguments give the same rows.

    Returns:
        ``(train_rows, eval_rows)``, each shuffled.

    Raises:
        ValueError: If a level has fewer distinct problems than asked for, or an argument is out
            of range.

    Examples:
        >>> from zpd_curriculum.study import make_addition_splits
        >>> train, held_out = make_addition_splits(10, 5, digits=(1, 2), seed=0)
        >>> len(train), len(held_out)
        (10, 5)
        >>> {r["id"] for r in train}.isdisjoint(r["id"] for r in held_out)
        True
    """
    _check_count("n_train", n_train)
    _check_count("n_eval", n_eval)
    _check_seed(seed)
    levels = _check_digits(digits)
    train: list[dict[str, Any]] = []
    held_out: list[dict[str, Any]] = []
    for d, k_train, k_eval in zip(
        levels, _level_counts(n_train, len(levels)), _level_counts(n_eval, len(levels)), strict=True
    ):
        # One stream per level: a level's problems do not depend on which other levels are asked.
        pairs = _sample_problems(k_train + k_eval, d, np.random.default_rng([seed, d]))
        train.extend(_addition_row(a, b, d) for a, b in pairs[:k_train])
        held_out.extend(_addition_row(a, b, d) for a, b in pairs[k_train:])
    shuffle_rng = np.random.default_rng([seed, 0])
    train = [train[i] for i in shuffle_rng.permutation(len(train))]
    held_out = [held_out[i] for i in shuffle_rng.permutation(len(held_out))]
    return train, held_out


def make_addition_rows(
    n: int, *, digits: Iterable[int] = (1, 2, 3, 4, 5), seed: int = 0
) -> list[dict[str, Any]]:
    """Rows of multi-digit addition whose difficulty is the number of digits.

    Each row adds two operands of ``digits`` digits, zero-padded (``"07+35"``); the answer is the
    sum zero-padded to ``digits + 1`` digits and written reversed, least significant digit first
    (07 + 35 = 042, written ``"240"``), which lets a left-to-right model carry as it goes. Rows
    have ``instruction`` (:data:`ADDITION_INSTRUCTION`), ``input``, ``output``, ``digits`` (the
    difficulty) and a stable ``id`` that names the problem (``"add2-07+35"``). Problems are
    distinct, the levels are balanced (counts differ by at most one), and the rows are shuffled.

    Args:
        n: Number of rows.
        digits: The difficulty levels (operand lengths), each in [1, 18].
        seed: Seed of the draw (>= 0); the same arguments give the same rows.

    Returns:
        The rows, in a seeded random order. Same as ``make_addition_splits(n, 0, ...)[0]``.

    Raises:
        ValueError: If a level has fewer distinct problems than asked for (100 for one digit), or
            an argument is out of range.

    Examples:
        >>> from zpd_curriculum.study import make_addition_rows
        >>> rows = make_addition_rows(4, digits=(2,), seed=1)
        >>> sorted(rows[0])
        ['digits', 'id', 'input', 'instruction', 'output']
        >>> a, b = rows[0]["input"].split("+")
        >>> int(rows[0]["output"][::-1]) == int(a) + int(b)
        True
    """
    return make_addition_splits(n, 0, digits=digits, seed=seed)[0]


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference, ignoring surrounding whitespace.

    Args:
        predictions: Generated answers.
        references: Expected answers, one per prediction.

    Returns:
        A value in [0, 1].

    Raises:
        ValueError: If the lengths differ or both are empty.

    Examples:
        >>> from zpd_curriculum.study import exact_match
        >>> exact_match(["21 ", "70", "x"], ["21", "07", "x"])
        0.6666666666666666
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of str, not a single str.")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length; got {len(predictions)} "
            f"and {len(references)}."
        )
    if not predictions:
        raise ValueError("exact_match needs at least one prediction; got none.")
    hits = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
    return hits / len(predictions)


# --------------------------------------------------------------------------------------------------
# A character tokenizer and a tiny Llama, built locally
# --------------------------------------------------------------------------------------------------

CHAR_TOKENIZER_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
"""Special tokens of :func:`build_char_tokenizer`, with ids 0 to 3 in this order."""

_BASE_CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"


def collect_chars(rows: Iterable[Mapping[str, Any]]) -> str:
    """Every character in the ``instruction``, ``input`` and ``output`` of ``rows``, sorted.

    Args:
        rows: Rows in either schema accepted by :func:`normalize_row` (a list or a Dataset).

    Returns:
        The distinct characters, in code-point order, as one string.

    Examples:
        >>> from zpd_curriculum.study import collect_chars
        >>> collect_chars([{"instruction": "가나", "input": "", "output": "나다"}])
        '가나다'
    """
    chars: set[str] = set()
    for row in rows:
        normalized = normalize_row(row)
        for key in _OPENORCA_KO_FIELDS:
            chars.update(normalized[key])
    return "".join(sorted(chars))


def build_char_tokenizer(
    extra_chars: Iterable[str] = "",
) -> transformers.PreTrainedTokenizerFast:
    r"""A character-level tokenizer built locally, for the tiny preset.

    The vocabulary is the four :data:`CHAR_TOKENIZER_SPECIAL_TOKENS` (``<pad>`` 0, ``<s>`` 1,
    ``</s>`` 2, ``<unk>`` 3), then the digits, ASCII letters, ASCII punctuation, space and newline
    (enough for both prompt templates and the addition task), then ``extra_chars`` in code-point
    order. One character is one token, and decoding joins tokens without spaces, so
    ``decode(encode(text)) == text`` for any text of covered characters; other characters become
    ``<unk>``. No BOS or EOS is added by encoding (:func:`tokenize_example` appends EOS itself).
    ``pad_token`` is ``<pad>``, distinct from ``eos_token`` ``</s>``. The result saves and loads
    with ``save_pretrained``/``from_pretrained`` (or ``AutoTokenizer``) from a local directory.

    Args:
        extra_chars: Characters to add, e.g. ``collect_chars(load_instruction_jsonl(FIXTURE_PATH))``
            for the Hangul of the fixture. A string, or an iterable of one-character strings.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.

    Raises:
        TypeError: If an element of ``extra_chars`` is not a one-character string.

    Examples:
        >>> from zpd_curriculum.study import build_char_tokenizer
        >>> tok = build_char_tokenizer(extra_chars="안녕")
        >>> ids = tok("### User:\n안녕")["input_ids"]
        >>> len(ids), tok.decode(ids)
        (12, '### User:\n안녕')
        >>> tok.pad_token, tok.eos_token, tok.pad_token_id != tok.eos_token_id
        ('<pad>', '</s>', True)
    """
    tokenizers = _require("tokenizers")
    transformers = _require("transformers")
    extra: set[str] = set()
    for char in extra_chars:
        if not isinstance(char, str) or len(char) != 1:
            raise TypeError(
                "extra_chars must be a str or an iterable of one-character strings; "
                f"got the element {char!r}."
            )
        extra.add(char)
    chars = list(_BASE_CHARS) + sorted(extra.difference(_BASE_CHARS))
    vocab = {token: i for i, token in enumerate(CHAR_TOKENIZER_SPECIAL_TOKENS)}
    for char in chars:
        vocab[char] = len(vocab)
    # BPE without merges over the whole text (no pre-tokenizer) is exactly one token per
    # character, spaces and newlines included; Fuse joins them back without separators.
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = tokenizers.decoders.Fuse()
    backend.add_special_tokens(list(CHAR_TOKENIZER_SPECIAL_TOKENS))
    pad, bos, eos, unk = CHAR_TOKENIZER_SPECIAL_TOKENS
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=pad,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        clean_up_tokenization_spaces=False,
    )


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}.")


def make_tiny_llama(
    tokenizer: transformers.PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> transformers.LlamaForCausalLM:
    """A small randomly initialised ``LlamaForCausalLM`` sized to ``tokenizer``.

    The vocabulary is ``len(tokenizer)`` and the pad, BOS and EOS ids are the tokenizer's. The
    weights depend only on the arguments: initialisation runs under ``torch.random.fork_rng``
    seeded with ``seed``, so the global RNG state is the same afterwards as before.

    Args:
        tokenizer: The tokenizer the model will be used with; it needs a ``pad_token``.
        hidden_size: Width of the model; a multiple of ``2 * num_heads``.
        num_layers: Number of decoder layers.
        num_heads: Number of attention heads (no grouped-query attention).
        intermediate_size: Width of the MLP; ``None`` means ``4 * hidden_size``.
        max_position_embeddings: Longest sequence the config declares.
        seed: Seed of the initialisation (>= 0).

    Returns:
        The model, in float32 on the CPU, in training mode.

    Raises:
        ValueError: If the tokenizer has no pad token or a size is inconsistent.

    Examples:
        >>> import torch
        >>> from zpd_curriculum.study import build_char_tokenizer, make_tiny_llama
        >>> tok = build_char_tokenizer()
        >>> a, b = make_tiny_llama(tok, seed=3), make_tiny_llama(tok, seed=3)
        >>> torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
        True
        >>> a.config.vocab_size == len(tok), a.config.pad_token_id == tok.pad_token_id
        (True, True)
    """
    transformers = _require("transformers")
    for name, value in (
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("max_position_embeddings", max_position_embeddings),
    ):
        _check_positive(name, value)
    if intermediate_size is None:
        intermediate_size = 4 * hidden_size
    _check_positive("intermediate_size", intermediate_size)
    _check_seed(seed)
    if hidden_size % (2 * num_heads):
        raise ValueError(
            f"hidden_size must be a multiple of 2 * num_heads so that each head has an even size "
            f"for rotary embeddings; got hidden_size={hidden_size}, num_heads={num_heads}."
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad_token; add a dedicated one (not EOS, or padded batches mask "
            "the labelled EOS), e.g. `tokenizer.add_special_tokens({'pad_token': '<pad>'})`."
        )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
    return model


# --------------------------------------------------------------------------------------------------
# Loading the instruction data
# --------------------------------------------------------------------------------------------------


def load_instruction_jsonl(path: str | Path) -> datasets.Dataset:
    """Load a JSONL file of instruction rows into a ``datasets.Dataset``.

    Each non-blank line is one JSON object in either schema accepted by :func:`normalize_row`. The
    dataset has the columns ``id``, ``instruction``, ``input`` and ``output`` (strings; other fields
    are dropped); a row without ``id`` gets ``"<file stem>-<line number>"``. The file is read
    directly, without the ``datasets`` cache or any download.

    Args:
        path: The file, e.g. :data:`FIXTURE_PATH`.

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If a line is not a JSON object in one of the schemas (the message gives the
            line), or the file has no rows.

    Examples:
        >>> from zpd_curriculum.study import FIXTURE_PATH, load_instruction_jsonl
        >>> ds = load_instruction_jsonl(FIXTURE_PATH)
        >>> ds.column_names
        ['id', 'instruction', 'input', 'output']
        >>> ds[0]["instruction"]
        '대한민국의 수도는 어디인가요?'
    """
    datasets = _require("datasets")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no instruction file at {str(path)!r}; pass the path of a JSONL file "
            "(the shipped sample is zpd_curriculum.study.FIXTURE_PATH)."
        )
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{where} is not valid JSON ({err.msg}); write one JSON object per line."
                ) from err
            if not isinstance(obj, dict):
                raise ValueError(f"{where} holds a {type(obj).__name__}; expected a JSON object.")
            try:
                row = normalize_row(obj)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: {err}") from err
            rows.append(
                {
                    "id": str(row.get("id", f"{path.stem}-{line_number}")),
                    **{key: row[key] for key in _OPENORCA_KO_FIELDS},
                }
            )
    if not rows:
        raise ValueError(f"{str(path)!r} has no rows; expected one JSON object per line.")
    return datasets.Dataset.from_list(rows)


# --------------------------------------------------------------------------------------------------
# Evaluation by greedy decoding
# --------------------------------------------------------------------------------------------------


def greedy_generate(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> list[str]:
    """Complete each prompt by greedy decoding, stopping at EOS.

    Prompts are encoded exactly as :func:`tokenize_example` encodes them for training (BOS if the
    tokenizer adds one), grouped by length into batches, padded on the left with the pad token
    (EOS if there is none; the attention mask hides it), and decoded with ``do_sample=False``,
    ``num_beams=1``; decoding settings in ``model.generation_config`` (a checkpoint's sampling
    temperature, ``repetition_penalty``...) are overridden, so the answer is the argmax path. The
    text generated after each prompt is cut at the first EOS (the tokenizer's) and decoded without
    special tokens. The model is put in eval mode for the call and restored after.

    Args:
        model: A causal LM (``transformers.PreTrainedModel`` with ``generate``).
        tokenizer: Its tokenizer.
        prompts: Prompt texts, e.g. the first element of :func:`format_example`.
        max_new_tokens: Most tokens to generate per prompt.
        batch_size: Prompts per forward pass.

    Returns:
        One completion per prompt, in the order of ``prompts``.

    Raises:
        ValueError: If a size is below 1 or the tokenizer has neither pad nor EOS token.

    Examples:
        >>> from zpd_curriculum.study import build_char_tokenizer, greedy_generate
        >>> from zpd_curriculum.study import make_tiny_llama
        >>> tok = build_char_tokenizer()
        >>> model = make_tiny_llama(tok, hidden_size=32, num_layers=1)
        >>> out = greedy_generate(model, tok, ["1+1=", "22+3="], max_new_tokens=4)
        >>> len(out), all(isinstance(text, str) for text in out)
        (2, True)
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of str; wrap a single prompt in a list.")
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    transformers = _require("transformers")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if pad is None:
        raise ValueError(
            "the tokenizer has neither a pad_token nor an eos_token to pad prompts with; "
            "set `tokenizer.pad_token`."
        )
    encoded = [_encode_prompt(tokenizer, prompt) for prompt in prompts]
    # generate() fills every field left as None from model.generation_config (a checkpoint's
    # temperature, top_p, repetition_penalty...), so the fields that change greedy decoding, or
    # warn when set without sampling, are given their neutral values explicitly.
    generation_config = transformers.GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        do_sample=False,
        num_beams=1,
        temperature=1.0,
        top_k=50,
        top_p=1.0,
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        length_penalty=1.0,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id,
    )
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    completions: list[str] = [""] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i]
                if ids:
                    input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                    attention_mask[row, width - len(ids) :] = 1
            with torch.no_grad():
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=generation_config,
                )
            for row, i in enumerate(batch):
                new_tokens = output[row, width:].tolist()
                if eos is not None and eos in new_tokens:
                    new_tokens = new_tokens[: new_tokens.index(eos)]
                completions[i] = tokenizer.decode(new_tokens, skip_special_tokens=True)
    finally:
        if was_training:
            model.train()
    return completions


def evaluate_addition(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    rows: Sequence[Mapping[str, Any]],
    *,
    template: str | PromptTemplate = "solar",
    max_new_tokens: int | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """Exact match of greedy answers on addition rows, overall and per digit level.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer.
        rows: Rows from :func:`make_addition_rows` (they need ``output`` and ``digits``).
        template: The template the model was trained with.
        max_new_tokens: Most tokens to generate; ``None`` means the longest reference answer in
            tokens plus one (room for EOS).
        batch_size: Prompts per forward pass.

    Returns:
        ``{"exact_match": ..., "exact_match_d1": ..., "exact_match_d2": ..., ...}``: the overall
        fraction and one per digit level present in ``rows``, in increasing order of level.

    Raises:
        ValueError: If ``rows`` is empty or a row has no ``digits``.

    Examples:
        >>> from zpd_curriculum.study import build_char_tokenizer, evaluate_addition
        >>> from zpd_curriculum.study import make_addition_rows, make_tiny_llama
        >>> tok = build_char_tokenizer()
        >>> model = make_tiny_llama(tok, hidden_size=32, num_layers=1)
        >>> scores = evaluate_addition(model, tok, make_addition_rows(4, digits=(1, 2)))
        >>> sorted(scores)
        ['exact_match', 'exact_match_d1', 'exact_match_d2']
    """
    if not rows:
        raise ValueError("rows is empty; pass rows from make_addition_rows.")
    levels: list[int] = []
    for row in rows:
        if "digits" not in row:
            raise ValueError(
                f"row {row.get('id', '(no id)')!r} has no 'digits' field; evaluate_addition scores "
                "rows from make_addition_rows."
            )
        levels.append(int(row["digits"]))
    prompts: list[str] = []
    references: list[str] = []
    for row in rows:
        prompt, reference = format_example(row, template)
        prompts.append(prompt)
        references.append(reference)
    if max_new_tokens is None:
        max_new_tokens = max(len(_encode_text(tokenizer, ref)) for ref in references) + 1
    predictions = greedy_generate(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    scores = {"exact_match": exact_match(predictions, references)}
    for level in sorted(set(levels)):
        picked = [i for i, d in enumerate(levels) if d == level]
        scores[f"exact_match_d{level}"] = exact_match(
            [predictions[i] for i in picked], [references[i] for i in picked]
        )
    return scores
