"""Every limit on a marketer's template, in one place: time, output, loops, sizes.

A campaign template is data a marketer types; it must never stop a preview, a validation or
a dispatch run. :class:`BoundedEnvironment` is the immutable, autoescaped Jinja sandbox the
campaigns render in, with these bounds (:data:`LIMITS`):

- **time**: :func:`run_with_deadline` runs a rendering in the caller's thread under a
  wall-clock deadline; one watchdog thread per process interrupts it when the deadline passes
  (an asynchronous exception, delivered between two Python bytecodes). No thread or process is
  started per rendering: arming and disarming is a dictionary update under a lock.
- **output**: :func:`render_bounded` streams the output and stops at ``output_chars``.
- **loops**: ``range()`` gives at most ``range_items`` numbers, and every ``{% for %}`` of a
  rendering counts against ``loop_iterations``.
- **sizes**: what a single operation could allocate is checked *before* it runs, because the
  clock cannot interrupt one C-level operation: ``*`` (``"x" * 200000000``), ``+``, ``~``,
  ``**``, ``%``, the filters that can grow a text (``replace``, ``join``, ``indent``,
  ``center``, ``wordwrap``, ``format``, ``batch``, ``slice``, ``tojson``...), and string
  methods (only those that cannot grow a text are callable; ``str.format`` is refused).
  Every value a template builds, and every ``{{ }}`` it prints, stays under ``value_chars``.

A bound that is hit raises :class:`LimitExceeded` (a ``TemplateError``) naming the limit.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from jinja2 import Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateRuntimeError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment


@dataclass(frozen=True)
class RenderLimits:
    """The bounds of one rendering (a contact's channels share ``seconds``)."""

    seconds: float = 1.0  # wall clock for one contact (every channel); a normal one takes ~0.2 ms
    output_chars: int = 500_000  # per rendered text (Gmail clips an email at 102 KB)
    value_chars: int = 500_000  # any text or list a template builds, and any {{ }} it prints
    range_items: int = 10_000  # numbers one range() may give
    loop_iterations: int = 10_000  # {% for %} iterations in one rendering, all loops together
    int_bits: int = 4_096  # a number a template computes (about 1,200 digits)
    width: int = 1_000  # widths, indents, decimals and paddings in filters and formats


LIMITS = RenderLimits()


class LimitExceeded(TemplateRuntimeError):
    """A rendering went over one of :data:`LIMITS`; the message names the limit."""


class RenderTimeout(LimitExceeded):
    """A rendering ran longer than its wall-clock limit and was stopped."""


# --- the deadline ---------------------------------------------------------------------------


class _Interrupt(BaseException):
    """Raised asynchronously inside a rendering whose deadline passed. A BaseException, so no
    ``except Exception`` inside Jinja or a filter can swallow it."""


@dataclass
class _Slot:
    thread_id: int
    deadline: float
    fired: bool = False
    done: bool = False


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Schedule ``exception`` in the thread (None clears one scheduled and not yet raised)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


class _Watchdog:
    """One daemon thread per process that interrupts renderings past their deadline.

    It wakes every ``TICK`` seconds while renderings are armed and stops after a second
    without any (the next :meth:`arm` starts it again; a forked child gets its own).
    """

    TICK = 0.02
    IDLE_EXIT = 1.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._running = False
        self._next = 0

    def arm(self, seconds: float) -> tuple[int, _Slot]:
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._reset()
        slot = _Slot(threading.get_ident(), time.monotonic() + seconds)
        with self._lock:
            self._next += 1
            key = self._next
            self._slots[key] = slot
            if not self._running:
                self._running = True
                threading.Thread(target=self._watch, name="template-deadline", daemon=True).start()
        return key, slot

    def disarm(self, key: int, slot: _Slot) -> bool:
        """Forget the slot; True when its deadline fired. Under the lock, so no interrupt
        can be scheduled after this returns, and one scheduled but not yet raised is cleared."""
        with self._lock:
            self._slots.pop(key, None)
            if slot.fired and not slot.done:
                _raise_in_thread(slot.thread_id, None)
            slot.done = True
            return slot.fired

    def _watch(self) -> None:
        idle_since: float | None = None
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                for slot in self._slots.values():
                    if not slot.fired and not slot.done and now >= slot.deadline:
                        slot.fired = True
                        _raise_in_thread(slot.thread_id, _Interrupt)
                if self._slots:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.IDLE_EXIT:
                    self._running = False
                    return


_WATCHDOG = _Watchdog()


T = TypeVar("T")


def run_with_deadline(seconds: float, work: Callable[[], T]) -> T:
    """``work()`` in this thread, interrupted with :class:`RenderTimeout` after ``seconds``."""
    key, slot = _WATCHDOG.arm(seconds)
    interrupt: _Interrupt | None = None
    try:
        try:
            return work()
        finally:
            fired = _WATCHDOG.disarm(key, slot)
    except _Interrupt as caught:  # its traceback shows where the rendering was stopped
        _WATCHDOG.disarm(key, slot)
        interrupt, fired = caught, True
    if fired:
        raise RenderTimeout(f"the template ran longer than the limit of {seconds:g} s") from (
            interrupt
        )
    raise AssertionError("unreachable")  # pragma: no cover


# --- sizes ----------------------------------------------------------------------------------


def measure(value: Any, limit: int) -> int:
    """About how many characters ``value`` prints as (texts, numbers, nested lists and
    records); stops counting past ``limit``. Lazy iterators count as 0 (they are measured
    when something materialises them)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes or isinstance(item, str):
            total += len(item)
        elif kind is int:
            total += item.bit_length() // 3 + 1
        elif kind is float or kind is bool or item is None:
            total += 8
        elif kind is list or kind is tuple or kind is set or kind is frozenset:
            total += 2 * len(item) + 2
            stack.extend(item)
        elif kind is dict:
            total += 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Undefined):
            continue
        elif hasattr(kind, "_data"):  # a templating._Record (asked of the class: an
            stack.append(item._data)  # Undefined's __getattr__ would raise)
        elif isinstance(item, range):
            total += len(item) * 6
        elif isinstance(item, Mapping):
            total += 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 * len(item) + 2
            stack.extend(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        else:
            total += 8  # a date, a number, a macro...
    return total


def _check_size(size: int, what: str, limits: RenderLimits) -> None:
    if size > limits.value_chars:
        raise LimitExceeded(f"{what} would be over the limit of {limits.value_chars:,} characters")


def _check_value(value: Any, what: str, limits: RenderLimits) -> None:
    _check_size(measure(value, limits.value_chars), what, limits)


def _check_width(value: Any, what: str, limits: RenderLimits) -> None:
    width = len(value) if isinstance(value, str) else value
    if isinstance(width, int | float) and abs(width) > limits.width:
        raise LimitExceeded(f"{what} {width} is over the limit of {limits.width:,}")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_printf(text: str, args: Any, limits: RenderLimits) -> None:
    """``"%5.2f" % x`` and the ``format`` filter: no ``*`` width, no width over the limit."""
    for match in _PRINTF.finditer(text):
        for number in match.groups():
            if number == "*":
                raise LimitExceeded("a '*' width in a % format is not allowed in templates")
            if number is not None:
                _check_width(int(number), "a % format width", limits)
    _check_size(len(text) + measure(args, limits.value_chars), "the formatted text", limits)


# --- filters --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _filter_guards() -> dict[str, Callable[..., None]]:
    """Checks run before the filters that can make their output much bigger than their
    input, called as ``check(limits, value, *args, **kwargs)``; their parameter names are
    Jinja's own (keyword arguments bind the same way)."""

    def center(limits: RenderLimits, value: Any, width: int = 80) -> None:
        _check_width(width, "center width", limits)

    def indent(
        limits: RenderLimits, value: Any, width: Any = 4, first: bool = False, blank: bool = False
    ) -> None:
        _check_width(width, "indent width", limits)
        step = len(width) if isinstance(width, str) else int(width)
        text = _text(value)
        _check_size(len(text) + (text.count("\n") + 1) * step, "the indented text", limits)

    def wordwrap(
        limits: RenderLimits,
        value: Any,
        width: int = 79,
        break_long_words: bool = True,
        wrapstring: str | None = None,
        break_on_hyphens: bool = True,
    ) -> None:
        text = _text(value)
        lines = len(text) // max(int(width), 1) + 1
        _check_size(len(text) + lines * len(wrapstring or "\n"), "the wrapped text", limits)

    def replace(
        limits: RenderLimits, value: Any, old: str, new: str, count: int | None = None
    ) -> None:
        text, old, new = _text(value), _text(old), _text(new)
        found = text.count(old) if old else len(text) + 1
        if count is not None and count >= 0:
            found = min(found, count)
        _check_size(len(text) + found * (len(new) - len(old)), "the replaced text", limits)

    def join(limits: RenderLimits, value: Any, d: str = "", attribute: Any = None) -> None:
        if isinstance(value, Iterator):
            return  # lazy: its items are checked as they are joined (the result is measured)
        items = list(value) if isinstance(value, Iterable) else [value]
        size = measure(items, limits.value_chars) + len(_text(d)) * len(items)
        _check_size(size, "the joined text", limits)

    def format_(limits: RenderLimits, value: Any, *args: Any, **kwargs: Any) -> None:
        _check_printf(_text(value), (args, kwargs), limits)

    def batch(limits: RenderLimits, value: Any, linecount: int, fill_with: Any = None) -> None:
        _check_width(linecount, "batch size", limits)

    def slice_(limits: RenderLimits, value: Any, slices: int, fill_with: Any = None) -> None:
        _check_width(slices, "slice count", limits)

    def tojson(limits: RenderLimits, value: Any, indent: int | None = None) -> None:
        if indent is not None:
            _check_width(indent, "tojson indent", limits)
            _check_size(measure(value, limits.value_chars) * 4, "the JSON text", limits)

    def round_(
        limits: RenderLimits, value: Any, precision: int = 0, method: str = "common"
    ) -> None:
        _check_width(precision, "round precision", limits)

    def number(limits: RenderLimits, value: Any, decimals: int = 0) -> None:
        _check_width(decimals, "number of decimals", limits)

    def truncate(
        limits: RenderLimits,
        value: Any,
        length: int = 255,
        killwords: bool = False,
        end: str = "...",
        leeway: Any = None,
    ) -> None:
        _check_size(len(_text(value)) + len(_text(end)), "the truncated text", limits)

    return {
        "center": center,
        "indent": indent,
        "wordwrap": wordwrap,
        "replace": replace,
        "join": join,
        "format": format_,
        "batch": batch,
        "slice": slice_,
        "tojson": tojson,
        "round": round_,
        "number": number,
        "truncate": truncate,
    }


# Inputs that cannot be large: a filter given only these is not measured (the common case).
_SMALL = frozenset({int, float, bool, type(None)})


def _guard_filter(
    name: str, function: Callable[..., Any], check: Callable[..., None] | None
) -> Callable[..., Any]:
    """``function`` with its input checked before and its output measured after."""
    leading = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        limits = current_limits()
        values = args[leading:]
        if check is not None:
            check(limits, *values, **kwargs)
        elif kwargs or not all(type(value) in _SMALL for value in values):
            _check_value((values, kwargs), f"the input of the {name} filter", limits)
        result = function(*args, **kwargs)
        if type(result) is str:
            if len(result) > limits.value_chars:
                _check_size(len(result), f"the output of the {name} filter", limits)
        elif not isinstance(result, Iterator):
            _check_value(result, f"the output of the {name} filter", limits)
        return result

    return guarded


# --- the environment ------------------------------------------------------------------------

# Methods a template may call on a text: none of them can make a text longer than it is.
STRING_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "striptags",  # Markup
        "swapcase",
        "title",
        "unescape",  # Markup
        "upper",
    }
)
NUMBER_ATTRIBUTES = frozenset({"real", "imag", "is_integer", "numerator", "denominator"})


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` measured before the texts are joined."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.bounded_parts((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write(")))")


class _RenderState(threading.local):
    loops: int = 0
    limits: RenderLimits | None = None


_STATE = _RenderState()


def current_limits() -> RenderLimits:
    """The limits of the rendering running in this thread (:data:`LIMITS` outside one)."""
    return _STATE.limits or LIMITS


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The campaign sandbox: immutable, autoescape that a template cannot switch off, and
    the bounds of :class:`RenderLimits`."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, records: tuple[type, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("finalize", self.finalize_value)
        super().__init__(*args, **kwargs)
        # Read-only data views whose attributes are their fields (no methods to guard).
        self.record_types = frozenset(records)
        self.globals["range"] = self.bounded_range
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs
        self.filters.pop("safe", None)  # no way to mark customer data as markup

    def guard_filters(self) -> None:
        """Wrap every filter registered so far with the size checks (call once, at the end
        of setting the environment up)."""
        checks = _filter_guards()
        for name, function in list(self.filters.items()):
            self.filters[name] = _guard_filter(name, function, checks.get(name))

    # -- parsing: autoescape stays on, every loop is counted

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all(nodes.EvalContextModifier):
            raise TemplateSyntaxError(
                "autoescape cannot be switched off in campaign templates",
                node.lineno,
                name,
                filename,
            )
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("counted", lineno=loop.lineno),
                [loop.iter],
                [],
                None,
                None,
                lineno=loop.lineno,
            )
        return tree

    # -- the run-time hooks

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Every ``{% for %}`` iterates through this: the rendering's loop budget."""
        limits = current_limits()
        for item in iterable:
            _STATE.loops += 1
            if _STATE.loops > limits.loop_iterations:
                raise LimitExceeded(
                    f"loops ran more than the limit of {limits.loop_iterations:,} "
                    "iterations in one rendering"
                )
            yield item

    def bounded_range(self, *args: int) -> range:
        limits = current_limits()
        numbers = range(*args)
        if len(numbers) > limits.range_items:
            raise LimitExceeded(
                f"range() of {len(numbers):,} numbers is over the limit of {limits.range_items:,}"
            )
        return numbers

    def bounded_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        """The operands of ``~``, measured before they are joined."""
        limits = current_limits()
        _check_size(sum(measure(part, limits.value_chars) for part in parts), "text", limits)
        return parts

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits = current_limits()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    size = measure(sequence, limits.value_chars) * max(times, 0)
                    _check_size(size, "a repeated text or list", limits)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            bits = abs(left).bit_length() * right if abs(left) > 1 else 0
            if bits > limits.int_bits:
                raise LimitExceeded(
                    f"{left} ** {right} is over the limit of {limits.int_bits} bits"
                )
        elif operator == "+" and (
            isinstance(left, str)
            and isinstance(right, str)
            or isinstance(left, list | tuple)
            and isinstance(right, list | tuple)
        ):
            size = measure(left, limits.value_chars) + measure(right, limits.value_chars)
            _check_size(size, "text", limits)
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right, limits)
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int) and result.bit_length() > limits.int_bits:
            raise LimitExceeded(f"a number is over the limit of {limits.int_bits} bits")
        if isinstance(result, float) and math.isinf(result):
            raise LimitExceeded("a number is too large")
        return result

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if type(obj) in self.record_types:  # plain data: any field not starting with "_"
            return not attr.startswith("_")
        if isinstance(obj, str) and attr not in STRING_METHODS:
            return False  # ljust, zfill, expandtabs, format, encode...: use the filters
        if isinstance(obj, int | float | complex) and attr not in NUMBER_ATTRIBUTES:
            return False  # int.to_bytes(10**9) would allocate a gigabyte
        return bool(super().is_safe_attribute(obj, attr, value))

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused by is_safe_attribute; the format filter remains

    def finalize_value(self, value: Any) -> Any:
        """What ``{{ value }}`` prints: nothing for None; never more than the limit."""
        if value is None:
            return ""
        if not isinstance(value, str):
            _check_value(value, "a printed value", current_limits())
        return value


def render_bounded(template: Any, context: Mapping[str, Any], limits: RenderLimits) -> str:
    """Render ``template`` (of a :class:`BoundedEnvironment`) with ``context``: output cut at
    ``limits.output_chars``, loops counted. The caller holds the deadline
    (:func:`run_with_deadline`)."""
    outer = (_STATE.loops, _STATE.limits)
    _STATE.loops, _STATE.limits = 0, limits
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > limits.output_chars:
                raise LimitExceeded(
                    f"the output is over the limit of {limits.output_chars:,} characters"
                )
            parts.append(chunk)
        return "".join(parts)
    finally:
        _STATE.loops, _STATE.limits = outer


__all__ = [
    "LIMITS",
    "BoundedEnvironment",
    "LimitExceeded",
    "RenderLimits",
    "RenderTimeout",
    "measure",
    "render_bounded",
    "run_with_deadline",
]
