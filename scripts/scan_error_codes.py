"""Find every error code the services and libs can answer with, by reading their source (no imports, no servers).

The services raise as they always have (`APIError(404, "team_not_found", ...)`); this scan is what keeps them
honest against the catalogue in `libs/llmops_common/error_codes/`: tests/common/test_error_codes.py fails when a
code found here is not catalogued, or a catalogued code is found nowhere.

A string counts as an error code where the code puts one (Python's `ast`, so comments and messages never count):
- an argument of a function or class whose parameter (or dataclass field) is named `code` or `*_code`
  (`APIError`, `RegistryError` and its subclasses, `EngineError`, `DocumentError`, `error_body`, `Rejected`,
  `bad(..., code=...)`, `finish(..., error_code=...)`): positional or keyword, a literal or a constant of the same
  module (`GATEWAY_UNAVAILABLE`), and the parameter's default; the `status` argument next to it is kept when it is
  one too (`404`, `STATE_STORE_FULL`, `503 if x else 502`);
- a value assigned to a name or attribute `code` / `*_code` (`code = "a" if x else "b"`, `status, code = 502, "c"`,
  `job.error_code = "c"`, a `{...}.get(k, "default")` lookup, `str(err.get("code") or "fallback")`);
- the value of a `"code"` key in a dict literal (`{"code": "upstream_error", ...}`).
An f-string in those places (`f"{exc.limit}_exceeded"`) becomes a pattern that must match catalogued codes.

Run it to see every site: `python scripts/scan_error_codes.py` (add `--undocumented` to list only the codes the
catalogue lacks; it exits 1 when there are any).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("services", "libs")
CATALOGUE_DIR = Path("libs", "llmops_common", "error_codes")  # the catalogue itself is data, not a use


@dataclass(frozen=True)
class Site:
    """One place that answers with an error code: a literal code, or a pattern when it is an f-string."""

    code: str
    statuses: tuple[int, ...]  # the HTTP statuses written next to it; empty when not a literal there
    path: str
    line: int
    pattern: bool = False

    def matches(self, code: str) -> bool:
        """True when this site can produce `code`."""
        return re.fullmatch(self.code, code) is not None if self.pattern else self.code == code

    def holes(self, code: str) -> list[str]:
        """What fills the f-string's {…} parts to make `code` (`key_rpm` for `f"{limit}_exceeded"`)."""
        found = re.fullmatch(self.code, code) if self.pattern else None
        return list(found.groups()) if found else []


def _is_code_name(name: str) -> bool:
    return name == "code" or name.endswith("_code") or name.endswith("_CODE")


def source_files(root: Path = ROOT) -> list[Path]:
    """The Python files of services/ and libs/, tests and the catalogue excluded (a test may invent codes)."""
    return sorted(
        p
        for d in SCANNED
        for p in (root / d).rglob("*.py")
        if "tests" not in p.parts and ".venv" not in p.parts and not p.is_relative_to(root / CATALOGUE_DIR)
    )


def _code_params(trees: list[ast.Module]) -> dict[str, tuple[int, int | None]]:
    """Callable name -> (index of its code parameter, index of its `status` parameter, if any).

    A class is called through its `__init__` (so `self` is dropped), through its fields when it has none (a
    dataclass or NamedTuple: `Rejected(code, message)`), or through its base's (`class AuthError(RegistryError)`)."""
    found: dict[str, tuple[int, int | None]] = {}
    subclasses: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            params: list[str]
            if isinstance(node, ast.ClassDef):
                init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
                fields = [
                    f.target.id for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
                ]
                if init:
                    params = [a.arg for a in init[0].args.posonlyargs + init[0].args.args][1:]
                elif fields:
                    params = fields
                else:
                    subclasses[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
                    continue
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [a.arg for a in node.args.posonlyargs + node.args.args]
                if params[:1] in (["self"], ["cls"]):
                    params = params[1:]
            else:
                continue
            for index, param in enumerate(params):
                if _is_code_name(param):
                    found[node.name] = (index, params.index("status") if "status" in params else None)
    for name, bases in subclasses.items():  # `class AuthError(RegistryError): pass` takes RegistryError's
        inherited = [found[b] for b in bases if b in found]
        if inherited:
            found[name] = inherited[0]
    return found


def _callee(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


class _FileScan:
    """The sites of one file."""

    def __init__(self, path: Path, tree: ast.Module, params: dict[str, tuple[int, int | None]]) -> None:
        self.rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        self.tree = tree
        self.params = params
        # module-level constants, so `APIError(503, GATEWAY_UNAVAILABLE, ...)` and `_TABLE.get(...)` resolve
        self.constants: dict[str, ast.expr] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.constants[node.targets[0].id] = node.value

    def statuses(self, node: ast.expr | None) -> tuple[int, ...]:
        """The int literals an expression can be (`404`, `STATE_STORE_FULL`, `503 if x else 502`)."""
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.statuses(self.constants[node.id])
        if isinstance(node, ast.IfExp):
            return self.statuses(node.body) + self.statuses(node.orelse)
        return (node.value,) if isinstance(node, ast.Constant) and type(node.value) is int else ()

    def values(self, node: ast.expr, depth: int = 0) -> Iterator[tuple[ast.expr, tuple[int, ...]]]:
        """The code-valued leaves of an expression (with a status when the expression pairs one with it)."""
        if depth > 4:
            return
        if isinstance(node, ast.Constant | ast.JoinedStr):
            yield node, ()
        elif isinstance(node, ast.IfExp):
            yield from self.values(node.body, depth + 1)
            yield from self.values(node.orelse, depth + 1)
        elif isinstance(node, ast.BoolOp):  # `err.get("code") or "fallback"`
            for value in node.values:
                yield from self.values(value, depth + 1)
        elif isinstance(node, ast.Name) and node.id in self.constants:
            yield from self.values(self.constants[node.id], depth + 1)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            # `{404: "not_found"}.get(status, "http_error")` or `_TABLE.get(key, (502, "x"))`: the table's values
            # and the default; the key argument is a lookup, never a code
            table = node.func.value
            if isinstance(table, ast.Name):
                table = self.constants.get(table.id, table)
            if isinstance(table, ast.Dict):
                for value in table.values:
                    yield from self.values(value, depth + 1)
            if len(node.args) > 1:
                yield from self.values(node.args[1], depth + 1)
        elif isinstance(node, ast.Call) and _callee(node) == "str" and node.args:
            yield from self.values(node.args[0], depth + 1)
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2:  # (status, code) pairs in a table
            for value, _ in self.values(node.elts[1], depth + 1):
                yield value, self.statuses(node.elts[0])

    def site(self, node: ast.expr, statuses: tuple[int, ...]) -> Site | None:
        """A Site for a literal or an f-string; None for anything else (a variable passed along)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return Site(node.value, statuses, self.rel, node.lineno)
        if isinstance(node, ast.JoinedStr):
            parts = [re.escape(str(v.value)) if isinstance(v, ast.Constant) else "([a-z0-9_]+)" for v in node.values]
            return Site("".join(parts), statuses, self.rel, node.lineno, pattern=True)
        return None

    def sites(self) -> Iterator[Site]:
        """Walk the file once."""
        for node in ast.walk(self.tree):
            yield from self._sites(node)

    def _emit(self, node: ast.expr, statuses: tuple[int, ...] = ()) -> Iterator[Site]:
        for value, paired in self.values(node):
            found = self.site(value, paired or statuses)
            if found is not None:
                yield found

    def _sites(self, node: ast.AST) -> Iterator[Site]:
        if isinstance(node, ast.Call):
            callee = _callee(node)
            if callee in self.params:
                index, status_index = self.params[callee]
                status = node.args[status_index] if status_index is not None and status_index < len(node.args) else None
                if index < len(node.args) and not isinstance(node.args[index], ast.Starred):
                    yield from self._emit(node.args[index], self.statuses(status))
            for kw in node.keywords:
                if kw.arg is not None and _is_code_name(kw.arg):
                    yield from self._emit(kw.value)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True))
            defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            for arg, default in defaults:
                if _is_code_name(arg.arg):
                    yield from self._emit(default)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                yield from self._assigned(target, node.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    yield from self._emit(value)

    def _assigned(self, target: ast.expr, value: ast.expr) -> Iterator[Site]:
        names = [_target_name(t) for t in target.elts] if isinstance(target, ast.Tuple) else [_target_name(target)]
        if not any(_is_code_name(name) for name in names):
            return
        if len(names) == 1:
            yield from self._emit(value)
        elif isinstance(value, ast.Tuple) and len(value.elts) == len(names):  # `status, code = 502, "x"`
            status = self.statuses(value.elts[names.index("status")]) if "status" in names else ()
            for name, item in zip(names, value.elts, strict=True):
                if _is_code_name(name):
                    yield from self._emit(item, status)
        elif names == ["status", "code"]:
            yield from self._emit(value)  # `status, code = TABLE.get(...)`: the table's (status, code) pairs


def _target_name(node: ast.expr) -> str:
    """`code` for `code = ...`, `error_code` for `job.error_code = ...`; "" for anything else."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def scan(root: Path = ROOT) -> list[Site]:
    """Every error-code site under services/ and libs/."""
    files = source_files(root)
    trees = [ast.parse(p.read_text(), filename=str(p)) for p in files]
    params = _code_params(trees)
    return [site for path, tree in zip(files, trees, strict=True) for site in _FileScan(path, tree, params).sites()]


def string_literals(root: Path = ROOT) -> set[str]:
    """Every string constant of the scanned files (to check what fills an f-string code, e.g. `"key_rpm"`)."""
    return {
        node.value
        for path in source_files(root)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def main() -> int:
    """Print the sites (or only the undocumented codes); exit 1 when a code is missing from the catalogue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--undocumented", action="store_true", help="list only codes the catalogue lacks")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "libs")]
    from llmops_common.error_codes import CATALOGUE

    missing = 0
    for site in sorted(scan(), key=lambda s: (s.code, s.path, s.line)):
        known = any(site.matches(code) for code in CATALOGUE) if site.pattern else site.code in CATALOGUE
        missing += not known
        if not args.undocumented or not known:
            status = "/".join(map(str, site.statuses)) or "-"
            flag = "" if known else "   <- not in the catalogue"
            print(f"{site.code:<32} {status:>7}  {site.path}:{site.line}{flag}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
