"""One loader for every config file: typed schemas, strict keys, errors that name file and key.

Every config (TF-NAS search, DARTS search/train, spaces, ``tfnas train``, arch and
genotype files) is a ``Schema``: a frozen pydantic model in strict mode that refuses
unknown keys at any depth and holds the real defaults, so code reads
``cfg.search.epochs`` and never restates a default. ``validate`` turns pydantic's
errors into one ``ConfigError`` per input naming the file, the key path, the value
and what was expected, with the allowed keys and a did-you-mean for a misspelt
key. Command-line overrides go into the raw data before validation
(``apply_overrides``), so they are checked like the file.

The config pieces every trainer shares live here too: an optimizer and a learning-rate schedule
(``OptimizerSpec``, ``ScheduleSpec``), with their defaults.
"""

from __future__ import annotations

import contextvars
import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from tfnas.errors import ConfigError
from tfnas.utils.io import read_json, read_yaml

S = TypeVar("S", bound="Schema")
MAX_REPORTED = 5  # errors listed per file; the rest are counted
_VALIDATING: contextvars.ContextVar[bool] = contextvars.ContextVar("tfnas_config_validating", default=False)


class Schema(BaseModel):
    """A config section: strict types (no "5" for 5), no NaN or inf, no unknown keys.

    ``moved`` maps a key that used to live in this section to where it lives now,
    so an old config gets a precise hint instead of a bare "unknown key".
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, populate_by_name=False, frozen=True)
    moved: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        for key in data:
            if key not in allowed:
                raise PydanticCustomError(
                    "unknown_key", "unknown key {key}", {"key": str(key), "allowed": allowed, "moved": cls.moved}
                )
        return data

    def __init__(self, **data: Any) -> None:
        # A Python caller (TrainConfig(epochs=0)) gets the project's error type, not pydantic's; inside
        # a validation (a parent section, ``validate``) pydantic collects the errors with their key paths.
        if _VALIDATING.get():
            super().__init__(**data)
            return
        token = _VALIDATING.set(True)
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(format_errors(e, type(self).__name__)) from None
        finally:
            _VALIDATING.reset(token)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what a run saves as its config, and compares on resume)."""
        return self.model_dump(by_alias=True, mode="json")


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p == "[key]":
            continue
        else:
            out += f".{p}" if out else str(p)
    return out


_EXPONENT = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")


def _number_hint(value: Any) -> str:
    """Why a number came in as text: YAML 1.1 reads ``3e-4`` (no dot) as a string; quotes make text."""
    if not isinstance(value, str):
        return ""
    if _EXPONENT.match(value.strip()):
        return f" (YAML reads {value} as text: write it with a dot, e.g. {float(value):.1e})"
    try:
        float(value)
    except ValueError:
        return ""
    return " (a quoted number is text: remove the quotes)"


def _expected(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    simple = {
        "int_type": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "none_required": "null",
    }
    if kind in simple:
        return simple[kind] + _number_hint(err.get("input"))
    ctx = err.get("ctx", {})
    if kind == "literal_error":
        return "one of " + ctx.get("expected", "")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        value = next(iter(ctx.values()))
        return f"a number {bounds[kind]} {value}"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} entries"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} entries"
    return msg.replace("Input should be ", "").replace("Value error, ", "")


def _one(err: dict[str, Any], source: str, prefix: tuple[Any, ...]) -> str:
    loc = tuple(prefix) + tuple(p for p in err["loc"] if not _is_union_branch(p))
    where = _loc(loc)
    kind = err["type"]
    if kind == "unknown_key":
        ctx = err["ctx"]
        key = ctx["key"]
        full = f"{where}.{key}" if where else key
        allowed = ctx["allowed"]
        hint = ""
        if key in ctx["moved"]:
            hint = f"; it moved to '{ctx['moved'][key]}'"
        else:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            close = close or [a for a in allowed if a.lower() == key.lower()]
            if close:
                hint = f"; did you mean '{close[0]}'?"
        return f"{source}: unknown key '{full}' (allowed: {', '.join(allowed)}){hint}"
    if kind == "missing":
        return f"{source}: missing key '{where}'"
    if kind == "value_error":
        if isinstance(err.get("input"), dict):  # a section's cross-check: the message names its keys
            return f"{source}: {where + ': ' if where else ''}{err['ctx']['error']}"
        return f"{source}: key '{where}' = {err.get('input')!r}: {err['ctx']['error']}"
    if err["loc"] and err["loc"][-1] == "[key]":
        return f"{source}: key '{where}': the key {err['input']!r} must be {_expected(err)}"
    return f"{source}: key '{where}' = {err.get('input')!r}: expected {_expected(err)}"


def _is_union_branch(part: Any) -> bool:
    # pydantic names the member of a union it tried ('int', 'list[str]', 'function-after[...]'): not a key
    return isinstance(part, str) and (part in ("int", "float", "str", "bool", "none") or "[" in part)


def format_errors(exc: ValidationError, source: str, prefix: tuple[Any, ...] = ()) -> str:
    """One line per problem (unions report each branch; keep one line per key path)."""
    lines, seen = [], set()
    for err in exc.errors(include_url=False):
        loc = _loc(tuple(p for p in err["loc"] if not _is_union_branch(p)))
        if loc in seen:
            continue
        seen.add(loc)
        lines.append(_one(err, source, prefix))
    extra = f"\n  ... and {len(lines) - MAX_REPORTED} more" if len(lines) > MAX_REPORTED else ""
    return "\n".join(lines[:MAX_REPORTED]) + extra


def validate(schema: type[S], data: Any, source: str, prefix: tuple[Any, ...] = ()) -> S:
    """``data`` checked against ``schema``: the frozen model, with every default filled in."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        where = f" '{_loc(prefix)}'" if prefix else " the top level"
        raise ConfigError(f"{source}: expected a mapping at{where}, got {type(data).__name__}")
    token = _VALIDATING.set(True)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source, prefix)) from None
    finally:
        _VALIDATING.reset(token)


def read_config(path: str | Path, what: str) -> Any:
    """The raw data of a YAML or JSON file (by suffix): strict keys, size-limited; errors name ``path``."""
    path = Path(path)
    return read_json(path, what) if path.suffix == ".json" else read_yaml(path, what)


def load_file(path: str | Path, schema: type[S], what: str, overrides: Mapping[str, Any] | None = None) -> S:
    """Read a YAML or JSON file, apply ``overrides`` (dotted keys) and validate; every error names ``path``."""
    return validate(schema, apply_overrides(read_config(path, what), overrides), str(path))


def apply_overrides(data: Any, overrides: Mapping[str, Any] | None) -> Any:
    """A copy of raw config ``data`` with ``{"search.epochs": 3, ...}`` set (``None`` values are skipped).

    Overrides go into the raw data, so the schema checks them exactly like the file's own keys.
    """
    if not overrides:
        return data
    out = copy.deepcopy(data) if isinstance(data, dict) else ({} if data is None else data)
    if not isinstance(out, dict):
        return out  # validate() reports the top level
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[last] = value
    return out


# ---- config pieces every trainer shares: optimizer and schedule ----
class OptimizerSpec(Schema):
    """``name`` and that optimizer's arguments (momentum/nesterov: sgd only; betas/eps: adam, adamw)."""

    name: Literal["sgd", "adam", "adamw"]
    lr: float = Field(gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: list[float] = Field([0.9, 0.999], min_length=2, max_length=2)
    eps: float = Field(1e-8, gt=0)

    @model_validator(mode="after")
    def _fits_the_optimizer(self) -> OptimizerSpec:
        given = self.model_fields_set
        sgd_only = [k for k in ("momentum", "nesterov") if k in given]
        adam_only = [k for k in ("betas", "eps") if k in given]
        if self.name == "sgd" and adam_only:
            raise ValueError(f"{', '.join(adam_only)} is an adam/adamw argument, not one of sgd")
        if self.name != "sgd" and sgd_only:
            raise ValueError(f"{', '.join(sgd_only)} is an sgd argument, not one of {self.name}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas = {self.betas}: expected two numbers in [0, 1)")
        return self

    @model_serializer(mode="wrap")
    def _own_arguments(self, handler: Any) -> dict[str, Any]:
        """Only this optimizer's arguments, so a saved config validates again."""
        other = ("betas", "eps") if self.name == "sgd" else ("momentum", "nesterov")
        return {k: v for k, v in handler(self).items() if k not in other}


class ScheduleSpec(Schema):
    """Learning-rate schedule: constant | cosine (to ``min_lr``) | step; optional linear warm-up.

    ``per``: the schedule advances every step, or once per epoch (TF-NAS's official search
    steps its cosine per epoch); ``warmup_steps`` and ``step_size`` count in that unit.
    """

    name: Literal["constant", "cosine", "step"]
    min_lr: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    warmup_epochs: int = Field(0, ge=0)  # added to warmup_steps, in epochs
    step_size: int | None = Field(None, ge=1)  # None: the whole run (no decay)
    gamma: float = Field(0.1, gt=0)
    per: Literal["step", "epoch"] = "step"


def sgd(lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> Any:
    return Field(
        default_factory=lambda: OptimizerSpec(
            name="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    )


def adam(lr: float, weight_decay: float, betas: tuple[float, float] = (0.5, 0.999)) -> Any:
    return Field(
        default_factory=lambda: OptimizerSpec(name="adam", lr=lr, betas=list(betas), weight_decay=weight_decay)
    )


def cosine(min_lr: float, per: Literal["step", "epoch"] = "step") -> Any:
    return Field(default_factory=lambda: ScheduleSpec(name="cosine", min_lr=min_lr, per=per))


def section(cls: type[Schema]) -> Any:
    return Field(default_factory=cls)
