"""Live validation issues: what keeps a product from being sellable, always current.

The projection keeps the little state its rules need (products' category/template/attributes/
variant count, live category slugs, templates' required attributes, attribute keys) and
reconciles the issues of a *scope* (one product, every product of a template, every product of a
category slug) in a few set-based statements: the desired issues are inserted (deterministic ids,
so an unchanged issue keeps its detected_at) and the stale ones deleted."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, ClassVar

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from pim.domain.attribute import Attribute, Template
from pim.domain.category import Category
from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.variant import Variant, is_valid_gtin
from pim.projections.base import EventHandler, Projection

SKU_CONVENTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

SEVERITY = {
    "MISSING_REQUIRED_ATTRIBUTE": "ERROR",
    "INVALID_SKU": "ERROR",
    "INVALID_BARCODE": "ERROR",
    "UNKNOWN_CATEGORY": "ERROR",
    "MISSING_PRICE": "WARNING",
    "NO_VARIANTS": "WARNING",
}
NO_VARIANTS_MESSAGE = "This product has no variants, so it cannot be sold."
PRODUCT_CODES = ("NO_VARIANTS", "UNKNOWN_CATEGORY", "MISSING_REQUIRED_ATTRIBUTE")


def issue_id(
    product_id: str, variant_id: str | None, code: str, attribute_key: str | None, message: str
) -> str:
    """Deterministic: the same problem keeps its id (and detected_at); computed the same way in
    SQL for product-level issues."""
    text = f"{product_id}|{variant_id or ''}|{code}|{attribute_key or ''}|{message}"
    return str(uuid.UUID(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()))


def variant_issues(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, message) of one variant's own problems."""
    out: list[tuple[str, str]] = []
    sku = fields.get("sku") or ""
    if not SKU_CONVENTION.match(sku):
        out.append(
            (
                "INVALID_SKU",
                f"SKU '{sku}' breaks the catalog convention: start with a letter or digit, "
                "then only letters, digits, '.', '_' or '-'.",
            )
        )
    barcode = fields.get("barcode")
    if barcode and not is_valid_gtin(barcode):
        out.append(
            (
                "INVALID_BARCODE",
                f"Barcode '{barcode}' is not a valid GTIN-8, -12, -13 or -14 (UPC/EAN): "
                "check its length and check digit.",
            )
        )
    if fields.get("price") is None:
        out.append(("MISSING_PRICE", f"Variant '{sku}' has no price, so it cannot be sold."))
    return out


class ValidationView(Projection):
    name: ClassVar[str] = "validation"
    table_bases: ClassVar[tuple[str, ...]] = (
        "validation_issues",
        "validation_counts",
        "validation_products",
        "validation_categories",
        "validation_templates",
        "validation_attributes",
        "validation_variants",
    )

    def ddl(self) -> list[str]:
        t = self.table
        return [
            f"""CREATE TABLE IF NOT EXISTS {t("validation_issues")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, product_id uuid NOT NULL,
                variant_id uuid, code text NOT NULL, severity text NOT NULL,
                message text NOT NULL, attribute_key text, detected_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, id))""",
            f"CREATE INDEX IF NOT EXISTS {t('validation_issues')}_order_idx"
            f" ON {t('validation_issues')} (tenant_id, detected_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t('validation_issues')}_product_idx"
            f" ON {t('validation_issues')} (tenant_id, product_id)",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_counts")} (
                tenant_id uuid PRIMARY KEY, issues bigint NOT NULL DEFAULT 0)""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_products")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, category text, template_id uuid,
                attributes jsonb NOT NULL, variant_count integer NOT NULL DEFAULT 0,
                PRIMARY KEY (tenant_id, id))""",
            f"CREATE INDEX IF NOT EXISTS {t('validation_products')}_template_idx"
            f" ON {t('validation_products')} (tenant_id, template_id)",
            f"CREATE INDEX IF NOT EXISTS {t('validation_products')}_category_idx"
            f" ON {t('validation_products')} (tenant_id, category)",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_categories")} (
                tenant_id uuid NOT NULL, slug text NOT NULL, id uuid NOT NULL,
                PRIMARY KEY (tenant_id, slug))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_templates")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, name text NOT NULL,
                required_ids uuid[] NOT NULL, PRIMARY KEY (tenant_id, id))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_variants")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, product_id uuid NOT NULL,
                fields jsonb NOT NULL, PRIMARY KEY (tenant_id, id))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_attributes")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, key text NOT NULL,
                PRIMARY KEY (tenant_id, id))""",
        ]

    def _t(self, base: str) -> sql.Identifier:
        return sql.Identifier(self.table(base))

    # -- counting -------------------------------------------------------------------------

    def __init__(self, table_suffix: str = "") -> None:
        super().__init__(table_suffix)
        self._counts: dict[str, int] = {}

    def begin(self) -> None:
        self._counts = {}

    def _count(self, cur: Cursor[Any], tenant_id: str, delta: int) -> None:
        """Issue counter changes, summed per tenant and written once per batch."""
        self._counts[tenant_id] = self._counts.get(tenant_id, 0) + delta

    def flush(self, cur: Cursor[Any]) -> None:
        for tenant_id, delta in self._counts.items():
            if delta:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {t} (tenant_id, issues) VALUES (%s, %s) ON CONFLICT"
                        " (tenant_id) DO UPDATE SET issues = {t}.issues + EXCLUDED.issues"
                    ).format(t=self._t("validation_counts")),
                    (tenant_id, delta),
                )
        if self._counts:
            # A zero count is no row: the table must not depend on where batches ended.
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s) AND issues = 0").format(
                    self._t("validation_counts")
                ),
                (list(self._counts),),
            )
        self._counts = {}

    # -- product-level rules, set-based over a scope of products --------------------------

    def _desired_product_issues(self, scope: sql.Composable) -> sql.Composable:
        """SELECT of (tenant_id, product_id, code, message, attribute_key) for the scope."""
        return sql.SQL(
            """
            SELECT p.tenant_id, p.id, 'NO_VARIANTS', {no_variants}, NULL::text
              FROM {products} p WHERE {scope} AND p.variant_count = 0
            UNION ALL
            SELECT p.tenant_id, p.id, 'UNKNOWN_CATEGORY', 'Category ''' || p.category
                   || ''' does not exist (it may have been deleted).', NULL::text
              FROM {products} p WHERE {scope} AND p.category IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM {categories} c
                                WHERE c.tenant_id = p.tenant_id AND c.slug = p.category)
            UNION ALL
            SELECT p.tenant_id, p.id, 'MISSING_REQUIRED_ATTRIBUTE', 'Attribute ''' || a.key
                   || ''' is required by template ''' || t.name || ''' but has no value.',
                   a.key
              FROM {products} p
              JOIN {templates} t ON t.tenant_id = p.tenant_id AND t.id = p.template_id
              JOIN {attributes} a ON a.tenant_id = p.tenant_id AND a.id = ANY(t.required_ids)
             WHERE {scope} AND (NOT p.attributes ? a.key OR p.attributes ->> a.key = '')
            """
        ).format(
            products=self._t("validation_products"),
            categories=self._t("validation_categories"),
            templates=self._t("validation_templates"),
            attributes=self._t("validation_attributes"),
            scope=scope,
            no_variants=sql.Literal(NO_VARIANTS_MESSAGE),
        )

    def _reconcile_products(
        self,
        cur: Cursor[Any],
        tenant_id: str,
        scope: sql.Composable,
        params: list[Any],
        at: Any,
        *,
        fresh: bool = False,
    ) -> None:
        """Make the product-level issues of every product in ``scope`` match the rules
        (``fresh``: the scope is a new product, which has no issues to remove yet)."""
        scope_sql = sql.SQL("p.tenant_id = %s AND ") + scope
        scope_params = [tenant_id, *params]
        ided = sql.SQL(
            "WITH desired (tenant_id, product_id, code, message, attribute_key) AS ({desired}),"
            " ided AS (SELECT d.*, md5(d.product_id::text || '||' || d.code || '|'"
            " || COALESCE(d.attribute_key, '') || '|' || d.message)::uuid AS id FROM desired d)"
        ).format(desired=self._desired_product_issues(scope_sql))
        cur.execute(
            ided
            + sql.SQL(
                " INSERT INTO {issues} (tenant_id, id, product_id, variant_id, code, severity,"
                " message, attribute_key, detected_at)"
                " SELECT tenant_id, id, product_id, NULL, code,"
                " CASE WHEN code = 'NO_VARIANTS' THEN 'WARNING' ELSE 'ERROR' END,"
                " message, attribute_key, %s FROM ided"
                " ON CONFLICT (tenant_id, id) DO NOTHING"
            ).format(issues=self._t("validation_issues")),
            [*scope_params * 3, at],
        )
        inserted = cur.rowcount
        if fresh:
            self._count(cur, tenant_id, inserted)
            return
        cur.execute(
            ided
            + sql.SQL(
                " DELETE FROM {issues} i USING {products} p"
                " WHERE i.tenant_id = p.tenant_id AND i.product_id = p.id AND {scope}"
                " AND i.variant_id IS NULL AND i.id NOT IN (SELECT id FROM ided)"
            ).format(
                issues=self._t("validation_issues"),
                products=self._t("validation_products"),
                scope=scope_sql,
            ),
            [*scope_params * 4],
        )
        self._count(cur, tenant_id, inserted - cur.rowcount)

    def _reconcile_product(
        self, cur: Cursor[Any], tenant_id: str, product_id: str, at: Any, *, fresh: bool = False
    ) -> None:
        self._reconcile_products(
            cur, tenant_id, sql.SQL("p.id = %s"), [product_id], at, fresh=fresh
        )

    # -- variant-level rules ------------------------------------------------------------------

    def _reconcile_variant(
        self,
        cur: Cursor[Any],
        tenant_id: str,
        product_id: str,
        variant_id: str,
        fields: dict[str, Any] | None,
        at: Any,
        *,
        fresh: bool = False,
    ) -> None:
        desired = variant_issues(fields) if fields is not None else []
        ids = [issue_id(product_id, variant_id, code, None, message) for code, message in desired]
        inserted = 0
        for (code, message), iid in zip(desired, ids, strict=True):
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (tenant_id, id, product_id, variant_id, code, severity,"
                    " message, attribute_key, detected_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s)"
                    " ON CONFLICT (tenant_id, id) DO NOTHING"
                ).format(self._t("validation_issues")),
                (tenant_id, iid, product_id, variant_id, code, SEVERITY[code], message, at),
            )
            inserted += cur.rowcount
        if fresh:  # a new variant has no issues to remove
            self._count(cur, tenant_id, inserted)
            return
        cur.execute(
            sql.SQL(
                "DELETE FROM {} WHERE tenant_id = %s AND variant_id = %s AND NOT id = ANY(%s)"
            ).format(self._t("validation_issues")),
            (tenant_id, variant_id, ids),
        )
        self._count(cur, tenant_id, inserted - cur.rowcount)

    # -- event handlers -------------------------------------------------------------------

    def _upsert_product(self, cur: Cursor[Any], event: Any, fields: dict[str, Any]) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, category, template_id, attributes)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, id) DO UPDATE SET"
                " category = EXCLUDED.category, template_id = EXCLUDED.template_id,"
                " attributes = EXCLUDED.attributes"
            ).format(self._t("validation_products")),
            (
                event.tenant_id,
                entity_id_of(event.originator_id),
                fields.get("category"),
                fields.get("template_id"),
                Jsonb(fields.get("attributes") or {}),
            ),
        )

    def on_product_created(self, cur: Cursor[Any], event: Product.Created, pos: int) -> None:
        self._upsert_product(cur, event, event.fields)
        self._reconcile_product(
            cur, event.tenant_id, entity_id_of(event.originator_id), event.timestamp, fresh=True
        )

    def on_product_updated(self, cur: Cursor[Any], event: Product.Updated, pos: int) -> None:
        relevant = {"category", "template_id", "attributes"} & set(event.changes)
        if not relevant:
            return
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

    def on_product_deleted(self, cur: Cursor[Any], event: Product.Deleted, pos: int) -> None:
        product_id = entity_id_of(event.originator_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND product_id = %s").format(
                self._t("validation_issues")
            ),
            (event.tenant_id, product_id),
        )
        self._count(cur, event.tenant_id, -cur.rowcount)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_products")
            ),
            (event.tenant_id, product_id),
        )

    def _variant_count(self, cur: Cursor[Any], event: Any, product_id: str, delta: int) -> None:
        """Only NO_VARIANTS depends on the count, and only when it crosses zero: handled
        directly (one statement) instead of re-running every product rule."""
        row = cur.execute(
            sql.SQL(
                "UPDATE {} SET variant_count = variant_count + %s WHERE tenant_id = %s AND id = %s"
                " RETURNING variant_count"
            ).format(self._t("validation_products")),
            (delta, event.tenant_id, product_id),
        ).fetchone()
        if row is None:
            return  # the product itself is gone (deleted in the same cascade)
        count = int(row[0])
        iid = issue_id(product_id, None, "NO_VARIANTS", None, NO_VARIANTS_MESSAGE)
        if count == 0 and delta < 0:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (tenant_id, id, product_id, variant_id, code, severity,"
                    " message, attribute_key, detected_at) VALUES (%s, %s, %s, NULL,"
                    " 'NO_VARIANTS', 'WARNING', %s, NULL, %s) ON CONFLICT (tenant_id, id)"
                    " DO NOTHING"
                ).format(self._t("validation_issues")),
                (event.tenant_id, iid, product_id, NO_VARIANTS_MESSAGE, event.timestamp),
            )
            self._count(cur, event.tenant_id, cur.rowcount)
        elif count == delta == 1:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                    self._t("validation_issues")
                ),
                (event.tenant_id, iid),
            )
            self._count(cur, event.tenant_id, -cur.rowcount)

    def on_variant_created(self, cur: Cursor[Any], event: Variant.Created, pos: int) -> None:
        product_id, variant_id = event.fields["product_id"], entity_id_of(event.originator_id)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, product_id, fields) VALUES (%s, %s, %s, %s)"
            ).format(self._t("validation_variants")),
            (event.tenant_id, variant_id, product_id, Jsonb(event.fields)),
        )
        self._reconcile_variant(
            cur, event.tenant_id, product_id, variant_id, event.fields, event.timestamp, fresh=True
        )
        self._variant_count(cur, event, product_id, +1)

    def on_variant_updated(self, cur: Cursor[Any], event: Variant.Updated, pos: int) -> None:
        variant_id = entity_id_of(event.originator_id)
        row = cur.execute(
            sql.SQL(
                "UPDATE {} SET fields = fields || %s WHERE tenant_id = %s AND id = %s"
                " RETURNING product_id::text, fields"
            ).format(self._t("validation_variants")),
            (Jsonb({k: c["to"] for k, c in event.changes.items()}), event.tenant_id, variant_id),
        ).fetchone()
        if row is not None and {"sku", "barcode", "price"} & set(event.changes):
            self._reconcile_variant(
                cur, event.tenant_id, row[0], variant_id, row[1], event.timestamp
            )

    def on_variant_deleted(self, cur: Cursor[Any], event: Variant.Deleted, pos: int) -> None:
        product_id, variant_id = event.fields["product_id"], entity_id_of(event.originator_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_variants")
            ),
            (event.tenant_id, variant_id),
        )
        self._reconcile_variant(cur, event.tenant_id, product_id, variant_id, None, event.timestamp)
        self._variant_count(cur, event, product_id, -1)

    # categories, templates and attributes re-evaluate every product they touch, set-based

    def _category_scope(self, cur: Cursor[Any], event: Any, slugs: list[str]) -> None:
        self._reconcile_products(
            cur, event.tenant_id, sql.SQL("p.category = ANY(%s)"), [slugs], event.timestamp
        )

    def on_category_created(self, cur: Cursor[Any], event: Category.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, slug, id) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, slug) DO UPDATE SET id = EXCLUDED.id"
            ).format(self._t("validation_categories")),
            (event.tenant_id, event.fields["slug"], entity_id_of(event.originator_id)),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def on_category_updated(self, cur: Cursor[Any], event: Category.Updated, pos: int) -> None:
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

    def on_category_deleted(self, cur: Cursor[Any], event: Category.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND slug = %s").format(
                self._t("validation_categories")
            ),
            (event.tenant_id, event.fields["slug"]),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def _template_scope(self, cur: Cursor[Any], event: Any) -> None:
        self._reconcile_products(
            cur,
            event.tenant_id,
            sql.SQL("p.template_id = %s"),
            [entity_id_of(event.originator_id)],
            event.timestamp,
        )

    def _upsert_template(
        self, cur: Cursor[Any], event: Any, name: str, required: list[str]
    ) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, name, required_ids) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,"
                " required_ids = EXCLUDED.required_ids"
            ).format(self._t("validation_templates")),
            (event.tenant_id, entity_id_of(event.originator_id), name, required),
        )

    def on_template_created(self, cur: Cursor[Any], event: Template.Created, pos: int) -> None:
        self._upsert_template(
            cur, event, event.fields["name"], event.fields.get("required_attribute_ids") or []
        )
        self._template_scope(cur, event)

    def on_template_updated(self, cur: Cursor[Any], event: Template.Updated, pos: int) -> None:
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

    def on_template_deleted(self, cur: Cursor[Any], event: Template.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_templates")
            ),
            (event.tenant_id, entity_id_of(event.originator_id)),
        )
        self._template_scope(cur, event)

    def on_attribute_created(self, cur: Cursor[Any], event: Attribute.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, key) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO NOTHING"
            ).format(self._t("validation_attributes")),
            (event.tenant_id, entity_id_of(event.originator_id), event.fields["key"]),
        )

    def on_attribute_deleted(self, cur: Cursor[Any], event: Attribute.Deleted, pos: int) -> None:
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
