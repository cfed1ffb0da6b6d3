"""Where a response sends the browser: redirects, refreshes, script navigations and automatic loads.

`find_navigations` reads a response the way a browser would act on it and lists
every place it sends the browser, each with the technique, the absolute target
(so the caller can compare hosts), the source text as evidence, and whether it
happens without a user action. It looks at the ``Location`` header of a 30x, the
``Refresh`` header, and, for HTML, XHTML and SVG bodies, at the markup: meta
refreshes, ``<base href>``, hidden and data:/javascript: frames, forms, the
event attributes that fire by themselves (``onload``, ``onerror``, ...) and
inline scripts.

Scripts are read by a JavaScript tokenizer (strings, comments, template literals, regular
expressions, bracket pairs), never run. Whether a "/" divides or starts a regular expression
follows the grammar, as a browser's parser decides it (after the ")" of `if`/`while`/`for`, a
block's "}", `return` or `typeof`; `yield` and `await` only inside generators and async
functions); classic scripts' HTML-like comments are comments. Navigation sinks
(``location = ``, ``location.href = ``, ``location.assign/replace()``, ``window.open()``,
``document.write()``, ``form.submit()``) are classified by the function they sit in: top
level, immediately invoked functions, load handlers, timers and promise callbacks are
automatic; click handlers and functions that are only defined are not, unless a named
function is seen being called from automatic code. Targets built from literals are
recovered: string concatenation, ``atob``, ``unescape``, ``decodeURIComponent``,
``String.fromCharCode``, ``\\x``/``\\u`` escapes, ``split/reverse/join``, simple variables,
the page's own ``location`` parts and code passed to ``eval``, ``Function`` or a string
timer. A target that only starts with a literal keeps that part when it already fixes the
host (``"https://evil.example/?u=" + x``).

The cost follows the input, and one step budget (`results.Steps`, linear in the body's
size) bounds the whole reading: markup scanning, tokenizing, evaluating, following callers.
The markup is scanned once (markup a script writes, each time it is written); each script
is tokenized once, and the tokenizer indexes its names and pairs its brackets as it goes, so
that everything after is answered from indexes, never by searching the text again: a
sink's function by walking back over balanced brackets, each classified once; a variable's
value from the assignments that may reach the use, each assignment's value worked out once;
a global set in an earlier script from one index of the page's assignments; whether a named
function is called from automatic code by one walk back over the call graph, where each use
of a name is resolved to its declaration once and functions reached by the same calls are
one node. A name is looked up through at most a fixed number of enclosing functions; past
that, the answer is the suspicious one. Every navigation found is kept, however many. A
reading that spends the budget ends with an ``UNREAD`` navigation, and a function whose
callers could not all be read counts as called automatically: a bound never reads as
"nothing found". Nothing here raises on bad input, and nothing imports mitmproxy.

The modules, from the response down to the tokens:

- `finder`: `find_navigations`, the entry point; `results`: `Navigation` and `Technique`.
- `document_text`: whether a body is markup, and its text (`decode_html`); `markup_scan`:
  the tag tokenizer; `refresh`: `parse_refresh`; `url_resolution`: URLs as browsers join them.
- `page_reader`: the page as a whole, its tags, and the final judgement of what is automatic.
- `script_reader`: the sinks of one script; `script_scopes`: which function a token runs
  in; `script_evaluator`: what an expression evaluates to; `deobfuscation`: the decoders,
  string tricks and the packer; `script_lexer`: the tokenizer; `script_values`: the values.
"""

from clickguard.inspection.navigation.document_text import decode_html
from clickguard.inspection.navigation.finder import find_navigations
from clickguard.inspection.navigation.refresh import parse_refresh
from clickguard.inspection.navigation.results import Navigation, Technique

__all__ = ["Navigation", "Technique", "decode_html", "find_navigations", "parse_refresh"]
