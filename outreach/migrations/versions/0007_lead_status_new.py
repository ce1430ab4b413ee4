"""lead status New: a lead imported and never enrolled was stored as Active, which means it answered

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

lead = sa.table('lead', sa.column('id', sa.Integer), sa.column('status', sa.String))
enrollment = sa.table('enrollment', sa.column('lead_id', sa.Integer))
never_enrolled = ~sa.exists().where(enrollment.c.lead_id == lead.c.id)


def upgrade() -> None:
    op.get_bind().execute(lead.update().where(lead.c.status == 'Active', never_enrolled).values(status='New'))


def downgrade() -> None:
    op.get_bind().execute(lead.update().where(lead.c.status == 'New').values(status='Active'))
