"""The documentation cannot rot: its code runs, its API reference is complete, its tables are true.

* Every ```python block of README.md and docs/**/*.md runs. The blocks of one page run in order in
  one namespace (a page reads like a session), in a temporary working directory. A block whose
  first line is ``# skip-test: <reason>`` is not run; keep those for what cannot run offline on a
  CPU (a SOLAR run on a GPU), with the reason.
* Every ``+`` line of a ```diff block in docs/ also appears in a Python block of the same page
  that runs, so the diffs a reader copies are lines the suite executed.
* Every name in ``zpd_curriculum.__all__`` and ``zpd_curriculum.study.__all__`` has a
  ``::: identifier`` entry in docs/reference/ that resolves to that very object, and every such
  entry resolves.
* The parameter tables of docs/methods/ give the defaults the code has.
* Every page is in the mkdocs nav, so none is built but unreachable.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PUBLIC_MODULES = ("zpd_curriculum", "zpd_curriculum.study")
SKIP_MARK = "# skip-test"

# Optional packages a page may need beyond the `test` extra; without them the page is skipped.
OPTIONAL = {"trl"}

pytestmark = [
    # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` alias (the PEFT and
    # TRL pages build LoRA models)
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    # TRL's SFTConfig defaults gradient_checkpointing=True, which transformers 5 deprecates
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


def code_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file, dedented (blocks may sit in admonitions or tabs)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        lang = (opening["info"].split() or [""])[0].lstrip(".{").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: unclosed code fence")
        blocks.append(Block(path, i + 2, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def python_blocks(path: Path) -> list[Block]:
    return [b for b in code_blocks(path) if b.lang in ("python", "py", "python3")]


def is_skipped(block: Block) -> bool:
    return block.code.lstrip().startswith(SKIP_MARK)


PAGES_WITH_CODE = [p for p in pages() if python_blocks(p)]
DOC_PAGES = sorted(DOCS.rglob("*.md"))
DOC_IDS = [str(p.relative_to(DOCS)) for p in DOC_PAGES]


@pytest.fixture
def _isolated(tmp_path, monkeypatch):
    """Run a page in a scratch directory, on one CPU thread, with the RNG state restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("_isolated")
@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE]
)
def test_python_blocks_run(page: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in python_blocks(page):
        if is_skipped(block):
            continue
        # pad with newlines so that tracebacks give the line in the Markdown file
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        try:
            exec(code, namespace)
        except ModuleNotFoundError as err:
            if err.name in OPTIONAL:
                pytest.skip(f"{block.where} needs {err.name}: pip install {err.name}")
            raise


def test_skipped_blocks_say_why() -> None:
    skipped = [b for p in pages() for b in python_blocks(p) if is_skipped(b)]
    for block in skipped:
        first = block.code.lstrip().splitlines()[0]
        reason = first[len(SKIP_MARK) :].lstrip(":").strip()
        assert reason, f"{block.where}: write the reason after '{SKIP_MARK}:'"
    assert len(skipped) <= 3, [b.where for b in skipped]  # keep the unexecuted code rare


@pytest.mark.parametrize("page", DOC_PAGES, ids=DOC_IDS)
def test_diff_lines_are_executed(page: Path) -> None:
    executed = "\n".join(b.code for b in python_blocks(page) if not is_skipped(b))
    executed_lines = {line.strip() for line in executed.splitlines()}
    for block in code_blocks(page):
        if block.lang != "diff":
            continue
        for line in block.code.splitlines():
            if line.startswith("+") and line[1:].strip():
                assert line[1:].strip() in executed_lines, (
                    f"{block.where}: the added line {line[1:].strip()!r} is in no Python block "
                    "of the page that the suite runs"
                )


def test_code_fences_are_parsed() -> None:
    # a guard on the extractor itself: the pages hold code, and the quickstart is found
    blocks = [b for p in pages() for b in python_blocks(p) if not is_skipped(b)]
    assert len(blocks) >= 20
    home = python_blocks(DOCS / "index.md")
    assert any("ZPDAdaptiveCallback()" in b.code for b in home)


# ------------------------------------------------------------------------------ API reference
_DIRECTIVE = re.compile(r"^:::\s+(?P<identifier>[\w.]+)\s*$", re.MULTILINE)


def reference_identifiers() -> list[str]:
    return [
        m["identifier"]
        for page in sorted((DOCS / "reference").glob("*.md"))
        for m in _DIRECTIVE.finditer(page.read_text(encoding="utf-8"))
    ]


def resolve(identifier: str) -> Any:
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(identifier)


def test_reference_entries_resolve() -> None:
    identifiers = reference_identifiers()
    assert identifiers
    for identifier in identifiers:
        resolve(identifier)  # raises for a stale entry


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module_name: str) -> None:
    module = importlib.import_module(module_name)
    documented: dict[str, list[Any]] = {}
    for identifier in reference_identifiers():
        documented.setdefault(identifier.rsplit(".", 1)[-1], []).append(resolve(identifier))
    missing = [
        name
        for name in module.__all__
        if not any(obj is getattr(module, name) for obj in documented.get(name, []))
    ]
    assert not missing, f"add `::: {module_name}.NAME` to a page of docs/reference/ for {missing}"


# ------------------------------------------------------------------------------ parameter tables
_PARAMS = re.compile(r"<!-- params: (?P<target>[\w.]+) -->\n+(?P<table>(?:\|.*\n)+)")
_ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|\s*(?P<default>[^|]*?)\s*\|")


def _default_text(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    return f"`{value!r}`"


@pytest.mark.parametrize("page", DOC_PAGES, ids=DOC_IDS)
def test_parameter_tables_match_the_code(page: Path) -> None:
    for match in _PARAMS.finditer(page.read_text(encoding="utf-8")):
        signature = inspect.signature(resolve(match["target"]))
        rows = [_ROW.match(line) for line in match["table"].splitlines()[2:]]
        assert all(rows), f"{page.name}: a row of the {match['target']} table is malformed"
        table = {row["name"]: row["default"] for row in rows}
        params = {
            name: p
            for name, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY or name == "data_source"
        }
        assert set(table) == set(params), (page.name, match["target"])
        for name, param in params.items():
            assert table[name] == _default_text(param.default), (page.name, name)


# ------------------------------------------------------------------------------ navigation
def _nav_files(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return []


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = set(_nav_files(config["nav"]))
    on_disk = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if not p.name.startswith("_") and "_ext" not in p.parts
    }
    assert in_nav == on_disk
