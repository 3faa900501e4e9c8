"""Read campaign files and turn every problem into an error a marketer can act on.

The YAML is parsed once into a node tree that remembers line numbers (``yaml.compose``),
then into plain data for pydantic. Each pydantic error's ``loc`` (``("offer", "value")``) is
walked down the node tree to find its line, and the models are walked the same way to say
what is allowed there (enum values, ranges, the fields that exist). One broken file never
stops the others: :func:`load_all` returns the good campaigns and the errors side by side.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel, StringConstraints, ValidationError
from pydantic.fields import FieldInfo
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestration.campaigns.config import PATTERN_HELP, Campaign

CAMPAIGN_SUFFIXES = (".yml", ".yaml")
_DISCRIMINATORS = ("type", "kind", "rule")


@dataclass(frozen=True)
class CampaignError:
    """One problem in one campaign file: where (file, line, field), what, and what is allowed."""

    file: Path
    line: int | None
    field: str
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        field = f" {self.field}:" if self.field else ""
        allowed = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{where}:{field} {self.message}{allowed}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "file": str(self.file)}


class CampaignLoadError(ValueError):
    """Raised by :func:`load_campaign` for an invalid file; ``errors`` lists every problem."""

    def __init__(self, errors: list[CampaignError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


def load_campaign(path: Path | str) -> Campaign:
    """Load and validate one campaign file; raise :class:`CampaignLoadError` if it is invalid."""
    campaign, _, errors = _load(Path(path))
    if campaign is None:
        raise CampaignLoadError(errors)
    return campaign


def load_all(directory: Path | str) -> tuple[list[Campaign], list[CampaignError]]:
    """Load every ``*.yml``/``*.yaml`` in ``directory`` (sorted by name).

    Returns the valid campaigns and the errors of the others. Ids and offer ids must be unique
    across files. When two files claim the same one, one file cannot take the other down: the
    active campaign keeps it (else the older file), and the error is reported on the other
    file (:func:`_precedence`), which is left out.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], [CampaignError(directory, None, "", "campaigns folder not found")]
    errors: list[CampaignError] = []
    loaded: list[tuple[Campaign, Node, Path]] = []
    for path in campaign_files(directory):
        try:
            campaign, root, file_errors = _load(path)
        except Exception as unexpected:  # one file must never stop the others
            errors.append(CampaignError(path, None, "", f"could not be loaded: {unexpected!r}"))
            continue
        errors.extend(file_errors)
        if campaign is not None and root is not None:
            loaded.append((campaign, root, path))
    ids: dict[str, Campaign] = {}
    offer_ids: dict[str, Campaign] = {}
    kept: set[Path] = set()
    for campaign, root, path in sorted(loaded, key=lambda item: _precedence(item[0], item[2])):
        clashes = []
        if campaign.id in ids:
            clashes.append(
                CampaignError(
                    path,
                    _line_of(root, ("id",)),
                    "id",
                    f"id '{campaign.id}' is already used by {_holder(ids[campaign.id], campaign)}; "
                    "this file is left out",
                    allowed="an id no other campaign file uses",
                )
            )
        if campaign.offer.id in offer_ids:
            clashes.append(
                CampaignError(
                    path,
                    _line_of(root, ("offer", "id")),
                    "offer.id",
                    f"offer id '{campaign.offer.id}' is already used by "
                    f"{_holder(offer_ids[campaign.offer.id], campaign)}; this file is left out",
                    allowed="an offer id no other campaign uses (each offer has its own budget)",
                )
            )
        if clashes:
            errors.extend(clashes)
            continue
        ids[campaign.id] = campaign
        offer_ids[campaign.offer.id] = campaign
        kept.add(path)
    campaigns = [campaign for campaign, _, path in loaded if path in kept]  # in name order
    errors.sort(key=lambda error: str(error.file))
    return campaigns, errors


def _precedence(campaign: Campaign, path: Path) -> tuple[int, int, str]:
    """Who keeps an id or offer id two files claim: an active campaign, else the older file
    (modification time in whole seconds: a fresh checkout writes every file in the same
    second), else the first by name."""
    try:
        modified = int(path.stat().st_mtime)
    except OSError:
        modified = 0
    return (0 if campaign.status == "active" else 1, modified, path.name)


def _holder(holder: Campaign, other: Campaign) -> str:
    name = holder.source_path.name if holder.source_path else holder.id
    active = holder.status == "active" and other.status != "active"
    return f"{name}, which {'is active' if active else 'came first'} and keeps it"


def campaign_files(directory: Path) -> list[Path]:
    """The campaign files of a folder, sorted (templates and schema.json are not campaigns)."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and path.suffix in CAMPAIGN_SUFFIXES and not path.name.startswith(".")
    )


# --- one file -------------------------------------------------------------------------------


def _load(path: Path) -> tuple[Campaign | None, Node | None, list[CampaignError]]:
    """Parse and validate one file: (campaign or None, YAML root node, errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, None, [CampaignError(path, None, "", f"cannot read the file: {error}")]
    parsed = _parse_yaml(path, text)
    if isinstance(parsed, CampaignError):
        return None, None, [parsed]
    data, root = parsed
    try:
        campaign = Campaign.model_validate(
            data, context={"templates_dir": path.parent / "templates"}
        )
    except ValidationError as invalid:
        return None, root, [_to_error(path, root, error) for error in invalid.errors()]
    if campaign.id != path.stem:
        return (
            None,
            root,
            [
                CampaignError(
                    path,
                    _line_of(root, ("id",)),
                    "id",
                    f"id '{campaign.id}' must equal the file name '{path.stem}'",
                    allowed=f"'{path.stem}', or rename the file to {campaign.id}{path.suffix}",
                )
            ],
        )
    campaign._source_path = path
    return campaign, root, []


def _parse_yaml(path: Path, text: str) -> tuple[dict[str, Any], Node] | CampaignError:
    """YAML to (data, node tree with line marks); syntax problems become one error."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return CampaignError(path, 1, "", "the file is empty", allowed=_TOP_FIELDS)
        duplicate = _find_duplicate_key(root)
        if duplicate is not None:
            key, line, first_line = duplicate
            return CampaignError(
                path,
                line,
                key,
                f"'{key.rsplit('.', 1)[-1]}' appears twice (first on line {first_line})",
                allowed="each field once",
            )
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        hint = "'field: value' lines, nested fields indented with spaces (no tabs)"
        return CampaignError(
            path,
            mark.line + 1 if mark is not None else None,
            "",
            f"YAML syntax error: {problem}",
            allowed=hint,
        )
    except yaml.YAMLError as error:
        return CampaignError(path, None, "", f"YAML error: {error}")
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        return CampaignError(
            path, root.start_mark.line + 1, "", "a campaign file is a list of fields", _TOP_FIELDS
        )
    return data, root


_TOP_FIELDS = "fields " + ", ".join(Campaign.model_fields)


def _find_duplicate_key(node: Node, path: str = "") -> tuple[str, int, int] | None:
    """PyYAML silently keeps the last of two equal keys; a marketer wants to know."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            full = f"{path}.{name}" if path else name
            if name in seen:
                return full, key.start_mark.line + 1, seen[name]
            seen[name] = key.start_mark.line + 1
            found = _find_duplicate_key(value, full)
            if found:
                return found
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            found = _find_duplicate_key(item, f"{path}[{index}]")
            if found:
                return found
    return None


# --- from a pydantic error to a CampaignError -----------------------------------------------


def _walk(root: Node, loc: tuple[Any, ...], missing: bool) -> tuple[int, str, Node | None]:
    """Follow ``loc`` down the YAML tree: (line, field path as written in YAML, value node).

    Parts of ``loc`` that are not in the file are union tags (``trigger.win_back.x``) and are
    skipped, except a missing field at the end, which is named but located at its parent.
    """
    node: Node | None = root
    line = root.start_mark.line + 1
    parts: list[str] = []
    for index, element in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, MappingNode) and isinstance(element, str):
            match = next(
                (pair for pair in node.value if getattr(pair[0], "value", None) == element), None
            )
            if match is not None:
                key, node = match
                line = key.start_mark.line + 1
                parts.append(element)
                continue
        elif isinstance(node, SequenceNode) and isinstance(element, int):
            if 0 <= element < len(node.value):
                node = node.value[element]
                line = node.start_mark.line + 1
                parts.append(f"[{element}]")
                continue
        if last and missing:
            parts.append(str(element))
            node = None
    field = ".".join(parts).replace(".[", "[")
    return line, field, node


def _line_of(root: Node, loc: tuple[Any, ...]) -> int:
    return _walk(root, loc, missing=False)[0]


def _to_error(path: Path, root: Node, error: Any) -> CampaignError:
    kind: str = error["type"]
    loc: tuple[Any, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    line, field, node = _walk(root, loc, missing=kind == "missing")
    parents, info = _resolve(loc)
    message: str = error["msg"]
    allowed: str | None = ctx.get("allowed")
    value = error.get("input")

    if kind == "extra_forbidden":
        unknown = str(loc[-1])
        names = _field_names(parents)
        close = difflib.get_close_matches(unknown, names, n=1)
        message = f"unknown field '{unknown}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        allowed = "fields here: " + ", ".join(names)
    elif kind == "missing":
        message = "required field is missing"
        allowed = _describe(info) if info is not None else None
    elif kind == "union_tag_invalid":
        name = str(ctx.get("discriminator", "'type'")).strip("'")
        message = f"unknown {name} '{ctx.get('tag')}'"
        allowed = str(ctx.get("expected_tags", ""))
    elif kind in ("enum", "literal_error"):
        message = f"{value!r} is not one of the allowed values"
        allowed = str(ctx.get("expected", ""))
    elif kind == "string_pattern_mismatch":
        message = f"{value!r} does not have the expected format"
        allowed = _describe(info) if info is not None else str(ctx.get("pattern"))
    elif kind == "union_tag_not_found":
        name = str(ctx.get("discriminator", "'type'")).strip("'")
        message = f"'{name}' is missing, so the kind of block is unknown"
        allowed = f"{name}: " + " | ".join(_tags(info)) if info is not None else None
    elif kind == "campaign_rule":
        if ctx.get("template_file"):
            where = f"templates/{ctx['template_file']}"
            if ctx.get("template_line"):
                where += f" line {ctx['template_line']}"
            message = f"{where}: {message}"
        elif ctx.get("template_line") and isinstance(node, ScalarNode):
            line = _template_line(node, int(ctx["template_line"]))
    else:
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if allowed is None:
            allowed = str(ctx["expected"]) if "expected" in ctx else None
        if allowed is None and info is not None:
            allowed = _describe(info)
        if isinstance(value, str | int | float | bool | date) and kind != "campaign_rule":
            message = f"{message} (got {value!r})" if len(repr(value)) <= 60 else message
    return CampaignError(path, line, field, message, allowed)


def _template_line(node: ScalarNode, template_line: int) -> int:
    """The file line of a line inside an inline template (block scalars start a line below)."""
    first = node.start_mark.line + 1
    if node.style in ("|", ">"):
        return first + template_line
    return first


def template_line_in_file(
    path: Path, field: tuple[str, ...], template_line: int | None
) -> int | None:
    """The line of campaign file ``path`` where ``field`` (an inline template) is, at its
    ``template_line`` when given; None when the file cannot be read. For render errors."""
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        return None
    root = _root_node(path, modified)
    if root is None:
        return None
    line, _, node = _walk(root, field, missing=False)
    if template_line and isinstance(node, ScalarNode):
        return _template_line(node, template_line)
    return line


@functools.lru_cache(maxsize=64)
def _root_node(path: Path, modified: int) -> Node | None:
    """The YAML node tree of a campaign file (cached per version of the file)."""
    try:
        parsed = _parse_yaml(path, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return None if isinstance(parsed, CampaignError) else parsed[1]


# --- what the models allow at a loc ---------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, unions, lists)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, set):
        return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tag_of(model: type[BaseModel]) -> str | None:
    for name in _DISCRIMINATORS:
        field = model.model_fields.get(name)
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            args = typing.get_args(field.annotation)
            if len(args) == 1 and name != "valid_in":
                return str(args[0])
    return None


def _tags(info: FieldInfo) -> list[str]:
    return [tag for model in _models_in(info.annotation) if (tag := _tag_of(model))]


def _resolve(loc: Iterable[Any]) -> tuple[list[type[BaseModel]], FieldInfo | None]:
    """Walk the models along ``loc``: (models holding the last field, that field's info)."""
    models: list[type[BaseModel]] = [Campaign]
    parents: list[type[BaseModel]] = [Campaign]
    info: FieldInfo | None = None
    for element in loc:
        if isinstance(element, int):
            continue
        owner = next((model for model in models if element in model.model_fields), None)
        if owner is not None:
            parents = [owner]
            info = owner.model_fields[element]
            models = _models_in(info.annotation)
            continue
        tagged = [model for model in models if _tag_of(model) == element]
        if tagged:
            models = parents = tagged
            info = None
            continue
        return parents, None
    return parents, info


def _field_names(models: list[type[BaseModel]]) -> list[str]:
    names: list[str] = []
    for model in models:
        names.extend(name for name in model.model_fields if name not in names)
    return names


def _describe(info: FieldInfo) -> str | None:
    """What a field accepts, in words: type, enum values, bounds, pattern."""
    annotation = info.annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    is_list = typing.get_origin(annotation) is list
    base = (
        args[0]
        if len(args) == 1 and typing.get_origin(annotation) is not typing.Literal
        else (annotation)
    )
    metadata = list(info.metadata)
    while typing.get_origin(base) is typing.Annotated:  # Optional[Annotated[float, ...]]
        base, *inner = typing.get_args(base)
        for item in inner:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    models = _models_in(annotation)
    if models:
        tags = [tag for model in models if (tag := _tag_of(model))]
        if tags:
            return "one of: " + ", ".join(tags)
        return "fields " + ", ".join(_field_names(models))
    if typing.get_origin(base) is typing.Literal:
        words = " | ".join(str(arg) for arg in typing.get_args(base))
    elif isinstance(base, type) and issubclass(base, Enum):
        words = ("a list of: " if is_list else "one of: ") + ", ".join(
            str(member.value) for member in base
        )
    else:
        names: dict[Any, str] = {
            bool: "true or false",
            int: "a whole number",
            float: "a number",
            str: "text",
            date: "a date like 2026-12-31",
        }
        words = names.get(base, str(getattr(base, "__name__", base)))
    bounds = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            bounds.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            bounds.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            bounds.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            bounds.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.MultipleOf):
            bounds.append(f"in steps of {item.multiple_of}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            bounds.append("not empty")
        elif isinstance(item, annotated_types.MaxLen):
            bounds.append(f"at most {item.max_length} characters")
        elif isinstance(item, StringConstraints) and item.pattern:
            words = PATTERN_HELP.get(str(item.pattern), f"text matching {item.pattern}")
            if item.max_length:
                bounds.append(f"at most {item.max_length} characters")
    return words + (", " + " and ".join(bounds) if bounds else "")


def format_report(campaigns: list[Campaign], errors: list[CampaignError]) -> str:
    """The text ``omni campaigns validate`` prints: the valid campaigns, then every error
    as ``file:line: field: message (allowed: ...)`` with paths relative to the working folder."""
    lines = [f"{len(campaigns)} valid campaign(s):"]
    for campaign in campaigns:
        lines.append(
            f"  {campaign.id}: {campaign.status}, {campaign.trigger.type}, "
            f"{campaign.start_date} to {campaign.end_date}, "
            f"channels {', '.join(campaign.enabled_channels)}"
        )
    if errors:
        files = {error.file for error in errors}
        lines.append(f"{len(errors)} error(s) in {len(files)} file(s):")
        for error in errors:
            lines.append(f"  {_relative(error)}")
    return "\n".join(lines)


def _relative(error: CampaignError) -> str:
    try:
        shown = error.file.resolve().relative_to(Path.cwd())
    except ValueError:
        return str(error)
    return str(CampaignError(shown, error.line, error.field, error.message, error.allowed))
