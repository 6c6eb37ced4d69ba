"""
The calculator tool of the chat model: text the model writes between <|python_start|> and <|python_end|> is
evaluated here, and the engine (nanochat/engine.py) forces the result in as <|output_start|>result<|output_end|>.

It parses with `ast`, walks an allow-list (numbers, + - * / // % **, unary + -, parentheses and
"string".count("s")) and checks sizes BEFORE computing anything big; nothing is ever passed to eval().
Nothing here is run directly:

    from nanochat.calculator import calculator
    calculator("48/2")          # '24'; CalculatorError (a ValueError) says why an expression is refused
Tests: pytest tests/test_calculator.py -q
"""

import ast
import math
import re
import warnings

CALC_MAX_CHARS = 256           # longer tool calls are rejected unparsed
CALC_MAX_DEPTH = 32            # nesting depth of the expression tree
CALC_MAX_INT_BITS = 256        # ints beyond ~77 decimal digits are "huge" (inputs, intermediates, results)


class CalculatorError(ValueError):
    """The expression is outside the calculator's grammar or its size limits."""


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _check_number(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise CalculatorError(f"result {x!r} is not a real number")
    if isinstance(x, int) and x.bit_length() > CALC_MAX_INT_BITS:
        raise CalculatorError(f"number too large (over {CALC_MAX_INT_BITS} bits)")
    if isinstance(x, float) and not math.isfinite(x):
        raise CalculatorError("result is not finite")
    return x


def _power(base, exp):
    """base ** exp, refused (not computed) when the result would be huge."""
    if base == 0 and exp < 0:
        raise CalculatorError("zero to a negative power")
    if isinstance(base, float) or isinstance(exp, float):
        if base < 0 and not float(exp).is_integer():
            raise CalculatorError("a negative number to a fractional power is not real")
        if abs(base) > 1 and abs(exp) * math.log2(abs(base)) > 1023:  # would overflow a float
            raise CalculatorError("power too large")
        try:
            return float(base) ** float(exp)
        except (OverflowError, ZeroDivisionError) as e:
            raise CalculatorError(f"power failed: {e}") from None
    # int ** int: the result has about exp * bit_length(base) bits; check that first.
    if exp < 0:
        return _power(float(base), float(exp))
    if abs(base) > 1 and exp * (abs(base).bit_length() - 1) > CALC_MAX_INT_BITS:
        raise CalculatorError(f"power too large (over {CALC_MAX_INT_BITS} bits)")
    return base ** exp


def _binop(op, a, b):
    if isinstance(op, ast.Pow):
        return _power(a, b)
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b  # both operands already < 2**256, so the product is < 2**512 before the result check
    if b == 0:
        raise CalculatorError("division by zero")
    if isinstance(op, ast.Div):
        return a / b
    if isinstance(op, ast.FloorDiv):
        return a // b
    return a % b


def _eval(node, depth=0):
    if depth > CALC_MAX_DEPTH:
        raise CalculatorError(f"expression nested deeper than {CALC_MAX_DEPTH}")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return _check_number(node.value)
        raise CalculatorError(f"constant {node.value!r} is not allowed (only numbers, and strings with .count)")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        return _check_number(_binop(node.op, a, b))
    if isinstance(node, ast.Call):
        return _count(node)
    if isinstance(node, ast.Name):
        raise CalculatorError(f"name {node.id!r} is not allowed")
    if isinstance(node, ast.Attribute):
        raise CalculatorError(f"attribute .{node.attr} is not allowed (only \"text\".count(\"x\"))")
    raise CalculatorError(f"{type(node).__name__} is not allowed")


def _count(node: ast.Call) -> int:
    """The one allowed call: "string literal".count("string literal")."""
    func = node.func
    ok = (isinstance(func, ast.Attribute) and func.attr == "count"
          and isinstance(func.value, ast.Constant) and isinstance(func.value.value, str)
          and len(node.args) == 1 and not node.keywords
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))
    if not ok:
        raise CalculatorError('calls are not allowed, except "text".count("x") on string literals')
    return func.value.value.count(node.args[0].value)   # strings are short: CALC_MAX_CHARS bounds them


def format_number(x) -> str:
    """Ints as they are; whole floats without '.0' (48/2 -> '24'); other floats rounded to 10 places."""
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return repr(round(x, 10))
    return str(x)


def calculator(expr: str) -> str:
    """Evaluate a calculator tool call and return its result as text, or raise CalculatorError saying why not.

    Grammar: numbers, + - * / // % ** (size-guarded), unary + -, parentheses, "string".count("s").
    Nothing outside it is ever evaluated: the expression is parsed, never passed to eval().
    Thousands separators between digits ("1,234") are removed first.
    """
    if not isinstance(expr, str):
        raise CalculatorError("expression must be a string")
    if len(expr) > CALC_MAX_CHARS:
        raise CalculatorError(f"expression longer than {CALC_MAX_CHARS} characters")
    expr = re.sub(r"(?<=\d),(?=\d{3}\b)", "", expr.strip())
    try:
        with warnings.catch_warnings():     # model text like '3x' makes the parser warn; the error is enough
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"cannot parse: {e.__class__.__name__}") from None
    return format_number(_eval(tree))


def use_calculator(expr: str) -> str | None:
    """calculator() for the engine: None when the expression is refused (then nothing is forced in)."""
    try:
        return calculator(expr)
    except CalculatorError:
        return None
