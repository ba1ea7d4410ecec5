"""Model prices the user controls, for the cost columns of the usage views.

sqlsessions ships no prices: the ``model_prices`` table is filled by the user (CLI
``sqlsessions prices set``, ``store.set_model_prices``), one row per model and moment the
price took effect. A message is priced with the row in effect when it was written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Insert, Select, select

from sqlsessions import statements as sql
from sqlsessions.errors import InvalidInputError
from sqlsessions.models import check_text
from sqlsessions.operations import Operation, Steps, Transaction
from sqlsessions.schema import model_prices

P = model_prices.c
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""The default `effective_from`: a price that applies to every message so far."""


@dataclass(frozen=True)
class ModelPrice:
    """Prices in your currency per million tokens (cached input: the price of a prompt token
    read from the provider's cache; None means the input price)."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True)
class PriceRow:
    """One row of `model_prices`."""

    model: str
    effective_from: datetime
    price: ModelPrice


def _price(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(field, f"must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(field, "must be a finite, non-negative number")
    return float(value)


def as_model_price(value: Any, field: str) -> ModelPrice:
    """`value` (a ModelPrice or a mapping with input/output[/cached_input]) as a ModelPrice."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"input", "output", "cached_input"}
        if unknown:
            raise InvalidInputError(f"{field}.{sorted(unknown)[0]}", "unknown price field")
        if "input" not in value or "output" not in value:
            raise InvalidInputError(field, "needs 'input' and 'output' prices")
        value = ModelPrice(value["input"], value["output"], value.get("cached_input"))
    if not isinstance(value, ModelPrice):
        raise InvalidInputError(field, "must be a ModelPrice or a mapping of prices")
    cached = value.cached_input
    return ModelPrice(
        _price(value.input, f"{field}.input"),
        _price(value.output, f"{field}.output"),
        None if cached is None else _price(cached, f"{field}.cached_input"),
    )


def upsert_price(dialect: str) -> Insert:
    stmt: Any = sql.dialect_insert(dialect, model_prices)
    result: Insert = stmt.on_conflict_do_update(
        index_elements=[P.model, P.effective_from],
        set_={
            "input_per_million": stmt.excluded.input_per_million,
            "output_per_million": stmt.excluded.output_per_million,
            "cached_input_per_million": stmt.excluded.cached_input_per_million,
        },
    )
    return result


select_prices: Select[Any] = select(
    P.model, P.effective_from, P.input_per_million, P.output_per_million,
    P.cached_input_per_million,
).order_by(P.model, P.effective_from)  # fmt: skip


def set_model_prices(
    dialect: str, prices: Any, effective_from: datetime | None = None
) -> Operation[int]:
    """Record `prices` ({model: ModelPrice or mapping}), effective from `effective_from`
    (default: always); a price already recorded for that model and moment is replaced."""
    if not isinstance(prices, Mapping) or not prices:
        raise InvalidInputError("prices", "must be a non-empty mapping of model name to prices")
    if effective_from is None:
        effective_from = EPOCH
    elif not isinstance(effective_from, datetime):
        raise InvalidInputError("effective_from", "must be a datetime")
    rows = []
    for model, value in prices.items():
        check_text(model, "prices", 1000)
        if not model:
            raise InvalidInputError("prices", "a model name must not be empty")
        price = as_model_price(value, f"prices[{model}]")
        rows.append(
            {
                "model": model,
                "effective_from": effective_from,
                "input_per_million": price.input,
                "output_per_million": price.output,
                "cached_input_per_million": price.cached_input,
            }
        )
    statement = upsert_price(dialect)

    def steps(tx: Transaction) -> Steps[int]:
        yield statement, rows
        return len(rows)

    return Operation(steps, writes=True)


def model_price_rows(dialect: str) -> Operation[list[PriceRow]]:
    """Every recorded price, by model and date."""

    def steps(tx: Transaction) -> Steps[list[PriceRow]]:
        rows = (yield select_prices, None).all()
        return [
            PriceRow(model, effective, ModelPrice(inp, out, cached))
            for model, effective, inp, out, cached in rows
        ]

    return Operation(steps, autocommit=dialect == "postgresql")
