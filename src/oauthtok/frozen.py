"""Building frozen dataclasses fast: `list` reads every stored token, and a frozen dataclass's
generated `__init__` sets each field through `object.__setattr__` (most of the cost of reading
1,000 records, and of predicting their lapses)."""

from __future__ import annotations

from dataclasses import MISSING, fields

TYPE_CHECKING = False  # typing costs ~4 ms to import: `list` and `show` answer without it
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeVar

    _T = TypeVar("_T")


class _Template:
    """What `build` needs to know of a dataclass, computed once per class."""

    def __init__(self, cls: type) -> None:
        all_fields = fields(cls)
        self.known = frozenset(f.name for f in all_fields)
        self.required = frozenset(
            f.name for f in all_fields if f.default is MISSING and f.default_factory is MISSING
        )
        #: every field in declaration order with its default (the order `vars()` then has)
        self.defaults = {f.name: None if f.default is MISSING else f.default for f in all_fields}
        self.factories = [(f.name, f.default_factory) for f in all_fields
                          if f.default_factory is not MISSING]  # fmt: skip
        #: only a plain dataclass may skip its __init__: no __post_init__, no __slots__, and
        #: every field an argument of __init__
        self.plain = (
            not hasattr(cls, "__post_init__")
            and not hasattr(cls, "__slots__")
            and all(f.init for f in all_fields)
        )


_TEMPLATES: dict[type, _Template] = {}


def _template(cls: type) -> _Template:
    found = _TEMPLATES.get(cls)
    if found is None:
        found = _TEMPLATES[cls] = _Template(cls)
    return found


def known_fields(cls: type) -> frozenset[str]:
    """The names of a dataclass's fields."""
    return _template(cls).known


def build(cls: type[_T], values: Mapping[str, Any]) -> _T:
    """`cls(**values)` for a frozen dataclass, without its generated `__init__` when `values`
    are exactly what that `__init__` accepts: a dict of known field names holding every
    required one. Anything else goes to `cls(**values)`, which raises its own error.
    The instance is the same: every field set, in declaration order, defaults filled in
    (a fresh one from each default factory)."""
    template = _template(cls)
    if not (
        template.plain
        and type(values) is dict
        and values.keys() <= template.known
        and values.keys() >= template.required
    ):
        return cls(**values)
    built: _T = object.__new__(cls)
    state = built.__dict__
    state.update(template.defaults)  # declaration order first, as __init__ would set them
    state.update(values)
    for name, factory in template.factories:
        if name not in values:
            state[name] = factory()
    return built
