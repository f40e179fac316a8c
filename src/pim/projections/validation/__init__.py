"""Live validation issues: what keeps a product from being sellable, always current.

The rules themselves (codes, severities, messages, the variant rules) are pure and live in
``pim.domain.validation``; this package applies them to the event stream. The view keeps the
little state its rules need (products' category/template/attributes/variant count, live
category slugs, templates' required attributes, attribute keys, variants' rule inputs) and
reconciles the issues of a *scope* (one product, every product of a template, every product
of a category slug) in a few set-based statements: the desired issues are inserted
(deterministic ids, so an unchanged issue keeps its detected_at) and the stale ones deleted.

``ValidationView`` is built in layers, each a module, each using only the ones before it:

- ``tables``: the view's tables (DDL) and the writes of its rule-input copies;
- ``counters``: every write of issues moves the tenant's issue counter in the same statement;
- ``product_rules``: category and template rules, reconciled in SQL over a scope of products;
- ``replay``: variant rules and variant counts, replayed once per batch in ``flush()``;
- ``view``: the event handlers, which pick what to update and which scope to re-check."""

from __future__ import annotations

from pim.domain.validation import SEVERITY
from pim.projections.validation.view import ValidationView

__all__ = ["SEVERITY", "ValidationView"]
