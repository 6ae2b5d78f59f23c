"""Reading filters from text: ``status == failed and priority < 50``.

A hand-written recursive-descent parser; every error is a :class:`WhereSyntaxError`
pointing at the column of the culprit.
"""

from __future__ import annotations

from typing import NoReturn, cast

import attrs

from ..errors import InvalidSpec
from .fields import KIND_OPERATORS, OPERATOR_HINTS, Kind, Op, kind_of, unknown_field
from .nodes import MAX_DEPTH, And, Compare, Expr, Not, Or

__all__ = ["WhereSyntaxError", "parse"]

_NONE_WORDS = frozenset({"none", "null"})
#: longest filter text read (a filter is typed or generated, never a document)
MAX_TEXT = 65536


class WhereSyntaxError(InvalidSpec):
    """Filter text that does not parse (or names a bad field or value). ``column`` is
    1-based; ``text`` is the whole input; the message ends with the text and a caret
    line under the column."""

    def __init__(self, field: str, message: str, text: str, column: int) -> None:
        self.message = message
        self.text = text
        self.column = column
        caret = " " * (column - 1) + "^"
        # one display column per character, so the caret lands under the culprit
        shown = "".join(" " if c.isspace() else c for c in text)
        super().__init__(field, f"{message} at column {column}\n    {shown}\n    {caret}")


_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "matches"})
_SYMBOLS = ("==", "!=", "<=", ">=", "=", "<", ">", "&", "|", "~", "(", ")", ",")
_WORD_STOP = frozenset(" \t\r\n\f\v()\",'=!<>&|~")
_SYM_OP = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@attrs.frozen
class _Token:
    kind: str  # "sym", "kw", "word", "str", "end"
    text: str  # the symbol, the lower-cased keyword, the word, or the unescaped string
    col: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        start = i
        if c in "\"'":
            quote, i, chars = c, i + 1, []
            while True:
                if i >= n:
                    raise WhereSyntaxError("where", "unterminated string", text, start + 1)
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
                    # only \\ and \<quote> are escapes: a regex like "\d" stays as written
                    chars.append(text[i + 1])
                    i += 2
                elif ch == quote:
                    i += 1
                    break
                else:
                    chars.append(ch)
                    i += 1
            tokens.append(_Token("str", "".join(chars), start + 1))
            continue
        sym = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
        if sym is not None:
            tokens.append(_Token("sym", sym, start + 1))
            i += len(sym)
            continue
        if c == "!":
            raise WhereSyntaxError("where", "unexpected '!' (use != or not)", text, start + 1)
        while i < n and text[i] not in _WORD_STOP:
            i += 1
        word = text[start:i]
        if word.lower() in _KEYWORDS:
            tokens.append(_Token("kw", word.lower(), start + 1))
        else:
            tokens.append(_Token("word", word, start + 1))
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of text"
    if tok.kind == "str":
        return f'string "{tok.text}"'
    return repr(tok.text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0  # open parentheses and nots: the recursion is bounded by MAX_DEPTH

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.error(f"the filter nests deeper than {MAX_DEPTH} levels", tok)

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def error(self, message: str, tok: _Token | None = None, field: str = "where") -> NoReturn:
        raise WhereSyntaxError(field, message, self.text, (tok or self.tok).col)

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str, *texts: str) -> bool:
        return self.tok.kind == kind and (not texts or self.tok.text in texts)

    def parse(self) -> Expr:
        if self.at("end"):
            self.error("empty filter: expected a comparison such as status == failed")
        expr = self.or_expr()
        if not self.at("end"):
            self.error(f"expected 'and', 'or' or the end, found {_describe(self.tok)}")
        return expr

    def or_expr(self) -> Expr:
        expr = self.and_expr()
        while self.at("kw", "or") or self.at("sym", "|"):
            self.take()
            expr = Or(expr, self.and_expr())
        return expr

    def and_expr(self) -> Expr:
        expr = self.not_expr()
        while self.at("kw", "and") or self.at("sym", "&"):
            self.take()
            expr = And(expr, self.not_expr())
        return expr

    def not_expr(self) -> Expr:
        if self.at("kw", "not") or self.at("sym", "~"):
            self.enter(self.take())
            expr = Not(self.not_expr())
            self.depth -= 1
            return expr
        return self.primary()

    def primary(self) -> Expr:
        if self.at("sym", "("):
            open_tok = self.take()
            self.enter(open_tok)
            expr = self.or_expr()
            self.depth -= 1
            if not self.at("sym", ")"):
                if self.at("end"):
                    self.error("unclosed parenthesis", open_tok)
                self.error(f"expected ), found {_describe(self.tok)}")
            self.take()
            return expr
        return self.comparison()

    def comparison(self) -> Expr:
        tok = self.tok
        if tok.kind != "word":
            self.error(f"expected a field name, found {_describe(tok)}")
        try:
            known: Kind | None = kind_of(tok.text)
        except InvalidSpec as e:  # a label key of the wrong shape
            self.error(e.reason, tok, e.field)
        if known is None:
            self.error(unknown_field(tok.text), tok, f"where.{tok.text}")
        kind = known
        field = self.take().text
        negate = False
        if self.at("kw", "not"):  # `x not in (...)`, `tags not contains y`
            self.take()
            negate = True
            if not self.at("kw", "in", "contains", "matches"):
                self.error(
                    f"expected in, contains or matches after not, found {_describe(self.tok)}"
                )
        op_tok = self.tok
        if op_tok.kind == "sym" and op_tok.text in _SYM_OP:
            op = cast("Op", _SYM_OP[op_tok.text])
        elif op_tok.kind == "kw" and op_tok.text in ("contains", "matches", "in"):
            op = cast("Op", op_tok.text)
        else:
            self.error(
                f"expected an operator (== != < <= > >= in contains matches) after {field}, "
                f"found {_describe(op_tok)}"
            )
        if op not in KIND_OPERATORS[kind]:
            self.error(
                f"operator {op} does not apply to {field}{OPERATOR_HINTS.get(kind, '')}",
                op_tok,
                f"where.{field}",
            )
        self.take()
        value_tok = self.tok
        value: object = self.value_list() if op == "in" else self.value()
        try:
            node: Expr = Compare(field, op, value)
        except InvalidSpec as e:
            self.error(e.reason, value_tok, e.field)
        return Not(node) if negate else node

    def value(self) -> str | None:
        if self.at("word"):
            word = self.take().text
            # bare null/none is "unset"; quote it ("null") to mean the text
            return None if word.lower() in _NONE_WORDS else word
        if self.at("str"):
            return self.take().text
        self.error(f"expected a value, found {_describe(self.tok)}")

    def value_list(self) -> tuple[str | None, ...]:
        if not self.at("sym", "("):
            return (self.value(),)
        open_tok = self.take()
        values: list[str | None] = []
        while not self.at("sym", ")"):
            if self.at("end"):
                self.error("unclosed parenthesis", open_tok)
            values.append(self.value())
            if self.at("sym", ","):
                self.take()
            elif self.at("end"):
                self.error("unclosed parenthesis", open_tok)
            elif not self.at("sym", ")"):
                self.error(f"expected , or ), found {_describe(self.tok)}")
        self.take()
        return tuple(values)


def parse(text: str) -> Expr:
    """Read a filter from text, e.g. ``status == failed and priority < 50``.

    Raises :class:`WhereSyntaxError` (an ``InvalidSpec``) pointing at the column.
    """
    if not isinstance(text, str):
        raise InvalidSpec("where", f"expected filter text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise InvalidSpec("where", f"the filter text is {len(text)} characters long, at most {MAX_TEXT}")
    parser = _Parser(text)
    try:
        return parser.parse()
    except WhereSyntaxError:
        raise
    except InvalidSpec as exc:  # from building a node (depth): point at where we were
        raise WhereSyntaxError(exc.field, exc.reason, text, parser.tok.col) from None
