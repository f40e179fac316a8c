"""The tables of the validation view, and the statements that keep its rules' inputs.

The rules read other aggregates' state (a product's category must name a live category, its
template's required attributes need values, a variant's rules read its fields). Each
projection advances at its own position, so reading another view's tables would make the
issues depend on how far that view had got, and a rebuild could not reproduce them. The view
therefore keeps its own copy of only what its rules read (``validation_products``,
``validation_categories``, ``validation_templates``, ``validation_attributes``,
``validation_variants``) beside the issues and their per-tenant counters; see
docs/decisions/0007-validation-as-set-based-projection.md."""

from __future__ import annotations

import functools
from typing import ClassVar

from psycopg import sql

from pim.projections.base import Projection, RowsStatement


class ValidationTables(Projection):
    """The bottom layer of the view: table names, DDL and the set-based writes of rule inputs."""

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

    @functools.cached_property
    def _upsert_product_rows(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, category, template_id, attributes)"
                " SELECT tenant_id, id, category, template_id, attributes"
                " FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id uuid, id uuid,"
                " category text, template_id uuid, attributes jsonb)"
                " ON CONFLICT (tenant_id, id) DO UPDATE SET category = EXCLUDED.category,"
                " template_id = EXCLUDED.template_id, attributes = EXCLUDED.attributes"
            ).format(self._t("validation_products")),
            key=("tenant_id", "id"),
        )

    @functools.cached_property
    def _set_variant_counts(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "UPDATE {} AS p SET variant_count = r.variant_count FROM jsonb_to_recordset("
                "%s::jsonb) AS r(tenant_id uuid, id uuid, variant_count int)"
                " WHERE p.tenant_id = r.tenant_id AND p.id = r.id"
            ).format(self._t("validation_products"))
        )

    @functools.cached_property
    def _variant_rows(self) -> dict[str, RowsStatement]:
        table = self._t("validation_variants")
        return {
            "upsert": RowsStatement(
                sql.SQL(
                    "INSERT INTO {} (tenant_id, id, product_id, fields)"
                    " SELECT tenant_id, id, product_id, fields FROM jsonb_to_recordset(%s::jsonb)"
                    " AS r(tenant_id uuid, id uuid, product_id uuid, fields jsonb)"
                    " ON CONFLICT (tenant_id, id) DO UPDATE SET fields = EXCLUDED.fields"
                ).format(table)
            ),
            "delete": RowsStatement(
                sql.SQL(
                    "DELETE FROM {} AS v USING jsonb_to_recordset(%s::jsonb)"
                    " AS r(tenant_id uuid, id uuid) WHERE v.tenant_id = r.tenant_id AND v.id = r.id"
                ).format(table)
            ),
        }
