"""Size of the package: code lines of ``src/`` and its longest functions, now or at earlier commits.

A code line is a line with code on it: blank lines, comment-only lines and docstrings do not count. Each
``--rev`` is read from git (``git archive``), so commits can be compared without checking them out; without
``--rev`` the working tree is counted.

Run from the repository root::

    python benchmarks/code_lines.py [--rev e67c51c --rev 5405769 --rev HEAD] [--modules] [--longest 15]

``e67c51c`` is the last commit before the one-definition redesign, ``5405769`` the end of it.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import tarfile
import tokenize
from pathlib import Path


def code_lines(source: str) -> int:
    """Lines of ``source`` holding a token that is not a comment, and not inside a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skipped:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def longest_functions(source: str) -> list[tuple[int, str]]:
    """(lines from ``def`` to the last line, name) of every function and method in ``source``."""
    return [(node.end_lineno - node.lineno + 1, node.name) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def sources(rev: str | None) -> dict[str, str]:
    """The ``.py`` files under ``src/`` (path -> text) of the working tree, or of git revision ``rev``."""
    if rev is None:
        return {str(p): p.read_text() for p in sorted(Path("src").rglob("*.py"))}
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()
                if m.isfile() and m.name.endswith(".py")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", action="append", help="a git revision to count (repeatable; default: working tree)")
    parser.add_argument("--modules", action="store_true", help="also list every module's code lines, largest first")
    parser.add_argument("--longest", type=int, default=15, help="how many of the longest functions to list")
    args = parser.parse_args()
    for rev in args.rev or [None]:
        files = sources(rev)
        counts = {path: code_lines(text) for path, text in files.items()}
        print(f"{rev or 'working tree'}: {sum(counts.values()):,} code lines in {len(files)} modules")
        if args.modules:
            for path, n in sorted(counts.items(), key=lambda kv: -kv[1]):
                print(f"  {n:6,}  {path}")
        functions = sorted(((n, f"{path}:{name}") for path, text in files.items()
                            for n, name in longest_functions(text)), reverse=True)[:args.longest]
        if functions:
            print(f"  the {len(functions)} longest functions: {functions[0][0]} to {functions[-1][0]} lines")
            for n, where in functions:
                print(f"  {n:6}  {where}")


if __name__ == "__main__":
    main()
