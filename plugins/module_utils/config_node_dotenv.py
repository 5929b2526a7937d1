# -*- coding: utf-8 -*-
# Copyright: Treazrisland ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How Node's dotenv reads a ``.env`` file, in Python: the ``parse`` of dotenv 8 and of dotenv 16.

Treazrisland loads its configuration with dotenv-flow 3.3, which parses each file with Node's
dotenv 8.6; newer releases use dotenv 16. Both differ from python-dotenv (the parser the files are
edited with): no escapes but ``\\n`` (and ``\\r`` in dotenv 16) inside double quotes, no escapes at
all inside single quotes, and dotenv 8 has neither ``export`` nor inline comments. config_apply
reads what it is about to write with these two functions, so that a value reaches the application
exactly as given.

Both are written from the rules of the JavaScript originals. JavaScript regular expressions differ
from Python's in what they call whitespace, a word character, any character and a line boundary,
so those are spelled out below instead of using Python's ``\\s``, ``\\w``, ``.``, ``^`` and ``$``.
"""

from __future__ import annotations

import re

# JavaScript's \s and String.prototype.trim(): WhiteSpace and LineTerminator of ECMAScript.
# (Python's \s also has U+001C..U+001F and U+0085 but not U+FEFF.)
JS_WHITESPACE = ("\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                 "\u2028\u2029\u202f\u205f\u3000\ufeff")
_S = "[%s]" % re.escape(JS_WHITESPACE)
# JavaScript's line terminators: where "." stops and where ^ and $ match in multiline mode.
JS_LINE_TERMINATORS = "\n\r\u2028\u2029"
_LT = "[%s]" % re.escape(JS_LINE_TERMINATORS)
_DOT = "[^%s]" % re.escape(JS_LINE_TERMINATORS)
_LINE_START = r"(?:\A|(?<=%s))" % _LT  # ^ with the m flag
_LINE_END = r"(?=%s|\Z)" % _LT  # $ with the m flag

# dotenv 16's LINE: optional export, key, = (or ": "), a single-, double- or backtick-quoted value
# (which may span lines) or an unquoted one up to a #, then an optional comment.
_DOTENV16_LINE = re.compile(
    _LINE_START + _S + "*(?:export" + _S + "+)?([A-Za-z0-9_.-]+)(?:" + _S + "*=" + _S + "*?|:" + _S + "+?)"
    + "(" + _S + r"*'(?:\\'|[^'])*'"
    + "|" + _S + r'*"(?:\\"|[^"])*"'
    + "|" + _S + r"*`(?:\\`|[^`])*`"
    + r"|[^#\r\n]+)?"
    + _S + "*(?:#" + _DOT + "*)?" + _LINE_END)
_DOTENV16_QUOTED = re.compile(_LINE_START + r"(['\"`])([\s\S]*)\1" + _LINE_END)
_CRLF_OR_CR = re.compile(r"\r\n?")

# dotenv 8's RE_INI_KEY_VAL, matched against one line at a time; $ without the m flag is the end.
_DOTENV8_LINE = re.compile(r"\A" + _S + "*([A-Za-z0-9_.-]+)" + _S + "*=" + _S + "*(" + _DOT + r"*)?" + _S + r"*\Z")
_DOTENV8_NEWLINES = re.compile(r"\n|\r|\r\n")


def js_trim(text):
    """String.prototype.trim()."""
    return text.strip(JS_WHITESPACE)


def parse_dotenv16(text):
    """{key: value} as dotenv 16's parse() reads text; a key set twice keeps its last value."""
    found = {}
    for match in _DOTENV16_LINE.finditer(_CRLF_OR_CR.sub("\n", text)):
        value = js_trim(match.group(2) or "")
        opening = value[:1]
        value = _DOTENV16_QUOTED.sub(r"\2", value)
        if opening == '"':
            value = value.replace("\\n", "\n").replace("\\r", "\r")
        found[match.group(1)] = value
    return found


def parse_dotenv8(text):
    """{key: value} as dotenv 8's parse() (and so dotenv-flow 3's) reads text, line by line."""
    found = {}
    for line in _DOTENV8_NEWLINES.split(text):
        match = _DOTENV8_LINE.match(line)
        if match is None:
            continue  # not KEY=value (export lines among them): dotenv 8 skips the line
        value = match.group(2) or ""
        last = len(value) - 1
        double = value[:1] == '"' and value[last:] == '"'
        single = value[:1] == "'" and value[last:] == "'"
        if double or single:
            value = _js_substring(value, 1, last)
            if double:
                value = value.replace("\\n", "\n")
        else:
            value = js_trim(value)
        found[match.group(1)] = value
    return found


def _js_substring(text, start, end):
    """String.prototype.substring(): bounds clamped, and swapped when start > end (so '"' stays '"')."""
    start, end = (min(max(bound, 0), len(text)) for bound in (start, end))
    if start > end:
        start, end = end, start
    return text[start:end]
