"""An action's params as labelled fields, read by the action's schema, with the raw JSON
one toggle away. `{% load params %}{% params_fields params action_type %}`.

The reviewer reads "Amount 42.00 EUR" instead of scanning a JSON block for it; the JSON
stays there for anyone who wants the exact bytes. Pseudonyms (`<EMAIL:…>`) are shown as
they are: the screen never had the real values.
"""

import json
from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()

# A string this long, or with a line break, is read as a text block, not a one-line value.
MULTILINE_AT = 60


def param_label(name: str, spec: dict | None = None) -> str:
    """The schema's `title` if it has one, else the key made readable ("order_id" →
    "Order id")."""
    if spec and isinstance(spec.get("title"), str) and spec["title"].strip():
        return spec["title"].strip()
    words = name.replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:]) if words else name


def money_text(value, currency=None) -> str | None:
    """ "42.00 EUR", "1,234.50 EUR" for a number or decimal string, with at least two
    decimals (and more when the value has them: 0.125 stays 0.125); None when it is not
    a number. One format for money on every page: the review screens and the replay."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    places = -amount.as_tuple().exponent if amount.as_tuple().exponent < 0 else 0
    text = f"{amount:,.{max(places, 2)}f}"
    if isinstance(currency, str) and currency.strip():
        text += f" {currency.strip()}"
    return text


def param_rows(
    params: dict,
    *,
    schema: dict | None = None,
    value_param: str = "",
    currency_param: str = "",
) -> list[dict]:
    """One row per param to show: the schema's keys in its order, then keys the schema
    does not know (flagged `unknown`). The currency is folded into the money row.

    Each row: name, label, kind (`money`, `multiline`, `text`, `json`), shown (the text
    to show), unknown.
    """
    params = params if isinstance(params, dict) else {}
    schema = schema if isinstance(schema, dict) else {}
    currency = params.get(currency_param) if currency_param else None
    fold_currency = bool(
        value_param
        and currency_param
        and value_param in params
        and money_text(params[value_param]) is not None
    )
    names = [n for n in schema if n in params] + [n for n in params if n not in schema]
    rows = []
    for name in names:
        if fold_currency and name == currency_param:
            continue
        value = params[name]
        spec = schema.get(name) if isinstance(schema.get(name), dict) else None
        row = {
            "name": name,
            "label": param_label(name, spec),
            "unknown": bool(schema) and name not in schema,
        }
        money = money_text(value, currency if fold_currency else None)
        if name == value_param and money is not None:
            row.update(kind="money", shown=money)
        elif isinstance(value, str):
            long = len(value) > MULTILINE_AT or "\n" in value
            row.update(kind="multiline" if long else "text", shown=value)
        elif value is None or isinstance(value, (bool, dict, list)):
            row.update(kind="json", shown=json.dumps(value, ensure_ascii=False, sort_keys=True))
        else:
            row.update(kind="text", shown=str(value))
        rows.append(row)
    return rows


@register.inclusion_tag("approvals/_params.html")
def params_fields(params, action_type=None, raw_label="Raw JSON") -> dict:
    """`action_type` is an ActionType (or anything with param_schema, value_param and
    currency_param), or None when the action is unknown: then every key is shown as is."""
    return {
        "rows": param_rows(
            params,
            schema=getattr(action_type, "param_schema", None),
            value_param=getattr(action_type, "value_param", "") or "",
            currency_param=getattr(action_type, "currency_param", "") or "",
        ),
        "raw": json.dumps(params, indent=2, ensure_ascii=False, sort_keys=True),
        "raw_label": raw_label,
        "empty": not params,
    }


@register.filter
def at_key(mapping, key):
    """`mapping[key]`, or None: `{% with t=action_types|at_key:name %}`."""
    return mapping.get(key) if isinstance(mapping, dict) else None
