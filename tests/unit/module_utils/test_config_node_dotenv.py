"""The Python port of Node dotenv's parse (8 and 16), and the node_dotenv writer checked against it.

The expected values of the table are what the real dotenv 8.6.0 and 16.6.1 return for these texts;
tests/integration/test_config_env_syntax.py compares the port with them on random files too.
"""

from __future__ import annotations

import io
import logging
import random

import pytest
from dotenv import dotenv_values

from ansible_collections.treazrisland.ops.plugins.module_utils.config_envfile import Unrepresentable, node_form
from ansible_collections.treazrisland.ops.plugins.module_utils.config_node_dotenv import parse_dotenv8, parse_dotenv16


@pytest.mark.parametrize("text, dotenv8, dotenv16", [
    # python-dotenv's escapes stay literal: the reason for the node_dotenv syntax.
    ("A=a\\\"b'c\nB=\"back\\\\slash\"\n", {"A": "a\\\"b'c", "B": "back\\\\slash"},
     {"A": "a\\\"b'c", "B": "back\\\\slash"}),
    # dotenv 8 has no inline comments and sees quotes only at both ends; a lone '"' stays '"'.
    ("J=val # comment\nK=\"\nL='a'  \n", {"J": "val # comment", "K": '"', "L": "'a'"},
     {"J": "val", "K": '"', "L": "a"}),
    # dotenv 8 skips export lines.
    ("export E=1\nF = spaced \n", {"F": "spaced"}, {"E": "1", "F": "spaced"}),
    # Only dotenv 16 reads a quoted value across lines.
    ("M=\"line one\nline two\"\nN=next\n", {"M": '"line one', "N": "next"},
     {"M": "line one\nline two", "N": "next"}),
    ("T=`tick`\nU='it\\'s'\n", {"T": "`tick`", "U": "it\\'s"}, {"T": "tick", "U": "it\\'s"}),
    # \r unescaped by dotenv 16 only; CRLF line ends.
    ("R=\"cr\\r and nl\\n\"\r\nS='x'\r\n", {"R": "cr\\r and nl\n", "S": "x"}, {"R": "cr\r and nl\n", "S": "x"}),
    # U+2028 ends dotenv 8's "." (the line is skipped); U+FEFF is JavaScript whitespace.
    ("D=x\u2028y\nG=\ufeffz\n", {"G": "z"}, {"D": "x\u2028y", "G": "z"}),
    ("C: colon\nV=1=2#3\n", {"V": "1=2#3"}, {"C": "colon", "V": "1=2"}),
])
def test_port_reads_as_the_real_parsers(text, dotenv8, dotenv16):
    assert parse_dotenv8(text) == dotenv8
    assert parse_dotenv16(text) == dotenv16


@pytest.mark.parametrize("value, written", [
    ("", ""),
    ("back\\\\slash", "back\\\\slash"),
    ("a\"b'c", "a\"b'c"),
    ("ends with\\", "ends with\\"),
    ("$HOME/x", "$HOME/x"),
    ("a=b=c", "a=b=c"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0/ab+cd==", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0/ab+cd=="),
    ("ünï cödé", "ünï cödé"),
    ("value #not a comment", "'value #not a comment'"),
    ("${X}", "'${X}'"),
    ("  padded  ", "'  padded  '"),
    ('"double"', "'\"double\"'"),
    ("`tick`", "'`tick`'"),
    ("a\\b #c", "'a\\b #c'"),
    ("it's #1", "\"it's #1\""),
    ("line one\nline two", '"line one\\nline two"'),
    (" C:\\dir 'x'", "\" C:\\dir 'x'\""),
])
def test_node_form_is_bare_then_single_then_double_quotes(value, written):
    assert node_form(value) == written


@pytest.mark.parametrize("value", [
    "a\rb", "a\u2028b", "a\u2029b",  # never: a line break for dotenv 8
    "'both\" quotes'", "\"quoted\" and it's",  # ' and " and not bare
    "line\nand back\\\\slash", "line\nit's \"x\"", " lead and trail\\",  # newline or ' with a backslash
    "it's ${X}", "line\n${X}",  # ${ only in single quotes
])
def test_values_no_form_holds_are_refused(value):
    with pytest.raises(Unrepresentable) as caught:
        node_form(value)
    assert str(caught.value) == ""  # the value never travels in the exception


def test_existing_quote_style_is_kept_when_the_value_allows():
    assert node_form("plain", "'") == "'plain'"
    assert node_form("plain", '"') == '"plain"'
    assert node_form("it's", "'") == "it's"  # single quotes cannot hold it: bare
    assert node_form("a\\\\b", '"') == "a\\\\b"  # python-dotenv would unescape \\ inside double quotes


# Characters that make each form go wrong for one parser or another.
ALPHABET = list("ab =#$'\"`\\\n\t{}") + ["${", "\\\\", "\\n", "\r", "\u2028", "\xa0", "\x1c", "\x85", "\ufeff", "é"]
# Later lines, each with one quote char, at its end: a form whose quotes could reach past its own
# line (dotenv 16 reads quoted values across lines, up to a quote that ends a line) does so here.
LATER_LINES = "T1=b`\nT2=c'\nT3=d\"\n"
LATER_VALUES = {"T1": "b`", "T2": "c'", "T3": 'd"'}


def _readings(line):
    text = "K=%s\n%s" % (line, LATER_LINES)
    return [dotenv_values(stream=io.StringIO(text), interpolate=False), parse_dotenv16(text), parse_dotenv8(text)]


def _read_exactly(line, value):
    return all(read == dict(K=value, **LATER_VALUES) for read in _readings(line))


def test_every_value_written_reads_exactly_and_every_refusal_is_needed(caplog):
    """Random values: what node_form writes, python-dotenv and both Node parsers read as the value;
    what it refuses, no form reads exactly. Two refusals are policy: ${ goes in single quotes only, and
    a leading backtick is never bare (dotenv 16 takes it for a quote, and whether its reading then
    stays on the line depends on the lines below)."""
    caplog.set_level(logging.CRITICAL, logger="dotenv.main")  # python-dotenv's warnings on the forms that fail
    rng = random.Random(15)
    accepted = refused = 0
    for _value in range(3000):
        value = "".join(rng.choices(ALPHABET, k=rng.randint(0, 7)))
        try:
            line = node_form(value)
        except Unrepresentable:
            refused += 1
            forms = (value, "'%s'" % value, '"%s"' % value.replace("\n", "\\n"))
            policy = "${" in value or value.startswith("`")
            assert policy or not any(_read_exactly(form, value) for form in forms), repr(value)
        else:
            accepted += 1
            assert _read_exactly(line, value), repr(value)
    assert accepted > 1000 and refused > 300  # both sides really exercised
