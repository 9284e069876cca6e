"""The package's shape, read from its source: no import cycles, and lower floors never import upper ones.

Every ``import`` statement of every module counts, those inside functions included (a cycle made of
function-level imports still ties two modules together).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnnrnn"

FAMILIES = ("cnnrnn.cnnrnn", "cnnrnn.dcnn", "cnnrnn.baselines", "cnnrnn.hf", "cnnrnn.functionals")
CORE = ("cnnrnn", "cnnrnn.audio", "cnnrnn.features", "cnnrnn.config", "cnnrnn.artifacts", "cnnrnn.runs",
        "cnnrnn.keras2", "cnnrnn.splits", "cnnrnn.evaluation", "cnnrnn.plots", "cnnrnn.reports", "cnnrnn.corpora",
        "cnnrnn.normalize", "cnnrnn.families", "cnnrnn.quiet", "cnnrnn.whisper_features", "cnnrnn.outputs", "cnnrnn.speech",
        "cnnrnn.workers", "cnnrnn.timeline", "cnnrnn.config_types", "cnnrnn.mel", "cnnrnn.front_ends",
        "cnnrnn.training", "cnnrnn.export_formats", "cnnrnn.export_sidecar", "cnnrnn.explain", "cnnrnn.distribute")
MODELS = ("cnnrnn.models",)
# the Whisper converter lives beside the encoder it fills (issue 20) but reads and writes files: a tool
TOOLS = ("cnnrnn.hparams", "cnnrnn.audio_tools", "cnnrnn.corpora.kemdy_labels", "cnnrnn.sample",
         "cnnrnn.models.yamnet_convert", "cnnrnn.models.whisper_convert",
         "cnnrnn.kemdy_labels", "cnnrnn.yamnet_convert")  # the last two: deprecated aliases of the moved modules
FACADE = ("cnnrnn.predict", "cnnrnn.export")
CLI = ("cnnrnn.cli", "cnnrnn.commands", "cnnrnn.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    def inside(prefixes):
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if inside(CLI):
        return "cli"
    if inside(FACADE):
        return "facade"
    if inside(FAMILIES):
        return next(f for f in FAMILIES if module == f or module.startswith(f + "."))
    if inside(TOOLS):
        return "tools"
    if inside(MODELS):
        return "models"
    if module == "cnnrnn" or inside(CORE[1:]):
        return "core"
    return "unknown"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_reader_sees_function_level_imports(tmp_path):
    source = "def f():\n    from .b import g\n    import cnnrnn.c\n"
    path = tmp_path / "a.py"
    path.write_text(source)
    assert _imports("cnnrnn.x.a", path, {"cnnrnn.x.b", "cnnrnn.c"}) == {"cnnrnn.x.b", "cnnrnn.c"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_every_module_has_a_floor():
    unknown = sorted(m for m in _graph() if _layer(m) == "unknown")
    assert unknown == [], f"modules outside the layout (add them to a layer): {unknown}"


ALLOWED = {
    "core": {"core", "models"},  # artifacts.load_model registers the models' custom layers
    "models": {"models"},
    "tools": {"core", "models", *FAMILIES},
    "facade": {"core", "facade", "models"},  # a family is reached through the registry (cnnrnn.families) only
    "cli": {"cli", "core", "models", "tools", "facade", *FAMILIES},
    **{family: {"core", "models", family} for family in FAMILIES},
}


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_lower_floors_never_import_upper_ones(floor):
    bad = sorted(f"{m} -> {t} ({_layer(t)})" for m, targets in _graph().items() if _layer(m) == floor
                 for t in targets if _layer(t) not in ALLOWED[floor])
    assert bad == []


#: A module holds at most this many lines (issue 22): a longer one does too much.
MAX_LINES = 600
#: Modules still over MAX_LINES, each to be split (issue 22); a module leaves this list when it is split, and the
#: test fails when one here is no longer over the limit (so the list only shrinks) or another one grows over it.
STILL_TOO_LONG: set[str] = set()
#: Methods whose contract is Keras' (a layer's build / call / get_config ...): documented by the base class.
KERAS_OVERRIDES = {"build", "call", "get_config", "compute_output_shape", "compute_mask", "from_config"}


def _line_counts() -> dict[str, int]:
    root = PACKAGE.parent
    return {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}


def test_no_module_is_over_600_lines():
    counts = _line_counts()
    over = sorted(f"{m} ({n})" for m, n in counts.items() if n > MAX_LINES and m not in STILL_TOO_LONG)
    assert over == [], f"modules over {MAX_LINES} lines (split them by what they do): {over}"
    split_already = sorted(m for m in STILL_TOO_LONG if counts.get(m, 0) <= MAX_LINES)
    assert split_already == [], f"no longer over {MAX_LINES} lines: take them off STILL_TOO_LONG: {split_already}"


def _undocumented(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = [] if ast.get_docstring(tree) else ["<module>"]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            if not ast.get_docstring(node):
                out.append(node.name)
            if isinstance(node, ast.ClassDef):
                out += [f"{node.name}.{m.name}" for m in node.body
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                        and m.name not in KERAS_OVERRIDES and not ast.get_docstring(m)]
    return out


def test_every_public_definition_has_a_docstring():
    missing = sorted(f"{_module_name(p)}: {name}" for p in PACKAGE.rglob("*.py") for name in _undocumented(p))
    assert missing == [], f"public definitions without a docstring: {missing}"


def test_the_checks_see_what_they_check(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Doc."""\ndef f():\n    pass\nclass C:\n    """Doc."""\n    def g(self):\n        pass\n'
                    "    def call(self, x):\n        return x\n")
    assert _undocumented(path) == ["f", "C.g"]


#: The family registry: the one module outside the families that may name them (issue 22).
REGISTRY = "cnnrnn.families"
#: The floors that must not name a family: they reach one through the registry, by the name a manifest gives.
NAME_FREE = ("core", "facade", "models")


def _family_names() -> set[str]:
    import cnnrnn.families

    return set(cnnrnn.families.FAMILIES)


def _named_families(path: Path, names: set[str], packages: tuple[str, ...]) -> list[str]:
    """Where a module's source compares against a family's name, keys a table by one, or names a family module.

    A comparison is ``==``/``!=``/``in``/``not in`` with a family's name as a literal operand (alone or in a
    tuple, list or set literal); a ``match`` case on one counts too. A string literal that is a family package's
    module path (``"cnnrnn.dcnn.predict"``, for ``importlib``) counts as an import that bypasses the registry.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def literal_names(node) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [n for e in node.elts for n in literal_names(e)]
        return []

    out = []
    for node in ast.walk(tree):
        found = []
        if isinstance(node, ast.Compare):
            found = [n for operand in [node.left, *node.comparators] for n in literal_names(operand)]
        elif isinstance(node, ast.Dict):
            found = [n for key in node.keys if key is not None for n in literal_names(key)]
        elif isinstance(node, ast.MatchValue):
            found = literal_names(node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = [node.value for p in packages if node.value == p or node.value.startswith(p + ".")]
        out += [(node.lineno, node.col_offset, f"line {node.lineno}: {n!r}") for n in found]
    return [text for *_, text in sorted(out)]


def test_the_name_check_sees_comparisons_tables_and_module_paths(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('x = "dcnn"\nif f == "dcnn" or g in ("hf", "other"):\n    pass\nt = {"baselines": 1}\n'
                    'm = "cnnrnn.dcnn.predict"\nlogger = "cnnrnn.predict"\n')
    found = _named_families(path, {"dcnn", "hf", "baselines"}, ("cnnrnn.dcnn",))
    assert found == ["line 2: 'dcnn'", "line 2: 'hf'", "line 4: 'baselines'", "line 5: 'cnnrnn.dcnn.predict'"]


def test_no_core_module_names_a_family():
    """Only the registry names the families; the core and the facades ask it (issue 22)."""
    names, modules = _family_names(), _modules()
    bad = sorted(f"{m} {where}" for m, path in modules.items() if m != REGISTRY and _layer(m) in NAME_FREE
                 for where in _named_families(path, names, FAMILIES))
    assert bad == [], f"core modules that name a family (ask cnnrnn.families instead): {bad}"
