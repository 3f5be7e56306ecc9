"""Regular expressions that run in linear time, for anything applied to request text.

Python's ``re`` backtracks: a pattern like ``[a-z]+@`` costs O(n²) on a run of ``n`` letters without an
``@``, and a request of 200,000 characters then holds a core (and the GIL) for seconds. Patterns applied to
request text are compiled with RE2 (``google-re2``), an automaton-based engine whose matching time is
linear in the text for every pattern it accepts; it refuses the constructs that need backtracking
(backreferences, lookaround), so a configured pattern that would be slow fails at configuration time
instead of on the serving path.
"""

from __future__ import annotations

from typing import Any

import re2

# RE2's own memory bound for a compiled program (bytes); the default (8 MiB) is plenty for redaction rules.
_MAX_MEM = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile (bad syntax, or a construct that needs backtracking)."""


def compile_linear(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (Python ``re`` syntax minus backreferences and lookaround).

    Raises:
        PatternError: naming why the pattern is refused.
    """
    options = re2.Options()
    options.max_mem = _MAX_MEM
    options.log_errors = False  # the error is raised to the caller, not written to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PatternError(f"not a linear-time (RE2) regular expression: {detail}") from exc
    except TypeError as exc:  # non-str input
        raise PatternError(str(exc)) from exc
