"""The shipped type stubs agree with the runtime: every public name in __init__.pyi exists,
is what the stub says (function, class, property, method) and takes the stub's parameters."""

import ast
import inspect
from pathlib import Path

import resformer

STUB = Path(resformer.__file__).with_name("__init__.pyi")


def params(node):
    a = node.args
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]


def test_stubs_and_py_typed_ship_with_the_package():
    assert STUB.exists() and STUB.with_name("py.typed").exists()


def test_every_stub_name_exists_and_takes_the_stub_parameters():
    tree = ast.parse(STUB.read_text())
    checked = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            f = getattr(resformer, node.name)
            assert callable(f) and list(inspect.signature(f).parameters) == params(node), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(resformer, node.name)
            assert inspect.isclass(cls), node.name
            for m in node.body:
                if not isinstance(m, ast.FunctionDef):
                    continue
                attr = inspect.getattr_static(cls, m.name)
                decorators = {d.id for d in m.decorator_list if isinstance(d, ast.Name)}
                if "property" in decorators:
                    assert isinstance(attr, property), f"{node.name}.{m.name} is a property"
                    continue
                fn = getattr(cls, m.name)
                assert callable(fn), f"{node.name}.{m.name}"
                want = params(m)
                if "classmethod" in decorators:
                    assert isinstance(attr, classmethod), f"{node.name}.{m.name} is a classmethod"
                    want = want[1:]  # cls
                    got = list(inspect.signature(fn).parameters)
                else:
                    got = list(inspect.signature(attr).parameters)
                assert got == want, f"{node.name}.{m.name}: runtime {got}, stub {want}"
                checked += 1
        elif isinstance(node, ast.AnnAssign):
            assert hasattr(resformer, node.target.id), node.target.id
    assert checked >= 15
    # and every name the package exports is in the stub
    stub_names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    stub_names |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    stub_names |= {a.asname for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names if a.asname}
    assert set(resformer.__all__) <= stub_names, set(resformer.__all__) - stub_names
