"""ORM queries compiled once per database connection and run again with new values.

Building and compiling a queryset costs far more Python than running it: for the shopper list
(one join, twelve columns) Django spends ~0.9 ms turning ``filter(...).values(...)`` into SQL and
~0.2 ms executing it (see docs/benchmarks.md, "Where the remaining time goes").  The few queries
on every request of the hot endpoints are therefore written with the ORM as usual, compiled once
per connection with stand-in values, and afterwards executed as that SQL with the caller's values
in place of the stand-ins, through the connection's own cursor (so query logging, execute
wrappers and ``CaptureQueriesContext`` see them) and the compiler's own converters (so every
column comes back exactly as the ORM would return it: aware datetimes on SQLite, decrypted
encrypted fields, decoded JSON).

A stand-in must come out of compilation unchanged and exactly once in the parameters; when it
does not (a lookup that transforms its value, a backend that inlines it) the query simply runs
through the ORM every time.  ``tests/test_prepared.py`` compares both paths.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import connections, router
from django.db.models import Model, QuerySet

#: Stand-in values per kind: distinct from anything a real query would carry.
INT_STAND_IN = -7_390_112_441_000
STR_STAND_IN = "\x1fvault_wallets:stand-in\x1f"

M = TypeVar("M", bound=Model)


class _Compiled:
    __slots__ = ("sql", "params", "slots", "compiler", "converters", "columns")

    def __init__(self, queryset: QuerySet, stand_ins: dict[str, Any], using: str):
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        self.sql, self.params, self.compiler = sql, list(params), compiler
        self.slots: dict[int, str] = {}
        for name, value in stand_ins.items():
            found = [i for i, param in enumerate(self.params) if type(param) is type(value) and param == value]
            if len(found) != 1:
                raise LookupError(name)
            self.slots[found[0]] = name
        fields = [column[0] for column in compiler.select[0:compiler.col_count]]
        self.converters = compiler.get_converters(fields)
        self.columns = len(fields)

    def run(self, values: dict[str, Any]) -> list[tuple]:
        params = list(self.params)
        for index, name in self.slots.items():
            params[index] = values[name]
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if self.converters:
            return [tuple(row) for row in self.compiler.apply_converters(rows, self.converters)]
        return rows


class PreparedQuery:
    """``build(**values)`` returns a ``values_list()`` queryset of ``model``; ``rows(**values)`` its rows.

    ``stand_ins`` names each value and gives the stand-in it is compiled with, e.g.
    ``{"user_id": INT_STAND_IN, "account": STR_STAND_IN}``.  The rows are read from the database
    the routers choose for reading ``model``, as the queryset would.
    """

    def __init__(self, model: type[Model], build: Callable[..., QuerySet], stand_ins: dict[str, Any]):
        self.model = model
        self.build = build
        self.stand_ins = stand_ins
        # One compilation per connection object (each thread has its own): the compiler, its
        # converters and its SQL belong to that connection's backend.
        self._compiled: weakref.WeakKeyDictionary[Any, _Compiled | None] = weakref.WeakKeyDictionary()

    def _for(self, using: str) -> _Compiled | None:
        connection = connections[using]
        try:
            return self._compiled[connection]
        except KeyError:
            pass
        try:
            compiled: _Compiled | None = _Compiled(self.build(**self.stand_ins), self.stand_ins, using)
        except LookupError:
            compiled = None  # the ORM every time (see the module's docstring)
        self._compiled[connection] = compiled
        return compiled

    def rows(self, **values: Any) -> list[tuple]:
        return self.rows_from(router.db_for_read(self.model), **values)

    def rows_from(self, using: str, **values: Any) -> list[tuple]:
        compiled = self._for(using)
        if compiled is None:
            return list(self.build(**values).using(using))
        return compiled.run(values)


class PreparedInstances(PreparedQuery, Generic[M]):
    """A prepared query whose rows are model instances (all concrete fields, as ``Model.from_db``)."""

    def __init__(self, model: type[M], build: Callable[..., QuerySet], stand_ins: dict[str, Any]):
        self.instance_model = model
        self.attnames = [field.attname for field in model._meta.concrete_fields]
        super().__init__(model, lambda **values: build(**values).values_list(*self.attnames), stand_ins)

    def instances(self, **values: Any) -> list[M]:
        using = router.db_for_read(self.instance_model)
        return [self.instance_model.from_db(using, self.attnames, row) for row in self.rows_from(using, **values)]
