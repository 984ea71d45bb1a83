"""Tests of zpd_curriculum.study._data: templates, labels, the addition task, tiny models."""

from __future__ import annotations

import json
import logging
import string
from collections import Counter
from functools import cache

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")

import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from zpd_curriculum.study import _data  # noqa: E402
from zpd_curriculum.study._data import (  # noqa: E402
    ADDITION_INSTRUCTION,
    CHAR_TOKENIZER_SPECIAL_TOKENS,
    FIXTURE_PATH,
    IGNORE_INDEX,
    PROMPT_TEMPLATES,
    PromptTemplate,
    UnusableExampleError,
    build_char_tokenizer,
    collect_chars,
    evaluate_addition,
    exact_match,
    format_example,
    greedy_generate,
    load_instruction_jsonl,
    make_addition_rows,
    make_addition_splits,
    make_tiny_llama,
    normalize_row,
    tokenize_example,
    tokenize_rows,
)

# Hypothesis: tokenizers and models are built once per module, so examples are cheap but the first
# one is not; no deadline.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE_CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core runner OpenMP threads
    contend (a training step took 1.7 s on 2 threads and 0.05 s on 1); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def fixture_rows() -> list[dict]:
    return list(load_instruction_jsonl(FIXTURE_PATH))


@cache
def fixture_chars() -> str:
    return collect_chars(fixture_rows())


@cache
def char_tokenizer():
    return build_char_tokenizer(extra_chars=fixture_chars())


SUPPORTED = BASE_CHARS + fixture_chars()
texts = st.text(alphabet=SUPPORTED, max_size=40)
nonempty_texts = st.text(alphabet=SUPPORTED, min_size=1, max_size=40)
template_names = st.sampled_from(sorted(PROMPT_TEMPLATES))


def labelled(ids: list[int], labels: list[int]) -> list[int]:
    return [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "row", "prompt"),
    [
        (
            "solar",
            {"instruction": "Sum it.", "input": "3+4", "output": "7"},
            "### User:\nSum it.\n\n3+4\n\n### Assistant:\n",
        ),
        (
            "solar",
            {"instruction": "Sum it.", "input": "", "output": "7"},
            "### User:\nSum it.\n\n### Assistant:\n",
        ),
        (
            "chatml",
            {"instruction": "Sum it.", "input": "3+4", "output": "7"},
            "<|im_start|>user\nSum it.\n\n3+4<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "chatml",
            {"instruction": "Sum it.", "input": "", "output": "7"},
            "<|im_start|>user\nSum it.<|im_end|>\n<|im_start|>assistant\n",
        ),
    ],
)
def test_templates_produce_the_exact_strings(template, row, prompt):
    assert format_example(row, template) == (prompt, "7")
    assert format_example(row, PROMPT_TEMPLATES[template]) == (prompt, "7")


def test_missing_input_key_reads_as_empty():
    row = {"instruction": "Hi", "output": "Hello"}
    assert format_example(row, "solar") == ("### User:\nHi\n\n### Assistant:\n", "Hello")


def test_gugugo_schema_maps_system_prompt_question_response():
    row = {"id": "g1", "system_prompt": "Be brief.", "question": "2+2?", "response": "4"}
    assert normalize_row(row) == {
        "id": "g1",
        "instruction": "Be brief.",
        "input": "2+2?",
        "output": "4",
    }
    assert format_example(row, "solar") == ("### User:\nBe brief.\n\n2+2?\n\n### Assistant:\n", "4")
    no_system = {"system_prompt": "", "question": "2+2?", "response": "4"}
    assert format_example(no_system, "solar")[0] == "### User:\n2+2?\n\n### Assistant:\n"
    assert (
        normalize_row({"system_prompt": None, "question": "q", "response": "r"})["instruction"]
        == ""
    )


def test_normalize_row_keeps_other_fields_and_maps_none_to_empty():
    row = {"id": 7, "digits": 3, "instruction": "a", "input": None, "output": "b"}
    assert normalize_row(row) == {
        "id": 7,
        "digits": 3,
        "instruction": "a",
        "input": "",
        "output": "b",
    }


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [
        ({"instruction": "", "input": "", "output": "x"}, ValueError, "empty instruction"),
        ({"instruction": "a", "question": "b", "output": "c"}, ValueError, "keep one schema"),
        ({"instruction": "a"}, ValueError, "missing the field 'output'"),
        ({"system_prompt": "s", "response": "r"}, ValueError, "missing the field 'question'"),
        ({"instruction": 3, "output": "c"}, TypeError, "'instruction' must be a str"),
        (["instruction", "output"], TypeError, "must be a mapping"),
    ],
)
def test_bad_rows_raise_with_the_fix(row, error, match):
    with pytest.raises(error, match=match):
        format_example(row, "solar")


def test_unknown_template_names_the_choices():
    with pytest.raises(ValueError, match=r"\['chatml', 'solar'\]"):
        format_example({"instruction": "a", "output": "b"}, "llama3")
    with pytest.raises(TypeError, match="PromptTemplate"):
        format_example({"instruction": "a", "output": "b"}, 3)


def test_prompt_template_needs_exactly_one_placeholder():
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplate("bad", "### User:\n")
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplate("bad", "{user}{user}")


def test_braces_in_user_text_are_kept_verbatim():
    row = {"instruction": "print({x})", "input": "{user}", "output": "{}"}
    assert format_example(row, "solar") == (
        "### User:\nprint({x})\n\n{user}\n\n### Assistant:\n",
        "{}",
    )


def test_prompt_templates_are_read_only():
    with pytest.raises(TypeError):
        PROMPT_TEMPLATES["solar"] = PromptTemplate("x", "{user}")  # type: ignore[index]


# --------------------------------------------------------------------------------------------------
# Assistant-only labels
# --------------------------------------------------------------------------------------------------


def test_label_masking_exact_on_a_known_example():
    tok = char_tokenizer()
    row = {"instruction": "1+1?", "input": "", "output": "2"}
    ex = tokenize_example(row, tok, template="solar", max_length=128)
    prompt = "### User:\n1+1?\n\n### Assistant:\n"
    assert ex["input_ids"] == tok(prompt)["input_ids"] + tok("2")["input_ids"] + [tok.eos_token_id]
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt) + tok("2")["input_ids"] + [tok.eos_token_id]
    assert ex["attention_mask"] == [1] * (len(prompt) + 2)
    assert tok.pad_token_id != tok.eos_token_id


@PROPERTY
@given(instruction=nonempty_texts, context=texts, output=nonempty_texts, template=template_names)
def test_labels_are_exactly_the_completion_and_eos(instruction, context, output, template):
    tok = char_tokenizer()
    row = {"instruction": instruction, "input": context, "output": output}
    prompt, completion = format_example(row, template)
    ex = tokenize_example(row, tok, template=template, max_length=512)
    n_prompt = len(tok(prompt)["input_ids"])
    assert len(ex["input_ids"]) == len(ex["labels"]) == len(ex["attention_mask"])
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["labels"][-1] == tok.eos_token_id != tok.pad_token_id
    assert tok.decode(labelled(ex["input_ids"], ex["labels"])) == completion + tok.eos_token
    assert tok.decode(ex["input_ids"]) == prompt + completion + tok.eos_token


@PROPERTY
@given(output=st.text(alphabet="0123456789abc ", min_size=1, max_size=30), cut=st.integers(1, 40))
def test_truncation_keeps_the_prompt_and_cuts_the_answer(output, cut):
    tok = char_tokenizer()
    row = {"instruction": "Echo.", "output": output}
    prompt, _ = format_example(row, "solar")
    n_prompt = len(prompt)  # one token per character
    full = n_prompt + len(output) + 1
    ex = tokenize_example(row, tok, template="solar", max_length=n_prompt + cut)
    assert len(ex["input_ids"]) == min(full, n_prompt + cut)
    assert tok.decode(ex["input_ids"][:n_prompt]) == prompt
    kept = labelled(ex["input_ids"], ex["labels"])
    if cut >= len(output) + 1:
        assert tok.decode(kept) == output + "</s>"
    else:  # cut answers lose their EOS: the model must not learn to stop mid-answer
        assert tok.decode(kept) == output[:cut]
        assert tok.eos_token_id not in kept


def test_prompt_filling_max_length_raises_with_the_fix():
    tok = char_tokenizer()
    row = {"instruction": "x" * 40, "output": "y"}
    n_prompt = len(format_example(row, "solar")[0])
    with pytest.raises(UnusableExampleError, match=f"at least {n_prompt + 2}"):
        tokenize_example(row, tok, template="solar", max_length=n_prompt)
    ex = tokenize_example(row, tok, template="solar", max_length=n_prompt + 1)
    assert labelled(ex["input_ids"], ex["labels"]) == tok("y")["input_ids"]


def test_empty_output_is_unusable():
    with pytest.raises(UnusableExampleError, match="empty output"):
        tokenize_example({"instruction": "a", "output": ""}, char_tokenizer(), max_length=64)


@pytest.mark.parametrize(
    ("max_length", "error"), [(1, ValueError), (0, ValueError), (2.5, TypeError)]
)
def test_bad_max_length(max_length, error):
    with pytest.raises(error, match="max_length"):
        tokenize_example(
            {"instruction": "a", "output": "b"}, char_tokenizer(), max_length=max_length
        )


def test_tokenize_rows_drops_and_counts_unusable_rows(caplog):
    tok = char_tokenizer()
    rows = [
        {"id": "ok1", "instruction": "a", "output": "b"},
        {"id": "long", "instruction": "x" * 200, "output": "b"},
        {"id": "empty", "instruction": "a", "output": ""},
        {"id": "ok2", "instruction": "c", "output": "d" * 100},
    ]
    with caplog.at_level(logging.WARNING, logger=_data.__name__):
        examples, kept = tokenize_rows(rows, tok, max_length=64, on_unusable="drop")
    assert kept == [0, 3]
    assert [tok.decode(labelled(e["input_ids"], e["labels"]))[:1] for e in examples] == ["b", "d"]
    assert "dropped 2 of 4 rows" in caplog.text
    assert "cut the answers of 1 of 4 rows" in caplog.text
    with pytest.raises(UnusableExampleError, match="'long'"):
        tokenize_rows(rows, tok, max_length=64)
    with pytest.raises(ValueError, match="on_unusable"):
        tokenize_rows(rows, tok, max_length=64, on_unusable="skip")


def test_prompt_starts_with_bos_when_the_tokenizer_adds_it():
    from tokenizers import processors

    tok = build_char_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    assert tok("ab")["input_ids"][0] == tok.bos_token_id  # the setup mimics Llama/SOLAR
    ex = tokenize_example({"instruction": "a", "output": "b"}, char_tokenizer(), max_length=64)
    ex_bos = tokenize_example({"instruction": "a", "output": "b"}, tok, max_length=64)
    assert ex_bos["input_ids"] == [tok.bos_token_id, *ex["input_ids"]]
    assert ex_bos["labels"] == [IGNORE_INDEX, *ex["labels"]]
    assert ex_bos["input_ids"].count(tok.bos_token_id) == 1
    assert ex_bos["input_ids"].count(tok.eos_token_id) == 1


def test_tokenizer_without_eos_is_refused():
    tok = build_char_tokenizer()
    tok.eos_token = None
    with pytest.raises(ValueError, match="eos_token"):
        tokenize_example({"instruction": "a", "output": "b"}, tok, max_length=64)


# --------------------------------------------------------------------------------------------------
# The addition task
# --------------------------------------------------------------------------------------------------


def check_addition_row(row: dict) -> None:
    d = row["digits"]
    left, right = row["input"].split("+")
    assert len(left) == len(right) == d and left.isdigit() and right.isdigit()
    assert len(row["output"]) == d + 1 and row["output"].isdigit()
    total = int(left) + int(right)
    assert int(row["output"][::-1]) == total
    assert row["output"] == str(total).zfill(d + 1)[::-1]
    assert row["instruction"] == ADDITION_INSTRUCTION
    assert row["id"] == f"add{d}-{left}+{right}"


digit_levels = st.sets(st.integers(1, 6), min_size=1, max_size=4).map(sorted).map(tuple)
seeds = st.integers(0, 2**32)


@PROPERTY
@given(n=st.integers(0, 80), digits=digit_levels, seed=seeds)
def test_addition_rows_are_correct_balanced_and_deterministic(n, digits, seed):
    rows = make_addition_rows(n, digits=digits, seed=seed)
    assert len(rows) == n
    for row in rows:
        check_addition_row(row)
    assert len({row["id"] for row in rows}) == n
    counts = Counter(row["digits"] for row in rows)
    assert set(counts) <= set(digits)
    per_level = [counts.get(d, 0) for d in digits]
    assert max(per_level) - min(per_level) <= 1
    assert rows == make_addition_rows(n, digits=digits, seed=seed)


@PROPERTY
@given(n_train=st.integers(0, 60), n_eval=st.integers(0, 30), digits=digit_levels, seed=seeds)
def test_addition_splits_are_disjoint_and_balanced(n_train, n_eval, digits, seed):
    train, held_out = make_addition_splits(n_train, n_eval, digits=digits, seed=seed)
    assert (len(train), len(held_out)) == (n_train, n_eval)
    assert not {r["id"] for r in train} & {r["id"] for r in held_out}
    assert not {(r["digits"], r["input"]) for r in train} & {
        (r["digits"], r["input"]) for r in held_out
    }
    for split in (train, held_out):
        counts = [Counter(r["digits"] for r in split).get(d, 0) for d in digits]
        assert max(counts) - min(counts) <= 1
        for row in split:
            check_addition_row(row)


def test_addition_rows_equal_splits_without_eval():
    assert make_addition_rows(30, seed=4) == make_addition_splits(30, 0, seed=4)[0]


def test_one_digit_level_is_every_problem_with_reversed_zero_padded_answers():
    rows = make_addition_rows(100, digits=(1,), seed=0)
    by_input = {row["input"]: row["output"] for row in rows}
    assert set(by_input) == {f"{a}+{b}" for a in range(10) for b in range(10)}
    assert by_input["7+5"] == "21"  # 12 reversed
    assert by_input["3+4"] == "70"  # 07 reversed
    assert by_input["0+0"] == "00"
    assert by_input["9+9"] == "81"


def test_operands_are_zero_padded():
    rows = make_addition_rows(200, digits=(3,), seed=1)
    assert any(row["input"].startswith("0") for row in rows)
    assert all(len(row["input"]) == 7 for row in rows)
    row = next(r for r in rows if r["input"].startswith("0"))
    check_addition_row(row)


def test_rows_are_shuffled_across_levels_and_seeds_differ():
    rows = make_addition_rows(50, digits=(1, 2, 3, 4, 5), seed=0)
    levels = [row["digits"] for row in rows]
    assert levels != sorted(levels)
    assert rows != make_addition_rows(50, digits=(1, 2, 3, 4, 5), seed=1)


def test_a_level_does_not_depend_on_the_other_levels():
    alone = make_addition_rows(10, digits=(2,), seed=3)
    mixed = [r for r in make_addition_rows(20, digits=(1, 2), seed=3) if r["digits"] == 2]
    assert sorted(r["id"] for r in alone) == sorted(r["id"] for r in mixed)


def test_large_digit_levels_are_exact():
    for row in make_addition_rows(20, digits=(12, 18), seed=0):
        check_addition_row(row)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 101, "digits": (1,)}, ValueError, "only 100 exist"),
        ({"n": 3, "digits": ()}, ValueError, "at least one level"),
        ({"n": 3, "digits": (0,)}, ValueError, r"\[1, 18\]"),
        ({"n": 3, "digits": (19,)}, ValueError, r"\[1, 18\]"),
        ({"n": 3, "digits": (2, 2)}, ValueError, "repeat"),
        ({"n": 3, "digits": (True,)}, TypeError, "ints"),
        ({"n": -1}, ValueError, "n_train must be >= 0"),
        ({"n": 2.0}, TypeError, "n_train must be an int"),
        ({"n": 3, "seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_addition_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_addition_rows(**kwargs)


def test_exact_match_values():
    assert exact_match(["21", "70"], ["21", "70"]) == 1.0
    assert exact_match(["12", "07"], ["21", "70"]) == 0.0
    assert exact_match([" 21\n", "70", "x"], ["21", "07", "x"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        exact_match(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="at least one"):
        exact_match([], [])
    with pytest.raises(TypeError, match="single str"):
        exact_match("12", "12")


# --------------------------------------------------------------------------------------------------
# Character tokenizer
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(alphabet=SUPPORTED, max_size=200))
def test_char_tokenizer_round_trips_supported_text(text):
    tok = char_tokenizer()
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    if not any(special in text for special in CHAR_TOKENIZER_SPECIAL_TOKENS):
        assert len(ids) == len(text)  # one character, one token
        assert tok.unk_token_id not in ids


def test_char_tokenizer_round_trips_every_fixture_prompt():
    tok = char_tokenizer()
    for row in fixture_rows():
        for template in PROMPT_TEMPLATES:
            text = "".join(format_example(row, template))
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text


def test_char_tokenizer_special_tokens():
    tok = build_char_tokenizer()
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert (
        tok.pad_token,
        tok.bos_token,
        tok.eos_token,
        tok.unk_token,
    ) == CHAR_TOKENIZER_SPECIAL_TOKENS
    assert len(tok) == 4 + len(BASE_CHARS)
    assert tok("가")["input_ids"] == [tok.unk_token_id]  # not covered without extra_chars
    assert tok("12")["input_ids"] == tok("1")["input_ids"] + tok("2")["input_ids"]


def test_char_tokenizer_vocab_ignores_the_order_of_extra_chars():
    assert (
        build_char_tokenizer("나가").get_vocab()
        == build_char_tokenizer(["가", "나", "가"]).get_vocab()
    )
    assert len(build_char_tokenizer("가a")) == 4 + len(BASE_CHARS) + 1


def test_char_tokenizer_rejects_multi_character_elements():
    with pytest.raises(TypeError, match="one-character"):
        build_char_tokenizer(["ab"])


def test_char_tokenizer_saves_and_loads_locally(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    text = "### User:\n" + fixture_rows()[0]["instruction"] + "\n\n### Assistant:\n"
    for loaded in (
        PreTrainedTokenizerFast.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(tmp_path),
    ):
        assert loaded.get_vocab() == tok.get_vocab()
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"]) == text
        assert (loaded.pad_token, loaded.eos_token) == ("<pad>", "</s>")


# --------------------------------------------------------------------------------------------------
# Tiny Llama and greedy generation
# --------------------------------------------------------------------------------------------------


def test_tiny_llama_is_deterministic_and_leaves_the_global_rng_alone():
    tok = char_tokenizer()
    before = torch.random.get_rng_state()
    a = make_tiny_llama(tok, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = make_tiny_llama(tok, seed=5)
    c = make_tiny_llama(tok, seed=6)
    params_a, params_b, params_c = (dict(m.named_parameters()) for m in (a, b, c))
    assert params_a.keys() == params_b.keys()
    assert all(torch.equal(params_a[k], params_b[k]) for k in params_a)
    assert not torch.equal(
        params_a["model.embed_tokens.weight"], params_c["model.embed_tokens.weight"]
    )


def test_tiny_llama_is_sized_to_the_tokenizer():
    tok = char_tokenizer()
    model = make_tiny_llama(tok, hidden_size=32, num_layers=3, num_heads=2)
    cfg = model.config
    assert cfg.vocab_size == len(tok)
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (32, 3, 2)
    assert cfg.intermediate_size == 128
    assert model.get_input_embeddings().weight.shape == (len(tok), 32)


def test_tiny_llama_bad_arguments():
    tok = build_char_tokenizer()
    with pytest.raises(ValueError, match="multiple of 2 \\* num_heads"):
        make_tiny_llama(tok, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        make_tiny_llama(tok, num_layers=0)
    tok.pad_token = None
    with pytest.raises(ValueError, match="pad_token"):
        make_tiny_llama(tok)


def constant_model(tok, token: str):
    """A tiny Llama whose next token is always ``token`` (zero lm_head weights, one-hot bias)."""
    model = make_tiny_llama(tok, hidden_size=32, num_layers=1)
    head = torch.nn.Linear(32, len(tok), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tok.convert_tokens_to_ids(token)] = 10.0
    model.lm_head = head
    return model


def test_greedy_generate_runs_to_max_new_tokens_without_eos():
    tok = char_tokenizer()
    out = greedy_generate(constant_model(tok, "7"), tok, ["a", "bbbbbb"], max_new_tokens=5)
    assert out == ["77777", "77777"]


def test_greedy_generate_stops_at_eos():
    tok = char_tokenizer()
    model = constant_model(tok, "</s>")
    assert greedy_generate(model, tok, ["a", "long prompt"], max_new_tokens=5) == ["", ""]


@pytest.fixture(scope="module")
def tiny_model():
    return make_tiny_llama(char_tokenizer(), hidden_size=32, num_layers=2, seed=1)


def test_greedy_generate_is_deterministic_and_batch_invariant(tiny_model):
    tok = char_tokenizer()
    prompts = [format_example(r, "solar")[0] for r in make_addition_rows(6, digits=(1, 3, 5))]
    tiny_model.train()
    first = greedy_generate(tiny_model, tok, prompts, max_new_tokens=6, batch_size=4)
    assert tiny_model.training  # restored
    assert len(first) == len(prompts) and all(isinstance(text, str) for text in first)
    assert greedy_generate(tiny_model, tok, prompts, max_new_tokens=6, batch_size=4) == first
    # left padding must not change a prompt's answer
    assert greedy_generate(tiny_model, tok, prompts, max_new_tokens=6, batch_size=1) == first
    assert greedy_generate(tiny_model, tok, [], max_new_tokens=6) == []


def test_greedy_generate_ignores_the_checkpoints_sampling_settings(caplog):
    """Checkpoints ship generation_config.json with sampling and penalties (Qwen2.5: temperature
    0.7, top_p 0.8, repetition_penalty 1.05); generate() would merge them into ours."""
    tok = char_tokenizer()
    model = make_tiny_llama(tok, hidden_size=32, num_layers=1, seed=4)
    prompts = [format_example(r, "solar")[0] for r in make_addition_rows(4, digits=(2,))]
    plain = greedy_generate(model, tok, prompts, max_new_tokens=8)
    config = model.generation_config
    config.do_sample, config.temperature, config.top_p, config.top_k = True, 0.7, 0.8, 20
    config.repetition_penalty, config.no_repeat_ngram_size, config.min_new_tokens = 50.0, 1, 8
    with caplog.at_level(logging.WARNING):
        assert greedy_generate(model, tok, prompts, max_new_tokens=8) == plain
    assert "may be ignored" not in caplog.text
    # the settings would have mattered: no_repeat_ngram_size=1 bans every token already in the
    # sequence, prompt included, and the plain answers reuse some
    assert any(
        len(set(out)) < len(out) or set(out) & set(prompt)
        for prompt, out in zip(prompts, plain, strict=True)
    )


def test_greedy_generate_bad_arguments(tiny_model):
    tok = char_tokenizer()
    with pytest.raises(TypeError, match="wrap a single prompt"):
        greedy_generate(tiny_model, tok, "1+1=", max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        greedy_generate(tiny_model, tok, ["1+1="], max_new_tokens=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        greedy_generate(tiny_model, tok, ["1+1="], max_new_tokens=1, batch_size=0)


def test_training_on_assistant_labels_then_greedy_decoding_recovers_the_answers():
    """End to end: the labels, the prompt encoding and the decoding agree with each other."""
    tok = build_char_tokenizer()
    rows = make_addition_rows(6, digits=(1, 2, 3), seed=2)
    examples = [tokenize_example(r, tok, template="solar", max_length=128) for r in rows]
    width = max(len(e["input_ids"]) for e in examples)

    def pad(key, value):
        return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples])

    batch = {
        "input_ids": pad("input_ids", tok.pad_token_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", IGNORE_INDEX),
    }
    model = make_tiny_llama(tok, hidden_size=64, num_layers=2, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(100):  # 60 steps reach exact match 1.0 on this setup
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    scores = evaluate_addition(model, tok, rows, template="solar", batch_size=4)
    assert scores == {
        "exact_match": 1.0,
        "exact_match_d1": 1.0,
        "exact_match_d2": 1.0,
        "exact_match_d3": 1.0,
    }


def test_evaluate_addition_scores_each_level(monkeypatch):
    rows = [
        {"id": "a", "instruction": "i", "input": "1+1", "output": "20", "digits": 1},
        {"id": "b", "instruction": "i", "input": "2+2", "output": "40", "digits": 1},
        {"id": "c", "instruction": "i", "input": "10+10", "output": "020", "digits": 2},
        {"id": "d", "instruction": "i", "input": "11+11", "output": "220", "digits": 2},
        {"id": "e", "instruction": "i", "input": "12+12", "output": "420", "digits": 2},
    ]
    seen = {}

    def fake_generate(model, tokenizer, prompts, *, max_new_tokens, batch_size):
        seen.update(prompts=prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return ["20", "41", "020", " 220\n", "000"]

    monkeypatch.setattr(_data, "greedy_generate", fake_generate)
    scores = evaluate_addition(None, char_tokenizer(), rows, template="chatml", batch_size=3)
    assert scores == {
        "exact_match": pytest.approx(3 / 5),
        "exact_match_d1": pytest.approx(1 / 2),
        "exact_match_d2": pytest.approx(2 / 3),
    }
    assert seen["prompts"][0] == "<|im_start|>user\ni\n\n1+1<|im_end|>\n<|im_start|>assistant\n"
    assert seen["max_new_tokens"] == 4  # the longest answer, 3 characters, plus EOS
    assert seen["batch_size"] == 3


def test_evaluate_addition_needs_digits_and_rows(tiny_model):
    tok = char_tokenizer()
    with pytest.raises(ValueError, match="empty"):
        evaluate_addition(tiny_model, tok, [])
    with pytest.raises(ValueError, match="'digits'"):
        evaluate_addition(tiny_model, tok, [{"instruction": "a", "output": "b"}])


def test_evaluate_addition_on_a_model_that_never_answers():
    tok = char_tokenizer()
    rows = make_addition_rows(4, digits=(1, 2))
    scores = evaluate_addition(constant_model(tok, "</s>"), tok, rows)
    assert scores == {"exact_match": 0.0, "exact_match_d1": 0.0, "exact_match_d2": 0.0}


# --------------------------------------------------------------------------------------------------
# The shipped fixture and the JSONL loader
# --------------------------------------------------------------------------------------------------


def test_fixture_loads_with_the_openorca_ko_columns():
    ds = load_instruction_jsonl(FIXTURE_PATH)
    assert ds.column_names == ["id", "instruction", "input", "output"]
    assert ds.num_rows >= 30
    assert len(set(ds["id"])) == ds.num_rows
    assert all(isinstance(v, str) for col in ds.column_names for v in ds[col])
    assert all(ds["instruction"]) and all(ds["output"])
    assert 0 < sum(bool(v) for v in ds["input"]) < ds.num_rows  # with and without input
    assert any("\uac00" <= c <= "\ud7a3" for c in fixture_chars())  # Hangul syllables


def test_every_fixture_row_tokenizes_with_nonempty_labels():
    tok = char_tokenizer()
    for template in PROMPT_TEMPLATES:
        examples, kept = tokenize_rows(fixture_rows(), tok, template=template, max_length=512)
        assert kept == list(range(len(fixture_rows())))
        for row, ex in zip(fixture_rows(), examples, strict=True):
            assert tok.unk_token_id not in ex["input_ids"]
            assert tok.decode(labelled(ex["input_ids"], ex["labels"])) == row["output"] + "</s>"


def test_loader_reads_gugugo_rows_and_fills_missing_ids(tmp_path):
    path = tmp_path / "gugugo.jsonl"
    lines = [
        {"id": "niv.1", "system_prompt": "", "question": "질문", "response": "답"},
        {"system_prompt": "sys", "question": "q", "response": "r", "extra": 1},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n", "utf-8")
    ds = load_instruction_jsonl(path)
    assert ds.to_list() == [
        {"id": "niv.1", "instruction": "", "input": "질문", "output": "답"},
        {"id": "gugugo-2", "instruction": "sys", "input": "q", "output": "r"},
    ]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"instruction": "a", "output": "b"}\n{"instruction": \n', r"\.jsonl:2 is not valid JSON"),
        ('["a", "b"]\n', r"\.jsonl:1 holds a list"),
        ('{"instruction": "a"}\n', r"\.jsonl:1: row is missing the field 'output'"),
        ("\n\n", "has no rows"),
    ],
)
def test_loader_errors_name_the_line(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, "utf-8")
    with pytest.raises(ValueError, match=match):
        load_instruction_jsonl(path)


def test_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="FIXTURE_PATH"):
        load_instruction_jsonl(tmp_path / "nope.jsonl")


def test_missing_optional_dependency_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'zpd-curriculum\[study\]'"):
        _data._require("zpd_curriculum_no_such_module")
