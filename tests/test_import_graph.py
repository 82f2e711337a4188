"""The package layering: the library never imports the experiments, and no experiments module imports itself back
through others (issue 14: mrt_math -> disaggregated -> disagg_* -> job_parts -> mrt_math was a cycle). Imports
inside functions count: they are edges all the same."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_the_library_never_imports_the_experiments():
    bad = {module_name(p): sorted(i for i in imports(p) if i.split(".")[0] in ("experiments", "launch"))
           for p in ROOT.glob("mrt_jax/**/*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_no_import_cycle_among_the_experiments():
    mods = {module_name(p): p for p in ROOT.glob("experiments/**/*.py")}
    graph = {m: {i for i in imports(p) if i in mods and i != m} for m, p in mods.items()}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in done:
            return
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert "experiments.mrt_math" not in set().union(*(graph[m] for m in graph if m != "experiments.mrt_math"))
