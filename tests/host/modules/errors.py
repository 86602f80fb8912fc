"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/errors.py.

Everything the host would print as an error is also appended to ``reported`` (double-only), so tests can assert
"nothing was reported" or "this CN failure was swallowed and reported".
"""

import sys
import textwrap
import traceback

exception_records = []
reported = []  # double-only: ReportedError entries, oldest first


class ReportedError(str):
    """A reported message (with the traceback text appended when there was one); ``in`` works on the whole text."""

    message: str
    exception: BaseException | None

    def __new__(cls, message, exception=None, tb_text=""):
        obj = super().__new__(cls, f"{message}\n{tb_text}".rstrip("\n") if tb_text else message)
        obj.message = message
        obj.exception = exception
        return obj


def format_traceback(tb):
    return [[f"{x.filename}, line {x.lineno}, {x.name}", x.line] for x in traceback.extract_tb(tb)]


def format_exception(e, tb):
    return {"exception": str(e), "traceback": format_traceback(tb)}


def get_exceptions():
    return list(reversed(exception_records))


def record_exception():
    """Keep the last 5 exceptions, like the real one (shown by the sysinfo page)."""
    _, e, tb = sys.exc_info()
    if e is None:
        return
    if exception_records and exception_records[-1] == e:
        return
    exception_records.append(format_exception(e, tb))
    if len(exception_records) > 5:
        exception_records.pop(0)


def _remember(message, exc_info):
    exc = sys.exc_info()[1] if exc_info else None
    tb_text = traceback.format_exc() if exc is not None else ""
    reported.append(ReportedError(message, exc, tb_text))


def report(message: str, *, exc_info: bool = False) -> None:
    """Print an error (with the current traceback when exc_info) and record it; never raises."""
    record_exception()
    for line in message.splitlines():
        print("***", line, file=sys.stderr)
    if exc_info:
        print(textwrap.indent(traceback.format_exc(), "    "), file=sys.stderr)
        print("---", file=sys.stderr)
    _remember(message, exc_info)


def print_error_explanation(message):
    record_exception()
    lines = message.strip().split("\n")
    max_len = max([len(x) for x in lines] + [0])
    print("=" * max_len, file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)
    print("=" * max_len, file=sys.stderr)


def display(e: Exception, task, *, full_traceback=False):
    """Print ``task`` and the exception; recorded in ``reported`` too."""
    record_exception()
    print(f"{task or 'error'}: {type(e).__name__}", file=sys.stderr)
    te = traceback.TracebackException.from_exception(e)
    if full_traceback:
        te.stack = traceback.StackSummary(traceback.extract_stack()[:-2] + te.stack)
    print(*te.format(), sep="", file=sys.stderr)
    reported.append(ReportedError(f"{task or 'error'}: {type(e).__name__}: {e}", e, "".join(te.format())))


already_displayed = {}


def display_once(e: Exception, task):
    record_exception()
    if task in already_displayed:
        return
    display(e, task)
    already_displayed[task] = 1


def run(code, task):
    try:
        code()
    except Exception as e:
        display(e, task)
