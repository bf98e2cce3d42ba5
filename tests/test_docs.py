"""The docs cite what exists: the tests they name as proofs, the files they point at, the
sections and anchors they refer to. A renamed test or a moved section fails here, not in a
reader's hands."""

from __future__ import annotations

import ast
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").glob("*/README.md")]
)
#: Where a cited path starts: the repository's own folders.
TOP_FOLDERS = ("tests", "muxs", "bench", "docs", "tools", "deploy", "proto", "generated", ".ci")
#: The record of past passes names files as they were then.
HISTORY = ROOT / "docs" / "performance-history.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_TEST_REF = re.compile(r"(?:([\w/.-]*test_\w+\.py))?::(test_\w+)")
_MODULE = re.compile(r"^((?:tests/)?[\w/]*test_\w+\.py)$")
_BARE_TEST = re.compile(r"^(test_\w+)(?:\[[^\]]*\])?$")
_PATH = re.compile("^(?:" + "|".join(map(re.escape, TOP_FOLDERS)) + r")/[\w./*{},-]*$")
_SECTION_REF = re.compile(r"""(docs/[\w.-]+\.md),?\s+((?:"[^"]+"(?:,\s+|\s+and\s+)?)+)""")
_LINK = re.compile(r"\]\((?![a-z]+://)([^)\s#]+\.md)?(?:#([^)\s]+))?\)")


def prose(path: Path) -> str:
    """A Markdown file without its fenced code blocks (examples, not citations)."""
    return _FENCE.sub("", path.read_text())


def code_spans(path: Path) -> list[str]:
    return _CODE.findall(prose(path))


@cache
def defined_tests() -> dict[Path, frozenset[str]]:
    """Each test module's top-level functions and classes, and their methods."""
    found: dict[Path, frozenset[str]] = {}
    for module in (ROOT / "tests").rglob("*.py"):
        if "node_modules" in module.parts:
            continue
        tree = ast.parse(module.read_text())
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        found[module.relative_to(ROOT)] = frozenset(names)
    return found


def cited_module(cited: str) -> Path | None:
    """The test module a doc names, by its path or, when that is unambiguous, its name."""
    modules = defined_tests()
    if Path(cited) in modules:
        return Path(cited)
    named = [module for module in modules if module.name == Path(cited).name]
    return named[0] if len(named) == 1 else None


def heading_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation and symbols dropped,
    spaces made hyphens."""
    kept = (
        char
        for char in heading.strip().lower()
        if char in " -_" or unicodedata.category(char)[0] in "LNM"
    )
    return "".join(kept).replace(" ", "-")


@cache
def headings(path: Path) -> tuple[str, ...]:
    """A Markdown file's headings, as text (code marks dropped)."""
    return tuple(
        line.lstrip("#").strip().replace("`", "")
        for line in prose(path).splitlines()
        if re.match(r"#{1,6} ", line)
    )


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in headings(path):
        slug = heading_slug(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(found)


def blocks(path: Path) -> list[str]:
    """A Markdown file's paragraphs, each table row a block of its own."""
    found: list[str] = []
    for paragraph in re.split(r"\n\s*\n", prose(path)):
        lines = paragraph.splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):
            found += lines
        else:
            found.append(paragraph)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_test_a_doc_cites_exists(doc: Path) -> None:
    """``module.py::name`` is in that module; ``::name`` in the module the paragraph (or table
    row) named last before it, or anywhere when it named none; a bare ``test_name``, a test or
    a test module, anywhere."""
    modules = defined_tests()
    every = set().union(*modules.values()) | {module.stem for module in modules}
    missing = []
    for block in blocks(doc):
        last: Path | None = None
        for span in _CODE.findall(block):
            for cited, name in _TEST_REF.findall(span):
                if cited:
                    last = cited_module(cited)
                    if last is None:
                        missing.append(f"{cited} (no such test module)")
                        continue
                if name not in (modules[last] if last is not None else every):
                    missing.append(f"{last or ''}::{name}")
            mentioned = _MODULE.match(span)
            if mentioned is not None:
                last = cited_module(mentioned.group(1))
                if last is None:
                    missing.append(f"{mentioned.group(1)} (no such test module)")
            bare = _BARE_TEST.match(span)
            if bare is not None and bare.group(1) not in every:
                missing.append(bare.group(1))
    assert missing == []


@pytest.mark.parametrize(
    "doc", [doc for doc in DOCS if doc != HISTORY], ids=lambda doc: str(doc.relative_to(ROOT))
)  # the history names files as they were then
def test_every_file_a_doc_names_exists(doc: Path) -> None:
    """Each path, or each of its alternatives (``a.{md,json}``), or what its ``*`` matches."""
    missing = [
        path
        for span in code_spans(doc)
        if _PATH.match(span)
        for path in alternatives(span.rstrip("/"))
        if not any(ROOT.glob(path))
    ]
    assert missing == []


def alternatives(path: str) -> list[str]:
    """``a.{md,json}``: ``a.md`` and ``a.json``."""
    braces = re.search(r"\{([^{}]*)\}", path)
    if braces is None:
        return [path]
    head, tail = path[: braces.start()], path[braces.end() :]
    return [
        more for part in braces.group(1).split(",") for more in alternatives(head + part + tail)
    ]


def _section_references() -> list[tuple[str, str, str]]:
    """(where, the doc, the section's title) of every ``docs/X.md, "Title"`` reference in the
    docs and the code's docstrings."""
    sources = [*DOCS, *(ROOT / "muxs").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    found = []
    for source in sources:
        text = re.sub(r"\s+", " ", source.read_text())
        for doc, titles in _SECTION_REF.findall(text):
            for title in re.findall(r'"([^"]+)"', titles):
                found.append((str(source.relative_to(ROOT)), doc, title.replace("`", "")))
    return found


@pytest.mark.parametrize(("where", "doc", "title"), _section_references())
def test_a_section_a_reference_names_exists(where: str, doc: str, title: str) -> None:
    assert (ROOT / doc).exists(), f"{where} names {doc}"
    assert any(
        heading.startswith(title) for heading in headings(ROOT / doc)
    ), f"{where}: {doc} has no section {title!r}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_link_between_docs_resolves(doc: Path) -> None:
    broken = []
    for target, anchor in _LINK.findall(prose(doc)):
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(target)
        elif anchor and anchor not in anchors(path):
            broken.append(f"{target}#{anchor}")
    assert broken == []


def test_a_heading_slug_is_githubs() -> None:
    assert heading_slug("Unary, fifth pass (2026-11-28, 03:40\u201305:10 UTC)") == (
        "unary-fifth-pass-2026-11-28-03400510-utc"
    )
    assert heading_slug("muxs.Client unary, second pass") == "muxsclient-unary-second-pass"


def test_a_path_with_braces_names_each_alternative() -> None:
    assert alternatives("bench/results/a.{md,json}") == [
        "bench/results/a.md",
        "bench/results/a.json",
    ]
    assert alternatives("docs/OPERATIONS.md") == ["docs/OPERATIONS.md"]
