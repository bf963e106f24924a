"""Which models are audited, and how: ``include`` / ``exclude`` / ``mask`` per registered class.

One :class:`Registry` owns the registrations and everything derived from them: the compiled
:class:`Plan` of each mapper met at flush time, the plan of each table a Core statement writes,
the set of audited tables. Every derived cache is dropped together whenever a registration
changes, and :meth:`Registry.reset` forgets everything, so nothing can go stale on its own.
The module functions (:func:`register`, :func:`plan_for`, ...) act on the one registry of the
process.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.exc import NoInspectionAvailable
from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipProperty
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.orm.interfaces import MANYTOMANY, ONETOMANY
from sqlalchemy.schema import Column
from sqlalchemy.types import TypeEngine

from .exceptions import ConfigurationError
from .serialize import MASKED, Encoder, StoredForm, TimeForm, encoder_for, stored_form, time_form

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

__all__ = [
    "MASKED",
    "Family",
    "ModelConfig",
    "Plan",
    "Registry",
    "audited_tables",
    "cascades_deletes",
    "default_plan",
    "family",
    "is_registered",
    "is_secondary",
    "mapper_named",
    "model_name",
    "pk_keys_of",
    "plan_for",
    "register",
    "registry",
    "table_family",
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
    #: the same, as a set
    pk_set: frozenset[str]
    #: attribute key -> Column, for batched loads of values SQLAlchemy does not hold
    columns: dict[str, Column[Any]]
    #: key of a column of the mapped table (as Core parameters name it) -> attribute key
    column_keys: dict[str, str] = field(repr=False)
    #: recorded columns whose ``onupdate`` is a Python callable: a batched UPDATE gives each row
    #: its own value, but SQLAlchemy copies the first row's onto every object of the batch
    called_onupdate: frozenset[str] = frozenset()
    #: recorded columns -> what they store values as their encoder gives them; another value
    #: (``"30"`` for an integer column) is read back from the row
    stored_forms: dict[str, StoredForm] = field(default_factory=dict, repr=False)
    #: the keys of ``stored_forms``, and a getter of their values in a values dict, as a tuple
    #: (KeyError if one is missing): a new object's value types are compared in one go
    form_keys: tuple[str, ...] = ()
    form_values: Callable[[Any], tuple[Any, ...]] = field(default=tuple, repr=False)
    #: decimal columns with a scale, with the exponent of their last place (``Decimal("0.01")``
    #: for two places)
    decimal_places: tuple[tuple[str, Decimal], ...] = ()
    #: the value types of ``form_keys`` seen to be stored as held, new object by new object: a
    #: new object whose values have one of them needs no check one by one
    fine_types: set[tuple[type, ...]] = field(default_factory=set, repr=False)
    #: recorded ``DateTime`` and ``Time`` columns (attribute key, column type)
    temporal: tuple[tuple[str, TypeEngine[Any]], ...] = ()
    #: per database (dialect name): the temporal columns that may not keep a value as held,
    #: with how they keep values (:func:`~auditlog.serialize.time_form`)
    time_forms: dict[str, tuple[tuple[str, TimeForm], ...]] = field(
        default_factory=dict, repr=False
    )

    def time_forms_on(self, dialect: Dialect) -> tuple[tuple[str, TimeForm], ...]:
        """The temporal columns that may not keep a value as held on ``dialect``."""
        found = self.time_forms.get(dialect.name)
        if found is None:
            found = self.time_forms[dialect.name] = tuple(
                (key, form)
                for key, column_type in self.temporal
                if (form := time_form(column_type, dialect)) is not None
            )
        return found

    @property
    def label(self) -> str:
        """The class name, for messages."""
        return self.mapper.class_.__name__

    def attribute_key(self, key: Any) -> str:
        """A key of ``.values()`` or of a parameter set (an attribute, a column, or the name of
        either) as the mapped attribute name, which states and primary keys are keyed by."""
        column = key if isinstance(key, sa.Column) else getattr(key, "expression", None)
        if isinstance(column, sa.Column):
            try:
                return str(self.mapper.get_property_by_column(column).key)
            except UnmappedColumnError:  # not a column of this mapper
                return str(column.key)
        name = str(getattr(key, "key", key))
        if name in self.mapper.attrs:
            return name
        return self.column_keys.get(name, name)

    def identity(self, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The primary key in ``values`` (keyed by attribute name), or None when incomplete."""
        try:
            return tuple(values[key] for key in self.pk_keys)
        except KeyError:
            return None


@dataclass(frozen=True, eq=False)
class Family:
    """The plans of the rows a statement on ``mapper``'s table can write, told apart per row.

    A statement on a single-table inheritance base writes rows of every subclass: each row is
    recorded by the plan of its own class (its content type, its masks), found through the
    discriminator. Rows that have no place of their own here (those of a joined-inheritance
    subclass, or an unknown discriminator) are recorded by ``fallback``: the statement mapper's
    plan, with every attribute a registered subclass masks or excludes masked.
    """

    mapper: Mapper[Any]
    #: the statement mapper's keys: attribute names, primary key (registered or not)
    keys: Plan
    #: the plan of each single-table member of the family (None: not audited)
    by_mapper: dict[Mapper[Any], Plan | None]
    fallback: Plan | None
    #: what a read selects, and where each plan's values and the key are in a row
    selected: tuple[Any, ...]
    positions: dict[Plan, tuple[tuple[str, int], ...]]
    pk_at: tuple[int, ...]
    discriminator_at: int | None

    @property
    def label(self) -> str:
        return self.keys.label

    def plan_of(self, row: Any) -> Plan | None:
        """The plan that records ``row`` (a row of :attr:`selected`), or None."""
        if self.discriminator_at is None:
            return self.fallback
        sub = self.mapper.polymorphic_map.get(row[self.discriminator_at])
        if sub in self.by_mapper:
            return self.by_mapper[sub]
        return self.fallback

    def values(self, plan: Plan, row: Any) -> dict[str, Any]:
        """``plan``'s recorded values in ``row``."""
        return {key: row[at] for key, at in self.positions[plan]}

    def pk(self, row: Any) -> tuple[Any, ...]:
        return tuple(row[at] for at in self.pk_at)


def model_name(cls: type) -> str:
    """The name a model's entries are filed under (its content type): ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


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


def _pk_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    return tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)


_UNCONFIGURED = object()


def _values_getter(keys: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``operator.itemgetter`` of ``keys`` that always returns a tuple."""
    if not keys:
        return lambda _values: ()
    if len(keys) == 1:
        one = operator.itemgetter(keys[0])
        return lambda values: (one(values),)
    return operator.itemgetter(*keys)


def compile_plan(mapper: Mapper[Any], config: ModelConfig) -> Plan:
    """The plan of ``mapper`` under ``config``."""
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
    column_keys: dict[str, str] = {}
    for column in getattr(local_table, "c", ()):
        try:
            column_keys[column.key] = mapper.get_property_by_column(column).key
        except UnmappedColumnError:
            continue
    forms = {
        key: form
        for key, column in columns.items()
        if (form := stored_form(column.type)) is not None
    }
    return Plan(
        mapper=mapper,
        content_type_name=model_name(cls),
        table_name=getattr(local_table, "name", None),
        fields=tuple(fields),
        keys=frozenset(key for key, _, _ in fields),
        collections=collections,
        pk_keys=_pk_keys(mapper),
        pk_set=frozenset(_pk_keys(mapper)),
        columns=columns,
        column_keys=column_keys,
        called_onupdate=frozenset(
            key
            for key, column in columns.items()
            if column.onupdate is not None and getattr(column.onupdate, "is_callable", False)
        ),
        stored_forms=forms,
        form_keys=tuple(forms),
        form_values=_values_getter(tuple(forms)),
        decimal_places=tuple(
            (key, Decimal(1).scaleb(-places))
            for key, (_, places) in forms.items()
            if places is not None
        ),
        temporal=tuple(
            (key, column.type)
            for key, column in columns.items()
            if isinstance(column.type, (sa.DateTime, sa.Time))
            and not isinstance(column.type, sa.types.TypeDecorator)
        ),
    )


class Registry:
    """The registered classes with their options, and every cache derived from them."""

    def __init__(self) -> None:
        self._configs: dict[type, ModelConfig] = {}
        self._forget_derived()

    def _forget_derived(self) -> None:
        self._plans: dict[Mapper[Any], Plan | None] = {}
        self._families: dict[Mapper[Any], Family | None] = {}
        self._table_families: dict[Any, Family | None] = {}
        self._tables: frozenset[Any] | None = None
        self._secondaries: frozenset[Any] | None = None
        self._pk_keys: dict[Mapper[Any], tuple[str, ...]] = {}
        self._cascades: dict[Mapper[Any], bool] = {}

    def register(
        self,
        model: type,
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        mask: Iterable[str] = (),
    ) -> None:
        """Record ``model``'s options (replacing earlier ones), validated against its attributes."""
        mapper = _mapper_of(model)
        valid = _column_keys(mapper) + _relationship_keys(mapper)
        config = ModelConfig(
            model=model,
            include=None if include is None else _names("include", include, model, valid),
            exclude=_names("exclude", exclude, model, valid),
            mask=_names("mask", mask, model, valid),
        )
        masked_keys = config.mask & set(_pk_keys(mapper))
        if masked_keys:
            raise ConfigurationError(
                f"register({model.__name__}): cannot mask the primary key "
                f"{sorted(masked_keys)[0]!r}: every entry names its object by it (object_id); "
                "audit a surrogate key instead, or exclude the model"
            )
        self._configs[model] = config
        self._forget_derived()

    def unregister(self, model: type) -> None:
        """Forget ``model``'s registration (no-op when it has none)."""
        if self._configs.pop(model, None) is not None:
            self._forget_derived()

    def reset(self) -> None:
        """Forget every registration."""
        self._configs.clear()
        self._forget_derived()

    def _config_for(self, mapper: Mapper[Any]) -> ModelConfig | None:
        """The options of ``mapper``'s class: those of every registered class on its way to the
        root, combined so that a subclass adds to its parents' and never drops them: masks and
        exclusions accumulate, and ``include`` lists join (a subclass registered without one
        records what its nearest registered parent includes)."""
        found = [
            self._configs[m.class_] for m in mapper.iterate_to_root() if m.class_ in self._configs
        ]
        if not found:
            return None
        includes = [c.include for c in found if c.include is not None]
        return ModelConfig(
            model=found[0].model,
            include=frozenset().union(*includes) if includes else None,
            exclude=frozenset().union(*(c.exclude for c in found)),
            mask=frozenset().union(*(c.mask for c in found)),
        )

    def plan_for(self, mapper: Mapper[Any]) -> Plan | None:
        """The compiled plan for a mapper, or None when its class is not audited."""
        try:
            return self._plans[mapper]
        except KeyError:
            pass
        config = self._config_for(mapper)
        plan = None if config is None else compile_plan(mapper, config)
        self._plans[mapper] = plan
        return plan

    def family(self, mapper: Mapper[Any]) -> Family | None:
        """The :class:`Family` of a statement on ``mapper``, or None when none of its rows can
        be audited."""
        try:
            return self._families[mapper]
        except KeyError:
            pass
        found = self._family(mapper)
        self._families[mapper] = found
        return found

    def _family(self, mapper: Mapper[Any]) -> Family | None:
        members = [m for m in mapper.self_and_descendants if m.local_table is mapper.local_table]
        by_mapper = {m: self.plan_for(m) for m in members}
        fallback = self.plan_for(mapper)
        if fallback is not None:  # joined subclasses' masks and exclusions hold in base rows
            hidden: set[str] = set()
            for sub in mapper.self_and_descendants:
                config = self._config_for(sub) if sub not in by_mapper else None
                if config is not None:
                    hidden |= config.mask | config.exclude
            hidden &= fallback.keys
            if hidden - {key for key, _, masked in fallback.fields if masked}:
                config = self._config_for(mapper)
                assert config is not None
                fallback = compile_plan(
                    mapper,
                    ModelConfig(
                        mapper.class_, config.include, config.exclude, config.mask | hidden
                    ),
                )
        plans = [p for p in (*by_mapper.values(), fallback) if p is not None]
        if not plans:
            return None
        keys = self.plan_for(mapper) or default_plan(mapper)
        selected: list[Any] = []
        at: dict[Any, int] = {}

        def select(column: Any, expression: Any) -> int:
            if column not in at:
                at[column] = len(selected)
                selected.append(expression)
            return at[column]

        cls = mapper.class_
        own: dict[Any, str] = {mapper.columns[key]: key for key in _column_keys(mapper)}
        pk_at = tuple(select(c, getattr(cls, own[c])) for c in mapper.primary_key)
        positions = {
            plan: tuple(
                (key, select(column, getattr(cls, own[column]) if column in own else column))
                for key, column in plan.columns.items()
            )
            for plan in dict.fromkeys(plans)
        }
        discriminator = mapper.polymorphic_on
        discriminator_at = (
            select(discriminator, discriminator) if discriminator is not None else None
        )
        return Family(
            mapper=mapper,
            keys=keys,
            by_mapper=by_mapper,
            fallback=fallback if discriminator is not None else by_mapper[mapper],
            selected=tuple(selected),
            positions=positions,
            pk_at=pk_at,
            discriminator_at=discriminator_at,
        )

    def table_family(self, table: Any) -> Family | None:
        """The family of Core statements on ``table``: that of the topmost mapper of a
        single-table hierarchy mapping it; None for other tables and for tables that hold only
        part of an object (joined or concrete inheritance)."""
        try:
            return self._table_families[table]
        except KeyError:
            pass
        found: Family | None = None
        owners: list[Mapper[Any]] = []
        for model in self._configs:
            for mapper in _mapper_of(model).base_mapper.self_and_descendants:
                if table in mapper.tables and mapper not in owners:
                    owners.append(mapper)
        if owners:
            root = owners[0].base_mapper
            single = all(m.local_table is table for m in root.self_and_descendants)
            if single and not any(m.concrete for m in owners):
                found = self.family(root)
        self._table_families[table] = found
        return found

    def is_secondary(self, table: Any) -> bool:
        """Whether ``table`` is the ``secondary`` of a relationship that writes it (one a
        many-to-many collection adds rows to and deletes rows from during a flush)."""
        if self._secondaries is not None:
            return table in self._secondaries
        registries = {_mapper_of(model).registry for model in self._configs}
        for registry in registries:
            with contextlib.suppress(Exception):  # a mapping that fails fails where it is used
                registry.configure()  # a relationship knows its ``secondary`` once configured
        found: set[Any] = set()
        complete = True
        for registry in registries:
            for mapper in registry.mappers:
                for prop in getattr(mapper, "_props", {}).values():
                    if not isinstance(prop, RelationshipProperty) or prop.viewonly:
                        continue
                    secondary = getattr(prop, "secondary", _UNCONFIGURED)
                    if secondary is _UNCONFIGURED:
                        complete = False
                    elif secondary is not None:
                        found.add(secondary)
        if complete:  # kept until the registrations change
            self._secondaries = frozenset(found)
        return table in found

    def mapper_named(self, name: str) -> Mapper[Any] | None:
        """The mapper of the model filed under ``name`` (see :func:`model_name`), or whose class
        alone is named ``name``, looked up among the registered models and every class their
        SQLAlchemy registries map."""
        for model in self._configs:
            for mapper in _mapper_of(model).registry.mappers:
                if model_name(mapper.class_) == name:
                    return mapper
        if "." not in name:
            for model in self._configs:
                for mapper in _mapper_of(model).registry.mappers:
                    if mapper.class_.__name__ == name:
                        return mapper
        return None

    def audited_tables(self) -> frozenset[Any]:
        """The tables written by registered models and their mapped subclasses."""
        if self._tables is None:
            found: set[Any] = set()
            for model in self._configs:
                for mapper in _mapper_of(model).self_and_descendants:
                    found.update(mapper.tables)
            self._tables = frozenset(found)
        return self._tables

    def pk_keys_of(self, mapper: Mapper[Any]) -> tuple[str, ...]:
        """Attribute keys of the mapper's primary key columns, in key order."""
        keys = self._pk_keys.get(mapper)
        if keys is None:
            keys = self._pk_keys[mapper] = _pk_keys(mapper)
        return keys

    def cascades_deletes(self, mapper: Mapper[Any]) -> bool:
        """Whether deleting an object of ``mapper`` can cascade to other objects."""
        found = self._cascades.get(mapper)
        if found is None:
            found = self._cascades[mapper] = any(p.cascade.delete for p in mapper.relationships)
        return found


#: The registry of the process.
registry = Registry()

plan_for = registry.plan_for
family = registry.family
is_secondary = registry.is_secondary
mapper_named = registry.mapper_named
table_family = registry.table_family
audited_tables = registry.audited_tables
pk_keys_of = registry.pk_keys_of
cascades_deletes = registry.cascades_deletes


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
    registry.register(model, include=include, exclude=exclude, mask=mask)
    return model


def unregister(model: type) -> None:
    """Stop auditing a class registered with :func:`register` (no-op when it is not)."""
    registry.unregister(model)


def is_registered(model: type) -> bool:
    """True when ``model`` or one of its mapped base classes is registered."""
    return registry.plan_for(_mapper_of(model)) is not None


def default_plan(mapper: Mapper[Any]) -> Plan:
    """A plan recording every column, for explicit entries on models that are not registered."""
    return compile_plan(mapper, ModelConfig(mapper.class_, None, frozenset(), frozenset()))
