"""The product-level rules (UNKNOWN_CATEGORY, MISSING_REQUIRED_ATTRIBUTE), set-based in SQL.

One event can change the issues of many products: a template's new required attribute, a
deleted category or attribute concerns every product that uses it. Evaluated product by
product that would be a read and a write each; here the issues of a whole *scope* of products
are reconciled in two statements: the desired issues are inserted (their ids are
``pim.domain.validation.issue_id`` computed in SQL, so an unchanged issue keeps its id and
``detected_at``) and the stale ones deleted, each with its counters' move. NO_VARIANTS is a
product-level issue too, but it follows the variant count, replayed per batch (replay.py)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pim.projections.statements import Statements
from pim.projections.validation.counters import IssueCounters


class ProductRules(IssueCounters):
    """Reconciles the category and template issues of a scope of products."""

    def _desired_product_issues(self, scope: sql.Composable) -> sql.Composable:
        """SELECT of (tenant_id, product_id, code, message, attribute_key) for the scope
        (NO_VARIANTS is kept by the variant counts, see replay.py)."""
        return sql.SQL(
            """
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
        )

    def _reconcile_products(
        self,
        cur: Statements,
        tenant_id: str,
        scope: sql.Composable,
        params: list[Any],
        at: Any,
        *,
        fresh: bool = False,
    ) -> None:
        """Make the category and template issues of every product in ``scope`` match the
        rules (``fresh``: the scope is a new product, which has no issues to remove yet)."""
        self.write_inserts(cur)
        scope_sql = sql.SQL("p.tenant_id = %s AND ") + scope
        scope_params = [tenant_id, *params]
        ided = sql.SQL(
            "desired (tenant_id, product_id, code, message, attribute_key) AS ({desired}),"
            " ided AS (SELECT d.*, md5(d.product_id::text || '||' || d.code || '|'"
            " || COALESCE(d.attribute_key, '') || '|' || d.message)::uuid AS id FROM desired d)"
        ).format(desired=self._desired_product_issues(scope_sql))
        cur.execute(
            self._counted(
                sql.SQL(
                    "INSERT INTO {issues} (tenant_id, id, product_id, variant_id, code, severity,"
                    " message, attribute_key, detected_at)"
                    " SELECT tenant_id, id, product_id, NULL, code, 'ERROR',"
                    " message, attribute_key, %s FROM ided"
                    " ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id"
                ).format(issues=self._t("validation_issues")),
                +1,
                before=ided,
            ),
            [*scope_params * 2, at],
        )
        if fresh:
            return
        self._count(cur, tenant_id)
        cur.execute(
            self._counted(
                sql.SQL(
                    "DELETE FROM {issues} i USING {products} p"
                    " WHERE i.tenant_id = p.tenant_id AND i.product_id = p.id AND {scope}"
                    " AND i.variant_id IS NULL AND i.code = ANY(%s)"
                    " AND i.id NOT IN (SELECT id FROM ided) RETURNING i.tenant_id"
                ).format(
                    issues=self._t("validation_issues"),
                    products=self._t("validation_products"),
                    scope=scope_sql,
                ),
                -1,
                before=ided,
            ),
            [*scope_params * 3, ["UNKNOWN_CATEGORY", "MISSING_REQUIRED_ATTRIBUTE"]],
        )

    def _reconcile_product(
        self, cur: Statements, tenant_id: str, product_id: str, at: Any, *, fresh: bool = False
    ) -> None:
        self._reconcile_products(
            cur, tenant_id, sql.SQL("p.id = %s"), [product_id], at, fresh=fresh
        )
