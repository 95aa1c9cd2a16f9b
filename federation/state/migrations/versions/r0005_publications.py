"""Publications and warm answers: a counter per backend scope bumped by every publish, and the
landing answers computed once per publication (issue 18, federation/search/warm.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publications",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("serial", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.Text, nullable=False),
    )
    op.create_table(
        "warm_answers",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("computed_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("scope", "serial", "question"),
    )


def downgrade() -> None:
    op.drop_table("warm_answers")
    op.drop_table("publications")
