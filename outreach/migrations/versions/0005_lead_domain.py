"""lead domain, indexed: a colleague's answer is matched by the lead's company domain

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 5000


def email_domain(email: str) -> str:
    """As the model keeps it (a copy: a migration must not change when the models do)."""
    _, at, domain = email.rpartition("@")
    return domain.lower() if at else ""


def upgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain', sa.String(length=255), server_default='', nullable=False))
    lead = sa.table('lead', sa.column('id', sa.Integer), sa.column('email', sa.String), sa.column('domain', sa.String))
    conn = op.get_bind()
    last = 0
    while True:  # in batches, in Python: the same on PostgreSQL and SQLite
        rows = conn.execute(sa.select(lead.c.id, lead.c.email).where(lead.c.id > last).order_by(lead.c.id).limit(BATCH)).all()
        if not rows:
            break
        conn.execute(lead.update().where(lead.c.id == sa.bindparam('pk')).values(domain=sa.bindparam('d')), [{'pk': pk, 'd': email_domain(email)} for pk, email in rows])
        last = rows[-1][0]
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_domain'), ['domain'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_domain'))
        batch_op.drop_column('domain')
