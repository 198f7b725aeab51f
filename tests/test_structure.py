"""The package keeps the shape a newcomer can follow: settings travel as one value, not as long parameter lists, and
the RL loop reads on one screen."""

import ast

from tests.conftest import ROOT

MAX_PARAMETERS = 8
MAX_RL_LOOP_LINES = 40


def functions():
    for path in sorted((ROOT / "rlpractice").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(ROOT), node


def parameters(node: ast.FunctionDef) -> int:
    a = node.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    return len(names) - (names[:1] in (["self"], ["cls"]))


def test_no_function_takes_more_than_eight_parameters():
    over = [f"{path}:{node.lineno} {node.name} ({parameters(node)})" for path, node in functions()
            if parameters(node) > MAX_PARAMETERS]
    assert not over, f"more than {MAX_PARAMETERS} parameters: {over}; pass a settings value instead"


def test_the_rl_loop_fits_on_a_screen():
    loop = [node for path, node in functions() if str(path).endswith("stages/rl.py") and node.name == "loop"]
    assert len(loop) == 1
    assert loop[0].end_lineno - loop[0].lineno + 1 <= MAX_RL_LOOP_LINES
