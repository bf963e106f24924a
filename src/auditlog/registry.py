"""Which models are audited, and how: ``include`` / ``exclude`` / ``mask`` per registered class.

A registration covers the class and its mapped subclasses. For each mapper met at flush time a
:class:`Plan` is compiled once (recorded keys, their encoders, primary key attributes) and cached,
so the flush path only does dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipProperty
from sqlalchemy.orm.interfaces import MANYTOMANY, ONETOMANY
from sqlalchemy.schema import Column

from .exceptions import ConfigurationError
from .serialize import MASKED, Encoder, encoder_for

__all__ = [
    "MASKED",
    "ModelConfig",
    "Plan",
    "audited_tables",
    "cascades_deletes",
    "clear",
    "default_plan",
    "is_registered",
    "pk_keys_of",
    "plan_for",
    "register",
    "registered_mappers",
    "registry_version",
    "unregister",
]


T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class ModelConfig:
    """The options a class was registered with."""

    model: type
    include: frozenset[str] | None
    exclude: frozenset[str]
    mask: frozenset[str]


@dataclass(frozen=True, eq=False)
class Plan:
    """What to record for one mapper, compiled once."""

    mapper: Mapper[Any]
    content_type_name: str
    table_name: str | None
    #: (attribute key, encoder, masked) of the recorded columns, in mapper order
    fields: tuple[tuple[str, Encoder, bool], ...]
    #: the recorded column attribute keys
    keys: frozenset[str]
    #: (attribute key, masked) of the recorded one-to-many and many-to-many collections
    collections: tuple[tuple[str, bool], ...]
    pk_keys: tuple[str, ...]
    #: attribute key -> Column, for batched loads of values SQLAlchemy does not hold
    columns: dict[str, Column[Any]]


_configs: dict[type, ModelConfig] = {}
_plans: dict[Mapper[Any], Plan | None] = {}


def _mapper_of(model: Any) -> Mapper[Any]:
    try:
        mapper = sa.inspect(model)
    except NoInspectionAvailable:
        mapper = None
    if not isinstance(mapper, Mapper) or not isinstance(model, type):
        raise ConfigurationError(f"register() needs a mapped class, got {model!r}")
    return mapper


def _column_keys(mapper: Mapper[Any]) -> list[str]:
    """Attribute keys of the mapper's column properties, in mapper order, without configuring."""
    keys: list[str] = []
    tables = set(mapper.tables)
    for key, column in mapper.columns.items():
        if not isinstance(column, Column) or column.table not in tables:
            continue  # SQL expressions, and the discriminator of a concrete polymorphic union
        prop = mapper.get_property_by_column(column)
        if isinstance(prop, ColumnProperty) and prop.key == key and key not in keys:
            keys.append(key)
    return keys


def _relationship_keys(mapper: Mapper[Any]) -> list[str]:
    """Names of the mapper's relationships, read without configuring mappers (classes a
    relationship names may not exist yet when a decorator runs)."""
    props = getattr(mapper, "_props", {})
    keys = [key for key, prop in props.items() if isinstance(prop, RelationshipProperty)]
    for parent in mapper.iterate_to_root():
        for key, prop in getattr(parent, "_props", {}).items():
            if isinstance(prop, RelationshipProperty) and key not in keys:
                keys.append(key)
    return keys


def _recorded_collection(prop: RelationshipProperty[Any]) -> bool:
    """One-to-many and many-to-many collections that can be read without a query per change."""
    return bool(
        prop.uselist
        and not prop.viewonly
        and prop.lazy not in ("dynamic", "write_only")
        and prop.direction in (ONETOMANY, MANYTOMANY)
    )


def _names(
    option: str, values: Iterable[str] | None, model: type, valid: list[str]
) -> frozenset[str]:
    if isinstance(values, str):
        raise ConfigurationError(
            f"register({model.__name__}): {option} takes a collection of attribute names, "
            f"not the string {values!r}"
        )
    names = frozenset(values or ())
    unknown = sorted(names - set(valid))
    if unknown:
        raise ConfigurationError(
            f"register({model.__name__}): unknown attribute {unknown[0]!r} in {option}; "
            f"{model.__name__} has {', '.join(valid)}"
        )
    return names


@overload
def register(model: T, /) -> T: ...
@overload
def register(
    model: None = None,
    /,
    *,
    include: Iterable[str] | None = ...,
    exclude: Iterable[str] = ...,
    mask: Iterable[str] = ...,
) -> Callable[[T], T]: ...
@overload
def register(
    model: T,
    /,
    *,
    include: Iterable[str] | None = ...,
    exclude: Iterable[str] = ...,
    mask: Iterable[str] = ...,
) -> T: ...
def register(
    model: Any = None,
    /,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    mask: Iterable[str] = (),
) -> Any:
    """Audit a mapped class and its mapped subclasses.

    ``include`` limits the recorded attributes, ``exclude`` drops some, ``mask`` records that they
    changed but hides their values. Unknown attribute names raise :class:`ConfigurationError`.
    Usable as ``register(Model)``, ``@register`` and ``@register(exclude={"password"})``.
    """
    if model is None:
        return lambda cls: register(cls, include=include, exclude=exclude, mask=mask)
    mapper = _mapper_of(model)
    valid = _column_keys(mapper) + _relationship_keys(mapper)
    config = ModelConfig(
        model=model,
        include=None if include is None else _names("include", include, model, valid),
        exclude=_names("exclude", exclude, model, valid),
        mask=_names("mask", mask, model, valid),
    )
    _configs[model] = config
    _plans.clear()
    _tables.clear()
    _version[0] += 1
    return model


def unregister(model: type) -> None:
    """Stop auditing a class registered with :func:`register` (no-op when it is not)."""
    if _configs.pop(model, None) is not None:
        _plans.clear()
        _tables.clear()
        _version[0] += 1


_tables: list[frozenset[Any]] = []
_version = [0]


def registry_version() -> int:
    """A number that changes with every register(), unregister() and clear()."""
    return _version[0]


def registered_mappers() -> list[Mapper[Any]]:
    """The mappers of the registered classes themselves (not their subclasses)."""
    return [_mapper_of(model) for model in _configs]


def audited_tables() -> frozenset[Any]:
    """The tables written by registered models and their mapped subclasses (cached)."""
    if not _tables:
        found: set[Any] = set()
        for model in _configs:
            for mapper in _mapper_of(model).self_and_descendants:
                found.update(mapper.tables)
        _tables.append(frozenset(found))
    return _tables[0]


def is_registered(model: type) -> bool:
    """True when ``model`` or one of its mapped base classes is registered."""
    return plan_for(_mapper_of(model)) is not None


def clear() -> None:
    """Unregister every model."""
    _configs.clear()
    _plans.clear()
    _tables.clear()
    _version[0] += 1


def _config_for(mapper: Mapper[Any]) -> ModelConfig | None:
    for m in mapper.iterate_to_root():
        config = _configs.get(m.class_)
        if config is not None:
            return config
    return None


def _compile(mapper: Mapper[Any], config: ModelConfig) -> Plan:
    fields: list[tuple[str, Encoder, bool]] = []
    columns: dict[str, Column[Any]] = {}
    for key in _column_keys(mapper):
        if config.include is not None and key not in config.include:
            continue
        if key in config.exclude:
            continue
        column = mapper.columns[key]
        fields.append((key, encoder_for(column.type), key in config.mask))
        if isinstance(column, Column):
            columns[key] = column
    collections = tuple(
        (prop.key, prop.key in config.mask)
        for prop in mapper.relationships
        if _recorded_collection(prop)
        and (config.include is None or prop.key in config.include)
        and prop.key not in config.exclude
    )
    cls = mapper.class_
    local_table = mapper.local_table
    return Plan(
        mapper=mapper,
        content_type_name=f"{cls.__module__}.{cls.__qualname__}",
        table_name=getattr(local_table, "name", None),
        fields=tuple(fields),
        keys=frozenset(key for key, _, _ in fields),
        collections=collections,
        pk_keys=pk_keys_of(mapper),
        columns=columns,
    )


_pk_keys: dict[Mapper[Any], tuple[str, ...]] = {}
_cascades: dict[Mapper[Any], bool] = {}


def cascades_deletes(mapper: Mapper[Any]) -> bool:
    """Whether deleting an object of ``mapper`` can cascade to other objects (cached)."""
    found = _cascades.get(mapper)
    if found is None:
        found = _cascades[mapper] = any(prop.cascade.delete for prop in mapper.relationships)
    return found


def pk_keys_of(mapper: Mapper[Any]) -> tuple[str, ...]:
    """Attribute keys of the mapper's primary key columns, in key order (cached)."""
    keys = _pk_keys.get(mapper)
    if keys is None:
        keys = tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)
        _pk_keys[mapper] = keys
    return keys


def plan_for(mapper: Mapper[Any]) -> Plan | None:
    """The compiled plan for a mapper, or None when its class is not audited."""
    try:
        return _plans[mapper]
    except KeyError:
        pass
    config = _config_for(mapper)
    plan = None if config is None else _compile(mapper, config)
    _plans[mapper] = plan
    return plan


def default_plan(mapper: Mapper[Any]) -> Plan:
    """A plan recording every column, for explicit entries on models that are not registered."""
    return _compile(mapper, ModelConfig(mapper.class_, None, frozenset(), frozenset()))
