"""The shape of the package: no import cycles, no module too long to read in one sitting."""

import ast
from pathlib import Path

import django_jobs

PACKAGE = Path(django_jobs.__file__).parent
MAX_LINES = 450


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(name, path):
    """Every django_jobs module that ``path`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def graph():
    known = dict(modules())
    edges = {}
    for name, path in known.items():
        targets = {t for t in imports(name, path) if t in known and t != name}
        # Importing a package runs its __init__: "a.b" depends on "a" too.
        edges[name] = targets | {t.rpartition(".")[0] for t in targets if "." in t} & set(known)
        edges[name].discard(name)
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_the_package_not_even_through_imports_in_functions():
    edges = graph()
    # A package's __init__ re-exporting its modules is not a cycle of logic.
    for name in edges:
        edges[name] = {t for t in edges[name] if not name.startswith(f"{t}.")}
    assert find_cycle(edges) is None


def test_every_module_reads_in_one_sitting():
    long = {
        name: lines
        for name, path in modules()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
