"""Write the retrieval evaluation set: stdlib docstrings as a corpus, and questions over it.

    .venv/bin/python scripts/make_eval_set.py [--out data/eval]

Why this text: nobody on the project wrote it, so the set cannot be tuned to our own
phrasing, and it is full of the exact terms (exception names, keywords, operators) that
dense vectors blur. Each corpus file is ``pydoc.render_doc(module, renderer=pydoc.plaintext)``
without its machine-specific FILE section, cut at a line boundary to ``MAX_CHARS`` to keep
the committed set small. Questions (``QUESTIONS``, a third of them about an exact term) go
to ``questions.jsonl``; every key phrase is checked to occur in its expected module's file,
so no question asks for text the corpus does not hold. Regenerating on another Python version
may change the text; the check then says which questions need attention.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pydoc
import re
import sys
from pathlib import Path

MAX_CHARS = 24_000
MODULES = [
    "argparse", "atexit", "base64", "bisect", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "difflib", "fnmatch", "functools", "getopt", "glob", "graphlib",
    "gzip", "hashlib", "heapq", "hmac", "itertools", "json", "keyword", "math", "operator",
    "os.path", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shlex",
    "shutil", "statistics", "string", "struct", "subprocess", "tempfile", "textwrap",
    "threading", "time", "timeit", "tomllib", "traceback", "unittest", "uuid", "warnings",
    "zipfile", "zlib",
]  # fmt: skip

QUESTIONS: list[tuple[str, str, str]] = [
    # (expected module, question, key phrase the answer should contain)
    (
        "json",
        "Which exception is raised when the document being decoded is not valid JSON?",
        "JSONDecodeError",
    ),
    (
        "subprocess",
        "What exception does check_call raise when the command exits with a non-zero status?",
        "CalledProcessError",
    ),
    (
        "subprocess",
        "Which exception signals that a child process did not finish before its timeout?",
        "TimeoutExpired",
    ),
    ("graphlib", "What error is raised when a topological sort finds a cycle in the graph?", "CycleError"),
    ("zipfile", "Which exception is raised for a bad or corrupt zip archive?", "BadZipFile"),
    ("tomllib", "What exception does parsing an invalid TOML document raise?", "TOMLDecodeError"),
    (
        "queue",
        "Which exception does get_nowait raise when there is nothing in the queue?",
        "Exception raised by Queue.get(block=0)/get_nowait()",
    ),
    ("shutil", "What does copyfile raise when source and destination are the same file?", "SameFileError"),
    (
        "argparse",
        "Which exception should a type conversion function raise to report a bad argument value?",
        "ArgumentTypeError",
    ),
    (
        "configparser",
        "Which error is raised when a requested section is missing from the config file?",
        "NoSectionError",
    ),
    ("getopt", "What exception does getopt raise for an unrecognized option?", "GetoptError"),
    (
        "statistics",
        "What exception do the statistics functions raise when the data is empty?",
        "StatisticsError",
    ),
    (
        "unittest",
        "Which exception class does a TestCase use to signal a failed AssertionError check?",
        "AssertionError",
    ),
    ("threading", "What error is raised when a thread waits on a broken barrier?", "BrokenBarrierError"),
    ("pickle", "Which exception is raised when an object cannot be pickled?", "PicklingError"),
    ("operator", "Which function is the same as a ** b?", "a ** b"),
    ("operator", "Which operator function corresponds to a // b?", "a // b"),
    ("operator", "What is the function form of the matrix multiplication operator @?", "a @ b"),
    ("operator", "Which function computes a << b?", "a << b"),
    ("operator", "Which function returns a callable that fetches an attribute like obj.name?", "attrgetter"),
    ("keyword", "Where can I find the list of soft keywords like match and case?", "softkwlist"),
    ("keyword", "How do I test whether a string such as nonlocal or async is a Python keyword?", "iskeyword"),
    ("contextlib", "Which context manager ignores specified exceptions inside a with block?", "suppress"),
    (
        "contextlib",
        "How can I enter a dynamic number of context managers in one with statement?",
        "ExitStack",
    ),
    (
        "contextlib",
        "How do I write a context manager from a generator function that uses yield?",
        "contextmanager",
    ),
    ("heapq", "How do I get the n smallest elements of a dataset using a heap?", "nsmallest"),
    ("bisect", "How do I insert an item into a sorted list and keep it sorted?", "insort"),
    ("shlex", "How do I split a command line string the way a Unix shell would?", "split"),
    ("textwrap", "How do I remove common leading whitespace from every line of a block of text?", "dedent"),
    (
        "fnmatch",
        "Which function tests whether a FILENAME matches a shell PATTERN such as *.txt?",
        "Test whether FILENAME matches PATTERN",
    ),
    ("glob", "Which function returns an iterator of paths matching a pathname pattern?", "iglob"),
    (
        "tempfile",
        "How do I create a temporary directory that is removed automatically?",
        "TemporaryDirectory",
    ),
    ("functools", "Which decorator caches function results with least-recently-used eviction?", "lru_cache"),
    ("functools", "How do I create a new function with some arguments of another function fixed?", "partial"),
    ("itertools", "How do I compute the cartesian product of several iterables?", "product"),
    ("itertools", "Which function groups consecutive items that share the same key?", "groupby"),
    ("statistics", "How do I compute the median of a list of numbers?", "median"),
    ("random", "How do I shuffle a list in place randomly?", "shuffle"),
    ("secrets", "How do I generate a secure random URL-safe token?", "token_urlsafe"),
    (
        "hashlib",
        "Which hash algorithms are guaranteed to be available on every platform?",
        "algorithms_guaranteed",
    ),
    ("hmac", "How do I compare two digests in constant time to prevent timing attacks?", "compare_digest"),
    ("base64", "How do I encode bytes with the URL and filesystem safe alphabet?", "urlsafe_b64encode"),
    ("zlib", "How do I compute an Adler-32 checksum of some data?", "adler32"),
    ("gzip", "How do I compress a bytes object in memory to the gzip format?", "compress"),
    ("copy", "What is the difference between a shallow copy and a deep copy?", "deep copy"),
    ("pprint", "How do I print nested data structures in a readable, pretty format?", "pretty"),
    ("difflib", "How do I produce a unified diff of two lists of lines?", "unified_diff"),
    (
        "difflib",
        "Which function finds the closest matches to a word from a list of possibilities?",
        "get_close_matches",
    ),
    ("string", "Which class supports $-based substitutions in strings?", "Template"),
    ("re", "Which flag makes the dot match any character including a newline?", "DOTALL"),
    ("re", "How do I escape all special characters in a regular expression pattern?", "escape"),
    ("struct", "How do I convert between Python values and C structs represented as bytes?", "pack"),
    (
        "dataclasses",
        "Which decorator adds generated special methods such as __init__ and __repr__ to a class?",
        "__init__",
    ),
    (
        "dataclasses",
        "What exception is raised when assigning to a field of a frozen dataclass?",
        "FrozenInstanceError",
    ),
    ("datetime", "Which class represents the difference between two dates or times?", "timedelta"),
    ("time", "Which clock should I use to measure elapsed time that cannot go backwards?", "monotonic"),
    ("timeit", "How can I measure the execution time of small code snippets?", "timeit"),
    ("argparse", "How do I add a command-line flag that stores True when present?", "store_true"),
    ("uuid", "How do I generate a random UUID?", "uuid4"),
    ("warnings", "How do I add a filter that turns warnings into errors or ignores them?", "filterwarnings"),
    ("traceback", "How do I print the stack trace of the exception being handled?", "print_exc"),
    ("math", "How do I check whether two floating point values are close to each other?", "isclose"),
    ("math", "Which function computes the greatest common divisor of integers?", "gcd"),
    ("os.path", "How do I expand ~ to the user's home directory in a path?", "expanduser"),
    ("sched", "Which module provides a general purpose event scheduler?", "scheduler"),
    ("atexit", "How do I register a function to be called when the interpreter exits?", "register"),
    ("shutil", "How do I recursively copy an entire directory tree?", "copytree"),
    ("csv", "Which quoting constant makes the writer quote all fields?", "QUOTE_ALL"),
    ("zipfile", "Which constant selects deflate compression when writing a zip archive?", "ZIP_DEFLATED"),
    ("threading", "How do I run a function after a delay in a separate thread?", "Timer"),
    ("threading", "Which lock can be acquired several times by the thread that already holds it?", "RLock"),
    ("queue", "Which queue retrieves the lowest-valued entries first?", "PriorityQueue"),
    ("unittest", "How do I skip the current test from inside a test method?", "Skip this test"),
    (
        "contextlib",
        "Which helper closes an object with a close() method at the end of a with block?",
        "closing",
    ),
    (
        "textwrap",
        "How do I wrap a single paragraph so that every line is at most width characters long?",
        "width",
    ),
]


def render(name: str) -> str:
    """pydoc's plain-text page for ``name``, minus the FILE section (an install path)."""
    text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
    text = re.sub(r"\nFILE\n    [^\n]*\n", "\n", text)
    if len(text) > MAX_CHARS:
        text = text[: text.rfind("\n", 0, MAX_CHARS)]
    return text.rstrip() + "\n"


def check(questions: list[dict], corpus: dict[str, str]) -> list[str]:
    """Problems with the questions: unknown modules, key phrases absent from their module."""
    problems = []
    ids = [q["id"] for q in questions]
    if len(set(ids)) != len(ids):
        problems.append("duplicate question ids")
    for q in questions:
        for module in q["expected_docs"]:
            if module not in corpus:
                problems.append(f"{q['id']}: no corpus file for {module!r}")
            elif q["key_phrase"].lower() not in " ".join(corpus[module].split()).lower():
                problems.append(f"{q['id']}: key phrase {q['key_phrase']!r} is not in {module}.txt")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "eval"))
    args = ap.parse_args()
    out = Path(args.out)
    corpus_dir = out / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    corpus = {name: render(name) for name in MODULES}
    for old in corpus_dir.glob("*.txt"):
        if old.stem not in corpus:
            old.unlink()
    for name, text in corpus.items():
        (corpus_dir / f"{name}.txt").write_text(text, encoding="utf-8")
    questions = [
        {"id": f"q{i:03d}", "question": q, "expected_docs": [module], "key_phrase": key}
        for i, (module, q, key) in enumerate(QUESTIONS, 1)
    ]
    with open(out / "questions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q) + "\n" for q in questions)
    problems = check(questions, corpus)
    for p in problems:
        print(p, file=sys.stderr)
    print(
        f"{len(corpus)} corpus files, {sum(map(len, corpus.values())):,} chars; "
        f"{len(questions)} questions, {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
