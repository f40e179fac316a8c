"""The validation view: which events touch which rule inputs, and which issues they re-check.

A handler updates the view's copy of the rule inputs the event changed and then re-checks only
the issues those inputs can affect: a product's own, every product of a template, of a
category slug, or of the templates requiring an attribute. Events that change nothing a rule
reads (a description, a repricing that keeps a price) cost this view nothing."""

from __future__ import annotations

from typing import Any, ClassVar

from psycopg import sql
from psycopg.types.json import Jsonb

from pim.domain.attribute import Attribute, Template
from pim.domain.category import Category
from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.validation import rule_inputs
from pim.domain.variant import Variant
from pim.projections.base import EventHandler
from pim.projections.statements import Statements
from pim.projections.validation.product_rules import ProductRules
from pim.projections.validation.replay import BatchReplay


class ValidationView(BatchReplay, ProductRules):
    """Live validation issues: what keeps a product from being sellable, always current."""

    name: ClassVar[str] = "validation"

    def _upsert_product(self, cur: Statements, event: Any, fields: dict[str, Any]) -> None:
        self.defer(
            self._upsert_product_rows,
            {
                "tenant_id": event.tenant_id,
                "id": entity_id_of(event.originator_id),
                "category": fields.get("category"),
                "template_id": fields.get("template_id"),
                "attributes": fields.get("attributes") or {},
            },
        )

    def on_product_created(self, cur: Statements, event: Product.Created, pos: int) -> None:
        product_id = entity_id_of(event.originator_id)
        self._upsert_product(cur, event, event.fields)
        if event.fields.get("category") or event.fields.get("template_id"):
            # Without either, no category or template rule can apply yet.
            self._reconcile_product(cur, event.tenant_id, product_id, event.timestamp, fresh=True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append(
            (None, event.timestamp)
        )

    def on_product_updated(self, cur: Statements, event: Product.Updated, pos: int) -> None:
        relevant = {"category", "template_id", "attributes"} & set(event.changes)
        if not relevant:
            return
        self.write_inserts(cur)
        product_id = entity_id_of(event.originator_id)
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in relevant]
        values = [
            Jsonb(event.changes[n]["to"] or {}) if n == "attributes" else event.changes[n]["to"]
            for n in relevant
        ]
        cur.execute(
            sql.SQL("UPDATE {} SET {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_products"), sql.SQL(", ").join(assignments)
            ),
            [*values, event.tenant_id, product_id],
        )
        self._reconcile_product(cur, event.tenant_id, product_id, event.timestamp)

    def on_product_deleted(self, cur: Statements, event: Product.Deleted, pos: int) -> None:
        self.write_inserts(cur)
        product_id = entity_id_of(event.originator_id)
        cur.execute(
            self._counted(
                sql.SQL(
                    "DELETE FROM {} WHERE tenant_id = %s AND product_id = %s RETURNING tenant_id"
                ).format(self._t("validation_issues")),
                -1,
            ),
            (event.tenant_id, product_id),
        )
        self._count(cur, event.tenant_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_products")
            ),
            (event.tenant_id, product_id),
        )
        self._count_steps.pop((event.tenant_id, product_id), None)

    def on_variant_created(self, cur: Statements, event: Variant.Created, pos: int) -> None:
        product_id = event.fields["product_id"]
        self._variant_step(event, product_id, rule_inputs(event.fields), True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append((1, event.timestamp))

    def on_variant_updated(self, cur: Statements, event: Variant.Updated, pos: int) -> None:
        changes = event.changes
        inputs: dict[str, Any] = {
            name: changes[name]["to"] for name in ("sku", "barcode") if name in changes
        }
        price = changes.get("price")
        if price is not None and (price["from"] is None) != (price["to"] is None):
            inputs["priced"] = price["to"] is not None
        if inputs:
            self._variant_step(event, "", inputs, False)

    def on_variant_deleted(self, cur: Statements, event: Variant.Deleted, pos: int) -> None:
        product_id = event.fields["product_id"]
        self._variant_step(event, product_id, None, True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append(
            (-1, event.timestamp)
        )

    # categories, templates and attributes re-evaluate every product they touch, set-based

    def _category_scope(self, cur: Statements, event: Any, slugs: list[str]) -> None:
        self._reconcile_products(
            cur, event.tenant_id, sql.SQL("p.category = ANY(%s)"), [slugs], event.timestamp
        )

    def on_category_created(self, cur: Statements, event: Category.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, slug, id) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, slug) DO UPDATE SET id = EXCLUDED.id"
            ).format(self._t("validation_categories")),
            (event.tenant_id, event.fields["slug"], entity_id_of(event.originator_id)),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def on_category_updated(self, cur: Statements, event: Category.Updated, pos: int) -> None:
        change = event.changes.get("slug")
        if change is None:
            return
        table = self._t("validation_categories")
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND slug = %s").format(table),
            (event.tenant_id, change["from"]),
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, slug, id) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, slug) DO UPDATE SET id = EXCLUDED.id"
            ).format(table),
            (event.tenant_id, change["to"], entity_id_of(event.originator_id)),
        )
        self._category_scope(cur, event, [change["from"], change["to"]])

    def on_category_deleted(self, cur: Statements, event: Category.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND slug = %s").format(
                self._t("validation_categories")
            ),
            (event.tenant_id, event.fields["slug"]),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def _template_scope(self, cur: Statements, event: Any) -> None:
        self._reconcile_products(
            cur,
            event.tenant_id,
            sql.SQL("p.template_id = %s"),
            [entity_id_of(event.originator_id)],
            event.timestamp,
        )

    def _upsert_template(self, cur: Statements, event: Any, name: str, required: list[str]) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, name, required_ids) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,"
                " required_ids = EXCLUDED.required_ids"
            ).format(self._t("validation_templates")),
            (event.tenant_id, entity_id_of(event.originator_id), name, required),
        )

    def on_template_created(self, cur: Statements, event: Template.Created, pos: int) -> None:
        self._upsert_template(
            cur, event, event.fields["name"], event.fields.get("required_attribute_ids") or []
        )
        self._template_scope(cur, event)

    def on_template_updated(self, cur: Statements, event: Template.Updated, pos: int) -> None:
        if "required_attribute_ids" not in event.changes and "name" not in event.changes:
            return
        table = self._t("validation_templates")
        if "name" in event.changes:
            cur.execute(
                sql.SQL("UPDATE {} SET name = %s WHERE tenant_id = %s AND id = %s").format(table),
                (event.changes["name"]["to"], event.tenant_id, entity_id_of(event.originator_id)),
            )
        if "required_attribute_ids" in event.changes:
            cur.execute(
                sql.SQL("UPDATE {} SET required_ids = %s WHERE tenant_id = %s AND id = %s").format(
                    table
                ),
                (
                    event.changes["required_attribute_ids"]["to"] or [],
                    event.tenant_id,
                    entity_id_of(event.originator_id),
                ),
            )
            self._template_scope(cur, event)

    def on_template_deleted(self, cur: Statements, event: Template.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_templates")
            ),
            (event.tenant_id, entity_id_of(event.originator_id)),
        )
        self._template_scope(cur, event)

    def on_attribute_created(self, cur: Statements, event: Attribute.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, key) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO NOTHING"
            ).format(self._t("validation_attributes")),
            (event.tenant_id, entity_id_of(event.originator_id), event.fields["key"]),
        )

    def on_attribute_deleted(self, cur: Statements, event: Attribute.Deleted, pos: int) -> None:
        attribute_id = entity_id_of(event.originator_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_attributes")
            ),
            (event.tenant_id, attribute_id),
        )
        self._reconcile_products(
            cur,
            event.tenant_id,
            sql.SQL(
                "p.template_id IN (SELECT id FROM {} WHERE tenant_id = p.tenant_id"
                " AND %s = ANY(required_ids))"
            ).format(self._t("validation_templates")),
            [attribute_id],
            event.timestamp,
        )

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Product.Created: on_product_created,
        Product.Updated: on_product_updated,
        Product.Reverted: on_product_updated,
        Product.Deleted: on_product_deleted,
        Variant.Created: on_variant_created,
        Variant.Updated: on_variant_updated,
        Variant.Deleted: on_variant_deleted,
        Category.Created: on_category_created,
        Category.Updated: on_category_updated,
        Category.Deleted: on_category_deleted,
        Template.Created: on_template_created,
        Template.Updated: on_template_updated,
        Template.Deleted: on_template_deleted,
        Attribute.Created: on_attribute_created,
        Attribute.Deleted: on_attribute_deleted,
    }
