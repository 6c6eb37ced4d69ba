"""
Tests of the calculator tool (nanochat/calculator.py): it computes its small grammar correctly and refuses everything
else - names, attributes, calls, huge numbers - quickly, without evaluating it.

    python -m pytest tests/test_calculator.py -q
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanochat.calculator import CalculatorError, calculator, format_number, use_calculator


@pytest.mark.parametrize("expr, expected", [
    ("1+2", "3"), ("2 + 3 * 4", "14"), ("(2 + 3) * 4", "20"), ("-3 - -4", "1"), ("+5", "5"),
    ("7 // 2", "3"), ("-7 // 2", "-4"), ("7 % 3", "1"), ("7 / 2", "3.5"), ("48 / 2", "24"),
    ("2 ** 10", "1024"), ("2 ** -1", "0.5"), ("4 ** 0.5", "2"), ("1 / 3", "0.3333333333"),
    ("0.1 + 0.2", "0.3"), ("1,234 + 1", "1235"), ("3.5 * 2", "7"), ("2 ** 200", str(2 ** 200)),
    ("'strawberry'.count('r')", "3"), ('"banana".count("an")', "2"), ("'a,b,c'.count(',')", "2"),
    ("'aaa'.count('b') + 1", "1"), ("(((1)))", "1"), ("1e3 * 2", "2000"),
])
def test_allowed_expressions(expr, expected):
    assert calculator(expr) == expected


@pytest.mark.parametrize("expr, why", [
    ("x + 1", "name 'x'"),
    ("__import__('os').system('echo hi')", "calls are not allowed"),
    ("open('/etc/passwd').read()", "calls are not allowed"),
    ("(1).__class__", "attribute .__class__"),
    ("'abc'.upper()", "calls are not allowed"),
    ("'abc'.count", "attribute .count"),
    ("'abc'.count(x)", "calls are not allowed"),
    ("'abc'.count('a', 1)", "calls are not allowed"),
    ("'abc'.count(sep='a')", "calls are not allowed"),
    ("'ab' + 'c'", "constant 'ab'"),
    ("'ab' * 3", "constant 'ab'"),
    ("[1, 2]", "List"),
    ("lambda: 1", "Lambda"),
    ("1 if 1 else 2", "IfExp"),
    ("1 < 2", "Compare"),
    ("True + 1", "constant True"),
    ("1 & 3", "BinOp"),
    ("~1", "UnaryOp"),
    ("not 1", "UnaryOp"),
    ("1; 2", "cannot parse"),
    ("import os", "cannot parse"),
    ("", "cannot parse"),
    ("1 / 0", "division by zero"),
    ("1 % 0", "division by zero"),
    ("0 ** -1", "zero to a negative power"),
    ("(-8) ** 0.5", "not real"),
    ("1e308 * 10", "not finite"),
    ("2 ** 257", "power too large"),
    ("10.0 ** 400", "power too large"),
    ("9 ** 9 ** 9 ** 9", "power too large"),
    ("(10 ** 70) * (10 ** 70)", "number too large"),
    ("1" * 100, "number too large"),
    ("'x' * 2000", "constant 'x"),
    ("'" + "a" * 1200 + "'.count('a')", "longer than 256"),
    ("1 + " * 100 + "1", "longer than 256"),
    ("(1+" * 40 + "1" + ")" * 40, "nested deeper"),
    ("-" * 60 + "1", "nested deeper"),
])
def test_refused_expressions(expr, why):
    start = time.perf_counter()
    with pytest.raises(CalculatorError, match=why.replace("(", r"\(").replace(".", r"\.")):
        calculator(expr)
    assert time.perf_counter() - start < 0.1, "refusals must not compute the thing they refuse"
    assert use_calculator(expr) is None


def test_huge_power_chains_refused_fast():
    for expr in ["2 ** 2 ** 2 ** 2 ** 2 ** 2", "10 ** 10 ** 10", "(10 ** 76) ** 2", "-(7 ** 7 ** 7)"]:
        start = time.perf_counter()
        with pytest.raises(CalculatorError):
            calculator(expr)
        assert time.perf_counter() - start < 0.1


# Random expressions in the grammar agree with Python itself wherever Python's answer is within the limits.
numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)))


def expressions(depth=3):
    leaf = numbers.map(lambda n: f"({n})")
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    binop = st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "//", "%"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    power = st.tuples(sub, st.integers(0, 3)).map(lambda t: f"({t[0]} ** {t[1]})")
    return st.one_of(leaf, binop, power, sub.map(lambda e: f"-{e}"))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)   # the same cases every run
@given(expressions())
def test_agrees_with_python(expr):
    try:
        expected = eval(expr, {"__builtins__": {}})   # safe: hypothesis only builds arithmetic on literals
    except (ZeroDivisionError, OverflowError):
        with pytest.raises(CalculatorError):
            calculator(expr)
        return
    if isinstance(expected, complex) or (isinstance(expected, int) and expected.bit_length() > 256):
        return
    if isinstance(expected, float) and expected != expected:   # nan from inf - inf
        return
    try:
        got = calculator(expr)
    except CalculatorError as e:
        assert "too large" in str(e) or "not finite" in str(e), f"{expr}: refused for {e}"
        return
    assert got == format_number(expected)
